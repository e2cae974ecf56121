//! The wrapped DEK: a DEK under AES key wrap with padding (RFC 5649, NIST SP 800-38F KWP) by a KEK,
//! in a small self-describing blob that travels with the disk.
//!
//! Version 1 layout (every length explicit; the blob ends exactly after the verifier):
//!
//! ```text
//! "SCWK" | version (1) | algorithm (1 = AES-256-KWP) | DEK kind (1 = XTS-AES-256, 2 = XTS-AES-128)
//!        | provider kind (1 native, 2 kmip, 3 trusted)
//!        | provider id length (1..=64) | provider id
//!        | key id length (1..=64)      | key id
//!        | wrapped length (72 or 40, as the DEK kind implies) | wrapped DEK
//!        | verifier (32: HMAC-SHA256 of a fixed label under the DEK)
//!        | binding (16: HMAC-SHA256 under the DEK of a label and every byte before it, truncated)
//! ```
//!
//! KWP has no associated data, so the binding tag ties the header (version, kinds, KEK reference,
//! verifier) to the wrapped key: KWP's integrity check catches a changed wrapped key, the tag catches
//! a changed header. The verifier depends on the DEK alone, so it survives a shallow rekey and can check
//! a DEK that arrives by any path. Every failure after parsing is the one opaque [`Error::KeyUnwrap`],
//! and no part of a key leaves this module unless every check passed.

use super::material::{Dek, Kek, KeyRef, MAX_ID_LEN, ProviderKind, check_id};
use crate::error::{Error, Result};
use crate::key::KeySize;
use aes_kw::KeyInit;
use hmac::Mac;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

const MAGIC: &[u8; 4] = b"SCWK";
const VERSION: u8 = 1;
const ALGORITHM_AES256_KWP: u8 = 1;
/// Bytes of the DEK verifier.
pub const VERIFIER_LEN: usize = 32;
/// KWP adds one 8-byte semiblock to a key whose length is a multiple of 8.
const KWP_OVERHEAD: usize = 8;
/// Bytes of the header binding tag.
const BINDING_LEN: usize = 16;
const BINDING_LABEL: &[u8] = b"sectorcrypt wrapped-key binding v1";
/// The longest blob: header, two ids of 64 bytes, a wrapped XTS-AES-256 key, verifier and binding.
pub const MAX_BLOB_LEN: usize = 8 + 2 * (1 + MAX_ID_LEN) + 1 + 64 + KWP_OVERHEAD + VERIFIER_LEN + BINDING_LEN;

/// A DEK wrapped under a KEK, with the reference to that KEK and the DEK's verifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDek {
    size: KeySize,
    key_ref: KeyRef,
    wrapped: Vec<u8>,
    verifier: [u8; VERIFIER_LEN],
    binding: [u8; BINDING_LEN],
}

fn kwp(kek: &Kek) -> aes_kw::KwpAes256 {
    aes_kw::KwpAes256::new_from_slice(kek.as_bytes()).expect("a KEK is 32 bytes")
}

const fn size_code(size: KeySize) -> u8 {
    match size {
        KeySize::Aes256 => 1,
        KeySize::Aes128 => 2,
    }
}

impl WrappedDek {
    /// Wraps `dek` under `kek`, which `key_ref` names.
    pub fn wrap(dek: &Dek, kek: &Kek, key_ref: &KeyRef) -> WrappedDek {
        let mut wrapped = vec![0u8; dek.as_bytes().len() + KWP_OVERHEAD];
        kwp(kek).wrap_key(dek.as_bytes(), &mut wrapped).expect("the output length is exact");
        let mut blob = WrappedDek {
            size: dek.size(),
            key_ref: key_ref.clone(),
            wrapped,
            verifier: dek.verifier(),
            binding: [0; 16],
        };
        blob.binding = blob.binding_under(dek);
        blob
    }

    /// The binding tag this blob's header should carry under `dek`.
    fn binding_under(&self, dek: &Dek) -> [u8; BINDING_LEN] {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(dek.as_bytes()).expect("HMAC takes any key");
        mac.update(BINDING_LABEL);
        mac.update(&self.encode_unbound());
        let tag = mac.finalize().into_bytes();
        tag[..BINDING_LEN].try_into().expect("SHA-256 is 32 bytes")
    }

    /// Unwraps the DEK with `kek`. A wrong KEK and an altered blob give the same [`Error::KeyUnwrap`].
    pub fn unwrap(&self, kek: &Kek) -> Result<Dek> {
        let mut plain = Zeroizing::new([0u8; 64 + KWP_OVERHEAD]);
        let key = kwp(kek).unwrap_key(&self.wrapped, &mut plain[..]).map_err(|_| Error::KeyUnwrap)?;
        if key.len() != self.size.xts_key_len() {
            return Err(Error::KeyUnwrap);
        }
        let dek = Dek::from_bytes(key).map_err(|_| Error::KeyUnwrap)?;
        dek.check_verifier(&self.verifier).map_err(|_| Error::KeyUnwrap)?;
        if !bool::from(self.binding_under(&dek).ct_eq(&self.binding)) {
            return Err(Error::KeyUnwrap);
        }
        Ok(dek)
    }

    /// The same DEK wrapped under another KEK (a shallow rekey). Nothing is returned unless the old KEK
    /// opens this blob.
    pub fn rewrap(&self, old_kek: &Kek, new_kek: &Kek, new_ref: &KeyRef) -> Result<WrappedDek> {
        let dek = self.unwrap(old_kek)?;
        Ok(WrappedDek::wrap(&dek, new_kek, new_ref))
    }

    /// The KEK this DEK is wrapped under.
    pub fn key_ref(&self) -> &KeyRef {
        &self.key_ref
    }

    /// XTS-AES-256 or XTS-AES-128.
    pub fn dek_size(&self) -> KeySize {
        self.size
    }

    /// The DEK's verifier (public: it reveals nothing about the key).
    pub fn verifier(&self) -> &[u8; VERIFIER_LEN] {
        &self.verifier
    }

    /// The version-1 encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.encode_unbound();
        out.extend_from_slice(&self.binding);
        out
    }

    /// Every byte of the encoding but the binding tag, which covers them.
    fn encode_unbound(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_BLOB_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[
            VERSION,
            ALGORITHM_AES256_KWP,
            size_code(self.size),
            self.key_ref.kind().code(),
        ]);
        for field in [self.key_ref.provider_id().as_bytes(), self.key_ref.key_id().as_bytes(), &self.wrapped]
        {
            out.push(field.len() as u8);
            out.extend_from_slice(field);
        }
        out.extend_from_slice(&self.verifier);
        out
    }

    /// Parses a blob. Every malformed input is an error that says what is wrong; nothing panics.
    pub fn from_bytes(blob: &[u8]) -> Result<WrappedDek> {
        let mut reader = Reader(blob);
        if reader.take(4)? != MAGIC {
            return Err(Error::WrappedKeyFormat("it does not start with the wrapped-key magic \"SCWK\""));
        }
        let [version, algorithm, size, kind] = reader.array::<4>()?;
        match version {
            VERSION => {}
            0 => return Err(Error::WrappedKeyFormat("format version 0 does not exist")),
            found => return Err(Error::FormatVersion { what: "wrapped key", found, supported: VERSION }),
        }
        if algorithm != ALGORITHM_AES256_KWP {
            return Err(Error::WrappedKeyFormat("unknown wrapping algorithm"));
        }
        let size = match size {
            1 => KeySize::Aes256,
            2 => KeySize::Aes128,
            _ => return Err(Error::WrappedKeyFormat("unknown data-key kind")),
        };
        let kind =
            ProviderKind::from_code(kind).ok_or(Error::WrappedKeyFormat("unknown key-provider kind"))?;
        let provider_id = reader.id()?;
        let key_id = reader.id()?;
        let wrapped = reader.field()?;
        if wrapped.len() != size.xts_key_len() + KWP_OVERHEAD {
            return Err(Error::WrappedKeyFormat("the wrapped key's length does not match its kind"));
        }
        let verifier = reader.array::<VERIFIER_LEN>()?;
        let binding = reader.array::<BINDING_LEN>()?;
        if !reader.0.is_empty() {
            return Err(Error::WrappedKeyFormat("trailing bytes after the binding tag"));
        }
        let key_ref = KeyRef::new(kind, provider_id, key_id)
            .map_err(|_| Error::WrappedKeyFormat("a key id has characters outside A-Z a-z 0-9 . _ -"))?;
        Ok(WrappedDek { size, key_ref, wrapped: wrapped.to_vec(), verifier, binding })
    }
}

/// A cursor over the blob whose every read fails cleanly at the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(Error::WrappedKeyFormat("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }

    fn field(&mut self) -> Result<&'a [u8]> {
        let [len] = self.array::<1>()?;
        self.take(len as usize)
    }

    fn id(&mut self) -> Result<&'a str> {
        let id = self.field()?;
        let id = core::str::from_utf8(id).map_err(|_| Error::WrappedKeyFormat("a key id is not text"))?;
        check_id(id).map_err(|_| Error::WrappedKeyFormat("a key id is empty, too long or has bad characters"))
    }
}
