//! Commands run inside a session, from any node: the machine that runs the session runs
//! `docker exec` in its container; other nodes ask that machine over peer RPC.

use std::time::Duration;

use shoal_protocol::keys::Scope;
use shoal_protocol::sessions::{ExecRequest, ExecResult};
use shoal_protocol::{ApiError, ErrorCode, JobId, JobState, MachineId};

use crate::exec::ExecError;
use crate::keys::Caller;
use crate::node::Node;
use crate::p2p::{PeerRequest, PeerResponse};

/// How long an exec may run when the request names no limit.
pub const DEFAULT_EXEC_LIMIT: Duration = Duration::from_secs(60);

/// Runs `request` in session `id` for `caller`, wherever it runs.
pub async fn exec(
    node: &Node,
    caller: &Caller,
    id: JobId,
    request: &ExecRequest,
) -> Result<ExecResult, ApiError> {
    let limit = request
        .timeout_seconds
        .map_or(DEFAULT_EXEC_LIMIT, Duration::from_secs);
    let (attempt, machine) = running(node, id).await?;
    if machine == node.id {
        return local(node, id, attempt, &request.command, limit).await;
    }
    let addr = node.member_addr(machine).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("no address known for machine {machine}, which runs session {id}"),
        )
    })?;
    let ask = PeerRequest::Exec {
        job: id,
        attempt,
        command: request.command.clone(),
        timeout_ms: limit.as_millis() as u64,
        credential: Some(caller.credential.clone()),
    };
    let wait = limit + Duration::from_secs(5);
    match node
        .p2p
        .request(&addr.peer_id, &addr.p2p_addr, ask, wait)
        .await
    {
        Ok(PeerResponse::Exec(result)) => result,
        Ok(PeerResponse::Refused(why)) => Err(ApiError::new(ErrorCode::Unavailable, why)),
        Ok(_) => Err(ApiError::new(
            ErrorCode::Internal,
            "the machine answered an exec with something else",
        )),
        Err(err) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("cannot reach machine {machine}, which runs session {id}: {err}"),
        )),
    }
}

/// Refuses (404, as the API does) a session outside `caller`'s org, unless the caller
/// is an admin; `None` (an older build asked, with no key) passes.
pub fn check_owner(node: &Node, id: JobId, caller: Option<&Caller>) -> Result<(), ApiError> {
    let Some(caller) = caller.filter(|c| c.scope < Scope::Admin) else {
        return Ok(());
    };
    let org = node
        .fleet
        .read(|state| state.jobs.get(&id).map(|j| j.spec.org.clone()));
    match org {
        Some(org) if org == caller.org => Ok(()),
        _ => Err(ApiError::not_found(format!("no session with id {id}"))),
    }
}

/// The attempt and machine of running session `id`. A replica that does not show it
/// running yet reads through the leader first: the session may have started a moment ago.
pub async fn running(node: &Node, id: JobId) -> Result<(u32, MachineId), ApiError> {
    let read = || {
        node.fleet.read(|state| {
            let job = state.jobs.get(&id)?;
            let attempt = job
                .current_attempt()
                .filter(|_| job.state == JobState::Running);
            Some(attempt.map(|a| (a.number, a.machine)).ok_or(job.state))
        })
    };
    let mut seen = read();
    if !matches!(seen, Some(Ok(_))) {
        node.read_barrier().await?;
        seen = read();
    }
    seen.ok_or_else(|| ApiError::not_found(format!("no session {id}")))?
        .map_err(|state| {
            ApiError::new(
                ErrorCode::Conflict,
                format!("session {id} is {state}: commands run only in a running session"),
            )
        })
}

/// Runs `command` in this machine's container of `attempt` of session `id`.
pub async fn local(
    node: &Node,
    id: JobId,
    attempt: u32,
    command: &[String],
    limit: Duration,
) -> Result<ExecResult, ApiError> {
    let limit = limit.min(Duration::from_secs(
        shoal_protocol::sessions::MAX_EXEC_SECONDS,
    ));
    node.runner
        .docker()
        .exec(id.0, attempt, command, limit)
        .await
        .map_err(|err| match err {
            ExecError::TimedOut(why) => ApiError::new(ErrorCode::Unavailable, why),
            other => ApiError::new(
                ErrorCode::Unavailable,
                format!("exec in session {id} on {}: {other}", node.config.node_name),
            ),
        })
}
