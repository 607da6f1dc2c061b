//! `shoal job ...`: the arguments, the [`JobRequest`] that `job run` builds from them, and
//! which module carries out each command.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use shoal_protocol::job::ALL_ONLINE;
use shoal_protocol::{JobId, JobRequest, JobSpec, JobState};

use crate::client::{Client, ClientError};
use crate::{follow, jobs, parse_label, usage_error};

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// Submit a job: `shoal job run [OPTIONS] -- CMD ARGS...`.
    Run(Box<RunArgs>),
    /// List jobs, newest first.
    #[command(visible_alias = "list")]
    Ls {
        /// Only jobs in this state (queued, dispatched, running, completed, failed, timed_out, cancelled).
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs with an attempt on this machine: full id, unique id prefix, or name.
        #[arg(long)]
        machine: Option<String>,
        /// Only jobs of this organisation.
        #[arg(long)]
        org: Option<String>,
        /// Only jobs that require this label (a bare KEY means KEY=true).
        #[arg(long, value_name = "KEY=VALUE", value_parser = parse_label)]
        label: Option<(String, String)>,
        /// At most this many jobs.
        #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "all",
              value_parser = clap::value_parser!(u32).range(1..=jobs::MAX_PAGE as i64))]
        limit: u32,
        /// Every matching job, fetched page by page.
        #[arg(long)]
        all: bool,
    },
    /// Show one job: its state, why it waits, and every attempt.
    Show { id: JobId },
    /// Print a job's output: stdout to stdout, stderr to stderr.
    Logs {
        /// Keep printing until the attempt ends.
        #[arg(short, long)]
        follow: bool,
        /// This attempt instead of the latest.
        #[arg(long, value_name = "N")]
        attempt: Option<u32>,
        id: JobId,
    },
    /// Cancel a job: at once while queued, else its machine stops it.
    Cancel { id: JobId },
}

/// `shoal job run`; [`job_request`] turns it into the request.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Only on machines with this label; repeat for several (a bare KEY means KEY=true).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Run in a container from this image, on a machine with Docker.
    #[arg(long)]
    image: Option<String>,
    /// One child job on every ONLINE machine (that has the labels).
    #[arg(long, conflicts_with = "machine")]
    all_online: bool,
    /// Only on this machine: full id, unique id prefix, or name.
    #[arg(long)]
    machine: Option<String>,
    /// An environment variable for the job; repeat for several.
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// A secret variable for the job, its value taken from this shell's variable of the
    /// same name (so it shows in no command line); repeat for several. The fleet keeps it
    /// sealed and never shows it.
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_env: Vec<String>,
    /// CPU cores the container may use, e.g. 1.5 (with --image).
    #[arg(long, value_name = "CORES")]
    cpus: Option<f64>,
    /// Memory the container may use: 512M, 2G (with --image).
    #[arg(long, alias = "memory-mb", value_name = "SIZE", value_parser = crate::sessions::parse_memory_mb)]
    memory: Option<u64>,
    /// The user the container runs as: name, uid or uid:gid (with --image) [default: the
    /// image's].
    #[arg(long)]
    user: Option<String>,
    /// When the machine pulls the image: missing, always or never (with --image)
    /// [default: missing].
    #[arg(long, value_name = "WHEN")]
    pull: Option<shoal_protocol::PullPolicy>,
    /// GPUs the container gets, 1 to 16 (with --image): the job waits for a machine with
    /// that many free.
    #[arg(long, value_name = "N")]
    gpus: Option<u32>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// Stop an attempt that runs longer: 90s, 10m, 2h (`--timeout` is the CLI's own
    /// request timeout).
    #[arg(long, value_name = "DURATION", value_parser = crate::operate::parse_duration)]
    run_timeout: Option<u64>,
    /// Give up if no machine takes the job within this long: 90s, 10m [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = crate::operate::parse_duration)]
    queue_timeout: Option<u64>,
    /// Attempts before the job counts as failed, 1 to 10 [default: 3].
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,
    /// Running again with the same key (in the same org) returns the first job.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// The owning organisation [default: default].
    #[arg(long)]
    org: Option<String>,
    /// Print the output until the job ends, then exit with its exit code. With --json, print
    /// the finished job instead (for --all-online, its children).
    #[arg(short, long)]
    wait: bool,
    /// The program and its arguments, best after `--`; never run through a shell.
    #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// `NAME=VALUE`, the name held to the protocol's rule for environment names.
pub(crate) fn parse_env(text: &str) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("expected NAME=VALUE, got {text:?}"));
    };
    let mut probe = JobSpec::new(["env"]);
    probe.env.insert(name.to_string(), value.to_string());
    probe.validate()?;
    Ok((name.to_string(), value.to_string()))
}

/// Carries out one `shoal job` command; `Ok` carries the exit code.
pub async fn job(client: &Client, cmd: JobCmd, json: bool) -> Result<u8, ClientError> {
    match cmd {
        JobCmd::Run(args) => {
            let request = job_request(&args).unwrap_or_else(|e| usage_error(e));
            let machine = args.machine.as_deref();
            jobs::run(client, request, machine, args.wait, json).await
        }
        JobCmd::Ls {
            state,
            machine,
            org,
            label,
            limit,
            all,
        } => {
            let filter = jobs::Filter {
                state,
                machine,
                org,
                label,
                limit: (!all).then_some(limit),
            };
            jobs::ls(client, &filter, json).await.map(|()| 0)
        }
        JobCmd::Show { id } => jobs::show(client, id, json).await.map(|()| 0),
        JobCmd::Logs {
            follow,
            attempt,
            id,
        } => follow::logs(client, id, attempt, follow, json)
            .await
            .map(|()| 0),
        JobCmd::Cancel { id } => jobs::cancel(client, id, json).await.map(|()| 0),
    }
}

/// The job to submit, checked by the protocol's own validation so the CLI refuses what the
/// server would; `--machine` is resolved later, as that needs the machine list.
fn job_request(args: &RunArgs) -> Result<JobRequest, String> {
    let mut request = JobRequest::new(args.command.iter().cloned());
    request.image = args.image.clone();
    request.required_labels = args.labels.iter().cloned().collect();
    if args.all_online {
        request.agent_id = Some(ALL_ONLINE.to_string());
    }
    request.priority = args.priority;
    request.env = args.env.iter().cloned().collect();
    request.cpus = args.cpus;
    request.memory_mb = args.memory;
    request.user = args.user.clone();
    request.pull = args.pull;
    request.gpus = args.gpus;
    request.timeout_seconds = args.run_timeout;
    if let Some(secs) = args.queue_timeout {
        request.queue_timeout_seconds = secs;
    }
    if let Some(n) = args.max_attempts {
        request.max_attempts = n;
    }
    request.idempotency_key = args.idempotency_key.clone();
    if let Some(org) = &args.org {
        request.org = org.clone();
    }
    // Checked as the fleet checks the spec it makes; the secrets after, as they are not
    // sealed yet (`secrets_from_shell` checks them as the fleet does before sealing).
    JobSpec::from(request.clone()).validate()?;
    request.secret_env = secrets_from_shell(&args.secret_env, &request.env)?;
    Ok(request)
}

/// The values of `--secret-env NAME`s, from this shell's variables, checked as the fleet
/// checks them before it seals them; none may also be in `env`.
pub(crate) fn secrets_from_shell(
    names: &[String],
    env: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut secrets = BTreeMap::new();
    for name in names {
        let value = std::env::var(name)
            .map_err(|_| format!("--secret-env {name}: {name} is not set in this shell"))?;
        shoal_protocol::job_spec::check_env_value("secret_env", name, &value)?;
        if env.contains_key(name) {
            return Err(format!("{name} is in both --env and --secret-env"));
        }
        secrets.insert(name.clone(), value);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Cmd};
    use clap::Parser;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        let full: Vec<&str> = ["job", "run"].iter().chain(args).copied().collect();
        match parse(&full).unwrap().command {
            Cmd::Job(JobCmd::Run(args)) => *args,
            other => panic!("wrong command {other:?}"),
        }
    }

    #[test]
    fn a_secret_comes_from_the_shell_not_the_command_line() {
        // PATH is set in every shell the tests run from.
        let request = job_request(&run_args(&["--secret-env", "PATH", "--", "true"])).unwrap();
        assert_eq!(request.secret_env["PATH"], std::env::var("PATH").unwrap());
        let unset = run_args(&["--secret-env", "SHOAL_SURELY_UNSET_7F3A", "--", "true"]);
        let err = job_request(&unset).unwrap_err();
        assert!(err.contains("SHOAL_SURELY_UNSET_7F3A is not set"), "{err}");
        let both = run_args(&["--env", "PATH=/bin", "--secret-env", "PATH", "--", "true"]);
        assert!(job_request(&both).unwrap_err().contains("both"));
    }

    #[test]
    fn job_run_builds_the_request() {
        let args = run_args(&[
            "--label",
            "gpu",
            "--label",
            "zone=attic",
            "--env",
            "EPOCHS=3",
            "--env",
            "X=a=b",
            "--priority",
            "-5",
            "--run-timeout",
            "1m",
            "--queue-timeout",
            "10s",
            "--max-attempts",
            "1",
            "--idempotency-key",
            "nightly-7",
            "--org",
            "lab",
            "-w",
            "--",
            "sh",
            "-c",
            "echo hi; exit 3",
        ]);
        assert!(args.wait);
        let request = job_request(&args).unwrap();
        assert_eq!(request.command, ["sh", "-c", "echo hi; exit 3"]);
        assert_eq!(request.required_labels["gpu"], "true");
        assert_eq!(request.required_labels["zone"], "attic");
        assert_eq!(request.env["X"], "a=b");
        assert_eq!(request.priority, -5);
        assert_eq!(request.timeout_seconds, Some(60));
        assert_eq!(request.queue_timeout_seconds, 10);
        assert_eq!(request.max_attempts, 1);
        assert_eq!(request.idempotency_key.as_deref(), Some("nightly-7"));
        assert_eq!(request.org, "lab");
        assert_eq!(request.agent_id, None);

        let defaults = job_request(&run_args(&["--all-online", "uptime"])).unwrap();
        assert_eq!(defaults.agent_id.as_deref(), Some(ALL_ONLINE));
        assert_eq!(defaults, {
            let mut request = JobRequest::new(["uptime"]);
            request.agent_id = Some(ALL_ONLINE.into());
            request
        });
    }

    #[test]
    fn job_run_asks_for_gpus() {
        let args = run_args(&["--image", "trainer:local", "--gpus", "2", "--", "train"]);
        let request = job_request(&args).unwrap();
        assert_eq!(request.gpus, Some(2));
        assert_eq!(request.image.as_deref(), Some("trainer:local"));
        assert_eq!(job_request(&run_args(&["true"])).unwrap().gpus, None);
        let err = parse(&["job", "run", "--gpus", "two", "--", "true"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_command_keeps_its_own_flags() {
        // After the program, everything belongs to the command, `--` or not.
        let args = run_args(&["--machine", "pi", "ls", "-la", "--json", "/tmp"]);
        assert_eq!(args.command, ["ls", "-la", "--json", "/tmp"]);
        assert_eq!(args.machine.as_deref(), Some("pi"));
        let cli = parse(&["job", "run", "--json", "--", "echo", "--wait"]).unwrap();
        assert!(cli.json);
        let Cmd::Job(JobCmd::Run(args)) = cli.command else {
            panic!("wrong command");
        };
        assert!(!args.wait);
        assert_eq!(args.command, ["echo", "--wait"]);
    }

    #[test]
    fn bad_job_runs_are_usage_errors() {
        let err = parse(&["job", "run", "--wait"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["job", "run", "--env", "NOEQUALS", "--", "true"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .contains("expected NAME=VALUE, got \"NOEQUALS\""),
            "{err}"
        );
        let err = parse(&["job", "run", "--env", "1X=y", "--", "true"]).unwrap_err();
        assert!(err.to_string().contains("env name \"1X\""), "{err}");
        let err = parse(&["job", "run", "--label", "Bad Key", "--", "true"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        let err = parse(&[
            "job",
            "run",
            "--all-online",
            "--machine",
            "pi",
            "--",
            "true",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ArgumentConflict);
        // What clap cannot see per value, the protocol's validation refuses before sending.
        let message = |args: &[&str]| job_request(&run_args(args)).unwrap_err();
        assert!(message(&["--max-attempts", "11", "true"]).contains("between 1 and 10"));
        assert!(message(&["--org", "Big Org", "true"]).contains("org \"Big Org\""));
        assert!(message(&["--run-timeout", "0s", "true"]).contains("timeout_seconds"));
        assert!(message(&["--cpus", "2", "true"]).contains("set image too"));
        assert!(message(&["--", ""]).contains("program name"));
    }

    #[test]
    fn job_ls_show_logs_cancel_parse() {
        let cli = parse(&[
            "job",
            "ls",
            "--state",
            "timed_out",
            "--machine",
            "pi",
            "--label",
            "gpu",
            "--limit",
            "5",
        ])
        .unwrap();
        let Cmd::Job(JobCmd::Ls {
            state,
            machine,
            label,
            limit,
            all,
            ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(state, Some(JobState::TimedOut));
        assert_eq!(machine.as_deref(), Some("pi"));
        assert_eq!(label, Some(("gpu".into(), "true".into())));
        assert_eq!((limit, all), (5, false));
        assert!(parse(&["job", "ls", "--state", "sleepy"]).is_err());
        assert!(parse(&["job", "ls", "--limit", "1001"]).is_err());
        assert!(parse(&["job", "ls", "--limit", "0"]).is_err());
        assert!(parse(&["job", "ls", "--limit", "5", "--all"]).is_err());
        assert!(parse(&["job", "ls", "--all"]).is_ok());

        let cli = parse(&["job", "logs", "-f", "--attempt", "2", "42"]).unwrap();
        let Cmd::Job(JobCmd::Logs {
            follow,
            attempt,
            id,
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!((follow, attempt, id), (true, Some(2), JobId(42)));
        let err = parse(&["job", "show", "abc"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("job id must be a decimal number"),
            "{err}"
        );
        assert!(parse(&["job", "cancel"]).is_err());
        assert!(parse(&["job", "cancel", "7"]).is_ok());
    }
}
