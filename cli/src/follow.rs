//! Following a job: `shoal job logs` (one attempt's output; with `-f` over a WebSocket until
//! the attempt ends) and `shoal job run --wait` (every attempt in turn until the job ends).
//!
//! ```text
//!  wait: GET job ─┬─ an attempt not followed yet ─▶ follow its output to the close ──┐
//!          ▲      ├─ finished ─▶ exit: 0, the job's own exit code, or 1              │
//!          │      └─ otherwise (queued: say why, once) ─▶ sleep ──┐                  │
//!          └──────────────────────────────────────────────────────┴──────────────────┘
//! ```
//!
//! Lines from the CLI itself go to stderr behind `shoal:`, apart from the job's output.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use shoal_protocol::api::{LogChunk, LogStream};
use shoal_protocol::{
    ApiError, AttemptView, ErrorCode, JobId, JobList, JobState, JobView, MachineId,
};

use crate::client::{Client, ClientError};
use crate::jobs::{self, children_table, machine_name};
use crate::machines;
use crate::output::{note, print, print_json};

/// How often a waiting CLI asks for the job.
const POLL: Duration = Duration::from_millis(250);
/// Reconnects of a broken log stream before giving up on it.
const RECONNECTS: u32 = 3;
const RECONNECT_WAIT: Duration = Duration::from_secs(1);

/// `shoal job logs`.
pub async fn logs(
    client: &Client,
    id: JobId,
    attempt: Option<u32>,
    follow: bool,
    json: bool,
) -> Result<(), ClientError> {
    let job = client.job(id).await?;
    if job.is_parent() {
        let ids: Vec<String> = job.children.iter().map(JobId::to_string).collect();
        return Err(ClientError::Api(ApiError::new(
            ErrorCode::Conflict,
            format!(
                "job {id} fans out and runs nowhere itself; its children {} have output",
                ids.join(", ")
            ),
        )));
    }
    if !follow {
        let logs = client.job_logs(id, attempt, 0).await?;
        if json {
            print_json(&logs);
            return Ok(());
        }
        let mut sink = Sink::terminal(false);
        for chunk in &logs.chunks {
            sink.write(chunk);
        }
        if !logs.complete {
            note(&format!(
                "attempt {} is still running; `logs -f {id}` follows it",
                logs.attempt
            ));
        }
        return Ok(());
    }
    let attempt = match attempt {
        Some(n) => n,
        None => match attempt_to_follow(client, job).await? {
            Some(n) => n,
            // Finished without running: the node says so in its own words.
            None => return client.follow_job_logs(id, None, 0, |_| {}).await,
        },
    };
    follow_attempt(client, id, attempt, &mut Sink::terminal(json)).await
}

/// `shoal job run --wait` for one job: prints each attempt's output, then returns the exit
/// code for the finished job. With `json`, prints the finished job instead.
pub async fn wait(client: &Client, id: JobId, json: bool) -> Result<u8, ClientError> {
    let names = machines::names(client).await?;
    let mut job = client.job(id).await?;
    let mut followed = 0;
    let mut waiting = Waiting::default();
    loop {
        let next = job.attempts.iter().find(|a| a.number > followed).cloned();
        if let Some(attempt) = next {
            followed = attempt.number;
            if !json {
                note(&attempt_line(&job, &attempt, &names));
                let mut sink = Sink::terminal(false);
                if let Err(err) = follow_attempt(client, id, attempt.number, &mut sink).await {
                    note(&format!("no output of attempt {followed}: {err}"));
                }
            }
            job = client.job(id).await?;
            continue;
        }
        if job.state.is_finished() {
            if json {
                print_json(&job);
            }
            if job.state != JobState::Completed {
                eprintln!("error: {}", ended(&job));
            }
            return Ok(exit_code(&job));
        }
        waiting.note(&job);
        tokio::time::sleep(POLL).await;
        job = client.job(id).await?;
    }
}

/// `shoal job run --all-online --wait`: waits for every child, then prints one line each
/// and each one's output (with `json`, the children as a [`JobList`]). Exit code 1 unless every child completed.
pub async fn wait_children(client: &Client, id: JobId, json: bool) -> Result<u8, ClientError> {
    let mut parent = client.job(id).await?;
    while !parent.state.is_finished() {
        tokio::time::sleep(POLL).await;
        parent = client.job(id).await?;
    }
    let children = jobs::children(client, &parent).await?;
    if json {
        print_json(&JobList { jobs: children });
    } else {
        let names = machines::names(client).await?;
        print(&children_table(&children, &names));
        // Then each child's output, under a line naming it and its machine.
        for child in children.iter().filter(|child| !child.attempts.is_empty()) {
            if let Some(attempt) = child.current_attempt() {
                note(&attempt_line(child, attempt, &names));
            }
            match client.job_logs(child.id, None, 0).await {
                Ok(logs) => {
                    let mut sink = Sink::terminal(false);
                    for chunk in &logs.chunks {
                        sink.write(chunk);
                    }
                }
                Err(err) => note(&format!("no output of job {}: {err}", child.id)),
            }
        }
    }
    if parent.state == JobState::Completed {
        Ok(0)
    } else {
        eprintln!("error: {}", ended(&parent));
        Ok(1)
    }
}

/// The exit code of `shoal job run --wait` for a finished job: 0 when it completed, the
/// job's own exit code when its last attempt exited non-zero, 1 for any other end.
pub fn exit_code(job: &JobView) -> u8 {
    match job.state {
        JobState::Completed => 0,
        JobState::Failed => match job.current_attempt().and_then(|a| a.exit_code) {
            Some(code @ 1..=255) => code as u8,
            _ => 1,
        },
        _ => 1,
    }
}

/// How a job that did not complete ended: `job 7 failed: exit code 3`.
fn ended(job: &JobView) -> String {
    let state = job.state.as_str().replace('_', " ");
    match &job.error {
        Some(error) => format!("job {} {state}: {error}", job.id),
        None => format!("job {} {state}", job.id),
    }
}

/// Where an attempt runs, and why the one before it did not finish the job.
fn attempt_line(
    job: &JobView,
    attempt: &AttemptView,
    names: &HashMap<MachineId, String>,
) -> String {
    let on = format!(
        "job {} attempt {} runs on {}",
        job.id,
        attempt.number,
        machine_name(names, attempt.machine)
    );
    let before = job
        .attempts
        .iter()
        .find(|a| a.number + 1 == attempt.number)
        .and_then(|a| a.error.as_ref());
    match before {
        Some(error) => format!("attempt {} ended: {error}; {on}", attempt.number - 1),
        None => on,
    }
}

/// Waits until the job has an attempt and returns the latest; `None` if it finished
/// without one.
async fn attempt_to_follow(client: &Client, mut job: JobView) -> Result<Option<u32>, ClientError> {
    let mut waiting = Waiting::default();
    loop {
        if let Some(attempt) = job.current_attempt() {
            return Ok(Some(attempt.number));
        }
        if job.state.is_finished() {
            return Ok(None);
        }
        waiting.note(&job);
        tokio::time::sleep(POLL).await;
        job = client.job(job.id).await?;
    }
}

/// Follows one attempt's output until the node closes the stream, resuming from where the
/// sink stopped if the stream breaks. A job can show an attempt before its machine has
/// started the run, so `not_found` is retried until the attempt is recorded as ended.
async fn follow_attempt<O: Write, E: Write>(
    client: &Client,
    id: JobId,
    attempt: u32,
    sink: &mut Sink<O, E>,
) -> Result<(), ClientError> {
    let mut reconnects = 0;
    loop {
        let from = sink.next;
        let err = match client
            .follow_job_logs(id, Some(attempt), from, |chunk| sink.write(&chunk))
            .await
        {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        match &err {
            ClientError::Unreachable { detail, .. } if reconnects < RECONNECTS => {
                reconnects += 1;
                note(&format!("{detail}; reconnecting"));
                tokio::time::sleep(RECONNECT_WAIT).await;
            }
            ClientError::Api(api) if api.code == ErrorCode::NotFound => {
                let job = client.job(id).await?;
                let ended = job
                    .attempts
                    .iter()
                    .find(|a| a.number == attempt)
                    .is_none_or(|a| a.finished_at_ms.is_some());
                if ended {
                    return Err(err);
                }
                tokio::time::sleep(POLL).await;
            }
            _ => return Err(err),
        }
    }
}

/// Says on stderr why a queued job waits, each time the reason changes.
#[derive(Default)]
struct Waiting(Option<String>);

impl Waiting {
    fn note(&mut self, job: &JobView) {
        if job.state != JobState::Queued || job.queue_reason == self.0 {
            return;
        }
        if let Some(reason) = &job.queue_reason {
            note(&format!("job {} waits: {reason}", job.id));
        }
        self.0 = job.queue_reason.clone();
    }
}

/// Where a job's output goes: stdout chunks to `out` and stderr chunks to `err`, or every
/// chunk as a JSON line to `out`. Knows the offset it has reached, to resume from there and
/// to say where the machine dropped output to stay within its bound.
pub struct Sink<O: Write, E: Write> {
    out: O,
    err: E,
    json: bool,
    next: u64,
}

impl Sink<std::io::Stdout, std::io::Stderr> {
    fn terminal(json: bool) -> Self {
        Sink {
            out: std::io::stdout(),
            err: std::io::stderr(),
            json,
            next: 0,
        }
    }
}

impl<O: Write, E: Write> Sink<O, E> {
    fn write(&mut self, chunk: &LogChunk) {
        if chunk.offset > self.next {
            let dropped = chunk.offset - self.next;
            let _ = writeln!(
                self.err,
                "shoal: {dropped} bytes of output were dropped here (the machine keeps only the latest)"
            );
        }
        // Text with invalid UTF-8 replaced may be longer than the bytes it stands for; the
        // next chunk's offset is the authority, so never move backwards.
        self.next = self.next.max(chunk.offset + chunk.text.len() as u64);
        // A closed pipe (`| head`) is not an error: the rest of the output goes nowhere.
        let _ = if self.json {
            let line = serde_json::to_string(chunk).expect("protocol types serialize");
            writeln!(self.out, "{line}").and_then(|()| self.out.flush())
        } else {
            let to: &mut dyn Write = match chunk.stream {
                LogStream::Stdout => &mut self.out,
                LogStream::Stderr => &mut self.err,
            };
            to.write_all(chunk.text.as_bytes())
                .and_then(|()| to.flush())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{JobRecord, JobSpec, JobTarget};

    fn chunk(stream: LogStream, offset: u64, text: &str) -> LogChunk {
        LogChunk {
            stream,
            offset,
            text: text.into(),
        }
    }

    fn sink(json: bool) -> Sink<Vec<u8>, Vec<u8>> {
        Sink {
            out: Vec::new(),
            err: Vec::new(),
            json,
            next: 0,
        }
    }

    #[test]
    fn chunks_go_to_their_stream_and_gaps_are_noted() {
        let mut sink = sink(false);
        sink.write(&chunk(LogStream::Stdout, 0, "hi\n"));
        sink.write(&chunk(LogStream::Stderr, 3, "oops\n"));
        sink.write(&chunk(LogStream::Stdout, 100, "late\n"));
        assert_eq!(String::from_utf8(sink.out).unwrap(), "hi\nlate\n");
        assert_eq!(
            String::from_utf8(sink.err).unwrap(),
            "oops\nshoal: 92 bytes of output were dropped here (the machine keeps only the latest)\n"
        );
        assert_eq!(sink.next, 105);
    }

    #[test]
    fn json_sinks_write_one_chunk_per_line() {
        let mut sink = sink(true);
        sink.write(&chunk(LogStream::Stderr, 0, "x"));
        sink.write(&chunk(LogStream::Stdout, 1, "y\n"));
        let text = String::from_utf8(sink.out).unwrap();
        let lines: Vec<LogChunk> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[1], chunk(LogStream::Stdout, 1, "y\n"));
        assert_eq!(lines.len(), 2);
        assert!(sink.err.is_empty());
    }

    fn finished(state: JobState, exit_code: Option<i32>, error: Option<&str>) -> JobView {
        let queued = JobRecord::queued(JobId(7), JobSpec::new(["x"]), JobTarget::Any, 1, 7);
        let mut job = JobView::from(queued);
        job.state = state;
        job.error = error.map(String::from);
        if let Some(code) = exit_code {
            job.attempts.push(AttemptView {
                number: 1,
                machine: MachineId(1),
                dispatched_at_ms: 2,
                started_at_ms: Some(3),
                finished_at_ms: Some(4),
                exit_code: Some(code),
                error: None,
                ..AttemptView::default()
            });
        }
        job
    }

    #[test]
    fn exit_codes_follow_the_job() {
        assert_eq!(exit_code(&finished(JobState::Completed, Some(0), None)), 0);
        let failed = finished(JobState::Failed, Some(3), Some("exit code 3"));
        assert_eq!(exit_code(&failed), 3);
        assert_eq!(ended(&failed), "job 7 failed: exit code 3");
        assert_eq!(exit_code(&finished(JobState::Failed, Some(300), None)), 1);
        assert_eq!(exit_code(&finished(JobState::Failed, Some(-1), None)), 1);
        assert_eq!(
            exit_code(&finished(JobState::Failed, None, Some("no image"))),
            1
        );
        // Stopped by a cancel: killed by SIGTERM, but the job was cancelled.
        let cancelled = finished(JobState::Cancelled, Some(143), None);
        assert_eq!(exit_code(&cancelled), 1);
        assert_eq!(ended(&cancelled), "job 7 cancelled");
        let timed_out = finished(JobState::TimedOut, None, Some("no machine took the job"));
        assert_eq!(exit_code(&timed_out), 1);
        assert_eq!(
            ended(&timed_out),
            "job 7 timed out: no machine took the job"
        );
    }

    #[test]
    fn a_retry_says_why_the_attempt_before_ended() {
        let mut job = finished(JobState::Running, Some(3), None);
        job.attempts[0].error = Some("exit code 3".into());
        let mut second = job.attempts[0].clone();
        second.number = 2;
        second.machine = MachineId(0xabcd_0000_0000_0002);
        job.attempts.push(second);
        let names = HashMap::from([(MachineId(0xabcd_0000_0000_0002), "pi".to_string())]);
        assert_eq!(
            attempt_line(&job, &job.attempts[0], &names),
            "job 7 attempt 1 runs on 00000000"
        );
        assert_eq!(
            attempt_line(&job, &job.attempts[1], &names),
            "attempt 1 ended: exit code 3; job 7 attempt 2 runs on pi"
        );
    }
}
