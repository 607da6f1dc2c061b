//! Steering the whole fleet: drain and undrain machines, and the kill switch.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use shoal_protocol::operate::{DrainRequest, DrainResponse, KillSwitchRequest, KillSwitchState};
use shoal_protocol::{ApiError, Command, Drain, FleetState, KillSwitch, MachineId};
use shoal_raft::jobs;

use super::{ApiJson, ApiResult, Failure, accepted};
use crate::keys::Caller;
use crate::node::{Node, now_ms};

/// Longest drain deadline accepted: a week.
const MAX_DEADLINE_SECONDS: u64 = 7 * 24 * 3600;
/// Longest kill switch reason or actor, in bytes.
const MAX_TEXT_LEN: usize = 500;

/// The machines a request selects, from the replica's state.
pub(super) fn select(
    state: &FleetState,
    request: &DrainRequest,
) -> Result<Vec<MachineId>, ApiError> {
    if request.machines.is_empty()
        && request.selector.is_empty()
        && !request.idle_only
        && !request.all
    {
        return Err(ApiError::bad_request(
            "select machines: give machines (ids or names), a selector, idle_only, or all",
        ));
    }
    let named: Option<BTreeSet<MachineId>> = if request.machines.is_empty() {
        None
    } else {
        let mut ids = BTreeSet::new();
        for wanted in &request.machines {
            let found = state.machines.values().find(|m| {
                m.info.name == *wanted
                    || wanted.parse::<MachineId>().is_ok_and(|id| id == m.info.id)
            });
            match found {
                Some(record) => ids.insert(record.info.id),
                None => {
                    return Err(ApiError::not_found(format!(
                        "no machine {wanted:?} in the fleet"
                    )));
                }
            };
        }
        Some(ids)
    };
    let busy = jobs::held_on_machines(state);
    Ok(state
        .machines
        .values()
        .filter(|m| named.as_ref().is_none_or(|ids| ids.contains(&m.info.id)))
        .filter(|m| {
            let labels = m.labels();
            request
                .selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .filter(|m| !request.idle_only || busy.get(&m.info.id).is_none_or(|held| held.jobs == 0))
        .map(|m| m.info.id)
        .collect())
}

async fn set_drain(
    node: &Node,
    caller: &Caller,
    request: &DrainRequest,
    drain: Option<Drain>,
) -> Result<Json<DrainResponse>, Failure> {
    node.read_barrier().await?;
    let (machines, unchanged) = node.fleet.read(|state| {
        let machines = select(state, request)?;
        let as_asked = |id: &MachineId| {
            let draining = state.machines.get(id).is_some_and(|m| m.drain.is_some());
            draining == drain.is_some()
        };
        let unchanged = machines.iter().copied().filter(as_asked).collect();
        Ok::<_, Failure>((machines, unchanged))
    })?;
    if !machines.is_empty() {
        let outcome = node
            .write_as(
                caller,
                Command::SetDrain {
                    machines: machines.clone(),
                    drain,
                },
            )
            .await?;
        accepted(outcome.response)?;
    }
    Ok(Json(DrainResponse {
        machines,
        unchanged,
    }))
}

/// `POST /v1/drain`: the selected machines take no new work; with a deadline, what still
/// runs there after it is taken back and runs elsewhere.
#[utoipa::path(post, path = "/v1/drain", tag = "operate", request_body = DrainRequest,
    responses(
        (status = OK, body = DrainResponse, description = "The machines now draining"),
        (status = NOT_FOUND, body = ApiError, description = "A machine named is unknown"),
    ))]
pub async fn drain(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<DrainRequest>,
) -> ApiResult<DrainResponse> {
    let deadline_ms = match request.deadline_seconds {
        Some(secs) if secs == 0 || secs > MAX_DEADLINE_SECONDS => {
            return Err(Failure(ApiError::bad_request(format!(
                "deadline_seconds must be between 1 and {MAX_DEADLINE_SECONDS}, got {secs}"
            ))));
        }
        Some(secs) => Some(now_ms() + secs * 1000),
        None => None,
    };
    let drain = Drain {
        since_ms: now_ms(),
        deadline_ms,
    };
    set_drain(&node, &caller, &request, Some(drain)).await
}

/// `POST /v1/undrain`: the selected machines take work again.
#[utoipa::path(post, path = "/v1/undrain", tag = "operate", request_body = DrainRequest,
    responses(
        (status = OK, body = DrainResponse, description = "The machines that take work again"),
        (status = NOT_FOUND, body = ApiError, description = "A machine named is unknown"),
    ))]
pub async fn undrain(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<DrainRequest>,
) -> ApiResult<DrainResponse> {
    if request.deadline_seconds.is_some() || request.idle_only {
        return Err(Failure(ApiError::bad_request(
            "undrain takes machines, a selector or all (deadline_seconds and idle_only are for drain)",
        )));
    }
    set_drain(&node, &caller, &request, None).await
}

/// `GET /v1/killswitch`.
#[utoipa::path(get, path = "/v1/killswitch", tag = "operate",
    responses((status = OK, body = KillSwitchState, description = "Whether dispatch is stopped fleet-wide, why and by whom")))]
pub async fn kill_switch(State(node): State<Arc<Node>>) -> Json<KillSwitchState> {
    Json(KillSwitchState::new(
        node.fleet.read(|state| state.kill_switch.clone()),
    ))
}

fn check_text(field: &str, text: &str) -> Result<(), Failure> {
    if text.trim().is_empty() || text.len() > MAX_TEXT_LEN {
        return Err(Failure(ApiError::bad_request(format!(
            "{field} must be 1 to {MAX_TEXT_LEN} bytes and not blank"
        ))));
    }
    Ok(())
}

/// `PUT /v1/killswitch`: on (with a reason) stops all dispatch fleet-wide; off lets it go on.
#[utoipa::path(put, path = "/v1/killswitch", tag = "operate", request_body = KillSwitchRequest,
    responses((status = OK, body = KillSwitchState, description = "The kill switch as it now is")))]
pub async fn set_kill_switch(
    State(node): State<Arc<Node>>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<KillSwitchRequest>,
) -> ApiResult<KillSwitchState> {
    let switch = if request.on {
        let reason = request.reason.ok_or_else(|| {
            Failure(ApiError::bad_request(
                "turning the kill switch on needs a reason",
            ))
        })?;
        check_text("reason", &reason)?;
        let actor = request.actor.unwrap_or_else(|| caller.key_id.clone());
        check_text("actor", &actor)?;
        Some(KillSwitch {
            reason,
            actor,
            since_ms: now_ms(),
        })
    } else {
        None
    };
    if request.terminate && !request.on {
        return Err(Failure(ApiError::bad_request(
            "terminate stops running jobs as the kill switch goes on: use it with on=true",
        )));
    }
    node.write_as(
        &caller,
        Command::SetKillSwitch {
            switch: switch.clone(),
            terminate: request.terminate,
            at_ms: now_ms(),
        },
    )
    .await?;
    Ok(Json(KillSwitchState::new(switch)))
}
