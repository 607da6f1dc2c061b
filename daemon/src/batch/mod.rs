//! Batch operations on selected machines: each machine acts on itself (restart its
//! sessions, pull its images and restart the sessions whose image moved ([`update`]),
//! check what runs against its policies); the node that took the request asks the others
//! over peer RPC and gathers what each did.

mod update;

use std::time::Duration;

use shoal_protocol::batch::{BatchAction, MachineOutcome};
use shoal_protocol::policies::ContainerAsk;
use shoal_protocol::{ApiError, ErrorCode, JobKind, JobState, MachineId};

use crate::exec::Restart;
use crate::keys::Caller;
use crate::node::Node;
use crate::p2p::{PeerRequest, PeerResponse};
use crate::runner::{governed, policies_here};

/// Longest one machine may take.
const MACHINE_WAIT: Duration = Duration::from_secs(30);

/// Runs `action` for `caller` on every machine of `machines`, at once.
pub async fn run(
    node: &Node,
    caller: &Caller,
    action: BatchAction,
    machines: &[MachineId],
) -> Vec<MachineOutcome> {
    let each = machines.iter().map(|&machine| async move {
        let name = node
            .fleet
            .read(|s| s.machines.get(&machine).map(|m| m.info.name.clone()))
            .unwrap_or_default();
        let done = if machine == node.id {
            local(node, action).await
        } else {
            remote(node, caller, action, machine).await
        };
        let (ok, detail) = match done {
            Ok(detail) => (true, detail),
            Err(err) => (false, err.message),
        };
        MachineOutcome {
            machine,
            name,
            ok,
            detail,
        }
    });
    futures::future::join_all(each).await
}

async fn remote(
    node: &Node,
    caller: &Caller,
    action: BatchAction,
    machine: MachineId,
) -> Result<String, ApiError> {
    let unavailable = |why: String| ApiError::new(ErrorCode::Unavailable, why);
    let addr = node
        .member_addr(machine)
        .ok_or_else(|| unavailable(format!("no address known for machine {machine}")))?;
    let ask = PeerRequest::Batch {
        action,
        credential: Some(caller.credential.clone()),
    };
    match node
        .p2p
        .request(&addr.peer_id, &addr.p2p_addr, ask, MACHINE_WAIT)
        .await
    {
        Ok(PeerResponse::Batch(result)) => result,
        Ok(PeerResponse::Refused(why)) => Err(unavailable(why)),
        Ok(_) => Err(unavailable("it answered something else".into())),
        Err(err) => Err(unavailable(format!("unreachable: {err}"))),
    }
}

/// The sessions (or, with `sessions_only` off, container work) running on this machine.
fn running_here(
    node: &Node,
    sessions_only: bool,
) -> Vec<(shoal_protocol::JobId, u32, ContainerAsk)> {
    node.fleet.read(|state| {
        state
            .placed_jobs()
            .filter(|job| job.state == JobState::Running && job.spec.image.is_some())
            .filter(|job| !sessions_only || job.spec.kind == JobKind::Session)
            .filter_map(|job| {
                let attempt = job.current_attempt().filter(|a| a.machine == node.id)?;
                let ask = ContainerAsk::for_job(&job.spec);
                Some((job.id, attempt.number, ask))
            })
            .collect()
    })
}

/// Runs `action` on this machine and says what it did.
pub async fn local(node: &Node, action: BatchAction) -> Result<String, ApiError> {
    match action {
        BatchAction::Restart => {
            let mut restarted = Vec::new();
            for (job, attempt, _) in running_here(node, true) {
                if let Some(run) = node.runner.run(job, attempt) {
                    run.restart(Restart::InPlace);
                    restarted.push(job.to_string());
                }
            }
            Ok(if restarted.is_empty() {
                "no session runs here".to_string()
            } else {
                format!("restarting sessions {}", restarted.join(", "))
            })
        }
        BatchAction::Update => update::run(node).await,
        BatchAction::ApplyConfig => {
            let names: Vec<String> = policies_here(node).into_iter().map(|p| p.name).collect();
            let mut lines = vec![if names.is_empty() {
                "no policy applies here".to_string()
            } else {
                format!("policies {} apply here", names.join(", "))
            }];
            for (job, _, ask) in running_here(node, false) {
                if let Err(why) = governed(node, ask) {
                    lines.push(format!("job {job} breaks {why}"));
                }
            }
            Ok(lines.join("; "))
        }
    }
}
