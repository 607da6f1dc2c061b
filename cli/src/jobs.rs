//! `shoal job run | ls | show | cancel`: submitting jobs, and showing them with machine
//! names where the API gives machine ids. Following output lives in [`crate::follow`].

use std::collections::HashMap;

use shoal_protocol::params::{JobListParams, JobOrder};
use shoal_protocol::{
    JobId, JobRequest, JobState, JobTarget, JobView, MachineId, SubmitJobResponse, UnixMillis,
};

use crate::client::{Client, ClientError};
use crate::follow;
use crate::machines;
use crate::output::{
    Table, age, duration, key_values, now_ms, or_dash, print, print_json, shell_join, truncate,
};

/// The largest page `GET /v1/jobs` returns (the daemon's `api::jobs::MAX_PAGE`).
pub const MAX_PAGE: u32 = 1000;

/// Widest command shown in the `job ls` table.
const COMMAND_WIDTH: usize = 40;

/// What `shoal job ls` asks for.
#[derive(Debug, Default)]
pub struct Filter {
    pub state: Option<JobState>,
    /// Full id, unique id prefix or name.
    pub machine: Option<String>,
    pub org: Option<String>,
    pub label: Option<(String, String)>,
    /// At most this many jobs; `None` for every page.
    pub limit: Option<u32>,
}

/// `shoal job run`: submits, then prints the job (or follows it to its end with `wait`).
pub async fn run(
    client: &Client,
    mut request: JobRequest,
    machine: Option<&str>,
    wait: bool,
    json: bool,
) -> Result<u8, ClientError> {
    if let Some(machine) = machine {
        request.agent_id = Some(machines::resolve(client, machine).await?.to_string());
    }
    let answer = client.submit_job(&request).await?;
    if !wait {
        if json {
            print_json(&answer);
        } else {
            print(&submitted(&answer));
        }
        return Ok(0);
    }
    if !json {
        // The job's own output goes to stdout; this line must not mix into it.
        eprint!("{}", submitted(&answer));
    }
    if answer.job.is_parent() {
        follow::wait_children(client, answer.job.id, json).await
    } else {
        follow::wait(client, answer.job.id, json).await
    }
}

/// `shoal job ls`.
pub async fn ls(client: &Client, filter: &Filter, json: bool) -> Result<(), ClientError> {
    let machine = match &filter.machine {
        Some(machine) => Some(machines::resolve(client, machine).await?.to_string()),
        None => None,
    };
    let page = filter.limit.unwrap_or(MAX_PAGE);
    let mut params = JobListParams {
        state: filter.state.map(|state| state.to_string()),
        machine,
        org: filter.org.clone(),
        label: filter.label.as_ref().map(|(k, v)| format!("{k}={v}")),
        order: JobOrder::Newest,
        limit: Some(page as usize),
        ..JobListParams::default()
    };
    let mut list = client.jobs(&params).await?;
    let mut full = filter.limit.is_none() && list.jobs.len() == page as usize;
    while full {
        let last = list.jobs.last().expect("a full page has a last job");
        params.before = Some(last.id.0);
        let more = client.jobs(&params).await?.jobs;
        full = more.len() == page as usize;
        list.jobs.extend(more);
    }
    if json {
        print_json(&list);
    } else {
        let names = machines::names(client).await?;
        print(&table(&list.jobs, &names, now_ms()));
    }
    Ok(())
}

/// `shoal job show`.
pub async fn show(client: &Client, id: JobId, json: bool) -> Result<(), ClientError> {
    let job = client.job(id).await?;
    if json {
        print_json(&job);
        return Ok(());
    }
    let kids = children(client, &job).await?;
    let names = machines::names(client).await?;
    print(&details(&job, &kids, &names, now_ms()));
    Ok(())
}

/// `shoal job cancel`.
pub async fn cancel(client: &Client, id: JobId, json: bool) -> Result<(), ClientError> {
    let job = client.cancel_job(id).await?;
    if json {
        print_json(&job);
    } else if job.state.is_finished() {
        print(&format!("job {id} {}\n", job.state));
    } else {
        print(&format!(
            "job {id} {}, cancel requested: its machine stops it\n",
            job.state
        ));
    }
    Ok(())
}

/// The children of a fan-out, found in as few list pages as possible: they take the ids
/// right after their parent.
pub async fn children(client: &Client, job: &JobView) -> Result<Vec<JobView>, ClientError> {
    let (Some(first), Some(last)) = (job.children.iter().min(), job.children.iter().max()) else {
        return Ok(Vec::new());
    };
    let limit = job.children.len().min(MAX_PAGE as usize);
    let mut after = first.0.saturating_sub(1);
    let mut found = Vec::new();
    while found.len() < job.children.len() && after < last.0 {
        let params = JobListParams {
            after: Some(after),
            limit: Some(limit),
            ..JobListParams::default()
        };
        let page = client.jobs(&params).await?.jobs;
        let Some(end) = page.last() else { break };
        after = end.id.0;
        found.extend(page.into_iter().filter(|j| j.parent == Some(job.id)));
    }
    Ok(found)
}

/// What `job run` says about the job it submitted.
pub fn submitted(answer: &SubmitJobResponse) -> String {
    let job = &answer.job;
    let verb = if answer.created {
        "submitted"
    } else {
        "already submitted"
    };
    let mut text = format!("job {} {verb}: {}", job.id, job.state);
    if !job.children.is_empty() {
        let ids: Vec<String> = job.children.iter().map(JobId::to_string).collect();
        text.push_str(&format!(", one child per machine: {}", ids.join(", ")));
    }
    text.push('\n');
    text
}

/// A machine as `name`, or its short id when the fleet no longer lists it.
pub fn machine_name(names: &HashMap<MachineId, String>, id: MachineId) -> String {
    names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| id.to_string()[..8].to_string())
}

/// Where the job runs or ran: its current attempt's machine, or its children.
fn machine_cell(job: &JobView, names: &HashMap<MachineId, String>) -> String {
    if job.is_parent() {
        return format!("all online ({})", job.children.len());
    }
    job.current_attempt()
        .map_or_else(|| "-".to_string(), |a| machine_name(names, a.machine))
}

/// The `job ls` table.
pub fn table(jobs: &[JobView], names: &HashMap<MachineId, String>, now: UnixMillis) -> String {
    let mut table = Table::new(&[
        "ID", "STATE", "MACHINE", "ATTEMPTS", "COMMAND", "AGE", "ENDED",
    ]);
    for job in jobs {
        let ended = if job.state.is_finished() {
            age(now, job.updated_at_ms)
        } else {
            "-".to_string()
        };
        table.row(vec![
            job.id.to_string(),
            job.state.to_string(),
            machine_cell(job, names),
            job.attempts.len().to_string(),
            truncate(&shell_join(&job.spec.command), COMMAND_WIDTH),
            duration(now.saturating_sub(job.submitted_at_ms)),
            ended,
        ]);
    }
    table.render()
}

/// The state with how long it has held, and what is pending.
fn state_line(job: &JobView, now: UnixMillis) -> String {
    if job.state.is_finished() {
        return format!("{} {}", job.state, age(now, job.updated_at_ms));
    }
    let mut text = format!(
        "{} for {}",
        job.state,
        duration(now.saturating_sub(job.updated_at_ms))
    );
    if job.state == JobState::Queued && job.not_before_ms > now {
        text.push_str(&format!(
            ", retried in {}",
            duration(job.not_before_ms - now)
        ));
    }
    if job.cancel_requested {
        text.push_str(", cancel requested");
    }
    text
}

fn target_text(job: &JobView, names: &HashMap<MachineId, String>) -> String {
    match job.target {
        JobTarget::Any => "any machine that fits".to_string(),
        JobTarget::Machine(id) => format!("{} ({id})", machine_name(names, id)),
        JobTarget::AllOnline => "every ONLINE machine, one child job each".to_string(),
    }
}

fn pairs_or_dash<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    let text: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    if text.is_empty() {
        "-".to_string()
    } else {
        text.join(",")
    }
}

/// The `job show` block: every field, then one row per attempt and per child.
pub fn details(
    job: &JobView,
    children: &[JobView],
    names: &HashMap<MachineId, String>,
    now: UnixMillis,
) -> String {
    let spec = &job.spec;
    let mut fields = vec![("id", job.id.to_string()), ("state", state_line(job, now))];
    if job.state == JobState::Queued {
        let reason = job.queue_reason.clone();
        fields.push((
            "waiting because",
            reason.unwrap_or_else(|| "not placed yet".to_string()),
        ));
    }
    if let Some(error) = &job.error {
        fields.push(("error", error.clone()));
    }
    fields.extend([
        ("command", shell_join(&spec.command)),
        (
            "image",
            spec.image
                .clone()
                .unwrap_or_else(|| "- (runs as a process)".to_string()),
        ),
        ("target", target_text(job, names)),
        ("required labels", pairs_or_dash(&spec.required_labels)),
        ("env", pairs_or_dash(&spec.env)),
        ("priority", spec.priority.to_string()),
        ("org", spec.org.clone()),
        (
            "failures",
            format!("{} of at most {}", job.failures, spec.max_attempts),
        ),
        (
            "run timeout",
            spec.timeout_seconds
                .map_or_else(|| "none".to_string(), |s| format!("{s}s")),
        ),
        ("queue timeout", format!("{}s", spec.queue_timeout_seconds)),
        ("idempotency key", or_dash(spec.idempotency_key.as_ref())),
        ("template", or_dash(spec.template_id.as_ref())),
        ("submitted", age(now, job.submitted_at_ms)),
        ("updated", age(now, job.updated_at_ms)),
        ("parent", or_dash(job.parent)),
    ]);
    let mut text = key_values(&fields);
    if !job.attempts.is_empty() {
        let mut table = Table::new(&[
            "ATTEMPT",
            "MACHINE",
            "DISPATCHED",
            "STARTED",
            "FINISHED",
            "EXIT",
            "ERROR",
        ]);
        for a in &job.attempts {
            let ago = |at: Option<UnixMillis>| at.map_or_else(|| "-".to_string(), |t| age(now, t));
            table.row(vec![
                a.number.to_string(),
                format!("{} ({})", machine_name(names, a.machine), a.machine),
                age(now, a.dispatched_at_ms),
                ago(a.started_at_ms),
                ago(a.finished_at_ms),
                or_dash(a.exit_code),
                or_dash(a.error.as_ref()),
            ]);
        }
        text.push('\n');
        text.push_str(&table.render());
        for a in &job.attempts {
            if let Some(why) = &a.placed_because {
                text.push_str(&format!("attempt {}: {why}\n", a.number));
            }
        }
    }
    if !job.children.is_empty() {
        text.push('\n');
        text.push_str(&children_table(children, names));
    }
    text
}

/// One row per child of a fan-out: where it ran and how it ended.
pub fn children_table(children: &[JobView], names: &HashMap<MachineId, String>) -> String {
    let mut table = Table::new(&["CHILD", "MACHINE", "STATE", "EXIT", "ERROR"]);
    for child in children {
        let machine = match child.target {
            JobTarget::Machine(id) => machine_name(names, id),
            _ => machine_cell(child, names),
        };
        let last = child.current_attempt();
        table.row(vec![
            child.id.to_string(),
            machine,
            child.state.to_string(),
            or_dash(last.and_then(|a| a.exit_code)),
            or_dash(child.error.as_ref()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::{AttemptView, JobRecord, JobSpec};

    const NOW: UnixMillis = 1_700_000_000_000;

    fn names() -> HashMap<MachineId, String> {
        HashMap::from([(MachineId(0xabcd_0000_0000_0001), "attic".to_string())])
    }

    fn job(id: u64, command: &[&str]) -> JobView {
        JobView::from(JobRecord::queued(
            JobId(id),
            JobSpec::new(command.iter().copied()),
            JobTarget::Any,
            NOW - 120_000,
            id,
        ))
    }

    fn attempt(number: u32, machine: u64, exit_code: Option<i32>) -> AttemptView {
        AttemptView {
            number,
            machine: MachineId(machine),
            dispatched_at_ms: NOW - 60_000,
            started_at_ms: Some(NOW - 59_000),
            finished_at_ms: exit_code.map(|_| NOW - 30_000),
            exit_code,
            error: exit_code
                .filter(|c| *c != 0)
                .map(|c| format!("exit code {c}")),
            ..AttemptView::default()
        }
    }

    #[test]
    fn table_names_machines_and_truncates_commands() {
        let mut done = job(7, &["sh", "-c", "echo hi; exit 3"]);
        done.state = JobState::Failed;
        done.updated_at_ms = NOW - 5_000;
        done.attempts = vec![
            attempt(1, 0xabcd_0000_0000_0001, Some(3)),
            attempt(2, 0xfeed_0000_0000_0002, Some(3)),
        ];
        let waiting = job(
            9,
            &["python3", "train.py", "--epochs", "300", "--data", "/srv/x"],
        );
        let text = table(&[done, waiting], &names(), NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "ID  STATE   MACHINE   ATTEMPTS  COMMAND                                   AGE  ENDED"
        );
        assert_eq!(
            lines[1],
            "7   failed  feed0000  2         sh -c 'echo hi; exit 3'                   2m   5s ago"
        );
        assert_eq!(
            lines[2],
            "9   queued  -         0         python3 train.py --epochs 300 --data /s…  2m   -"
        );
    }

    #[test]
    fn a_queued_job_says_why_it_waits() {
        let mut waiting = job(9, &["make"]);
        waiting
            .spec
            .required_labels
            .insert("gpu".into(), "true".into());
        waiting.queue_reason = Some("no ONLINE machine has label gpu=true".into());
        let text = details(&waiting, &[], &names(), NOW);
        assert!(text.contains("state:            queued for 2m\n"), "{text}");
        assert!(
            text.contains("waiting because:  no ONLINE machine has label gpu=true\n"),
            "{text}"
        );
        assert!(text.contains("required labels:  gpu=true\n"), "{text}");
        assert!(
            text.contains("target:           any machine that fits\n"),
            "{text}"
        );
        assert!(!text.contains("ATTEMPT"), "{text}");
    }

    #[test]
    fn details_list_every_attempt_with_machine_and_exit_code() {
        let mut retried = job(7, &["make", "test"]);
        retried.state = JobState::Running;
        retried.updated_at_ms = NOW - 10_000;
        retried.failures = 1;
        retried.attempts = vec![
            attempt(1, 0xabcd_0000_0000_0001, Some(2)),
            attempt(2, 0xabcd_0000_0000_0001, None),
        ];
        retried.attempts[1].placed_because =
            Some("moved from attic, where attempt 1 failed: exit code 2".into());
        let text = details(&retried, &[], &names(), NOW);
        assert!(
            text.contains("attempt 2: moved from attic, where attempt 1 failed: exit code 2\n"),
            "{text}"
        );
        assert!(
            text.contains("state:            running for 10s\n"),
            "{text}"
        );
        assert!(
            text.contains("failures:         1 of at most 3\n"),
            "{text}"
        );
        assert!(!text.contains("waiting because"), "{text}");
        assert!(
            text.contains("1        attic (abcd000000000001)  1m ago      59s ago  30s ago   2     exit code 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "2        attic (abcd000000000001)  1m ago      59s ago  -         -     -\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_fan_out_lists_its_children() {
        let mut parent = job(10, &["uptime"]);
        parent.target = JobTarget::AllOnline;
        parent.state = JobState::Failed;
        parent.children = vec![JobId(11), JobId(12)];
        let mut ok = job(11, &["uptime"]);
        ok.target = JobTarget::Machine(MachineId(0xabcd_0000_0000_0001));
        ok.state = JobState::Completed;
        ok.attempts = vec![attempt(1, 0xabcd_0000_0000_0001, Some(0))];
        let mut bad = job(12, &["uptime"]);
        bad.target = JobTarget::Machine(MachineId(0xfeed_0000_0000_0002));
        bad.state = JobState::Failed;
        bad.error = Some("exit code 1".into());
        bad.attempts = vec![attempt(1, 0xfeed_0000_0000_0002, Some(1))];
        let text = details(&parent, &[ok, bad], &names(), NOW);
        assert!(text.contains("every ONLINE machine"), "{text}");
        assert!(
            text.contains("CHILD  MACHINE   STATE      EXIT  ERROR\n11     attic     completed  0     -\n12     feed0000  failed     1     exit code 1\n"),
            "{text}"
        );
        assert_eq!(machine_cell(&parent, &names()), "all online (2)");
    }

    #[test]
    fn submit_answers_read_well() {
        let mut answer = SubmitJobResponse {
            job: job(4, &["true"]),
            created: true,
        };
        assert_eq!(submitted(&answer), "job 4 submitted: queued\n");
        answer.created = false;
        answer.job.state = JobState::Running;
        assert_eq!(submitted(&answer), "job 4 already submitted: running\n");
        answer.job.children = vec![JobId(5), JobId(6)];
        assert!(submitted(&answer).ends_with("one child per machine: 5, 6\n"));
    }
}
