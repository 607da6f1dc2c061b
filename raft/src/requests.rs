//! Applying a [`Command::Request`] once: the one place writes are deduplicated.
//!
//! ```text
//!  Request { id, at_ms, command }
//!     ├─ id seen lately ──▶ the recorded answer, rebuilt from the state; nothing applied
//!     └─ new ─────────────▶ apply(command) ─▶ record (id, at_ms, answer) ─▶ prune oldest
//! ```
//!
//! Pure like `apply`: the table is part of [`FleetState`], so every replica (and every
//! snapshot) keeps the same ids and prunes them at the same entries.

use shoal_protocol::requests::{REQUESTS_KEPT, REQUESTS_WINDOW_MS, Recorded, RequestId, Seen};
use shoal_protocol::{Command, ErrorCode, FleetState, Response, UnixMillis};

/// Applies `command` through `run` unless `id` was applied lately; either way the
/// answer `id` got.
pub(crate) fn apply_once(
    state: &mut FleetState,
    id: RequestId,
    at_ms: UnixMillis,
    command: Command,
    run: impl FnOnce(&mut FleetState, Command) -> Response,
) -> Response {
    if let Some(seen) = state.requests.get(id) {
        tracing::debug!(request = %id, "repeated request answered without applying it");
        return replay(state, &seen.answer.clone());
    }
    let response = run(state, command);
    let seen = Seen {
        at_ms,
        answer: record(&response),
    };
    state
        .requests
        .record(id, seen, REQUESTS_KEPT, REQUESTS_WINDOW_MS);
    response
}

/// The compact form of an answer: records are kept by id.
fn record(response: &Response) -> Recorded {
    match response {
        Response::Done => Recorded::Done,
        Response::Machine(machine) => Recorded::Machine(machine.info.id),
        Response::Job(job) => Recorded::Job(job.id),
        Response::Jobs(ids) => Recorded::Jobs(ids.clone()),
        Response::Rejected { code, message } => Recorded::Rejected {
            code: *code,
            message: message.clone(),
        },
        Response::Batch(responses) => Recorded::Batch(responses.iter().map(record).collect()),
        Response::Submitted { job, created } => Recorded::Submitted {
            job: job.id,
            created: *created,
        },
        Response::CostReported { counted } => Recorded::CostReported { counted: *counted },
        Response::Template(template) if template.org.is_empty() => {
            Recorded::Template(template.name.clone())
        }
        Response::Template(template) => Recorded::OwnedTemplate {
            org: template.org.clone(),
            name: template.name.clone(),
        },
    }
}

/// The answer again, with the records it names as they stand now.
fn replay(state: &FleetState, answer: &Recorded) -> Response {
    let gone = |what: String| Response::Rejected {
        code: ErrorCode::NotFound,
        message: format!("{what} is gone since this request applied"),
    };
    match answer {
        Recorded::Done => Response::Done,
        Recorded::Machine(id) => match state.machines.get(id) {
            Some(machine) => Response::Machine(Box::new(machine.clone())),
            None => gone(format!("machine {id}")),
        },
        Recorded::Job(id) => match state.jobs.get(id) {
            Some(job) => Response::Job(Box::new(job.clone())),
            None => gone(format!("job {id}")),
        },
        Recorded::Jobs(ids) => Response::Jobs(ids.clone()),
        Recorded::Rejected { code, message } => Response::Rejected {
            code: *code,
            message: message.clone(),
        },
        Recorded::Batch(answers) => {
            Response::Batch(answers.iter().map(|a| replay(state, a)).collect())
        }
        Recorded::Submitted { job, created } => match state.jobs.get(job) {
            Some(record) => Response::Submitted {
                job: Box::new(record.clone()),
                created: *created,
            },
            None => gone(format!("job {job}")),
        },
        Recorded::CostReported { counted } => Response::CostReported { counted: *counted },
        Recorded::Template(name) => match state.unowned_templates.get(name) {
            Some(template) => Response::Template(Box::new(template.clone())),
            None => gone(format!("template {name}")),
        },
        Recorded::OwnedTemplate { org, name } => {
            match state.templates.get(org).and_then(|t| t.get(name)) {
                Some(template) => Response::Template(Box::new(template.clone())),
                None => gone(format!("template {name}")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
