//! Events from applied commands: [`apply_with_events`] applies a command as [`apply`] does
//! and says what changed, as [`Event`]s numbered by the entry's log index.
//!
//! Pure like `apply`: every replica applies the same log, so every node derives the same
//! events with the same numbers. Each command is looked at just before it applies (what
//! it names, and how those machines, jobs or keys stood) and just after (its response and
//! the state), and an event is made only for a change a user can see:
//!
//! - a rejected command changes nothing and makes nothing (but a user's rejected change
//!   is still in the audit log, and so an `audit` event);
//! - `SetQueueReasons` is the leader's running commentary on the queue: no event;
//! - `UpsertMachine` that changes none of a machine's facts (name, host, OS, version,
//!   addresses, labels, capacity, start time) and `SetStatus` that only moves the last
//!   heartbeat make no event, nor do labels, drains or a kill switch set to what they were;
//! - a job makes at most one event per command; jobs a command finishes through a fan-out
//!   (children of a cancelled parent, the parent of a finished child) get theirs in order:
//!   children, the job named, its parent;
//! - a user's change through the API (`Audited`) makes the events of the change, then
//!   one `audit` event for the audit log's entry (who, what, and how it went); a batch of
//!   submits audited as one makes each job's event, then the one `audit` event.
//!
//! Each node keeps the recent events for clients in an [`EventRing`], read through an
//! [`EventFeed`].

use serde::Serialize;
use serde_json::json;
use shoal_protocol::events::{Detail, Event, Topic, kind};
use shoal_protocol::{Command, FleetState, Response, UnixMillis};

use crate::apply::{ApplyCtx, apply};

mod derive;
mod jobs;
mod ring;

use derive::Before;

pub use ring::{EVENTS_KEPT, EventFeed, EventRing, FOLLOW_BACKLOG, FollowError, Follower, Gone};

/// Applies one log entry's command as [`apply`] does and appends the events it made to
/// `out`, numbered from `seq` 0 within the entry. A `Batch` is applied command by command,
/// so each command's events see the state it left.
pub fn apply_with_events(
    state: &mut FleetState,
    cmd: Command,
    ctx: &ApplyCtx,
    out: &mut Vec<Event>,
) -> Response {
    let mut sink = Sink {
        index: ctx.log_index,
        seq: 0,
        out,
    };
    apply_into(state, cmd, ctx, &mut sink)
}

/// The event of a membership entry: who votes and who learns from it on.
pub fn membership_event(index: u64, voters: Vec<String>, learners: Vec<String>) -> Event {
    Event {
        index,
        seq: 0,
        at_ms: None,
        topic: Topic::Fleet,
        kind: kind::MEMBERSHIP.to_string(),
        subject: None,
        detail: Detail::of(&json!({"voters": voters, "learners": learners})),
    }
}

fn apply_into(state: &mut FleetState, cmd: Command, ctx: &ApplyCtx, sink: &mut Sink) -> Response {
    // `apply` of a batch is exactly this map; it adds nothing for the batch itself.
    if let Command::Batch(commands) = cmd {
        return Response::Batch(
            commands
                .into_iter()
                .map(|cmd| apply_into(state, cmd, ctx, sink))
                .collect(),
        );
    }
    // A request is deduplicated as `apply` does it; a repeat makes no events.
    if let Command::Request { id, at_ms, command } = cmd {
        return crate::requests::apply_once(state, id, at_ms, *command, |state, cmd| {
            apply_into(state, cmd, ctx, sink)
        });
    }
    // A user's change: its own events (each command's, for a batch of them), then one for
    // each entry it appended to the audit log.
    if let Command::Audited {
        actor,
        org,
        at_ms,
        command,
    } = cmd
    {
        let audit_from = state.next_audit_seq;
        let response =
            crate::audit::apply_audited(state, actor, org, at_ms, *command, |state, cmd| {
                apply_into(state, cmd, ctx, sink)
            });
        derive::audit_entries(state, audit_from, sink);
        return response;
    }
    let before = Before::of(&cmd, state);
    let response = apply(state, cmd, ctx);
    before.derive(&response, state, sink);
    response
}

/// Where one entry's events go, numbered as they come.
struct Sink<'a> {
    index: u64,
    seq: u32,
    out: &'a mut Vec<Event>,
}

impl Sink<'_> {
    fn push(
        &mut self,
        at_ms: Option<UnixMillis>,
        topic: Topic,
        kind: &str,
        subject: Option<String>,
        detail: &impl Serialize,
    ) {
        self.out.push(Event {
            index: self.index,
            seq: self.seq,
            at_ms,
            topic,
            kind: kind.to_string(),
            subject,
            detail: Detail::of(detail),
        });
        self.seq += 1;
    }
}

#[cfg(test)]
mod tests;
