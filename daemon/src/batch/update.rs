//! `batch update` on one machine: pull the images its work comes from, then restart the
//! sessions whose image moved onto the new one.
//!
//! ```text
//!  images: each template's current one, and each image a session here runs
//!          (not those pinned by digest, nor those with pull `never`)
//!  each image ─▶ docker pull, with the registry's credentials ─▶ "pulled <id>" | "up to date" | why not
//!  each session here ─▶ its container's image id ≠ the id its reference has now
//!                     ─▶ restart onto the current image (exec::recreate)
//! ```
//!
//! The work runs in a task of its own: the answer waits [`ANSWER_WITHIN`] for it, and a
//! longer pull goes on after the answer says so.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shoal_protocol::{ApiError, ErrorCode, JobKind, JobState, PullPolicy};

use crate::exec::pull::PullAuth;
use crate::exec::{DockerExecutor, Restart, RunHandle};
use crate::node::Node;
use crate::runner::pull_auth;

/// Longest the answer waits for the pulls and restarts (a batch gives each machine 30 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// A session running here that may move to a newer image.
struct Session {
    run: RunHandle,
    image: String,
}

/// What one machine updates: each image with the login its registry needs (or why the
/// login does not open here), and the sessions.
struct Plan {
    images: BTreeMap<String, Result<Option<PullAuth>, String>>,
    sessions: Vec<Session>,
}

/// Pulls, then restarts, and says what it did; an error when a pull failed (the sessions
/// of the images that did pull are restarted all the same).
pub async fn run(node: &Node) -> Result<String, ApiError> {
    let plan = plan(node);
    if plan.images.is_empty() {
        return Ok("no image to update here".into());
    }
    let work = tokio::spawn(apply(node.runner.docker().clone(), plan));
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
    let mut pulled = BTreeSet::new();
    for (image, auth) in &plan.images {
        let before = docker.image_id(image).await.ok().flatten();
        let outcome = match auth {
            Ok(auth) => docker
                .pull_image(image, auth.as_ref())
                .await
                .map_err(|e| e.to_string()),
            Err(why) => Err(why.clone()),
        };
        if let Err(why) = outcome {
            lines.push(format!("{image}: {why}"));
            continue;
        }
        let after = docker.image_id(image).await.ok().flatten();
        lines.push(match &after {
            Some(after) if before.as_ref() != Some(after) => {
                format!("{image}: pulled {}", short(after))
            }
            _ => format!("{image}: up to date"),
        });
        pulled.insert(image.as_str());
    }
    let mut restarted = Vec::new();
    for session in plan
        .sessions
        .iter()
        .filter(|s| pulled.contains(s.image.as_str()))
    {
        let (job, attempt) = (session.run.job(), session.run.attempt());
        let running = docker.container_image_id(job, attempt).await;
        let now = docker.image_id(&session.image).await;
        if let (Ok(Some(running)), Ok(Some(now))) = (running, now)
            && running != now
        {
            session.run.restart(Restart::OntoCurrentImage);
            restarted.push(format!("{job} onto {}", short(&now)));
        }
    }
    lines.push(match restarted.is_empty() {
        true => "no session to restart".into(),
        false => format!("restarting sessions {}", restarted.join(", ")),
    });
    let detail = lines.join("; ");
    match pulled.len() == plan.images.len() {
        true => Ok(detail),
        false => Err(ApiError::new(ErrorCode::Unavailable, detail)),
    }
}

/// The sessions running here that follow their image, and every image to pull.
fn plan(node: &Node) -> Plan {
    let (sessions, images) = node.fleet.read(|state| {
        let follows =
            |pinned: bool, pull: Option<PullPolicy>| !pinned && pull != Some(PullPolicy::Never);
        let sessions: Vec<(shoal_protocol::JobId, u32, String)> = state
            .placed_jobs()
            .filter(|job| job.state == JobState::Running && job.spec.kind == JobKind::Session)
            .filter(|job| follows(job.spec.image_digest.is_some(), job.spec.pull))
            .filter_map(|job| {
                let attempt = job.current_attempt().filter(|a| a.machine == node.id)?;
                Some((job.id, attempt.number, job.spec.image.clone()?))
            })
            .collect();
        let templates = state.all_templates().filter_map(|template| {
            let spec = &template.current()?.spec;
            follows(spec.digest.is_some(), spec.pull).then(|| spec.image.clone())
        });
        let images: BTreeSet<String> = templates
            .chain(sessions.iter().map(|(_, _, image)| image.clone()))
            .collect();
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
        .map(|image| {
            let auth = pull_auth(node, &image);
            (image, auth)
        })
        .collect();
    Plan { images, sessions }
}

/// `sha256:0123456789ab`: enough of an image id to tell two apart.
fn short(id: &str) -> &str {
    id.get(.."sha256:".len() + 12).unwrap_or(id)
}
