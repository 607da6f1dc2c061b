//! `batch update` on one machine: pull the images its work comes from, then restart the
//! sessions whose image moved onto the new one.
//!
//! ```text
//!  images: each template's current one, and each image a session here runs
//!          (not those pinned by digest)
//!  each image ─▶ docker pull, with the registry's credentials ─▶ "pulled <id>" | "up to date" | why not
//!             (pull `never`, the template's or a policy's here: only whether the engine has it;
//!              an image a policy here refuses: left alone)
//!  each session here ─▶ its container's image id ≠ the id its reference has now
//!                     ─▶ restart onto the current image (exec::recreate)
//! ```
//!
//! The work runs in a task of its own, one at a time per machine: the answer waits
//! [`ANSWER_WITHIN`] for it, and a longer pull goes on after the answer says so (an update
//! asked meanwhile says that one runs).

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_protocol::policies::ContainerAsk;
use shoal_protocol::{ApiError, ErrorCode, JobId, JobKind, JobState, PullPolicy};

use crate::exec::pull::PullAuth;
use crate::exec::{DockerExecutor, Restart, RunHandle};
use crate::node::Node;
use crate::runner::{governed, pull_auth};

/// Longest the answer waits for the pulls and restarts (a batch gives each machine 30 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// A session running here that may move to a newer image.
struct Session {
    run: RunHandle,
    image: String,
}

/// What is done with one image.
enum Refresh {
    /// Pulled, with the login its registry needs (or why the login does not open here).
    Pull(Result<Option<PullAuth>, String>),
    /// Its template, or a policy here, says pull `never`: only checked.
    Check,
    /// A policy here refuses the image: left alone, saying why.
    Refused(String),
}

/// What one machine updates: each image, and the sessions.
struct Plan {
    images: BTreeMap<String, Refresh>,
    sessions: Vec<Session>,
}

/// Pulls, then restarts, and says what it did; an error when a pull failed or a `never`
/// image is missing (the sessions of the images that did pull are restarted all the same).
pub async fn run(node: &Node) -> Result<String, ApiError> {
    let Ok(updating) = node.runner.updating.clone().try_lock_owned() else {
        return Ok(
            "an update already runs here: its pulls go on, and the sessions restart when done"
                .into(),
        );
    };
    let plan = plan(node);
    if plan.images.is_empty() {
        return Ok("no image to update here".into());
    }
    let docker = node.runner.docker().clone();
    let work = tokio::spawn(async move {
        let done = apply(docker, plan).await;
        drop(updating);
        done
    });
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(error)) => Err(ApiError::new(
            ErrorCode::Internal,
            format!("the update stopped: {error}"),
        )),
        Err(_) => Ok(format!(
            "still pulling after {}s: the pulls go on here, and the sessions restart onto their new images when done",
            ANSWER_WITHIN.as_secs()
        )),
    }
}

async fn apply(docker: DockerExecutor, plan: Plan) -> Result<String, ApiError> {
    let mut lines = Vec::new();
    // Each image pulled, with its id now.
    let mut pulled: BTreeMap<&str, String> = BTreeMap::new();
    let mut failed = false;
    for (image, refresh) in &plan.images {
        let before = docker.image_id(image).await.ok().flatten();
        let auth = match refresh {
            Refresh::Refused(why) => {
                lines.push(format!("{image}: not pulled, {why}"));
                continue;
            }
            Refresh::Check => {
                lines.push(match &before {
                    Some(id) => format!("{image}: pull never, present ({})", short(id)),
                    None => format!("{image}: pull never, missing"),
                });
                failed |= before.is_none();
                continue;
            }
            Refresh::Pull(auth) => auth,
        };
        let outcome = match auth {
            Ok(auth) => docker
                .pull_image(image, auth.as_ref())
                .await
                .map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        if let Err(why) = outcome {
            lines.push(format!("{image}: {why}"));
            failed = true;
            continue;
        }
        let after = docker.image_id(image).await.ok().flatten();
        lines.push(match &after {
            Some(after) if before.as_ref() != Some(after) => {
                format!("{image}: pulled {}", short(after))
            }
            _ => format!("{image}: up to date"),
        });
        if let Some(after) = after {
            pulled.insert(image.as_str(), after);
        }
    }
    let mut restarted = Vec::new();
    for session in &plan.sessions {
        let Some(now) = pulled.get(session.image.as_str()) else {
            continue;
        };
        let (job, attempt) = (session.run.job(), session.run.attempt());
        let running = docker.container_image_id(job, attempt).await;
        if matches!(running, Ok(Some(running)) if running != *now) {
            session.run.restart(Restart::OntoCurrentImage);
            restarted.push(format!("{job} onto {}", short(now)));
        }
    }
    lines.push(match restarted.is_empty() {
        true => "no session to restart".into(),
        false => format!("restarting sessions {}", restarted.join(", ")),
    });
    let detail = lines.join("; ");
    match failed {
        false => Ok(detail),
        true => Err(ApiError::new(ErrorCode::Unavailable, detail)),
    }
}

/// The sessions running here that follow their image, and every image: pulled, or only
/// checked when its template says pull `never`, with the policies that select this machine
/// over both (as the machine applies them when it starts a container).
fn plan(node: &Node) -> Plan {
    let never = Some(PullPolicy::Never);
    let (sessions, images) = node.fleet.read(|state| {
        let sessions: Vec<(JobId, u32, String)> = state
            .placed_jobs()
            .filter(|job| job.state == JobState::Running && job.spec.kind == JobKind::Session)
            .filter(|job| job.spec.image_digest.is_none() && job.spec.pull != never)
            .filter_map(|job| {
                let attempt = job.current_attempt().filter(|a| a.machine == node.id)?;
                Some((job.id, attempt.number, job.spec.image.clone()?))
            })
            .collect();
        let templates = state.all_templates().filter_map(|template| {
            let spec = &template.current()?.spec;
            let check_only = spec.pull == never;
            spec.digest
                .is_none()
                .then(|| (spec.image.clone(), check_only))
        });
        let mut images: BTreeMap<String, bool> = templates.collect();
        for (_, _, image) in &sessions {
            images.insert(image.clone(), false);
        }
        (sessions, images)
    });
    let sessions = sessions
        .into_iter()
        .filter_map(|(job, attempt, image)| {
            let run = node.runner.run(job, attempt)?;
            Some(Session { run, image })
        })
        .collect();
    let images = images
        .into_iter()
        .map(|(image, check_only)| {
            let ask = ContainerAsk {
                image: image.clone(),
                pull: check_only.then_some(PullPolicy::Never),
                ..ContainerAsk::default()
            };
            let refresh = match governed(node, ask).map(|ask| ask.pull) {
                Err(why) => Refresh::Refused(why),
                Ok(Some(PullPolicy::Never)) => Refresh::Check,
                Ok(_) => Refresh::Pull(pull_auth(node, &image)),
            };
            (image, refresh)
        })
        .collect();
    Plan { images, sessions }
}

/// `sha256:0123456789ab`: enough of an image id to tell two apart.
fn short(id: &str) -> &str {
    id.get(.."sha256:".len() + 12).unwrap_or(id)
}
