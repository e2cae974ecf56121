#!/usr/bin/env bash
# Makes the test PKI of the KMIP tests in DIR (which must exist), with openssl:
#   ca.pem/ca.key           the test CA (ECDSA P-256) that signs the server and the clients
#   server.pem/server.key   the key server (ECDSA P-256; SAN IP:127.0.0.1; EKU serverAuth)
#   alice.pem/alice.key     a client (RSA 2048; CN alice; EKU clientAuth)
#   bob.pem/bob.key         another client (ECDSA P-256; CN bob; EKU clientAuth): PyKMIP lets only a
#                           key's owner (the CN that created it) use it
#   other-ca.pem            an unrelated CA, and mallory.pem/.key, a client it signed
# Keys are mode 0600, as the KMIP provider requires of a client key. Used by the Rust tests and by
# docs/KEYS.md's walk-through; safe to run twice (it keeps what exists).
set -euo pipefail
dir=${1:?usage: kmip-pki.sh DIR}
cd "$dir"
umask 077

ec_key() { [ -e "$1.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"; }
rsa_key() { [ -e "$1.key" ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null; }

ca() { # NAME CN
  [ -e "$1.pem" ] && return
  ec_key "$1"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 30 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
}

leaf() { # NAME CN CA EXTENSIONS
  [ -e "$1.pem" ] && return
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf '%b' "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n$4\n" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -CAcreateserial -days 30 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

ca ca sectorcrypt-test-ca
ca other-ca unrelated-test-ca
ec_key server
leaf server 127.0.0.1 ca 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'
rsa_key alice
leaf alice alice ca 'extendedKeyUsage=clientAuth'
ec_key bob
leaf bob bob ca 'extendedKeyUsage=clientAuth'
ec_key mallory
leaf mallory alice other-ca 'extendedKeyUsage=clientAuth'
chmod 644 ./*.pem
