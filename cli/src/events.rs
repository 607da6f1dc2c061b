//! `shoal events [-f] [--topic T] [--since INDEX]`: the fleet's events, one line each (with
//! `--json`, each event's JSON line as the node sent it).
//!
//! ```text
//!  -f: since = --since, or the node's last applied index
//!   ┌▶ GET /v1/events?follow=true&since=… ─▶ print each event not printed yet
//!   │     ├─ the node ends it: {"error", "resume_from"} ─▶ since = resume_from ──────┐
//!   │     └─ the connection breaks ─▶ wait, since = the last event's index − 1 ──────┤
//!   └────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! Resuming from just before the last event printed picks up the rest of its log entry;
//! events already printed are recognised by `(index, seq)` and skipped.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use shoal_protocol::UnixMillis;
use shoal_protocol::events::{Event, Topic};
use shoal_protocol::params::EventParams;

use crate::client::{Client, ClientError};
use crate::output::{note, print};

/// Attempts to reconnect a broken follow before giving up.
const RECONNECTS: u32 = 10;
/// The wait between attempts.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep following: print new events as they happen, reconnecting if the stream breaks.
    #[arg(short, long)]
    follow: bool,
    /// Only these topics (machine, job, session, audit, fleet); repeat or separate with commas.
    #[arg(long, value_name = "TOPIC", value_delimiter = ',')]
    topic: Vec<Topic>,
    /// Only events of log entries after INDEX, e.g. the last index a previous run printed.
    /// Without it: every event the node keeps, or with -f, those from now on.
    #[arg(long, value_name = "INDEX")]
    since: Option<u64>,
}

/// Runs `shoal events`.
pub async fn run(client: &Client, args: EventsArgs, json: bool) -> Result<(), ClientError> {
    let topic = (!args.topic.is_empty()).then(|| {
        let names: Vec<&str> = args.topic.iter().map(|t| t.as_str()).collect();
        names.join(",")
    });
    let mut show = |event: Event, line: &str| {
        if json {
            print(&format!("{line}\n"));
        } else {
            print(&format!("{}\n", event_line(&event)));
        }
    };
    if !args.follow {
        let params = EventParams {
            since: args.since,
            follow: false,
            topic,
        };
        return client.event_stream(&params, &mut show).await.map(|_| ());
    }
    let mut since = match args.since {
        Some(since) => since,
        // From now: what the node has applied so far is not news.
        None => client.cluster().await?.last_applied.unwrap_or(0),
    };
    let mut last: Option<(u64, u32)> = None;
    let mut failures = 0;
    loop {
        let params = EventParams {
            since: Some(since),
            follow: true,
            topic: topic.clone(),
        };
        let ended = client
            .event_stream(&params, |event, line| {
                if last.is_some_and(|seen| (event.index, event.seq) <= seen) {
                    return;
                }
                last = Some((event.index, event.seq));
                show(event, line);
            })
            .await;
        let resume_after_last = last.map(|(index, _)| index.saturating_sub(1));
        match ended {
            Ok(Some(end)) => {
                note(&format!("{}; resuming", end.error));
                since = since.max(end.resume_from);
                failures = 0;
                continue;
            }
            Ok(None) => note("the node ended the event stream; reconnecting"),
            Err(ClientError::Unreachable { detail, .. }) if failures < RECONNECTS => {
                note(&format!("event stream lost ({detail}); reconnecting"));
            }
            Err(err) => return Err(err),
        }
        failures += 1;
        since = since.max(resume_after_last.unwrap_or(since));
        tokio::time::sleep(RECONNECT_WAIT).await;
    }
}

/// `INDEX.SEQ  HH:MM:SSZ  TOPIC  KIND  SUBJECT  key=value ...`.
pub fn event_line(event: &Event) -> String {
    let mut line = format!(
        "{}.{}  {}  {:<7}  {:<20}  {}",
        event.index,
        event.seq,
        event.at_ms.map_or_else(|| "-".repeat(9), clock),
        event.topic.as_str(),
        event.kind,
        event.subject.as_deref().unwrap_or("-"),
    );
    if let Value::Object(detail) = event.detail.value() {
        for (key, value) in &detail {
            // An audit entry repeats the event's time, kind and subject.
            if matches!(key.as_str(), "at_ms" | "action" | "target") || value.is_null() {
                continue;
            }
            let value = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            line.push_str(&format!("  {key}={value}"));
        }
    }
    line
}

/// The UTC time of day, `HH:MM:SSZ`.
fn clock(at_ms: UnixMillis) -> String {
    let secs = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shoal_protocol::events::Detail;

    use super::*;

    #[test]
    fn an_event_prints_on_one_line() {
        let event = Event {
            index: 1042,
            seq: 1,
            at_ms: Some(3_723_000),
            topic: Topic::Job,
            kind: "job_finished".into(),
            subject: Some("42".into()),
            detail: Detail::of(&json!({"state": "completed", "exit_code": 0, "error": null})),
        };
        assert_eq!(
            event_line(&event),
            "1042.1  01:02:03Z  job      job_finished          42  exit_code=0  state=completed"
        );
        let event = Event {
            at_ms: None,
            subject: None,
            detail: Detail::of(&json!({"voters": ["a", "b"]})),
            ..event
        };
        assert!(event_line(&event).contains("---------  job"));
        assert!(event_line(&event).ends_with(r#"-  voters=["a","b"]"#));
    }
}
