//! Machine ids: a 64-bit number derived from the machine's identity key.
//!
//! The same number is the Raft node id. Humans see it as 16 hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stable id of one machine in the fleet. It survives restarts because it is
/// derived from the identity key kept in the data directory.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MachineId(pub u64);

impl MachineId {
    /// Derives an id from the first eight bytes of a digest of the identity key.
    pub fn from_digest(digest: &[u8]) -> Self {
        let mut bytes = [0u8; 8];
        let n = digest.len().min(8);
        bytes[..n].copy_from_slice(&digest[..n]);
        MachineId(u64::from_be_bytes(bytes))
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not 1 to 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("machine id must be 1 to 16 hex digits, got {0:?}")]
pub struct BadMachineId(pub String);

impl FromStr for MachineId {
    type Err = BadMachineId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadMachineId(s.to_string()));
        }
        u64::from_str_radix(s, 16)
            .map(MachineId)
            .map_err(|_| BadMachineId(s.to_string()))
    }
}

/// In the API a machine id is its 16 hex digits (any case, leading zeros optional).
impl utoipa::PartialSchema for MachineId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-fA-F]{1,16}$"))
            .examples(["00ab12cd34ef5678"])
            .into()
    }
}

impl utoipa::ToSchema for MachineId {}

impl Serialize for MachineId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for MachineId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            u64::deserialize(deserializer).map(MachineId)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let id = MachineId(0x00ab_cdef_0123_4567);
        assert_eq!(id.to_string(), "00abcdef01234567");
        assert_eq!("00abcdef01234567".parse::<MachineId>().unwrap(), id);
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"00abcdef01234567\"");
    }

    #[test]
    fn rejects_bad_text() {
        for bad in ["", "xyz", "00000000000000000", "12 4"] {
            assert!(bad.parse::<MachineId>().is_err(), "{bad:?} was accepted");
        }
    }
}
