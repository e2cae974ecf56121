//! The KMIP 1.2 messages this client sends, and what it reads from the answers.
//!
//! A request is one batch item: `RequestMessage { RequestHeader { ProtocolVersion, BatchCount = 1 },
//! BatchItem { Operation, RequestPayload } }`. An answer is `ResponseMessage { ResponseHeader,
//! BatchItem { Operation, ResultStatus, [ResultReason, ResultMessage], [ResponsePayload] } }`; a failed
//! operation's reason (a KMIP enumeration) and message become [`Failure`]. Tag and enumeration values
//! are those of the KMIP 1.2 specification (sections 9.1.3.1 and 9.1.3.2).

use super::ttlv::{Item, Value};
use zeroize::Zeroizing;

pub(crate) mod tag {
    pub(crate) const ATTRIBUTE: u32 = 0x420008;
    pub(crate) const ATTRIBUTE_NAME: u32 = 0x42000A;
    pub(crate) const ATTRIBUTE_VALUE: u32 = 0x42000B;
    pub(crate) const BATCH_COUNT: u32 = 0x42000D;
    pub(crate) const BATCH_ITEM: u32 = 0x42000F;
    pub(crate) const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x420028;
    pub(crate) const CRYPTOGRAPHIC_LENGTH: u32 = 0x42002A;
    pub(crate) const KEY_BLOCK: u32 = 0x420040;
    pub(crate) const KEY_FORMAT_TYPE: u32 = 0x420042;
    pub(crate) const KEY_MATERIAL: u32 = 0x420043;
    pub(crate) const KEY_VALUE: u32 = 0x420045;
    pub(crate) const NAME_TYPE: u32 = 0x420054;
    pub(crate) const NAME_VALUE: u32 = 0x420055;
    pub(crate) const OBJECT_TYPE: u32 = 0x420057;
    pub(crate) const OPERATION: u32 = 0x42005C;
    pub(crate) const PROTOCOL_VERSION: u32 = 0x420069;
    pub(crate) const PROTOCOL_VERSION_MAJOR: u32 = 0x42006A;
    pub(crate) const PROTOCOL_VERSION_MINOR: u32 = 0x42006B;
    pub(crate) const QUERY_FUNCTION: u32 = 0x420074;
    pub(crate) const REQUEST_HEADER: u32 = 0x420077;
    pub(crate) const REQUEST_MESSAGE: u32 = 0x420078;
    pub(crate) const REQUEST_PAYLOAD: u32 = 0x420079;
    pub(crate) const RESPONSE_MESSAGE: u32 = 0x42007B;
    pub(crate) const RESPONSE_PAYLOAD: u32 = 0x42007C;
    pub(crate) const RESULT_MESSAGE: u32 = 0x42007D;
    pub(crate) const RESULT_REASON: u32 = 0x42007E;
    pub(crate) const RESULT_STATUS: u32 = 0x42007F;
    pub(crate) const REVOCATION_REASON: u32 = 0x420081;
    pub(crate) const REVOCATION_REASON_CODE: u32 = 0x420082;
    pub(crate) const SYMMETRIC_KEY: u32 = 0x42008F;
    pub(crate) const TEMPLATE_ATTRIBUTE: u32 = 0x420091;
    pub(crate) const UNIQUE_IDENTIFIER: u32 = 0x420094;
    pub(crate) const VENDOR_IDENTIFICATION: u32 = 0x42009D;
}

/// The operations this client uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Create = 1,
    Locate = 8,
    Get = 10,
    GetAttributes = 11,
    Activate = 18,
    Revoke = 19,
    Destroy = 20,
    Query = 24,
    DiscoverVersions = 30,
}

/// The protocol version this client speaks: KMIP 1.2.
pub(crate) const VERSION: (i32, i32) = (1, 2);

const OBJECT_TYPE_SYMMETRIC_KEY: u32 = 2;
const ALGORITHM_AES: u32 = 3;
const NAME_TYPE_TEXT: u32 = 1;
const KEY_FORMAT_RAW: u32 = 1;
/// Encrypt | Decrypt | Wrap Key | Unwrap Key.
const USAGE_ENCRYPT_DECRYPT_WRAP_UNWRAP: i32 = 0x04 | 0x08 | 0x10 | 0x20;
const QUERY_OPERATIONS: u32 = 1;
const QUERY_SERVER_INFORMATION: u32 = 3;
const RESULT_SUCCESS: u32 = 0;

/// A KMIP object's state (KMIP 1.2, 3.22).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Created, not yet activated.
    PreActive,
    /// Usable.
    Active,
    /// Revoked for a reason other than compromise, or past its deactivation date.
    Deactivated,
    /// Revoked as compromised.
    Compromised,
    /// Destroyed.
    Destroyed,
    /// Destroyed after compromise.
    DestroyedCompromised,
}

impl KeyState {
    fn from_code(code: u32) -> Option<KeyState> {
        Some(match code {
            1 => KeyState::PreActive,
            2 => KeyState::Active,
            3 => KeyState::Deactivated,
            4 => KeyState::Compromised,
            5 => KeyState::Destroyed,
            6 => KeyState::DestroyedCompromised,
            _ => return None,
        })
    }

    /// The state's name as KMIP writes it.
    pub fn name(self) -> &'static str {
        match self {
            KeyState::PreActive => "Pre-Active",
            KeyState::Active => "Active",
            KeyState::Deactivated => "Deactivated",
            KeyState::Compromised => "Compromised",
            KeyState::Destroyed => "Destroyed",
            KeyState::DestroyedCompromised => "Destroyed Compromised",
        }
    }
}

/// Why a key is revoked (KMIP 1.2, 9.1.3.2.19): compromise makes it Compromised, anything else
/// Deactivated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationReason {
    /// The key may be known to someone else.
    KeyCompromise = 2,
    /// A newer key replaces it.
    Superseded = 5,
    /// It is no longer needed.
    CessationOfOperation = 6,
}

/// A failed operation: KMIP's result reason (an enumeration value) and the server's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) reason: Option<u32>,
    pub(crate) message: String,
}

/// KMIP result reasons a caller acts on.
pub(crate) mod reason {
    pub(crate) const ITEM_NOT_FOUND: u32 = 1;
    pub(crate) const AUTHENTICATION_NOT_SUCCESSFUL: u32 = 3;
    pub(crate) const PERMISSION_DENIED: u32 = 12;
    pub(crate) const INTERNAL_SERVER_ERROR: u32 = 42;
    pub(crate) const SERVER_LIMIT_EXCEEDED: u32 = 58;
    pub(crate) const PROTECTION_STORAGE_UNAVAILABLE: u32 = 68;
    pub(crate) const GENERAL_FAILURE: u32 = 256;
}

/// What is wrong with an answer that decoded as TTLV but is not the answer asked for.
pub(crate) type Malformed = &'static str;

fn attribute(name: &str, value: Item) -> Item {
    Item::structure(tag::ATTRIBUTE, vec![Item::text(tag::ATTRIBUTE_NAME, name), value])
}

fn name_attribute(name: &str) -> Item {
    let value = Item::structure(
        tag::ATTRIBUTE_VALUE,
        vec![Item::text(tag::NAME_VALUE, name), Item::enumeration(tag::NAME_TYPE, NAME_TYPE_TEXT)],
    );
    attribute("Name", value)
}

fn unique_id(id: &str) -> Item {
    Item::text(tag::UNIQUE_IDENTIFIER, id)
}

/// The request message that runs `operation` with `payload`.
pub(crate) fn request(operation: Operation, payload: Vec<Item>) -> Item {
    let version = Item::structure(
        tag::PROTOCOL_VERSION,
        vec![
            Item::integer(tag::PROTOCOL_VERSION_MAJOR, VERSION.0),
            Item::integer(tag::PROTOCOL_VERSION_MINOR, VERSION.1),
        ],
    );
    let header = Item::structure(tag::REQUEST_HEADER, vec![version, Item::integer(tag::BATCH_COUNT, 1)]);
    let batch = Item::structure(
        tag::BATCH_ITEM,
        vec![
            Item::enumeration(tag::OPERATION, operation as u32),
            Item::structure(tag::REQUEST_PAYLOAD, payload),
        ],
    );
    Item::structure(tag::REQUEST_MESSAGE, vec![header, batch])
}

/// Create: an AES-256 symmetric key for encrypt, decrypt, wrap and unwrap, named `name`.
pub(crate) fn create(name: &str) -> Item {
    let template = Item::structure(
        tag::TEMPLATE_ATTRIBUTE,
        vec![
            attribute("Cryptographic Algorithm", Item::enumeration(tag::ATTRIBUTE_VALUE, ALGORITHM_AES)),
            attribute("Cryptographic Length", Item::integer(tag::ATTRIBUTE_VALUE, 256)),
            attribute(
                "Cryptographic Usage Mask",
                Item::integer(tag::ATTRIBUTE_VALUE, USAGE_ENCRYPT_DECRYPT_WRAP_UNWRAP),
            ),
            name_attribute(name),
        ],
    );
    let object_type = Item::enumeration(tag::OBJECT_TYPE, OBJECT_TYPE_SYMMETRIC_KEY);
    request(Operation::Create, vec![object_type, template])
}

/// Activate, Get (as a raw key), Destroy, or GetAttributes (State) of one object.
pub(crate) fn by_id(operation: Operation, id: &str) -> Item {
    let mut payload = vec![unique_id(id)];
    match operation {
        Operation::Get => payload.push(Item::enumeration(tag::KEY_FORMAT_TYPE, KEY_FORMAT_RAW)),
        Operation::GetAttributes => payload.push(Item::text(tag::ATTRIBUTE_NAME, "State")),
        _ => {}
    }
    request(operation, payload)
}

/// Locate the symmetric keys named `name`.
pub(crate) fn locate(name: &str) -> Item {
    let object_type =
        attribute("Object Type", Item::enumeration(tag::ATTRIBUTE_VALUE, OBJECT_TYPE_SYMMETRIC_KEY));
    request(Operation::Locate, vec![object_type, name_attribute(name)])
}

/// Revoke one key for `reason`.
pub(crate) fn revoke(id: &str, reason: RevocationReason) -> Item {
    let reason = Item::structure(
        tag::REVOCATION_REASON,
        vec![Item::enumeration(tag::REVOCATION_REASON_CODE, reason as u32)],
    );
    request(Operation::Revoke, vec![unique_id(id), reason])
}

/// Discover Versions, listing none: the server answers with every version it speaks.
pub(crate) fn discover_versions() -> Item {
    request(Operation::DiscoverVersions, vec![])
}

/// Query the server's vendor identification and information, and its operations.
pub(crate) fn query() -> Item {
    request(
        Operation::Query,
        vec![
            Item::enumeration(tag::QUERY_FUNCTION, QUERY_SERVER_INFORMATION),
            Item::enumeration(tag::QUERY_FUNCTION, QUERY_OPERATIONS),
        ],
    )
}

/// The payload of a successful answer to `operation`, or the server's failure.
pub(crate) fn response_payload(
    response: &Item,
    operation: Operation,
) -> Result<Result<Item, Failure>, Malformed> {
    if response.tag != tag::RESPONSE_MESSAGE {
        return Err("the answer is not a KMIP response message");
    }
    let mut batch = response.all(tag::BATCH_ITEM);
    let item = batch.next().ok_or("the response has no batch item")?;
    if batch.next().is_some() {
        return Err("the response has more batch items than the request");
    }
    // A server may leave the operation out of a failed item (KMIP 1.2, 7.1); where it is given, it
    // must be the one asked for.
    if let Some(op) = item.child(tag::OPERATION).and_then(Item::as_enumeration)
        && op != operation as u32
    {
        return Err("the response answers another operation");
    }
    let status = item
        .child(tag::RESULT_STATUS)
        .and_then(Item::as_enumeration)
        .ok_or("the response has no result status")?;
    if status != RESULT_SUCCESS {
        let reason = item.child(tag::RESULT_REASON).and_then(Item::as_enumeration);
        let message = item.child(tag::RESULT_MESSAGE).and_then(Item::as_text).unwrap_or("").to_owned();
        return Ok(Err(Failure { reason, message }));
    }
    Ok(Ok(item
        .child(tag::RESPONSE_PAYLOAD)
        .cloned()
        .unwrap_or_else(|| Item::structure(tag::RESPONSE_PAYLOAD, vec![]))))
}

/// The unique identifier in a payload (Create, Activate, Revoke, Destroy, Get).
pub(crate) fn payload_id(payload: &Item) -> Result<String, Malformed> {
    payload
        .child(tag::UNIQUE_IDENTIFIER)
        .and_then(Item::as_text)
        .map(str::to_owned)
        .ok_or("the response has no unique identifier")
}

/// Every unique identifier in a Locate payload.
pub(crate) fn located_ids(payload: &Item) -> Vec<String> {
    payload.all(tag::UNIQUE_IDENTIFIER).filter_map(Item::as_text).map(str::to_owned).collect()
}

/// The State attribute in a GetAttributes payload.
pub(crate) fn state(payload: &Item) -> Result<KeyState, Malformed> {
    let code = payload
        .all(tag::ATTRIBUTE)
        .find(|a| a.child(tag::ATTRIBUTE_NAME).and_then(Item::as_text) == Some("State"))
        .and_then(|a| a.child(tag::ATTRIBUTE_VALUE))
        .and_then(Item::as_enumeration)
        .ok_or("the response has no State attribute")?;
    KeyState::from_code(code).ok_or("the key has an unknown state")
}

/// The raw bytes of the AES-256 key in a Get payload, checked to be an AES-256 symmetric key.
pub(crate) fn symmetric_key(payload: &Item) -> Result<Zeroizing<Vec<u8>>, Malformed> {
    if payload.child(tag::OBJECT_TYPE).and_then(Item::as_enumeration) != Some(OBJECT_TYPE_SYMMETRIC_KEY) {
        return Err("the object is not a symmetric key");
    }
    let block = payload
        .child(tag::SYMMETRIC_KEY)
        .and_then(|k| k.child(tag::KEY_BLOCK))
        .ok_or("the response has no key block")?;
    if block.child(tag::KEY_FORMAT_TYPE).and_then(Item::as_enumeration) != Some(KEY_FORMAT_RAW) {
        return Err("the key is not in raw format");
    }
    if block.child(tag::CRYPTOGRAPHIC_ALGORITHM).and_then(Item::as_enumeration) != Some(ALGORITHM_AES)
        || block.child(tag::CRYPTOGRAPHIC_LENGTH).and_then(Item::as_integer) != Some(256)
    {
        return Err("the key is not an AES-256 key");
    }
    let value = block.child(tag::KEY_VALUE).ok_or("the key block has no key value")?;
    // A key value is a structure holding the key material, or (KMIP 1.0 style) the material itself.
    let material = match &value.value {
        Value::ByteString(bytes) => bytes,
        _ => match value.child(tag::KEY_MATERIAL).map(|m| &m.value) {
            Some(Value::ByteString(bytes)) => bytes,
            _ => return Err("the key value has no key material"),
        },
    };
    if material.len() != 32 {
        return Err("the key material is not 32 bytes");
    }
    Ok(material.clone())
}

/// The protocol versions in a Discover Versions payload, newest first as the server lists them.
pub(crate) fn versions(payload: &Item) -> Vec<(i32, i32)> {
    payload
        .all(tag::PROTOCOL_VERSION)
        .filter_map(|v| {
            let major = v.child(tag::PROTOCOL_VERSION_MAJOR)?.as_integer()?;
            let minor = v.child(tag::PROTOCOL_VERSION_MINOR)?.as_integer()?;
            Some((major, minor))
        })
        .collect()
}

/// The vendor identification in a Query payload.
pub(crate) fn vendor(payload: &Item) -> Option<String> {
    payload.child(tag::VENDOR_IDENTIFICATION).and_then(Item::as_text).map(str::to_owned)
}

/// Every request this client sends, with sample arguments, to check the encoding against another
/// KMIP implementation (`tests/kmip.rs` against PyKMIP's).
pub(crate) fn samples() -> Vec<(&'static str, Item)> {
    vec![
        ("create", create("sectorcrypt-sample")),
        ("activate", by_id(Operation::Activate, "17")),
        ("get", by_id(Operation::Get, "17")),
        ("get-attributes", by_id(Operation::GetAttributes, "17")),
        ("locate", locate("vm-17")),
        ("revoke", revoke("17", RevocationReason::KeyCompromise)),
        ("destroy", by_id(Operation::Destroy, "17")),
        ("discover-versions", discover_versions()),
        ("query", query()),
    ]
}
