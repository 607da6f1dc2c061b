//! openraft's network, carried over peer RPC.
//!
//! Addresses come from the [`AddressBook`] (the live gossip view) first, so a machine
//! whose address changed since it joined is still reached; the address recorded in the
//! Raft membership is the fallback.
//!
//! An append too large for one peer message, or not answered within openraft's limit (one
//! Raft heartbeat), is answered with openraft's `PayloadTooLarge` and half the entries as
//! the hint, so replication sends fewer at a time instead of retrying the same message
//! forever.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use shoal_protocol::{MachineId, MemberAddr};
use shoal_raft::TypeConfig;

use crate::p2p::{P2pError, P2pHandle, PeerRequest, PeerResponse};

/// The latest known address of every machine, shared by everything that dials peers.
#[derive(Clone, Default)]
pub struct AddressBook(Arc<RwLock<HashMap<MachineId, MemberAddr>>>);

impl AddressBook {
    pub fn get(&self, id: MachineId) -> Option<MemberAddr> {
        self.0.read().expect("address book lock").get(&id).cloned()
    }

    pub fn replace(&self, entries: HashMap<MachineId, MemberAddr>) {
        *self.0.write().expect("address book lock") = entries;
    }
}

/// Makes one [`PeerClient`] per Raft target.
#[derive(Clone)]
pub struct PeerNetwork {
    pub p2p: P2pHandle,
    pub book: AddressBook,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: MachineId, node: &MemberAddr) -> PeerClient {
        PeerClient {
            target,
            fallback: node.clone(),
            network: self.clone(),
        }
    }
}

pub struct PeerClient {
    target: MachineId,
    fallback: MemberAddr,
    network: PeerNetwork,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<MachineId, MemberAddr, RaftError<MachineId, E>>>;

impl PeerClient {
    /// Sends `request` to the target; a refusal comes back as the `Refused` answer.
    async fn call(&self, request: PeerRequest, ttl: Duration) -> Result<PeerResponse, P2pError> {
        let addr = self
            .network
            .book
            .get(self.target)
            .unwrap_or_else(|| self.fallback.clone());
        self.network
            .p2p
            .request(&addr.peer_id, &addr.p2p_addr, request, ttl)
            .await
    }

    fn remote<E: std::error::Error>(
        &self,
        err: RaftError<MachineId, E>,
    ) -> RPCError<MachineId, MemberAddr, RaftError<MachineId, E>> {
        RPCError::RemoteError(RemoteError::new(self.target, err))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("peer refused the request: {0}")]
struct Refused(String);

#[derive(Debug, thiserror::Error)]
#[error("peer answered with the wrong message kind")]
struct WrongKind;

/// The openraft error for an answer that is not the one asked for: a refusal, another
/// kind of message, or none (the peer is unreachable, or this node is stopping).
fn failed<E: std::error::Error>(
    answer: Result<PeerResponse, P2pError>,
) -> RPCError<MachineId, MemberAddr, RaftError<MachineId, E>> {
    match answer {
        Ok(PeerResponse::Refused(reason)) => {
            RPCError::Unreachable(Unreachable::new(&Refused(reason)))
        }
        Ok(_) => RPCError::Network(NetworkError::new(&WrongKind)),
        // A late answer is not an unreachable peer: openraft waits 500 ms before it
        // tries an unreachable one again, and every append to a busy follower (or one
        // behind a slow link) that took longer than a heartbeat stalled its replication
        // for that long. It tries a late one again at once.
        Err(err @ (P2pError::Closed | P2pError::Timeout(_))) => {
            RPCError::Network(NetworkError::new(&err))
        }
        Err(
            err @ (P2pError::Failed { .. } | P2pError::BadAddress(_) | P2pError::TooLarge { .. }),
        ) => RPCError::Unreachable(Unreachable::new(&err)),
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<MachineId>> {
        let entries = rpc.entries.len() as u64;
        match self.call(PeerRequest::Append(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::Append(result)) => result.map_err(|e| self.remote(e)),
            // Too large for a peer message, or for the follower to take in one heartbeat
            // (openraft's limit for an append): openraft sends fewer entries at a time for
            // a while, then tries more again.
            Err(P2pError::TooLarge { .. } | P2pError::Timeout(_)) if entries > 1 => Err(
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(entries / 2)),
            ),
            other => Err(failed(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<MachineId>, InstallSnapshotError> {
        match self
            .call(PeerRequest::Snapshot(rpc), option.hard_ttl())
            .await
        {
            Ok(PeerResponse::Snapshot(result)) => result.map_err(|e| self.remote(e)),
            other => Err(failed(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MachineId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<MachineId>> {
        match self.call(PeerRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::Vote(result)) => result.map_err(|e| self.remote(e)),
            other => Err(failed(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Error = RPCError<MachineId, MemberAddr, RaftError<MachineId>>;

    #[test]
    fn a_late_answer_is_tried_again_at_once_and_a_dead_peer_after_a_pause() {
        // openraft backs off only from `Unreachable`.
        let late: Error = failed(Err(P2pError::Timeout("peer did not answer in time".into())));
        assert!(matches!(late, RPCError::Network(_)), "{late:?}");
        let dead: Error = failed(Err(P2pError::Failed {
            peer: libp2p::PeerId::random(),
            reason: "connection refused".into(),
        }));
        assert!(matches!(dead, RPCError::Unreachable(_)), "{dead:?}");
    }
}
