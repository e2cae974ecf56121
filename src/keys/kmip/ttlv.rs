//! TTLV, KMIP's binary encoding (KMIP 1.x specification, section 9.1).
//!
//! Every item is a 3-byte tag, a 1-byte type, a 4-byte big-endian length and the value, padded with
//! zeros to a multiple of 8 bytes. A structure's value is its items one after another, so a message is
//! a tree. Fixed-size types have fixed lengths (integer, enumeration and interval 4 bytes padded to 8;
//! long integer, boolean and date-time 8); text is UTF-8; byte strings are raw.
//!
//! The decoder reads what a key server sends, so it trusts nothing: every length is checked against
//! what remains and against its type, padding must be zeros, text must be UTF-8, structures nest at
//! most [`MAX_DEPTH`] deep, and a malformed input is an error, never a panic. Byte strings (which carry
//! key material) zeroize when dropped. `fuzz/fuzz_targets/kmip_ttlv.rs` feeds it arbitrary bytes.

use zeroize::Zeroizing;

/// The deepest nesting of structures accepted; KMIP 1.x messages need six or seven.
pub(crate) const MAX_DEPTH: usize = 16;

/// One TTLV item: a tag and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) tag: u32,
    pub(crate) value: Value,
}

/// The value of an item, by TTLV type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Structure(Vec<Item>),
    Integer(i32),
    LongInteger(i64),
    BigInteger(Vec<u8>),
    Enumeration(u32),
    Boolean(bool),
    TextString(String),
    ByteString(Zeroizing<Vec<u8>>),
    DateTime(i64),
    Interval(u32),
}

/// Why a TTLV input does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("truncated item")]
    Truncated,
    #[error("unknown item type {0:#04x}")]
    UnknownType(u8),
    #[error("item of type {ty:#04x} has length {len}")]
    BadLength { ty: u8, len: u32 },
    #[error("non-zero padding")]
    Padding,
    #[error("a boolean that is neither 0 nor 1")]
    Boolean,
    #[error("text that is not UTF-8")]
    Text,
    #[error("structures nested more than {MAX_DEPTH} deep")]
    TooDeep,
    #[error("bytes after the last item")]
    Trailing,
}

const STRUCTURE: u8 = 0x01;
const INTEGER: u8 = 0x02;
const LONG_INTEGER: u8 = 0x03;
const BIG_INTEGER: u8 = 0x04;
const ENUMERATION: u8 = 0x05;
const BOOLEAN: u8 = 0x06;
const TEXT_STRING: u8 = 0x07;
const BYTE_STRING: u8 = 0x08;
const DATE_TIME: u8 = 0x09;
const INTERVAL: u8 = 0x0A;

/// Bytes of an item's tag, type and length.
pub(crate) const HEADER_LEN: usize = 8;

const fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

impl Item {
    pub(crate) fn new(tag: u32, value: Value) -> Item {
        Item { tag, value }
    }

    pub(crate) fn structure(tag: u32, items: Vec<Item>) -> Item {
        Item::new(tag, Value::Structure(items))
    }

    pub(crate) fn text(tag: u32, text: &str) -> Item {
        Item::new(tag, Value::TextString(text.to_owned()))
    }

    pub(crate) fn enumeration(tag: u32, value: u32) -> Item {
        Item::new(tag, Value::Enumeration(value))
    }

    pub(crate) fn integer(tag: u32, value: i32) -> Item {
        Item::new(tag, Value::Integer(value))
    }

    /// The first child with `tag`, if this is a structure that has one.
    pub(crate) fn child(&self, tag: u32) -> Option<&Item> {
        self.children().iter().find(|item| item.tag == tag)
    }

    /// Every child with `tag`.
    pub(crate) fn all(&self, tag: u32) -> impl Iterator<Item = &Item> {
        self.children().iter().filter(move |item| item.tag == tag)
    }

    /// The items of a structure; none for any other type.
    pub(crate) fn children(&self) -> &[Item] {
        match &self.value {
            Value::Structure(items) => items,
            _ => &[],
        }
    }

    pub(crate) fn as_enumeration(&self) -> Option<u32> {
        match self.value {
            Value::Enumeration(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn as_integer(&self) -> Option<i32> {
        match self.value {
            Value::Integer(v) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::TextString(text) => Some(text),
            _ => None,
        }
    }

    /// The encoding of this item.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag.to_be_bytes()[1..]);
        let start = out.len();
        out.extend_from_slice(&[0; 5]);
        let (ty, len) = match &self.value {
            Value::Structure(items) => {
                items.iter().for_each(|item| item.encode(out));
                (STRUCTURE, out.len() - start - 5)
            }
            Value::Integer(v) => {
                out.extend_from_slice(&v.to_be_bytes());
                (INTEGER, 4)
            }
            Value::LongInteger(v) => {
                out.extend_from_slice(&v.to_be_bytes());
                (LONG_INTEGER, 8)
            }
            Value::BigInteger(bytes) => {
                out.extend_from_slice(bytes);
                (BIG_INTEGER, bytes.len())
            }
            Value::Enumeration(v) => {
                out.extend_from_slice(&v.to_be_bytes());
                (ENUMERATION, 4)
            }
            Value::Boolean(v) => {
                out.extend_from_slice(&u64::from(*v).to_be_bytes());
                (BOOLEAN, 8)
            }
            Value::TextString(text) => {
                out.extend_from_slice(text.as_bytes());
                (TEXT_STRING, text.len())
            }
            Value::ByteString(bytes) => {
                out.extend_from_slice(bytes);
                (BYTE_STRING, bytes.len())
            }
            Value::DateTime(v) => {
                out.extend_from_slice(&v.to_be_bytes());
                (DATE_TIME, 8)
            }
            Value::Interval(v) => {
                out.extend_from_slice(&v.to_be_bytes());
                (INTERVAL, 4)
            }
        };
        out[start] = ty;
        // Lengths beyond u32 cannot arise: nothing this client sends comes near 4 GiB.
        out[start + 1..start + 5].copy_from_slice(&(len as u32).to_be_bytes());
        out.resize(start + 5 + padded(len), 0);
    }

    /// Decodes exactly one item that fills `input`.
    pub(crate) fn from_bytes(input: &[u8]) -> Result<Item, DecodeError> {
        let (item, used) = decode(input, 0)?;
        if used != input.len() {
            return Err(DecodeError::Trailing);
        }
        Ok(item)
    }
}

/// The tag, type and length at the start of `input`.
pub(crate) fn header(input: &[u8]) -> Result<(u32, u8, u32), DecodeError> {
    let head: &[u8; HEADER_LEN] =
        input.get(..HEADER_LEN).and_then(|h| h.try_into().ok()).ok_or(DecodeError::Truncated)?;
    let tag = u32::from_be_bytes([0, head[0], head[1], head[2]]);
    let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    Ok((tag, head[3], len))
}

/// Decodes one item at the start of `input`; returns it and the bytes it used, padding included.
fn decode(input: &[u8], depth: usize) -> Result<(Item, usize), DecodeError> {
    let (tag, ty, len) = header(input)?;
    let body_len = len as usize;
    let total = HEADER_LEN.checked_add(padded(body_len)).ok_or(DecodeError::Truncated)?;
    let item_bytes = input.get(..total).ok_or(DecodeError::Truncated)?;
    let body = &item_bytes[HEADER_LEN..HEADER_LEN + body_len];
    if item_bytes[HEADER_LEN + body_len..].iter().any(|&b| b != 0) {
        return Err(DecodeError::Padding);
    }
    let fixed = |want: usize| if body_len == want { Ok(()) } else { Err(DecodeError::BadLength { ty, len }) };
    let be4 = || -> [u8; 4] { body[..4].try_into().expect("length checked") };
    let be8 = || -> [u8; 8] { body[..8].try_into().expect("length checked") };
    let value = match ty {
        STRUCTURE => {
            if depth >= MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            if !body_len.is_multiple_of(8) {
                return Err(DecodeError::BadLength { ty, len });
            }
            let mut items = Vec::new();
            let mut rest = body;
            while !rest.is_empty() {
                let (item, used) = decode(rest, depth + 1)?;
                items.push(item);
                rest = &rest[used..];
            }
            Value::Structure(items)
        }
        INTEGER => {
            fixed(4)?;
            Value::Integer(i32::from_be_bytes(be4()))
        }
        LONG_INTEGER => {
            fixed(8)?;
            Value::LongInteger(i64::from_be_bytes(be8()))
        }
        BIG_INTEGER => {
            if !body_len.is_multiple_of(8) {
                return Err(DecodeError::BadLength { ty, len });
            }
            Value::BigInteger(body.to_vec())
        }
        ENUMERATION => {
            fixed(4)?;
            Value::Enumeration(u32::from_be_bytes(be4()))
        }
        BOOLEAN => {
            fixed(8)?;
            match u64::from_be_bytes(be8()) {
                0 => Value::Boolean(false),
                1 => Value::Boolean(true),
                _ => return Err(DecodeError::Boolean),
            }
        }
        TEXT_STRING => {
            Value::TextString(core::str::from_utf8(body).map_err(|_| DecodeError::Text)?.to_owned())
        }
        BYTE_STRING => Value::ByteString(Zeroizing::new(body.to_vec())),
        DATE_TIME => {
            fixed(8)?;
            Value::DateTime(i64::from_be_bytes(be8()))
        }
        INTERVAL => {
            fixed(4)?;
            Value::Interval(u32::from_be_bytes(be4()))
        }
        other => return Err(DecodeError::UnknownType(other)),
    };
    Ok((Item { tag, value }, total))
}

/// Fuzzing entry point: decodes arbitrary bytes and, when they decode, checks that encoding the result
/// gives them back (the encoding is canonical, so a decoder that accepts anything else is wrong).
#[doc(hidden)]
pub fn fuzz_decode(input: &[u8]) {
    if let Ok(item) = Item::from_bytes(input) {
        assert_eq!(item.to_bytes(), input, "decode then encode must give the input back");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_specifications_examples() {
        // KMIP 1.2 specification, section 9.1.2: an integer 8, an enumeration 255, a text "Hello World",
        // a structure holding an enumeration and an integer.
        assert_eq!(hex::encode(Item::integer(0x420020, 8).to_bytes()), "42002002000000040000000800000000");
        assert_eq!(
            hex::encode(Item::enumeration(0x420020, 255).to_bytes()),
            "4200200500000004000000ff00000000"
        );
        assert_eq!(
            hex::encode(Item::text(0x420020, "Hello World").to_bytes()),
            "420020070000000b48656c6c6f20576f726c640000000000"
        );
        let structure =
            Item::structure(0x420020, vec![Item::enumeration(0x420004, 254), Item::integer(0x420005, 255)]);
        assert_eq!(
            hex::encode(structure.to_bytes()),
            "42002001000000204200040500000004000000fe000000004200050200000004000000ff00000000"
        );
    }

    #[test]
    fn round_trips_every_type() {
        let item = Item::structure(
            0x420078,
            vec![
                Item::integer(1, -5),
                Item::new(2, Value::LongInteger(-1 << 40)),
                Item::new(3, Value::BigInteger(vec![0; 16])),
                Item::enumeration(4, 7),
                Item::new(5, Value::Boolean(true)),
                Item::text(6, "Ünïcode"),
                Item::new(7, Value::ByteString(Zeroizing::new(vec![1, 2, 3]))),
                Item::new(8, Value::DateTime(1_700_000_000)),
                Item::new(9, Value::Interval(60)),
                Item::structure(10, vec![]),
            ],
        );
        let bytes = item.to_bytes();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(Item::from_bytes(&bytes).unwrap(), item);
        fuzz_decode(&bytes);
    }

    #[test]
    fn refuses_malformed_input() {
        let good = Item::structure(1, vec![Item::integer(2, 9), Item::text(3, "abc")]).to_bytes();
        for cut in 0..good.len() {
            assert!(Item::from_bytes(&good[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0; 8]);
        assert_eq!(Item::from_bytes(&trailing), Err(DecodeError::Trailing));
        let mut padding = good.clone();
        *padding.last_mut().unwrap() = 1;
        assert_eq!(Item::from_bytes(&padding), Err(DecodeError::Padding));
        let mut bad_type = good.clone();
        bad_type[3] = 0x0B;
        assert_eq!(Item::from_bytes(&bad_type), Err(DecodeError::UnknownType(0x0B)));
        let int_len = hex::decode("4200200200000008").unwrap();
        assert!(matches!(
            Item::from_bytes(&[int_len, vec![0; 8]].concat()),
            Err(DecodeError::BadLength { .. })
        ));
        let huge = hex::decode("42002008ffffffff").unwrap();
        assert_eq!(Item::from_bytes(&huge), Err(DecodeError::Truncated));
        let bool2 = hex::decode("42002006000000080000000000000002").unwrap();
        assert_eq!(Item::from_bytes(&bool2), Err(DecodeError::Boolean));
        let not_utf8 = hex::decode("4200200700000001ff00000000000000").unwrap();
        assert_eq!(Item::from_bytes(&not_utf8), Err(DecodeError::Text));
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_far() {
        let mut item = Item::integer(1, 0);
        for _ in 0..MAX_DEPTH {
            item = Item::structure(1, vec![item]);
        }
        assert!(Item::from_bytes(&item.to_bytes()).is_ok());
        let deeper = Item::structure(1, vec![item]);
        assert_eq!(Item::from_bytes(&deeper.to_bytes()), Err(DecodeError::TooDeep));
    }
}
