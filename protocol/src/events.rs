//! Events: one record per change the fleet made, as `GET /v1/events` streams them.
//!
//! An event is derived from a committed, applied log entry, so every node produces the
//! same events with the same numbers: `index` is the entry's log index and `seq` the
//! event's place among that entry's events (one entry can hold a batch of commands).
//! `(index, seq)` orders events and never repeats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::{RawValue, to_raw_value};

use crate::UnixMillis;

/// One change in the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// The log index of the entry that made the change.
    pub index: u64,
    /// The event's place among its entry's events, from 0.
    pub seq: u32,
    /// When it happened, as the command recorded it; `None` for commands that carry no
    /// time (labels, removals, membership, pruning).
    pub at_ms: Option<UnixMillis>,
    pub topic: Topic,
    /// What happened, e.g. `job_finished`; see [`kind`]. New kinds may appear: clients
    /// should show or skip kinds they do not know.
    pub kind: String,
    /// What it happened to: a job id, a machine id or an API key id; for `audit`, the
    /// audit entry's target (`job 42`, `machines 00ab…`, `fleet`).
    pub subject: Option<String>,
    /// The kind's details, e.g. `{"state": "completed", "exit_code": 0, ...}`.
    #[schema(value_type = Object)]
    pub detail: Detail,
}

/// An event's details, a JSON object, written as text once when the event is made: a node
/// makes events for every job on every replica and keeps thousands, and a map of values
/// for each cost more than applying the job did. Sent as it is; read with
/// [`Detail::value`].
#[derive(Clone)]
pub struct Detail(Box<RawValue>);

impl Detail {
    /// The fields of `value` (a struct or a map) as details.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Detail {
        Detail(to_raw_value(value).expect("event details serialize to JSON"))
    }

    /// The details as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).expect("event details are JSON")
    }

    /// The `org` field, read without the rest.
    pub fn org(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Org {
            org: Option<String>,
        }
        serde_json::from_str::<Org>(self.0.get()).ok()?.org
    }
}

impl fmt::Debug for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

/// The same fields with the same values, in any order.
impl PartialEq for Detail {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl Serialize for Detail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// Through a value, so a [`Detail`] reads inside the untagged [`EventLine`] too.
impl<'de> Deserialize<'de> for Detail {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Detail::of(&Value::deserialize(deserializer)?))
    }
}

/// What an event is about. Filter with `topic=job,machine`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// Machines joining, changing what they publish, changing status, operator labels and
    /// drains, leaving.
    Machine,
    /// Jobs moving through their states, and pruning.
    Job,
    /// Interactive sessions; reserved, nothing publishes on it yet.
    Session,
    /// The audit log as it grows: one event per change a user made through the API
    /// (`kind` is its action, `detail` the whole entry: who, what, how it went).
    Audit,
    /// The whole fleet: the Raft group's membership, the kill switch, API keys and
    /// registration tokens.
    Fleet,
}

impl Topic {
    pub const ALL: [Topic; 5] = [
        Topic::Machine,
        Topic::Job,
        Topic::Session,
        Topic::Audit,
        Topic::Fleet,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Machine => "machine",
            Topic::Job => "job",
            Topic::Session => "session",
            Topic::Audit => "audit",
            Topic::Fleet => "fleet",
        }
    }

    /// Topics from a comma-separated list such as `job,machine`.
    pub fn parse_list(text: &str) -> Result<Vec<Topic>, String> {
        let mut topics: Vec<Topic> = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if topics.is_empty() {
            return Err("topic is empty: name one or more of machine, job, session, audit, fleet, separated by commas".into());
        }
        topics.sort();
        topics.dedup();
        Ok(topics)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topic {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::ALL
            .into_iter()
            .find(|topic| topic.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!("unknown topic {s:?}: use machine, job, session, audit or fleet")
            })
    }
}

/// The event kinds, by topic.
pub mod kind {
    /// `job`: a job was created (fan-out children each get their own). Subject: job id.
    pub const JOB_SUBMITTED: &str = "job_submitted";
    /// `job`: an attempt was handed to a machine.
    pub const JOB_DISPATCHED: &str = "job_dispatched";
    /// `job`: the machine pulls the attempt's image before it starts it (`detail.image`).
    pub const JOB_PULLING: &str = "job_pulling";
    /// `job`: the machine started the attempt (or a fan-out parent's first child left the
    /// queue).
    pub const JOB_RUNNING: &str = "job_running";
    /// `job`: the attempt was taken back without counting as a failure; queued again.
    pub const JOB_REQUEUED: &str = "job_requeued";
    /// `job`: the attempt failed and the job waits its backoff to run again.
    pub const JOB_RETRYING: &str = "job_retrying";
    /// `job`: completed, failed, timed out or cancelled (`detail.state` says which).
    pub const JOB_FINISHED: &str = "job_finished";
    /// `job`: a cancel was asked for a job a machine still holds.
    pub const JOB_CANCEL_REQUESTED: &str = "job_cancel_requested";
    /// `job`: finished jobs past retention were forgotten. No subject.
    pub const JOBS_PRUNED: &str = "jobs_pruned";

    /// `machine`: a machine entered the fleet. Subject: machine id.
    pub const MACHINE_REGISTERED: &str = "machine_registered";
    /// `machine`: a machine published new facts (name, version, labels, addresses, ...).
    pub const MACHINE_UPDATED: &str = "machine_updated";
    /// `machine`: a machine's status changed.
    pub const MACHINE_STATUS: &str = "machine_status";
    /// `machine`: a machine was forgotten.
    pub const MACHINE_REMOVED: &str = "machine_removed";

    /// `machine`: an operator changed a machine's labels.
    pub const MACHINE_LABELS: &str = "machine_labels";
    /// `machine`: an operator drained a machine (or changed its drain deadline).
    pub const DRAIN: &str = "drain";
    /// `machine`: an operator ended a machine's drain.
    pub const UNDRAIN: &str = "undrain";

    /// `fleet`: the Raft group's voters or learners changed. No subject.
    pub const MEMBERSHIP: &str = "membership";
    /// `fleet`: the kill switch was turned on or off. No subject.
    pub const KILL_SWITCH: &str = "kill_switch";
    /// `fleet`: an API key was created. Subject: key id.
    pub const KEY_CREATED: &str = "key_created";
    /// `fleet`: an API key was revoked. Subject: key id.
    pub const KEY_REVOKED: &str = "key_revoked";
    /// `fleet`: a registration token was made. Subject: token id.
    pub const TOKEN_CREATED: &str = "token_created";
    /// `fleet`: a machine joined with a registration token (`detail.used_by`).
    pub const TOKEN_USED: &str = "token_used";
    /// `fleet`: a registration token was revoked before use.
    pub const TOKEN_REVOKED: &str = "token_revoked";

    // `audit` events take the audit entry's action as their kind: `submit_job`,
    // `cancel_job`, `label_machine`, `drain`, `undrain`, `kill_switch_on`, ...
}

/// The last line of an event stream the node had to end early (on a WebSocket, the last
/// text message before the close): reconnect with `since=resume_from` to go on with
/// nothing missed and nothing twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamEnd {
    pub error: String,
    /// Every event up to this index was sent (or filtered out).
    pub resume_from: u64,
}

/// One line of an NDJSON event stream: an event, or the [`StreamEnd`] that ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventLine {
    Event(Event),
    End(StreamEnd),
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn topics_parse_from_a_comma_list() {
        assert_eq!(
            Topic::parse_list("job, machine,job"),
            Ok(vec![Topic::Machine, Topic::Job])
        );
        assert_eq!(Topic::parse_list("AUDIT"), Ok(vec![Topic::Audit]));
        let err = Topic::parse_list("job,jobs").unwrap_err();
        assert!(err.contains("\"jobs\""), "{err}");
        assert!(Topic::parse_list(" , ").unwrap_err().contains("empty"));
        for topic in Topic::ALL {
            let json = serde_json::to_string(&topic).unwrap();
            assert_eq!(json, format!("\"{topic}\""));
        }
    }

    #[test]
    fn a_line_is_an_event_or_the_end() {
        let event = Event {
            index: 12,
            seq: 1,
            at_ms: Some(5),
            topic: Topic::Job,
            kind: kind::JOB_FINISHED.into(),
            subject: Some("12".into()),
            detail: Detail::of(&json!({"state": "completed"})),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            text,
            r#"{"index":12,"seq":1,"at_ms":5,"topic":"job","kind":"job_finished","subject":"12","detail":{"state":"completed"}}"#
        );
        assert_eq!(
            serde_json::from_str::<EventLine>(&text).unwrap(),
            EventLine::Event(event)
        );
        let end = r#"{"error":"too slow","resume_from":40}"#;
        assert_eq!(
            serde_json::from_str::<EventLine>(end).unwrap(),
            EventLine::End(StreamEnd {
                error: "too slow".into(),
                resume_from: 40
            })
        );
    }
}
