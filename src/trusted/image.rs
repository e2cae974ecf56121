//! A base image description: the PCR values a host measured when it booted a base image (and its event
//! log, where it has one), exported from a test host so the attestation authority knows the image
//! before hosts are upgraded to it. The file format is in `docs/FORMAT.md`, "Base image description".
//!
//! [`BaseImage::export`] reads the values from the host's TPM (feature `tpm`); [`BaseImage::from_json`]
//! reads a description back, refusing anything the format does not allow.

use super::AttestError;
use serde::{Deserialize, Serialize};

const FORMAT: &str = "sectorcrypt-base-image";
const VERSION: u32 = 1;
/// The PCRs exported when none are named: the firmware's and the boot loader's (0-7).
pub const DEFAULT_PCRS: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

/// One PCR of the SHA-256 bank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcrValue {
    /// 0..=23.
    pub index: u8,
    /// The value, lower-case hex.
    pub sha256: String,
}

/// What a host measured when it booted a base image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    format: String,
    version: u32,
    /// The image's name, as the authority lists it.
    pub name: String,
    /// The image's version.
    pub image_version: String,
    bank: String,
    /// The PCRs, ascending.
    pub pcrs: Vec<PcrValue>,
    /// The firmware event log, hex, where there was one.
    pub event_log: Option<String>,
}

impl BaseImage {
    /// A description of `name` `image_version` with these PCR values (ascending, each 0..=23, at least
    /// one, each once) and event log.
    pub fn new(
        name: &str,
        image_version: &str,
        pcrs: &[(u8, [u8; 32])],
        event_log: Option<&[u8]>,
    ) -> Result<BaseImage, AttestError> {
        let image = BaseImage {
            format: FORMAT.into(),
            version: VERSION,
            name: name.into(),
            image_version: image_version.into(),
            bank: "sha256".into(),
            pcrs: pcrs
                .iter()
                .map(|(index, value)| PcrValue { index: *index, sha256: hex::encode(value) })
                .collect(),
            event_log: event_log.map(hex::encode),
        };
        image.check()?;
        Ok(image)
    }

    /// Reads the PCRs `pcrs` (ascending, 0..=23) from the TPM that `tcti` reaches and describes the
    /// image `name` `image_version` by them.
    #[cfg(feature = "tpm")]
    pub fn export(
        tcti: &str,
        name: &str,
        image_version: &str,
        pcrs: &[u8],
        event_log: Option<&[u8]>,
    ) -> Result<BaseImage, AttestError> {
        check_selection(pcrs)?;
        check_label(name, "name")?;
        check_label(image_version, "version")?;
        let values = crate::keys::persist::tpm::read_pcrs(tcti, pcrs).map_err(|err| {
            let unavailable = err.fault == crate::keys::persist::TpmFault::Unavailable;
            AttestError::Tpm { unavailable, detail: err.detail }
        })?;
        BaseImage::new(name, image_version, &values, event_log)
    }

    /// The description as its file holds it (pretty JSON and a newline).
    pub fn to_json(&self) -> String {
        let mut json = serde_json::to_string_pretty(self).expect("a description always serializes");
        json.push('\n');
        json
    }

    /// A description from its file's bytes, checked against every rule of the format.
    pub fn from_json(bytes: &[u8]) -> Result<BaseImage, AttestError> {
        let image: BaseImage = serde_json::from_slice(bytes)
            .map_err(|_| AttestError::Malformed("not a base image description"))?;
        if image.format != FORMAT {
            return Err(AttestError::Malformed("not a base image description"));
        }
        if image.version != VERSION {
            return Err(AttestError::Malformed(
                "a base image description of a version this build does not know",
            ));
        }
        image.check()?;
        Ok(image)
    }

    /// The PCR values as the quote verifier takes them.
    pub fn pcr_values(&self) -> Vec<(u8, [u8; 32])> {
        // `check` made sure every value is 32 bytes of hex.
        self.pcrs
            .iter()
            .filter_map(|p| Some((p.index, hex::decode(&p.sha256).ok()?.try_into().ok()?)))
            .collect()
    }

    fn check(&self) -> Result<(), AttestError> {
        check_label(&self.name, "name")?;
        check_label(&self.image_version, "version")?;
        if self.bank != "sha256" {
            return Err(AttestError::Malformed("a base image's PCRs are of the SHA-256 bank"));
        }
        let indices: Vec<u8> = self.pcrs.iter().map(|p| p.index).collect();
        check_selection(&indices)?;
        let hex_ok =
            |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !self.pcrs.iter().all(|p| hex_ok(&p.sha256)) {
            return Err(AttestError::Malformed("a PCR value is not 64 lower-case hex digits"));
        }
        if self.event_log.as_deref().is_some_and(|log| hex::decode(log).is_err()) {
            return Err(AttestError::Malformed("the event log is not hex"));
        }
        Ok(())
    }
}

/// PCR indices: at least one, ascending, each once, each 0..=23.
pub fn check_selection(pcrs: &[u8]) -> Result<(), AttestError> {
    if pcrs.is_empty() || pcrs.iter().any(|&i| i > 23) || pcrs.windows(2).any(|w| w[0] >= w[1]) {
        return Err(AttestError::Malformed("PCR indices are 0 to 23, ascending, each once, at least one"));
    }
    Ok(())
}

fn check_label(text: &str, what: &'static str) -> Result<(), AttestError> {
    let printable = text.chars().all(|c| !c.is_control());
    if text.is_empty() || text.chars().count() > 128 || !printable {
        return Err(AttestError::Label(what));
    }
    Ok(())
}
