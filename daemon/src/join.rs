//! Joining with a registration token: the new machine asks any member over the encrypted
//! peer channel; the member has the log use the token up (exactly once) and answers with
//! the fleet's secret and where its machines gossip.
//!
//! ```text
//!  shoald join --token T --peer ADDR
//!     ──JoinChallenge{token id, nonce}──▶ whoever answers at ADDR
//!     ◀── JoinProof{its peer id, MAC}        MAC = HMAC(sha256(token secret),
//!                                                  nonce, its peer id, our peer id)
//!     checks the MAC: only a machine holding the fleet's record of T can make it
//!     ──Join{T}, to that peer id only──▶ member ──UseToken (with T, checked again)──▶ log
//!     ◀── Joined { cluster_secret, gossip_seeds, fleet_ca, gossip_keyring } (or Refused: why)
//!  then it starts as any machine does: REGISTERING, then ONLINE
//! ```
//!
//! The token pins the fleet: a different fleet, or anything else listening at ADDR, does
//! not hold its record, cannot make the proof, and never sees the token. The proof names
//! the prover's noise peer id, and the token then goes over a connection authenticated as
//! that peer id, so a relay cannot pass a member's proof off as its own.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hmac::{Hmac, Mac};
use libp2p::PeerId;
use rand::RngCore;
use sha2::Sha256;
use shoal_protocol::tokens::parse_token;
use shoal_protocol::{Command, Response};

use crate::admission::{name_holder, name_taken};
use crate::identity;
use crate::keys::sha256_hex;
use crate::node::{Node, now_ms};
use crate::p2p::{self, Credential, PeerRequest, PeerResponse};

/// Longest a join waits for the member's answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The size of a join challenge's nonce.
const NONCE_BYTES: usize = 32;

/// On a member: uses the token up for the asking machine, then hands over the secret. A
/// machine whose `name` a live machine of the fleet has is refused, and told so, before
/// the token is used.
pub async fn answer(node: &Node, from: PeerId, token: &str, name: Option<&str>) -> PeerResponse {
    let (id, secret) = match parse_token(token) {
        Ok(parts) => parts,
        Err(why) => return PeerResponse::Refused(why.to_string()),
    };
    let secret_sha256 = sha256_hex(secret);
    // Strangers may ask: only a token this replica knows is worth a log entry.
    let known = node.fleet.read(|state| {
        state
            .tokens
            .get(id)
            .is_some_and(|token| token.secret_sha256 == secret_sha256)
    });
    if !known {
        return PeerResponse::Refused("registration token refused: no such token".into());
    }
    let joiner = identity::machine_id(&from);
    if let Some(name) = name
        && let Some(holder) = node.fleet.read(|state| name_holder(state, name, joiner))
    {
        let why = name_taken(name, holder);
        return PeerResponse::Refused(format!("{why} (the token is still unused)"));
    }
    let command = Command::UseToken {
        id: id.to_string(),
        secret_sha256,
        machine: joiner,
        at_ms: now_ms(),
    };
    let credential = Credential::RegistrationToken(token.to_string());
    match node.write_with(command, credential).await {
        Ok(outcome) => match outcome.response {
            Response::Rejected { message, .. } => PeerResponse::Refused(message),
            _ => {
                let mut gossip_seeds: Vec<String> = node
                    .peers
                    .borrow()
                    .iter()
                    .filter(|peer| peer.live)
                    .map(|peer| peer.info.addr.gossip_addr.clone())
                    .collect();
                gossip_seeds.push(node.info.borrow().addr.gossip_addr.clone());
                gossip_seeds.sort();
                gossip_seeds.dedup();
                tracing::info!(machine = %identity::machine_id(&from), "a machine joined with a registration token");
                PeerResponse::Joined {
                    cluster_secret: node.cluster_secret.clone(),
                    gossip_seeds,
                    fleet_ca: node.tls.fleet_ca(),
                    gossip_keyring: node.gossip_keys.for_joiner(),
                }
            }
        },
        Err(err) => PeerResponse::Refused(format!(
            "the fleet could not record the join: {}",
            err.message
        )),
    }
}

/// On a member: proves to a joining machine that this one holds the record of its token.
pub fn prove(node: &Node, from: PeerId, token_id: &str, nonce: &[u8]) -> PeerResponse {
    if nonce.len() != NONCE_BYTES {
        return PeerResponse::Refused(format!(
            "a join challenge carries a {NONCE_BYTES}-byte nonce"
        ));
    }
    let Some(hash) = node.fleet.read(|state| {
        state
            .tokens
            .get(token_id)
            .map(|token| token.secret_sha256.clone())
    }) else {
        return PeerResponse::Refused("registration token refused: no such token".into());
    };
    let peer_id = node.p2p.local_peer_id().to_string();
    PeerResponse::JoinProof {
        mac: proof(&hash, nonce, &peer_id, &from.to_string()),
        peer_id,
    }
}

/// The join proof: an HMAC under the token's hash of the nonce and both peer ids.
fn proof(token_hash: &str, nonce: &[u8], prover: &str, joiner: &str) -> Vec<u8> {
    proof_mac(token_hash, nonce, prover, joiner)
        .finalize()
        .into_bytes()
        .to_vec()
}

fn proof_mac(token_hash: &str, nonce: &[u8], prover: &str, joiner: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(token_hash.as_bytes()).expect("any key length");
    for part in [
        b"shoal join proof 1".as_slice(),
        nonce,
        prover.as_bytes(),
        joiner.as_bytes(),
    ] {
        mac.update(&(part.len() as u32).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// What a successful join brings home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub cluster_secret: String,
    pub gossip_seeds: Vec<String>,
    /// The fleet CA, stored in the data directory by [`request`] (absent from an older
    /// fleet's answer: the machine then asks a member once it runs, see `tls/fetch.rs`).
    pub fleet_ca: Option<crate::tls::FleetCa>,
    /// The fleet's gossip keys after a rotation, stored in the data directory by
    /// [`request`] so gossip opens with them (absent before any rotation).
    pub gossip_keyring: Option<crate::gossip_keys::file::StoredKeyring>,
}

/// On the new machine: presents `token` to the member at `peer` (`ip:port` of its peer RPC)
/// with this machine's identity from `data_dir` and its `name`, binding the temporary
/// swarm to `bind`.
pub async fn request(
    data_dir: &Path,
    bind: std::net::IpAddr,
    peer: &str,
    token: &str,
    name: &str,
) -> anyhow::Result<Joined> {
    std::fs::create_dir_all(data_dir)?;
    let keypair = identity::load_or_create_keypair(data_dir)?;
    let (id, secret) = parse_token(token).map_err(|why| anyhow::anyhow!(why))?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let swarm = p2p::start(keypair, SocketAddr::new(bind, 0), false, stop)?;
    let answer = exchange(&swarm.handle, peer, token, name, id, &sha256_hex(secret)).await;
    let _ = stop_tx.send(true);
    let joined = answer?;
    if let Some(ca) = &joined.fleet_ca
        && crate::tls::FleetCa::load(data_dir)?.is_none()
    {
        ca.check()
            .map_err(|err| anyhow::anyhow!("the fleet's CA does not check: {err}"))?;
        ca.store(data_dir)?;
    }
    if let Some(keyring) = &joined.gossip_keyring {
        crate::gossip_keys::store_joined(data_dir, keyring)
            .map_err(|err| anyhow::anyhow!("the fleet's gossip keyring: {err:#}"))?;
    }
    identity::write_private(
        &data_dir.join(SEEDS_FILE),
        joined.gossip_seeds.join("\n").as_bytes(),
    )?;
    Ok(joined)
}

/// Where a join keeps the gossip addresses the fleet answered with, so that a later start
/// with no `--join` (the service, after `shoald join --no-run`) finds the fleet: `shoald`
/// adds them to `join`.
const SEEDS_FILE: &str = "join.seeds";

/// The gossip seeds a join kept in `data_dir` (none if it never joined with a token).
pub fn kept_seeds(data_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(data_dir.join(SEEDS_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|seed| !seed.is_empty())
        .map(str::to_string)
        .collect()
}

/// The two steps of a join, through `handle`: the proof asked of `peer`, then the token.
async fn exchange(
    handle: &p2p::P2pHandle,
    peer: &str,
    token: &str,
    name: &str,
    token_id: &str,
    token_hash: &str,
) -> anyhow::Result<Joined> {
    let unreachable = |err: crate::p2p::P2pError| {
        let text = err.to_string();
        let hint = match text.contains("negotiate") {
            true => format!(
                " (is {peer} the member's peer RPC port, {}? its gossip and API ports do not take joins)",
                crate::config::DEFAULT_P2P_PORT
            ),
            false => String::new(),
        };
        anyhow::anyhow!("cannot reach {peer} to join: {text}{hint}")
    };
    let mut nonce = vec![0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let challenge = PeerRequest::JoinChallenge {
        token_id: token_id.to_string(),
        nonce: nonce.clone(),
    };
    let prover = match handle.request_at(peer, challenge, JOIN_TIMEOUT).await {
        Ok(PeerResponse::JoinProof { peer_id, mac }) => {
            let joiner = handle.local_peer_id().to_string();
            let proven = proof_mac(token_hash, &nonce, &peer_id, &joiner).verify_slice(&mac);
            if proven.is_err() {
                anyhow::bail!(
                    "{peer} could not prove it belongs to the fleet that made this token; the token was not sent"
                );
            }
            peer_id
        }
        Ok(PeerResponse::Refused(why)) => anyhow::bail!("the fleet refused the join: {why}"),
        Ok(_) => anyhow::bail!(
            "{peer} is not a Shoal machine of the fleet that made this token (it answered something else); the token was not sent"
        ),
        Err(err) => return Err(unreachable(err)),
    };
    let ask = PeerRequest::Join {
        token: token.to_string(),
        name: Some(name.to_string()),
    };
    match handle.request(&prover, peer, ask, JOIN_TIMEOUT).await {
        Ok(PeerResponse::Joined {
            cluster_secret,
            gossip_seeds,
            fleet_ca,
            gossip_keyring,
        }) => Ok(Joined {
            cluster_secret,
            gossip_seeds,
            fleet_ca,
            gossip_keyring,
        }),
        Ok(PeerResponse::Refused(why)) => anyhow::bail!("the fleet refused the join: {why}"),
        Ok(other) => anyhow::bail!("the fleet answered the join with {other:?}"),
        Err(err) => Err(unreachable(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proof_binds_the_token_the_nonce_and_both_machines() {
        let nonce = [7u8; NONCE_BYTES];
        let good = proof("hash", &nonce, "prover", "joiner");
        assert_eq!(good, proof("hash", &nonce, "prover", "joiner"));
        for other in [
            proof("other hash", &nonce, "prover", "joiner"),
            proof("hash", &[8u8; NONCE_BYTES], "prover", "joiner"),
            proof("hash", &nonce, "relay", "joiner"),
            proof("hash", &nonce, "prover", "someone else"),
            // Moving bytes across the boundary between parts changes it too.
            proof("hash", &nonce, "prove", "rjoiner"),
        ] {
            assert_ne!(good, other);
        }
    }
}
