//! `/health`, `/v1/machines` (filtered and sorted, see [`ListQuery`]) and `/v1/cluster`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::{Extension, Json};
use shoal_protocol::api::{
    ClusterMember, ClusterStatus, Health, LabelRequest, MachineList, MachineRemoved, MachineSort,
    MachineView, SortOrder,
};
use shoal_protocol::params::ReadParams;
use shoal_protocol::{
    ApiError, Command, ErrorCode, Labels, MachineId, MachineRecord, MachineStatus, Response,
};

use super::machine_query::ListQuery;
use super::{ApiJson, ApiQuery, ApiResult, Failure, accepted, barrier_if};
use crate::keys::Caller;
use crate::levels::{MachineLevel, below_fleet_level, held_back_by, member_levels};
use crate::node::{Node, VERSION, members, now_ms};

/// `GET /health`, without a key: this node is up, and whether it knows a leader.
#[utoipa::path(get, path = "/health", tag = "machines",
    responses(
        (status = OK, body = Health, description = "This node answers; status is degraded while it knows no leader"),
        (status = SERVICE_UNAVAILABLE, body = Health, description = "This node stopped applying the fleet log; `reason` says why"),
    ))]
pub async fn health(State(node): State<Arc<Node>>) -> (axum::http::StatusCode, Json<Health>) {
    let leader = node.leader();
    let halted = node.fleet.halted();
    let cut_off = node.leadership.cut_off();
    let unavailable = axum::http::StatusCode::SERVICE_UNAVAILABLE;
    let (code, status) = match (&halted, &cut_off, leader) {
        (Some(_), _, _) => (unavailable, "halted"),
        (None, Some(_), _) => (unavailable, "cut_off"),
        (None, None, Some(_)) => (axum::http::StatusCode::OK, "ok"),
        (None, None, None) => (axum::http::StatusCode::OK, "degraded"),
    };
    let health = Health {
        status: status.to_string(),
        machine_id: node.id,
        leader,
        version: VERSION.to_string(),
        reason: halted.or(cut_off),
    };
    (code, Json(health))
}

pub(super) fn parse_id(text: &str) -> Result<MachineId, Failure> {
    super::parsed(text)
}

/// A record with the live gossip view laid on top.
fn view(
    node: &Node,
    record: &MachineRecord,
    roles: &BTreeMap<MachineId, &'static str>,
) -> MachineView {
    let role = roles.get(&record.info.id).copied().unwrap_or("none");
    let mut view = MachineView::from_record(record, role);
    if let Some(peer) = node.peer(record.info.id) {
        view.resources = peer.info.resources.clone();
        view.running = peer.info.running;
        view.draining |= peer.info.draining;
        view.diagnosis = peer.info.diagnosis.clone();
        view.gpus = peer.info.gpus.clone();
        view.last_heartbeat_ms = view.last_heartbeat_ms.max(peer.last_heartbeat_ms);
    }
    view
}

/// Every machine in the local replica, by id, with the live gossip view on top.
pub(crate) fn views(node: &Node) -> Vec<MachineView> {
    let roles = roles(node);
    let records: Vec<MachineRecord> = node
        .fleet
        .read(|state| state.machines.values().cloned().collect());
    records
        .iter()
        .map(|record| view(node, record, &roles))
        .collect()
}

fn roles(node: &Node) -> BTreeMap<MachineId, &'static str> {
    let leader = node.leader();
    members(&node.raft)
        .into_iter()
        .map(|(id, (_, voter))| {
            let role = if Some(id) == leader {
                "leader"
            } else if voter {
                "voter"
            } else {
                "learner"
            };
            (id, role)
        })
        .collect()
}

/// `GET /v1/machines`: the machines that pass every filter, in the asked order.
#[utoipa::path(get, path = "/v1/machines", tag = "machines",
    params(
        ("status" = Option<MachineStatus>, Query, description = "Only machines in this status (any case)"),
        ("provider" = Option<String>, Query, description = "Only machines labelled provider=P"),
        ("os" = Option<String>, Query, description = "Only machines with this OS (any case)"),
        ("label" = Option<Vec<String>>, Query, style = Form, explode, description = "k=v (or a bare k, meaning k=true) the machine carries; repeat for several"),
        ("sort" = Option<MachineSort>, Query, description = "Sort key (state is taken for status); by id when absent"),
        ("order" = Option<SortOrder>, Query, description = "asc (the default) or desc"),
        ("consistent" = Option<bool>, Query, description = "Read through the leader (linearizable)"),
    ),
    responses((status = OK, body = MachineList, description = "The machines that pass every filter")))]
pub async fn list(
    State(node): State<Arc<Node>>,
    ApiQuery(pairs): ApiQuery<Vec<(String, String)>>,
) -> ApiResult<MachineList> {
    let query = ListQuery::parse(pairs)?;
    let read = ReadParams {
        consistent: query.consistent,
    };
    barrier_if(&node, &read).await?;
    let mut machines = views(&node);
    machines.retain(|m| query.matches(m));
    query.sort(&mut machines, now_ms());
    let pending = super::admission::pending(&node);
    Ok(Json(MachineList { machines, pending }))
}

/// `DELETE /v1/machines/{id}`: removes the machine for good. It leaves Raft, its peer
/// requests are refused, and it comes back only with a new registration token.
#[utoipa::path(delete, path = "/v1/machines/{id}", tag = "machines",
    params(("id" = MachineId, Path, description = "The machine")),
    responses(
        (status = OK, body = MachineRemoved, description = "The machine is removed"),
        (status = NOT_FOUND, body = ApiError, description = "No such machine"),
        (status = CONFLICT, body = ApiError, description = "The machine leads the fleet"),
    ))]
pub async fn remove(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<MachineRemoved> {
    let id = parse_id(&id)?;
    if node.leader() == Some(id) {
        return Err(Failure(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "machine {id} leads the fleet: stop it, or remove it once another machine leads"
            ),
        )));
    }
    let outcome = node
        .write_as(&caller, Command::RetireMachine { id })
        .await?;
    accepted(outcome.response)?;
    Ok(Json(MachineRemoved { removed: id }))
}

/// `GET /v1/machines/{id}`.
#[utoipa::path(get, path = "/v1/machines/{id}", tag = "machines",
    params(("id" = MachineId, Path, description = "The machine"), ReadParams),
    responses(
        (status = OK, body = MachineView, description = "The machine"),
        (status = NOT_FOUND, body = ApiError, description = "No such machine"),
    ))]
pub async fn show(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> ApiResult<MachineView> {
    let id = parse_id(&id)?;
    barrier_if(&node, &params).await?;
    let record = node
        .fleet
        .read(|state| state.machines.get(&id).cloned())
        .ok_or_else(|| Failure(ApiError::not_found(format!("no machine with id {id}"))))?;
    Ok(Json(view(&node, &record, &roles(&node))))
}

/// `PUT /v1/machines/{id}/labels`: set and remove operator labels.
#[utoipa::path(put, path = "/v1/machines/{id}/labels", tag = "machines",
    params(("id" = MachineId, Path, description = "The machine")),
    request_body = LabelRequest,
    responses(
        (status = OK, body = MachineView, description = "The machine with its new labels"),
        (status = NOT_FOUND, body = ApiError, description = "No such machine"),
    ))]
pub async fn label(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<LabelRequest>,
) -> ApiResult<MachineView> {
    let id = parse_id(&id)?;
    if body.set.is_empty() && body.remove.is_empty() {
        return Err(Failure(ApiError::bad_request(
            "give labels to set or label keys to remove",
        )));
    }
    if let Some(err) = body
        .remove
        .iter()
        .find_map(|key| Labels::check_key(key).err())
    {
        return Err(Failure(ApiError::bad_request(err.to_string())));
    }
    let outcome = node
        .write_as(
            &caller,
            Command::LabelMachine {
                id,
                set: body.set,
                remove: body.remove,
            },
        )
        .await?;
    match outcome.response {
        Response::Machine(record) => Ok(Json(view(&node, &record, &roles(&node)))),
        Response::Rejected { code, message } => Err(Failure(ApiError::new(code, message))),
        _ => Err(Failure(ApiError::new(
            ErrorCode::Internal,
            "the state machine returned no machine",
        ))),
    }
}

/// `GET /v1/cluster`: Raft as this node sees it, with each member's version and protocol
/// level and the fleet's level.
#[utoipa::path(get, path = "/v1/cluster", tag = "machines",
    responses((status = OK, body = ClusterStatus, description = "Leader, voters, learners, log positions and protocol levels")))]
pub async fn cluster(State(node): State<Arc<Node>>) -> Json<ClusterStatus> {
    let metrics = node.raft.metrics().borrow().clone();
    let fleet_level = node.fleet.read(|state| state.fleet_level);
    let levels: BTreeMap<MachineId, MachineLevel> = member_levels(&node)
        .into_iter()
        .map(|level| (level.id, level))
        .collect();
    let names: BTreeMap<MachineId, String> = node.fleet.read(|state| {
        state
            .machines
            .iter()
            .map(|(id, r)| (*id, r.info.name.clone()))
            .collect()
    });
    let mut voters = Vec::new();
    let mut learners = Vec::new();
    for (id, (addr, voter)) in members(&node.raft) {
        let level = levels.get(&id);
        let member = ClusterMember {
            id,
            name: names.get(&id).cloned().unwrap_or_default(),
            addr,
            version: level.map(|l| l.version.clone()).unwrap_or_default(),
            protocol_level: level.map(|l| l.level).unwrap_or_default(),
        };
        if voter {
            voters.push(member)
        } else {
            learners.push(member)
        }
    }
    let peers = node.peers.borrow().clone();
    let refused = below_fleet_level(&peers, fleet_level)
        .filter(|peer| !levels.contains_key(&peer.info.id))
        .map(|peer| ClusterMember {
            id: peer.info.id,
            name: peer.info.name.clone(),
            addr: peer.info.addr.clone(),
            version: peer.info.version.clone(),
            protocol_level: peer.info.protocol_level,
        })
        .collect();
    let levels: Vec<MachineLevel> = levels.into_values().collect();
    Json(ClusterStatus {
        machine_id: node.id,
        leader: node.leader(),
        term: metrics.current_term,
        last_log_index: metrics.last_log_index,
        commit_index: node.commit_index.get(),
        last_applied: metrics.last_applied.map(|id| id.index),
        voters,
        learners,
        fleet_level,
        held_back_by: held_back_by(&levels),
        refused,
        cut_off: node.leadership.cut_off(),
        gossip_key_generation: node.fleet.read(|state| state.gossip_keys.generation()),
        node_gossip_key_generation: node.gossip_keys.sealing(),
    })
}
