//! `shoal job ...` end to end: process jobs on the real cluster, as a user sees them.

use std::process::Output;
use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, wait_until};
use shoal_protocol::api::JobLogs;
use shoal_protocol::{JobId, JobList, JobRecord, JobState, JobView, SubmitJobResponse};

use super::{shoal, stdout};

/// Runs `shoal` off the runtime, so the in-process cluster keeps answering.
async fn run(addr: &str, args: &[&str]) -> Output {
    let addr = addr.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shoal(&addr, &args)
    })
    .await
    .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// The id in `job 12 submitted: queued`.
fn submitted_id(text: &str) -> String {
    let id = text
        .strip_prefix("job ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no job id in {text:?}"));
    id.parse::<u64>().unwrap();
    id.to_string()
}

/// Waits until node 1 (the node the CLI asks) sees the job in a state `done` accepts.
async fn wait_for(cluster: &Cluster, id: &str, what: &str, done: fn(&JobRecord) -> bool) {
    let id = JobId(id.parse().unwrap());
    let node = cluster.node(1);
    wait_until(Duration::from_secs(20), what, || {
        node.fleet
            .read(|s| s.jobs.get(&id).is_some_and(done).then_some(()))
    })
    .await
    .unwrap();
}

pub async fn the_job_commands(cluster: &Cluster) {
    let addr = cluster.api(1);

    // --wait prints each attempt's output on the right stream and exits with the job's code;
    // exit 3 is a failure, so the default three attempts each run.
    let script = "echo hi; echo oops >&2; exit 3";
    let waited = run(&addr, &["job", "run", "--wait", "--", "sh", "-c", script]).await;
    let (out, err) = (String::from_utf8_lossy(&waited.stdout), stderr(&waited));
    assert_eq!(waited.status.code(), Some(3), "{out}\n{err}");
    assert_eq!(out, "hi\nhi\nhi\n", "{err}");
    assert_eq!(err.matches("oops\n").count(), 3, "{err}");
    assert!(err.contains("attempt 1 ended: exit code 3;"), "{err}");
    assert!(err.contains(" failed: exit code 3\n"), "{err}");

    // Submitted without waiting: ls and show name the machine and the attempt, logs print
    // the output.
    let submitted = stdout(&run(&addr, &["job", "run", "--", "sh", "-c", "echo done"]).await);
    assert!(submitted.contains(" submitted: "), "{submitted}");
    let id = submitted_id(&submitted);
    wait_for(cluster, &id, "echo completes", |j| {
        j.state == JobState::Completed
    })
    .await;
    let table = stdout(&run(&addr, &["job", "ls", "--state", "completed"]).await);
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{id} ")))
        .unwrap_or_else(|| panic!("job {id} missing from:\n{table}"));
    assert!(table.starts_with("ID "), "{table}");
    assert!(row.contains("completed  node-"), "{row}");
    assert!(row.contains("sh -c 'echo done'"), "{row}");
    let shown = stdout(&run(&addr, &["job", "show", &id]).await);
    assert!(shown.contains("state:            completed"), "{shown}");
    assert!(
        shown.contains("command:          sh -c 'echo done'"),
        "{shown}"
    );
    let attempt = shown
        .lines()
        .find(|l| l.starts_with("1 "))
        .unwrap_or_else(|| panic!("no attempt row in:\n{shown}"));
    assert!(
        attempt.contains("node-") && attempt.contains("  0  "),
        "{attempt}"
    );
    let logs = run(&addr, &["job", "logs", &id]).await;
    assert_eq!(stdout(&logs), "done\n");
    // Following a finished attempt prints it all and ends.
    let followed = run(&addr, &["job", "logs", "-f", &id]).await;
    assert_eq!(stdout(&followed), "done\n");

    // Following a live attempt: the output arrives as it is written, until the end.
    let slow = "echo a; sleep 1; echo b >&2; echo c";
    let submitted = stdout(&run(&addr, &["job", "run", "--", "sh", "-c", slow]).await);
    let live = run(&addr, &["job", "logs", "-f", &submitted_id(&submitted)]).await;
    assert_eq!(stdout(&live), "a\nc\n");
    assert!(stderr(&live).contains("b\n"), "{}", stderr(&live));

    // A label nobody has: the job waits, show says why, cancel ends it.
    let submitted = stdout(&run(&addr, &["job", "run", "--label", "gpu=yes", "--", "true"]).await);
    let id = submitted_id(&submitted);
    wait_for(cluster, &id, "a queue reason", |j| j.queue_reason.is_some()).await;
    let shown = stdout(&run(&addr, &["job", "show", &id]).await);
    assert!(shown.contains("state:            queued"), "{shown}");
    assert!(
        shown.contains("waiting because:  no ONLINE machine has label gpu=yes"),
        "{shown}"
    );
    let no_logs = run(&addr, &["job", "logs", &id]).await;
    assert_eq!(no_logs.status.code(), Some(1));
    assert!(
        stderr(&no_logs).contains("has not run anywhere yet"),
        "{}",
        stderr(&no_logs)
    );
    let cancelled = stdout(&run(&addr, &["job", "cancel", &id]).await);
    assert_eq!(cancelled, format!("job {id} cancelled\n"));
    let again = run(&addr, &["job", "cancel", &id]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already cancelled"),
        "{}",
        stderr(&again)
    );

    // A machine by name; the attempt ran there.
    let pinned = run(
        &addr,
        &["job", "run", "--machine", "node-2", "-w", "--", "true"],
    )
    .await;
    assert!(pinned.status.success(), "{}", stderr(&pinned));
    let id = submitted_id(&stderr(&pinned));
    let shown = stdout(&run(&addr, &["job", "show", &id]).await);
    assert!(shown.contains("target:           node-2 ("), "{shown}");
    assert!(shown.contains("1        node-2 ("), "{shown}");

    // Fan-out: one line per machine, then each child's output; any failure is exit code 1.
    let fanned = run(
        &addr,
        &[
            "job",
            "run",
            "--all-online",
            "--wait",
            "--",
            "sh",
            "-c",
            "echo out-of-$SHOAL_ATTEMPT",
        ],
    )
    .await;
    let table = stdout(&fanned);
    assert!(table.starts_with("CHILD  MACHINE  STATE"), "{table}");
    for name in ["node-0", "node-1", "node-2"] {
        let line = table.lines().find(|l| l.contains(name)).unwrap_or("");
        assert!(line.contains("completed  0"), "{name}:\n{table}");
    }
    assert_eq!(table.matches("out-of-1\n").count(), 3, "{table}");
    assert_eq!(
        stderr(&fanned).matches("attempt 1 runs on node-").count(),
        3
    );
    let args = [
        "job",
        "run",
        "--all-online",
        "--max-attempts",
        "1",
        "-w",
        "--",
        "false",
    ];
    let failed = run(&addr, &args).await;
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&failed.stdout)
            .matches("failed")
            .count(),
        3
    );
    assert!(stderr(&failed).contains("3 of 3 child jobs did not complete"));

    // --json answers parse as the protocol types.
    let args = [
        "--json",
        "job",
        "run",
        "--idempotency-key",
        "once",
        "--",
        "true",
    ];
    let first: SubmitJobResponse = serde_json::from_str(&stdout(&run(&addr, &args).await)).unwrap();
    assert!(first.created);
    let second: SubmitJobResponse =
        serde_json::from_str(&stdout(&run(&addr, &args).await)).unwrap();
    assert_eq!((second.created, second.job.id), (false, first.job.id));
    let id = first.job.id.to_string();
    let again = stdout(&run(&addr, &args[1..]).await);
    assert!(
        again.starts_with(&format!("job {id} already submitted: ")),
        "{again}"
    );
    wait_for(cluster, &id, "true completes", |j| j.state.is_finished()).await;
    let shown: JobView =
        serde_json::from_str(&stdout(&run(&addr, &["--json", "job", "show", &id]).await)).unwrap();
    assert_eq!(shown.state, JobState::Completed);
    let logs: JobLogs =
        serde_json::from_str(&stdout(&run(&addr, &["--json", "job", "logs", &id]).await)).unwrap();
    assert!(logs.complete && logs.chunks.is_empty(), "{logs:?}");
    let list: JobList = serde_json::from_str(&stdout(
        &run(&addr, &["--json", "job", "ls", "--all"]).await,
    ))
    .unwrap();
    assert!(list.jobs.iter().any(|j| j.id == shown.id));
    assert!(
        list.jobs.windows(2).all(|w| w[0].id > w[1].id),
        "newest first"
    );

    // Refused before any request: exit code 2 and the reason.
    let bad = run(&addr, &["job", "run", "--max-attempts", "11", "--", "true"]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("between 1 and 10"),
        "{}",
        stderr(&bad)
    );
}
