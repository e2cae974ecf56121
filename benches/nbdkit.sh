#!/usr/bin/env bash
# Sequential write and read of a whole disk through nbdcopy, three ways, in one run:
#   plaintext:   nbdkit file on a raw image (no encryption: the floor)
#   sectorcrypt: nbdkit --filter=sectorcrypt file on a sectorcrypt VM disk (XTS-AES-256, 4 KiB units)
#   luks:        nbdkit --filter=luks file on a LUKS1 image made by qemu-img (aes-256-xts-plain64),
#                nbdkit's own filter, the tool a user would otherwise pick
#   sc-luks:     nbdkit --filter=sectorcrypt file format=luks on the same LUKS1 image
# Files live on a tmpfs so the device is out of the picture. Each cell is the best of --runs runs:
# wall seconds and CPU seconds (user + system of nbdkit and nbdcopy together, from /usr/bin/time).
#
#   benches/nbdkit.sh [--size-mib 1024] [--runs 3] [--dir /dev/shm]
# Needs .ci/deps's packages; builds the CLI and the filter (release) first.
set -euo pipefail
cd "$(dirname "$0")/.."

size_mib=1024 runs=3 base=/dev/shm
while (($#)); do
  case "$1" in
    --size-mib) size_mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --dir) base=$2; shift 2 ;;
    *) echo "usage: $0 [--size-mib N] [--runs N] [--dir DIR]" >&2; exit 2 ;;
  esac
done

bash .ci/deps
cargo build --release --locked -q -p sectorcrypt-cli
make -s -C filters/nbdkit >/dev/null
sc=$PWD/target/release/sectorcrypt
filter=$PWD/filters/nbdkit/nbdkit-sectorcrypt-filter.so

dir=$(mktemp -d "$base/sectorcrypt-nbdkit-bench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
cd "$dir"
head -c "${size_mib}M" /dev/urandom > source.raw
truncate -s "${size_mib}M" plain.img
"$sc" keys native init --kdk kdk >/dev/null
"$sc" disk create --size "${size_mib}M" --key-provider native:kdk vm.disk >/dev/null
# A short PBKDF iteration time, so that opening the image does not count as data-path time.
printf bench-passphrase > passphrase
qemu-img create -q -f luks --object secret,id=sec0,data=bench-passphrase -o key-secret=sec0 \
  -o cipher-alg=aes-256,cipher-mode=xts,ivgen-alg=plain64,iter-time=10 luks.img "${size_mib}M"

declare -A server=(
  [plaintext]="file plain.img"
  [sectorcrypt]="--filter=$filter file vm.disk key-provider=native:kdk"
  [luks]="--filter=luks file luks.img passphrase=bench-passphrase"
  [sc-luks]="--filter=$filter file luks.img format=luks passphrase-file=passphrase"
)

# One captive nbdkit running one nbdcopy; prints "wall cpu".
measure() {
  local args=$1 copy=$2
  # shellcheck disable=SC2086
  /usr/bin/time -f '%e %U %S' -o time.txt nbdkit -U - $args --run "$copy" >/dev/null
  awk '{printf "%.2f %.2f\n", $1, $2 + $3}' time.txt
}

best() {
  local args=$1 copy=$2 best_wall=999999 best_cpu=999999
  for _ in $(seq "$runs"); do
    read -r wall cpu < <(measure "$args" "$copy")
    best_wall=$(awk -v a="$wall" -v b="$best_wall" 'BEGIN {print (a < b) ? a : b}')
    best_cpu=$(awk -v a="$cpu" -v b="$best_cpu" 'BEGIN {print (a < b) ? a : b}')
  done
  echo "$best_wall $best_cpu"
}

printf 'cpu: %s; nbdkit %s; %s MiB on %s; best of %s runs\n' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)" "$(nbdkit --version | cut -d' ' -f2)" \
  "$size_mib" "$base" "$runs"
printf '%-12s %10s %9s %10s %9s\n' config "write s" "write cpu" "read s" "read cpu"
for config in plaintext sectorcrypt luks sc-luks; do
  read -r write_wall write_cpu < <(best "${server[$config]}" 'nbdcopy source.raw "$uri"')
  read -r read_wall read_cpu < <(best "${server[$config]}" 'nbdcopy "$uri" null:')
  printf '%-12s %10s %9s %10s %9s\n' "$config" "$write_wall" "$write_cpu" "$read_wall" "$read_cpu"
done
# The data went through: the sectorcrypt disk holds the source.
"$sc" disk export --key-provider native:kdk --to check.raw vm.disk >/dev/null
cmp -s source.raw check.raw && echo "check: the sectorcrypt disk holds the source image" \
  || { echo "check: the sectorcrypt disk differs from the source" >&2; exit 1; }
