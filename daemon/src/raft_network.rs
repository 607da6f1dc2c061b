//! openraft's network, carried over peer RPC.
//!
//! Addresses come from the [`AddressBook`] (the live gossip view) first, so a machine
//! whose address changed since it joined is still reached; the address recorded in the
//! Raft membership is the fallback.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
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
    async fn call(
        &self,
        request: PeerRequest,
        ttl: Duration,
    ) -> Result<PeerResponse, RPCError<MachineId, MemberAddr>> {
        let addr = self
            .network
            .book
            .get(self.target)
            .unwrap_or_else(|| self.fallback.clone());
        match self
            .network
            .p2p
            .request(&addr.peer_id, &addr.p2p_addr, request, ttl)
            .await
        {
            Ok(PeerResponse::Refused(reason)) => {
                Err(RPCError::Unreachable(Unreachable::new(&Refused(reason))))
            }
            Ok(response) => Ok(response),
            Err(
                err @ (P2pError::Failed { .. } | P2pError::Timeout(_) | P2pError::BadAddress(_)),
            ) => Err(RPCError::Unreachable(Unreachable::new(&err))),
            Err(err @ P2pError::Closed) => Err(RPCError::Network(NetworkError::new(&err))),
        }
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

/// Rebuilds a transport error for a different remote error type.
fn retype<E: std::error::Error>(
    err: RPCError<MachineId, MemberAddr>,
) -> RPCError<MachineId, MemberAddr, RaftError<MachineId, E>> {
    match err {
        RPCError::Unreachable(e) => RPCError::Unreachable(e),
        RPCError::Network(e) => RPCError::Network(e),
        RPCError::Timeout(e) => RPCError::Timeout(e),
        RPCError::PayloadTooLarge(e) => RPCError::PayloadTooLarge(e),
        RPCError::RemoteError(_) => RPCError::Network(NetworkError::new(&WrongKind)),
    }
}

fn wrong_kind<E: std::error::Error>() -> RPCError<MachineId, MemberAddr, RaftError<MachineId, E>> {
    RPCError::Network(NetworkError::new(&WrongKind))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<MachineId>> {
        match self
            .call(PeerRequest::Append(rpc), option.hard_ttl())
            .await
            .map_err(retype)?
        {
            PeerResponse::Append(result) => result.map_err(|e| self.remote(e)),
            _ => Err(wrong_kind()),
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
            .map_err(retype)?
        {
            PeerResponse::Snapshot(result) => result.map_err(|e| self.remote(e)),
            _ => Err(wrong_kind()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<MachineId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<MachineId>> {
        match self
            .call(PeerRequest::Vote(rpc), option.hard_ttl())
            .await
            .map_err(retype)?
        {
            PeerResponse::Vote(result) => result.map_err(|e| self.remote(e)),
            _ => Err(wrong_kind()),
        }
    }
}
