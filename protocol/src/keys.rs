//! API keys: who may call the admin API, for which org, with which scope.
//!
//! A key reads `shoal_<id>_<secret>`. The fleet keeps only the id, the org, the scope and
//! a SHA-256 of the secret; the whole key is shown once, when it is created.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// What a key may do. Each scope includes the ones before it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Look at machines, jobs, the cluster.
    Read,
    /// Run and cancel jobs, drain machines, label them.
    Operate,
    /// Manage keys and tokens, the kill switch.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "read" => Ok(Scope::Read),
            "operate" => Ok(Scope::Operate),
            "admin" => Ok(Scope::Admin),
            other => Err(format!(
                "unknown scope {other:?}: use read, operate or admin"
            )),
        }
    }
}

/// What the fleet keeps of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The public part of the key, 16 hex digits.
    pub id: String,
    pub name: String,
    pub org: String,
    pub scope: Scope,
    /// SHA-256 of the secret part, hex. Never leaves the fleet through the API (see
    /// [`ApiKeyView`]).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub secret_sha256: String,
    pub created_at_ms: UnixMillis,
    /// The key that created it (`bootstrap` for the first).
    pub created_by: String,
    pub revoked_at_ms: Option<UnixMillis>,
}

/// A key as the API answers it: the record without the hash of its secret, which never
/// leaves the fleet (`ApiKeyView::from`, the one conversion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    /// The public part of the key, 16 hex digits.
    pub id: String,
    pub name: String,
    pub org: String,
    pub scope: Scope,
    pub created_at_ms: UnixMillis,
    /// The key that created it (`bootstrap` for the first).
    pub created_by: String,
    pub revoked_at_ms: Option<UnixMillis>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(record: &ApiKeyRecord) -> Self {
        let ApiKeyRecord {
            id,
            name,
            org,
            scope,
            secret_sha256: _,
            created_at_ms,
            created_by,
            revoked_at_ms,
        } = record;
        ApiKeyView {
            id: id.clone(),
            name: name.clone(),
            org: org.clone(),
            scope: *scope,
            created_at_ms: *created_at_ms,
            created_by: created_by.clone(),
            revoked_at_ms: *revoked_at_ms,
        }
    }
}

/// A key split into its parts, or why it is not one.
pub fn parse_key(key: &str) -> Result<(&str, &str), &'static str> {
    let rest = key
        .strip_prefix("shoal_")
        .ok_or("an API key starts with shoal_")?;
    let (id, secret) = rest
        .split_once('_')
        .ok_or("an API key reads shoal_<id>_<secret>")?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id, 16) || !hex(secret, 64) {
        return Err("an API key reads shoal_<16 hex>_<64 hex>");
    }
    Ok((id, secret))
}

/// `POST /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub scope: Scope,
    /// Defaults to the caller's org.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// The answer to `POST /v1/keys`: the whole key, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: String,
    pub record: ApiKeyView,
}

/// `GET /v1/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<ApiKeyView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_into_id_and_secret() {
        let key = format!("shoal_{}_{}", "a1".repeat(8), "0f".repeat(32));
        let (id, secret) = parse_key(&key).unwrap();
        assert_eq!((id.len(), secret.len()), (16, 64));
        assert!(parse_key("Bearer x").is_err());
        assert!(parse_key("shoal_zz_00").is_err());
        assert!(parse_key(&key[..key.len() - 1]).is_err());
    }

    #[test]
    fn scopes_include_the_lower_ones() {
        assert!(Scope::Admin > Scope::Operate && Scope::Operate > Scope::Read);
        assert_eq!("operate".parse::<Scope>(), Ok(Scope::Operate));
        assert!(
            "root"
                .parse::<Scope>()
                .unwrap_err()
                .contains("read, operate or admin")
        );
    }
}
