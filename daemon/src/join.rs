//! Joining with a registration token: the new machine asks any member over the encrypted
//! peer channel; the member has the log use the token up (exactly once) and answers with
//! the fleet's secret and where its machines gossip.
//!
//! ```text
//!  shoald join --token T --peer ADDR ──PeerRequest::Join{T}──▶ member ──UseToken──▶ log
//!        ◀── Joined { cluster_secret, gossip_seeds } ──┘  (or Refused: why)
//!  then it starts as any machine does: REGISTERING, then ONLINE
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use libp2p::PeerId;
use shoal_protocol::tokens::parse_token;
use shoal_protocol::{Command, Response};

use crate::identity;
use crate::keys::sha256_hex;
use crate::node::{Node, now_ms};
use crate::p2p::{self, PeerRequest, PeerResponse};

/// Longest a join waits for the member's answer.
const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// On a member: uses the token up for the asking machine, then hands over the secret.
pub async fn answer(node: &Node, from: PeerId, token: &str) -> PeerResponse {
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
    let command = Command::UseToken {
        id: id.to_string(),
        secret_sha256,
        machine: identity::machine_id(&from),
        at_ms: now_ms(),
    };
    match node.write(command).await {
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
                }
            }
        },
        Err(err) => PeerResponse::Refused(format!(
            "the fleet could not record the join: {}",
            err.message
        )),
    }
}

/// What a successful join brings home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub cluster_secret: String,
    pub gossip_seeds: Vec<String>,
}

/// On the new machine: presents `token` to the member at `peer` (`ip:port` of its peer RPC)
/// with this machine's identity from `data_dir`, binding the temporary swarm to `bind`.
pub async fn request(
    data_dir: &Path,
    bind: std::net::IpAddr,
    peer: &str,
    token: &str,
) -> anyhow::Result<Joined> {
    std::fs::create_dir_all(data_dir)?;
    let keypair = identity::load_or_create_keypair(data_dir)?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let swarm = p2p::start(keypair, SocketAddr::new(bind, 0), false, stop)?;
    let answer = swarm
        .handle
        .request_at(
            peer,
            PeerRequest::Join {
                token: token.to_string(),
            },
            JOIN_TIMEOUT,
        )
        .await;
    let _ = stop_tx.send(true);
    match answer {
        Ok(PeerResponse::Joined {
            cluster_secret,
            gossip_seeds,
        }) => Ok(Joined {
            cluster_secret,
            gossip_seeds,
        }),
        Ok(PeerResponse::Refused(why)) => anyhow::bail!("the fleet refused the join: {why}"),
        Ok(other) => anyhow::bail!("the fleet answered the join with {other:?}"),
        Err(err) => anyhow::bail!("cannot reach {peer} to join: {err}"),
    }
}
