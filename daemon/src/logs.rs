//! Job output, readable from any node: the machine that ran an attempt keeps its output
//! (in memory while it runs, in its data directory once it ended); other nodes ask that
//! machine over peer RPC.
//!
//! ```text
//!  API on node A ── read(job, attempt, from, wait) ──▶ attempt ran on A? ── local()
//!                                                   └─ on B: PeerRequest::Logs ──▶ B: local()
//!  local(): the live run's output (waiting up to `wait` for bytes past `from`),
//!           else the saved file data_dir/output/JOB-ATTEMPT.bin
//! ```
//!
//! Following is repeated reads with a wait, each from the `total` of the last answer, so
//! it works the same across peer RPC (a long poll) and on the node itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_protocol::api::{JobLogs, LogChunk};
use shoal_protocol::{ApiError, ErrorCode, JobId, MachineId, frame};

use crate::exec::OutputSnapshot;
use crate::node::Node;
use crate::p2p::{PeerRequest, PeerResponse};

/// Longest one read waits for new output before answering with none.
pub const FOLLOW_WAIT: Duration = Duration::from_secs(10);

/// Where an ended attempt's output is saved.
pub fn saved_path(data_dir: &Path, job: JobId, attempt: u32) -> PathBuf {
    data_dir
        .join("output")
        .join(format!("{}-{attempt}.bin", job.0))
}

/// Saves what is kept of an ended attempt's output, atomically.
pub fn save(
    data_dir: &Path,
    job: JobId,
    attempt: u32,
    output: &OutputSnapshot,
) -> std::io::Result<()> {
    let path = saved_path(data_dir, job, attempt);
    let dir = path.parent().expect("the output path has a directory");
    std::fs::create_dir_all(dir)?;
    let bytes = frame::encode(output).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)
}

/// Deletes saved output last written more than `retention` ago; returns how many files.
pub fn sweep(data_dir: &Path, retention: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir.join("output")) else {
        return 0;
    };
    let expired = |entry: &std::fs::DirEntry| {
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        modified
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age > retention)
    };
    entries
        .flatten()
        .filter(|entry| expired(entry))
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

fn load(data_dir: &Path, job: JobId, attempt: u32) -> Option<OutputSnapshot> {
    let bytes = std::fs::read(saved_path(data_dir, job, attempt)).ok()?;
    match frame::decode::<OutputSnapshot>(&bytes) {
        Ok(snapshot) => Some(snapshot),
        Err(err) => {
            tracing::warn!(job = %job, attempt, %err, "saved job output is unreadable");
            None
        }
    }
}

/// The API body for what is kept at or after `from`.
fn body(job: JobId, attempt: u32, machine: MachineId, snap: OutputSnapshot) -> JobLogs {
    JobLogs {
        job,
        attempt,
        machine,
        chunks: snap
            .chunks
            .into_iter()
            .map(|c| LogChunk {
                stream: c.stream,
                offset: c.offset,
                text: String::from_utf8_lossy(&c.data).into_owned(),
            })
            .collect(),
        dropped: snap.dropped,
        total: snap.total,
        complete: snap.closed,
    }
}

/// This machine's output of an attempt from `from` on, waiting up to `wait` for some
/// while the attempt runs and has nothing new.
pub async fn local(
    node: &Node,
    job: JobId,
    attempt: u32,
    from: u64,
    wait: Duration,
) -> Result<JobLogs, ApiError> {
    let snap = match node.runner.run(job, attempt) {
        Some(run) => {
            let output = run.output();
            let snap = output.snapshot();
            if snap.total <= from && !snap.closed && !wait.is_zero() {
                let mut follower = output.follow_from(from);
                let _ = tokio::time::timeout(wait, follower.next()).await;
                output.snapshot()
            } else {
                snap
            }
        }
        None => load(&node.config.data_dir, job, attempt).ok_or_else(|| {
            ApiError::not_found(format!(
                "machine {} keeps no output of job {job} attempt {attempt}",
                node.config.node_name
            ))
        })?,
    };
    Ok(body(job, attempt, node.id, snap.since(from)))
}

/// The output of `attempt` of `job` (the latest when `None`), from whichever machine ran it.
pub async fn read(
    node: &Node,
    job: JobId,
    attempt: Option<u32>,
    from: u64,
    wait: Duration,
) -> Result<JobLogs, ApiError> {
    let wait = wait.min(FOLLOW_WAIT);
    let (number, machine) = node
        .fleet
        .read(|state| {
            let record = state.jobs.get(&job)?;
            let found = match attempt {
                Some(n) => record.attempts.iter().find(|a| a.number == n),
                None => record.current_attempt(),
            };
            Some(found.map(|a| (a.number, a.machine)).ok_or(record.state))
        })
        .ok_or_else(|| ApiError::not_found(format!("no job with id {job}")))?
        .map_err(|state| match attempt {
            Some(n) => ApiError::not_found(format!("job {job} has no attempt {n}")),
            None => ApiError::new(
                ErrorCode::Conflict,
                format!("job {job} is {state} and has not run anywhere yet, so it has no output"),
            ),
        })?;
    if machine == node.id {
        return local(node, job, number, from, wait).await;
    }
    let addr = node.member_addr(machine).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!("no address known for machine {machine}, which ran job {job}"),
        )
    })?;
    let request = PeerRequest::Logs {
        job,
        attempt: number,
        from,
        wait_ms: wait.as_millis() as u64,
    };
    match node
        .p2p
        .request(
            &addr.peer_id,
            &addr.p2p_addr,
            request,
            wait + Duration::from_secs(5),
        )
        .await
    {
        Ok(PeerResponse::Logs(result)) => result,
        Ok(PeerResponse::Refused(why)) => Err(ApiError::new(ErrorCode::Unavailable, why)),
        Ok(_) => Err(ApiError::new(
            ErrorCode::Internal,
            "the machine answered a log request with something else",
        )),
        Err(err) => Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("cannot reach machine {machine}, which ran job {job}: {err}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Stream;
    use crate::exec::output::output_channel;

    #[test]
    fn saved_output_reads_back_and_is_swept_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, output) = output_channel(1024);
        writer.push(Stream::Stdout, b"out\n");
        writer.push(Stream::Stderr, b"err\n");
        writer.close();
        save(dir.path(), JobId(7), 2, &output.snapshot()).unwrap();
        let loaded = load(dir.path(), JobId(7), 2).unwrap();
        assert_eq!(loaded, output.snapshot());
        assert!(load(dir.path(), JobId(7), 1).is_none());

        assert_eq!(sweep(dir.path(), Duration::from_secs(3600)), 0);
        assert_eq!(sweep(dir.path(), Duration::ZERO), 1);
        assert!(load(dir.path(), JobId(7), 2).is_none());
    }
}
