//! Capability labels: `key=value` pairs a machine carries and a job may require.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest label key, in bytes.
pub const MAX_KEY_LEN: usize = 63;
/// Longest label value, in bytes.
pub const MAX_VALUE_LEN: usize = 128;
/// Most labels on one machine.
pub const MAX_LABELS: usize = 64;

/// A label that cannot be accepted, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum LabelError {
    #[error(
        "label key {0:?} must be 1 to 63 characters of a-z, 0-9, '.', '_', '-' or '/', starting with a letter or digit"
    )]
    BadKey(String),
    #[error(
        "label value {value:?} of key {key:?} must be at most 128 printable characters without spaces"
    )]
    BadValue { key: String, value: String },
    #[error("at most {MAX_LABELS} labels are allowed, got {0}")]
    TooMany(usize),
}

/// A validated set of labels, ordered by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Labels(BTreeMap::new())
    }

    /// Parses `key=value`; a bare `key` means `key=true`.
    pub fn parse_pair(text: &str) -> Result<(String, String), LabelError> {
        let (key, value) = text.split_once('=').unwrap_or((text, "true"));
        validate_key(key)?;
        validate_value(key, value)?;
        Ok((key.to_string(), value.to_string()))
    }

    /// Builds a label set from `key=value` strings.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Self, LabelError> {
        let mut map = BTreeMap::new();
        for pair in pairs {
            let (key, value) = Self::parse_pair(pair)?;
            map.insert(key, value);
        }
        Labels::try_from(map)
    }

    /// Checks a label key alone (for keys to remove, or to require).
    pub fn check_key(key: &str) -> Result<(), LabelError> {
        validate_key(key)
    }

    /// Sets one label after checking it.
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), LabelError> {
        validate_key(key)?;
        validate_value(key, value)?;
        if !self.0.contains_key(key) && self.0.len() >= MAX_LABELS {
            return Err(LabelError::TooMany(self.0.len() + 1));
        }
        self.0.insert(key.to_string(), value.to_string());
        Ok(())
    }

    /// Removes a label, returning whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// These labels with `overrides` laid on top.
    pub fn merged(&self, overrides: &Labels) -> Labels {
        let mut map = self.0.clone();
        map.extend(overrides.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        Labels(map)
    }
}

fn validate_key(key: &str) -> Result<(), LabelError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/')
        });
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadKey(key.to_string()))
    }
}

fn validate_value(key: &str, value: &str) -> Result<(), LabelError> {
    let ok = value.len() <= MAX_VALUE_LEN && value.chars().all(|c| c.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(LabelError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

impl TryFrom<BTreeMap<String, String>> for Labels {
    type Error = LabelError;

    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        if map.len() > MAX_LABELS {
            return Err(LabelError::TooMany(map.len()));
        }
        for (key, value) in &map {
            validate_key(key)?;
            validate_value(key, value)?;
        }
        Ok(Labels(map))
    }
}

impl From<Labels> for BTreeMap<String, String> {
    fn from(labels: Labels) -> Self {
        labels.0
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (key, value) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_bare_keys() {
        let labels = Labels::from_pairs(["gpu", "zone=attic", "os/arch=x86_64"]).unwrap();
        assert_eq!(labels.get("gpu"), Some("true"));
        assert_eq!(labels.get("zone"), Some("attic"));
        assert_eq!(labels.to_string(), "gpu=true,os/arch=x86_64,zone=attic");
    }

    #[test]
    fn rejects_bad_keys_and_values() {
        assert!(matches!(
            Labels::parse_pair("=x"),
            Err(LabelError::BadKey(_))
        ));
        assert!(matches!(
            Labels::parse_pair("GPU=1"),
            Err(LabelError::BadKey(_))
        ));
        assert!(matches!(
            Labels::parse_pair("-gpu"),
            Err(LabelError::BadKey(_))
        ));
        assert!(matches!(
            Labels::parse_pair("a=b c"),
            Err(LabelError::BadValue { .. })
        ));
    }

    #[test]
    fn json_rejects_invalid_maps() {
        assert!(serde_json::from_str::<Labels>(r#"{"Bad Key":"x"}"#).is_err());
        let ok: Labels = serde_json::from_str(r#"{"gpu":"true"}"#).unwrap();
        assert_eq!(ok.get("gpu"), Some("true"));
    }

    #[test]
    fn overrides_win_when_merged() {
        let base = Labels::from_pairs(["zone=a", "gpu"]).unwrap();
        let over = Labels::from_pairs(["zone=b"]).unwrap();
        let merged = base.merged(&over);
        assert_eq!(merged.get("zone"), Some("b"));
        assert_eq!(merged.get("gpu"), Some("true"));
    }
}
