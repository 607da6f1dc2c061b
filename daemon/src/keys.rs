//! API keys on the node: making one, checking one against the replica, and recording the
//! first admin key when this machine bootstraps the fleet.

use std::sync::Arc;

use futures::future::BoxFuture;
use rand::RngCore;
use sha2::{Digest, Sha256};
use shoal_protocol::keys::{ApiKeyRecord, Scope, parse_key};
use shoal_protocol::{ApiError, Command, ErrorCode, FleetState, Response, UnixMillis};

use crate::node::{Node, now_ms};
use crate::p2p::Credential;

pub use shoal_protocol::job::DEFAULT_ORG;

/// Who is calling, once their key checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key_id: String,
    pub org: String,
    pub scope: Scope,
    /// The key as presented, for the machine that acts on the caller's behalf (the
    /// leader, or the machine a session runs on) to check again.
    pub credential: Credential,
}

impl Caller {
    /// `command` as this caller's change, so the log records it in the audit log.
    pub fn audited(&self, command: Command) -> Command {
        Command::Audited {
            actor: self.key_id.clone(),
            org: self.org.clone(),
            at_ms: now_ms(),
            command: Box::new(command),
        }
    }

    /// Refuses with 403 unless the key's scope includes `needed`.
    pub fn require(&self, needed: Scope) -> Result<(), ApiError> {
        if self.scope >= needed {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this needs a key with scope {needed}; key {} has {}",
                    self.key_id, self.scope
                ),
            ))
        }
    }
}

pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

/// A new key: the whole key (shown once) and the record the fleet keeps.
pub fn new_key(
    org: &str,
    scope: Scope,
    name: &str,
    created_by: &str,
    now: UnixMillis,
) -> (String, ApiKeyRecord) {
    let key = format!("shoal_{}_{}", random_hex(8), random_hex(32));
    let record = record_of(&key, org, scope, name, created_by, now).expect("a key we made parses");
    (key, record)
}

/// The record for a given key (e.g. a bootstrap key from the config).
pub fn record_of(
    key: &str,
    org: &str,
    scope: Scope,
    name: &str,
    created_by: &str,
    now: UnixMillis,
) -> Result<ApiKeyRecord, &'static str> {
    let (id, secret) = parse_key(key)?;
    Ok(ApiKeyRecord {
        id: id.to_string(),
        name: name.to_string(),
        org: org.to_string(),
        scope,
        secret_sha256: sha256_hex(secret),
        created_at_ms: now,
        created_by: created_by.to_string(),
        revoked_at_ms: None,
    })
}

/// Checks a presented key against the fleet's records.
pub fn authenticate(state: &FleetState, key: &str) -> Result<Caller, ApiError> {
    let unauthorized = |why: &str| ApiError::new(ErrorCode::Unauthorized, why.to_string());
    let (id, secret) = parse_key(key).map_err(unauthorized)?;
    let record = state
        .api_keys
        .get(id)
        .ok_or_else(|| unauthorized("unknown API key"))?;
    // Compare digests, whose timing says nothing about the secret.
    if record.secret_sha256 != sha256_hex(secret) {
        return Err(unauthorized("unknown API key"));
    }
    if record.revoked_at_ms.is_some() {
        return Err(unauthorized("this API key was revoked"));
    }
    Ok(Caller {
        key_id: record.id.clone(),
        org: record.org.clone(),
        scope: record.scope,
        credential: Credential::ApiKey(key.to_string()),
    })
}

/// How often a stream that outlives its request (a followed event stream or job output, an
/// attached shell) checks that its caller's key still holds.
pub const RECHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Waits until `caller`'s key no longer holds on this replica (revoked, or gone) and says
/// why. A stream makes it once and selects on it beside its work for as long as it runs,
/// so revoking a key ends every stream opened with it within [`RECHECK_EVERY`], on every
/// node. Only API keys open streams: for any other credential this waits forever.
pub fn revoked(node: Arc<Node>, caller: &Caller) -> BoxFuture<'static, String> {
    let credential = caller.credential.clone();
    Box::pin(async move {
        let Credential::ApiKey(key) = credential else {
            return std::future::pending().await;
        };
        let start = tokio::time::Instant::now() + RECHECK_EVERY;
        let mut tick = tokio::time::interval_at(start, RECHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = node.fleet.read(|state| authenticate(state, &key)) {
                return err.message;
            }
        }
    })
}

/// Shows where the admin key this node made is kept: on stdout itself only when stdout is a
/// terminal (under systemd, stdout is the journal, which keeps what it is given).
fn show_first_admin_key(kept: &std::path::Path, key: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        println!(
            "shoal: the fleet's first admin API key (also in {}): {key}",
            kept.display()
        );
        println!("shoal: export SHOAL_TOKEN={key}");
    } else {
        tracing::warn!(
            file = %kept.display(),
            "the fleet's first admin API key is in this file, readable by this user only: \
             take it (export SHOAL_TOKEN=$(cat FILE)) and delete the file"
        );
    }
}

/// On the machine that bootstrapped the fleet: records the first admin key (the configured
/// one, or a new one kept in `admin.key`), retrying until the log has it.
pub async fn record_bootstrap_key(node: &Node) {
    let waiting = node
        .config
        .data_dir
        .join(crate::identity::BOOTSTRAP_KEY_FILE);
    let from_init = std::fs::read_to_string(&waiting)
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|key| parse_key(key).is_ok());
    let (key, record) = match node.config.bootstrap_key.as_ref().or(from_init.as_ref()) {
        Some(key) => {
            let record = record_of(
                key,
                DEFAULT_ORG,
                Scope::Admin,
                "bootstrap",
                "bootstrap",
                now_ms(),
            )
            .expect("validated with the config");
            (None, record)
        }
        None => {
            let (key, record) = new_key(
                DEFAULT_ORG,
                Scope::Admin,
                "bootstrap",
                "bootstrap",
                now_ms(),
            );
            // Kept before the log has it, so a key the fleet knows is never a key nobody has.
            match crate::identity::keep_first_admin_key(&node.config.data_dir, &key) {
                Ok(kept) => (Some((key, kept)), record),
                Err(err) => {
                    tracing::error!(error = %format!("{err:#}"),
                        "cannot keep a first admin API key; the fleet has none until a start \
                         that can (or one with --bootstrap-key)");
                    return;
                }
            }
        }
    };
    loop {
        if node.fleet.read(|state| !state.api_keys.is_empty()) {
            return;
        }
        match node
            .write(Command::CreateApiKey {
                record: Box::new(record.clone()),
            })
            .await
        {
            Ok(outcome) if !matches!(outcome.response, Response::Rejected { .. }) => {
                if let Some((key, kept)) = &key {
                    show_first_admin_key(kept, key);
                }
                tracing::info!(key_id = %record.id, "bootstrap admin key recorded");
                // The log holds its hash now; the plaintext from `shoald init` goes.
                let _ = std::fs::remove_file(&waiting);
                return;
            }
            Ok(_) => return,
            Err(err) => {
                tracing::debug!(error = %err.message, "recording the bootstrap key; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_checks_out_until_revoked_and_only_with_its_secret() {
        let (key, record) = new_key("homelab", Scope::Operate, "ci", "bootstrap", 1);
        assert!(record.secret_sha256.len() == 64 && !key.contains(&record.secret_sha256));
        let mut state = FleetState::default();
        state.api_keys.insert(record.id.clone(), record.clone());
        let caller = authenticate(&state, &key).unwrap();
        assert_eq!(
            (caller.org.as_str(), caller.scope),
            ("homelab", Scope::Operate)
        );
        assert!(caller.require(Scope::Read).is_ok());
        assert_eq!(
            caller.require(Scope::Admin).unwrap_err().code,
            ErrorCode::Forbidden
        );

        let mut forged = key.clone();
        forged.replace_range(key.len() - 1.., if key.ends_with('0') { "1" } else { "0" });
        assert_eq!(
            authenticate(&state, &forged).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert!(
            authenticate(&state, "hunter2")
                .unwrap_err()
                .message
                .contains("shoal_")
        );
        state.api_keys.get_mut(&record.id).unwrap().revoked_at_ms = Some(2);
        assert!(
            authenticate(&state, &key)
                .unwrap_err()
                .message
                .contains("revoked")
        );
    }
}
