//! Registration tokens: single-use, expiring invitations for machines to join the fleet.
//!
//! A token reads `shoaljoin_<id>_<secret>`. The fleet keeps the id, a SHA-256 of the
//! secret, when it expires, the org and labels the joining machine gets, and which machine
//! used it. Using one is a log entry, so of two machines racing with one token exactly one
//! gets in.

use serde::{Deserialize, Serialize};

use crate::{Labels, MachineId, UnixMillis};

/// What the fleet keeps of a registration token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationToken {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub secret_sha256: String,
    pub org: String,
    /// Labels the machine that uses the token gets (as operator labels).
    pub labels: Labels,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub created_by: String,
    pub used_by: Option<MachineId>,
    pub used_at_ms: Option<UnixMillis>,
    pub revoked_at_ms: Option<UnixMillis>,
}

/// A registration token as the API answers it: the record without the hash of its
/// secret, which never leaves the fleet (`TokenView::from`, the one conversion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub org: String,
    /// Labels the machine that uses the token gets (as operator labels).
    pub labels: Labels,
    pub created_at_ms: UnixMillis,
    pub expires_at_ms: UnixMillis,
    pub created_by: String,
    pub used_by: Option<MachineId>,
    pub used_at_ms: Option<UnixMillis>,
    pub revoked_at_ms: Option<UnixMillis>,
}

impl From<&RegistrationToken> for TokenView {
    fn from(token: &RegistrationToken) -> Self {
        let RegistrationToken {
            id,
            secret_sha256: _,
            org,
            labels,
            created_at_ms,
            expires_at_ms,
            created_by,
            used_by,
            used_at_ms,
            revoked_at_ms,
        } = token;
        TokenView {
            id: id.clone(),
            org: org.clone(),
            labels: labels.clone(),
            created_at_ms: *created_at_ms,
            expires_at_ms: *expires_at_ms,
            created_by: created_by.clone(),
            used_by: *used_by,
            used_at_ms: *used_at_ms,
            revoked_at_ms: *revoked_at_ms,
        }
    }
}

/// A token split into id and secret, or why it is not one.
pub fn parse_token(token: &str) -> Result<(&str, &str), &'static str> {
    let rest = token
        .strip_prefix("shoaljoin_")
        .ok_or("a registration token starts with shoaljoin_")?;
    let (id, secret) = rest
        .split_once('_')
        .ok_or("a registration token reads shoaljoin_<id>_<secret>")?;
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id, 16) || !hex(secret, 64) {
        return Err("a registration token reads shoaljoin_<16 hex>_<64 hex>");
    }
    Ok((id, secret))
}

/// `POST /v1/tokens/registration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokensRequest {
    /// 1 to 100 [default 1].
    #[serde(default = "one")]
    pub count: u32,
    /// 60 s to 30 days [default 1 h].
    #[serde(default = "an_hour")]
    pub ttl_seconds: u64,
    /// Defaults to the caller's org.
    #[serde(default)]
    pub org: Option<String>,
    #[serde(default)]
    pub labels: Labels,
}

fn one() -> u32 {
    1
}

fn an_hour() -> u64 {
    3600
}

/// The answer: the whole tokens, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreatedTokens {
    pub tokens: Vec<String>,
    pub expires_at_ms: UnixMillis,
}

/// `GET /v1/tokens/registration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}
