//! `shoal`: the command-line client of a Shoal fleet's admin API.
//!
//! Exit codes: 0 success, 1 the node answered with an error, 2 bad usage,
//! 3 the node could not be reached. `shoal job run --wait` exits with the job's own
//! exit code instead when the job failed with one.

mod attach;
mod audit;
mod client;
mod cluster;
mod costs;
mod events;
mod fleet;
mod follow;
mod history;
mod job_args;
mod jobs;
mod keys;
mod machines;
mod operate;
mod output;
mod registries;
mod sessions;
mod settings;
mod snapshot;
mod tokens;

use std::fmt::Display;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shoal_protocol::api::{LabelRequest, MachineSort};
use shoal_protocol::{LabelError, Labels, MachineStatus};

use client::{Client, ClientError};
use job_args::JobCmd;

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about = "Inspect and manage a Shoal fleet")]
struct Cli {
    /// Admin API of any node in the fleet.
    #[arg(long, global = true, env = "SHOAL_ADDR", default_value = "https://127.0.0.1:7400", value_parser = parse_addr)]
    addr: String,
    /// The fleet CA's certificate (a node's `<data_dir>/tls/ca.pem`) to check the node
    /// against [default: the dev fleet's `.shoal-dev/tls/ca.pem`, else
    /// `/var/lib/shoal/tls/ca.pem`].
    #[arg(long, global = true, env = "SHOAL_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// API key (`shoal_...`) sent with every request.
    #[arg(long, global = true, env = "SHOAL_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the server's JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Give up on a request after this long: 10s, 2m.
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = request_timeout)]
    timeout: u64,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List, show and label machines, and read their resource history.
    #[command(subcommand, alias = "machine")]
    Machines(MachinesCmd),
    /// The Raft group.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// The whole fleet at a glance.
    #[command(subcommand)]
    Fleet(FleetCmd),
    /// Run, list, inspect and cancel jobs.
    #[command(subcommand, alias = "jobs")]
    Job(JobCmd),
    /// Stop giving machines new work (and move what runs there after --deadline).
    Drain(operate::DrainArgs),
    /// Give drained machines work again.
    Undrain(operate::Selection),
    /// Who changed what, newest first (admin).
    Audit {
        /// Only changes that concern this machine (id, prefix or name).
        #[arg(long)]
        machine: Option<String>,
        /// Only changes made with this API key id.
        #[arg(long)]
        actor: Option<String>,
        /// At most this many entries (1 to 1000) [default: 100].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Registration tokens for machines to join (`shoald join --token`).
    #[command(subcommand, alias = "tokens")]
    Token(tokens::TokenCmd),
    /// Create, list and revoke API keys.
    #[command(subcommand, alias = "keys")]
    Key(keys::KeyCmd),
    /// Back up the fleet state and read backups (`shoald restore` starts a fleet from one).
    #[command(subcommand, alias = "snapshots")]
    Snapshot(snapshot::SnapshotCmd),
    /// Stop or resume all dispatch fleet-wide.
    #[command(subcommand)]
    Killswitch(operate::KillSwitchCmd),
    /// Session templates, with versions and rollback.
    #[command(subcommand, alias = "templates")]
    Template(sessions::TemplateCmd),
    /// Long-lived containers to work inside: create, exec, logs, terminate.
    #[command(subcommand, alias = "sessions")]
    Session(sessions::SessionCmd),
    /// Restart, update or apply-config on selected machines.
    #[command(subcommand)]
    Batch(operate::BatchCmd),
    /// Governance policies machines apply to containers (admin).
    #[command(subcommand, alias = "policies")]
    Policy(sessions::PolicyCmd),
    /// Credentials machines pull registries' images with (admin).
    #[command(subcommand, alias = "registries")]
    Registry(registries::RegistryCmd),
    /// Daily spend and runner-minute limits per org.
    #[command(subcommand, alias = "budgets")]
    Budget(costs::BudgetCmd),
    /// What work cost, grouped by day, machine, job or org.
    Costs(costs::CostsArgs),
    /// What changed in the fleet, one line per event; -f to follow.
    Events(events::EventsArgs),
    /// Whether the node is up and knows a leader.
    Health,
    /// Print a shell completion script: `shoal completions bash > /etc/bash_completion.d/shoal`.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (`shoal.1`, one per subcommand) into a directory (packaging).
    #[command(hide = true)]
    Man { dir: std::path::PathBuf },
}

#[derive(Debug, Subcommand)]
enum MachinesCmd {
    /// List machines, optionally filtered.
    #[command(visible_alias = "list")]
    Ls {
        /// Only machines with this status (online, busy, draining, stale, ...).
        #[arg(long)]
        status: Option<MachineStatus>,
        /// Only machines with this label; repeat for several (a bare KEY means KEY=true).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only machines running this OS (linux, macos, ...).
        #[arg(long)]
        os: Option<String>,
        /// Only machines with the label provider=PROVIDER (set it with `machines label`).
        #[arg(long)]
        provider: Option<String>,
        /// Order by hostname, name, status, uptime, cpu, memory or last_heartbeat.
        #[arg(long, value_name = "KEY")]
        sort: Option<MachineSort>,
        /// Reverse the order: largest, latest or last first.
        #[arg(long)]
        desc: bool,
    },
    /// Remove a machine for good: it leaves the fleet and needs a new token to come back.
    Rm {
        /// Full id, unique id prefix, or name.
        machine: String,
    },
    /// Admit a machine that came with the cluster secret alone (listed as PENDING).
    Approve {
        /// Full id, unique id prefix, or name of a pending machine.
        machine: String,
    },
    /// Show one machine in detail.
    Show {
        /// Full id, unique id prefix, or name.
        machine: String,
    },
    /// Set or remove operator labels.
    Label {
        /// Full id, unique id prefix, or name.
        machine: String,
        /// Labels to set (a bare KEY means KEY=true).
        #[arg(value_name = "KEY=VALUE", value_parser = parse_label, required_unless_present = "remove")]
        set: Vec<(String, String)>,
        /// Label keys to remove; repeat for several.
        #[arg(long, value_name = "KEY", value_parser = parse_key)]
        remove: Vec<String>,
    },
    /// CPU, load and memory samples of the last hour, read from the machine itself.
    History {
        /// Full id, unique id prefix, or name.
        machine: String,
        /// Only this far back (e.g. 90s, 10m, 1h) [default: all the machine keeps].
        #[arg(long, value_name = "DURATION", value_parser = operate::parse_duration)]
        since: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCmd {
    /// Leader, term, log indexes and members.
    Status,
}

#[derive(Debug, Subcommand)]
enum FleetCmd {
    /// Health, machines by status, capacity, average use and jobs by state.
    Summary,
    /// Settings every leader follows alike (job retention); `set` changes them (admin).
    Settings {
        #[command(subcommand)]
        action: Option<settings::SettingsCmd>,
    },
    /// Makes a new gossip key and rolls it out to every machine (admin); a machine that
    /// holds only the cluster secret is no longer heard.
    RotateKey,
}

/// Accepts `https://host:port`, a bare `host:port` (HTTPS), or `http://host:port` for a
/// node that serves plain HTTP (`shoald --insecure-http`).
fn parse_addr(text: &str) -> Result<String, String> {
    let text = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let url = reqwest::Url::parse(&text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("{text:?}: only https:// (or http://) is supported"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

fn parse_label(text: &str) -> Result<(String, String), LabelError> {
    Labels::parse_pair(text)
}

fn parse_key(text: &str) -> Result<String, LabelError> {
    if text.contains('=') {
        return Err(LabelError::BadKey(text.to_string()));
    }
    Labels::parse_pair(text).map(|(key, _)| key)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            if let ClientError::Api(api) = &err
                && api.code == shoal_protocol::ErrorCode::Unauthorized
            {
                eprintln!("hint: give an API key with --token or SHOAL_TOKEN");
            }
            match err {
                ClientError::Unreachable { .. } => ExitCode::from(3),
                ClientError::Api(_) | ClientError::BadResponse { .. } => ExitCode::from(1),
            }
        }
    }
}

/// Bad usage found after parsing: the reason on stderr and exit code 2, as clap does.
fn usage_error(message: impl Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2)
}

/// The man pages of `cmd` and of each of its subcommands, as `(file name, roff)`:
/// `shoal.1`, `shoal-job.1`, `shoal-job-run.1`, ... (hidden commands left out).
fn man_pages(cmd: clap::Command) -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: clap::Command, name: String, pages: &mut Vec<(String, Vec<u8>)>) {
        let cmd = cmd.name(name.clone());
        let mut roff = Vec::new();
        if clap_mangen::Man::new(cmd.clone()).render(&mut roff).is_ok() {
            pages.push((format!("{name}.1"), roff));
        }
        for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), pages);
        }
    }
    let mut pages = Vec::new();
    walk(cmd, "shoal".to_string(), &mut pages);
    pages
}

/// The request timeout: a duration with its unit, at least a second.
fn request_timeout(text: &str) -> Result<u64, String> {
    match operate::parse_duration(text)? {
        0 => Err("the request timeout must be at least 1s".to_string()),
        secs => Ok(secs),
    }
}

/// Runs the command; `Ok` carries the exit code.
async fn run(cli: Cli) -> Result<u8, ClientError> {
    let pem = std::env::var("SHOAL_CACERT_PEM").ok();
    let trust = client::Trust::find(cli.cacert.as_deref(), pem.as_deref())?;
    let client = Client::trusting(
        &cli.addr,
        Duration::from_secs(cli.timeout),
        cli.token.as_deref(),
        trust,
    )?;
    let json = cli.json;
    let done = match cli.command {
        Cmd::Machines(MachinesCmd::Ls {
            status,
            labels,
            os,
            provider,
            sort,
            desc,
        }) => {
            let filter = machines::LsFilter {
                status,
                labels,
                os,
                provider,
                sort,
                desc,
            };
            machines::ls(&client, &filter, json).await
        }
        Cmd::Machines(MachinesCmd::Rm { machine }) => {
            machines::remove(&client, &machine, json).await
        }
        Cmd::Machines(MachinesCmd::Approve { machine }) => {
            machines::approve(&client, &machine, json).await
        }
        Cmd::Machines(MachinesCmd::Show { machine }) => {
            machines::show(&client, &machine, json).await
        }
        Cmd::Machines(MachinesCmd::Label {
            machine,
            set,
            remove,
        }) => {
            let request = label_request(set, remove).unwrap_or_else(|e| usage_error(e));
            machines::label(&client, &machine, &request, json).await
        }
        Cmd::Machines(MachinesCmd::History { machine, since }) => {
            history::history(&client, &machine, since, json).await
        }
        Cmd::Cluster(ClusterCmd::Status) => cluster::status(&client, json).await,
        Cmd::Fleet(FleetCmd::Summary) => fleet::summary(&client, json).await,
        Cmd::Fleet(FleetCmd::Settings { action }) => settings::run(&client, action, json).await,
        Cmd::Fleet(FleetCmd::RotateKey) => fleet::rotate_key(&client, json).await,
        Cmd::Job(cmd) => return job_args::job(&client, cmd, json).await,
        Cmd::Drain(args) => {
            let (select, drain) = args.into_parts();
            operate::run_drain(&client, select, Some(drain), json).await
        }
        Cmd::Undrain(select) => operate::run_drain(&client, select, None, json).await,
        Cmd::Killswitch(cmd) => operate::run_kill_switch(&client, cmd, json).await,
        Cmd::Key(cmd) => keys::run(&client, cmd, json).await,
        Cmd::Token(cmd) => tokens::run(&client, cmd, json).await,
        Cmd::Snapshot(cmd) => return snapshot::run(&client, cmd, json).await,
        Cmd::Audit {
            machine,
            actor,
            limit,
        } => audit::run(&client, machine, actor, limit, json).await,
        Cmd::Events(args) => events::run(&client, args, json).await,
        Cmd::Budget(cmd) => costs::run_budget(&client, cmd, json).await,
        Cmd::Template(cmd) => sessions::run_template(&client, cmd, json).await,
        Cmd::Session(cmd) => return sessions::run_session(&client, cmd, json).await,
        Cmd::Policy(cmd) => sessions::run_policy(&client, cmd, json).await,
        Cmd::Registry(cmd) => registries::run(&client, cmd, json).await,
        Cmd::Batch(cmd) => return operate::run_batch(&client, cmd, json).await,
        Cmd::Costs(args) => costs::run_costs(&client, args, json).await,
        Cmd::Health => cluster::health(&client, json).await,
        Cmd::Man { dir } => {
            use clap::CommandFactory;
            if let Err(error) = std::fs::create_dir_all(&dir) {
                usage_error(format!("cannot create {}: {error}", dir.display()));
            }
            for (name, page) in man_pages(Cli::command()) {
                let path = dir.join(name);
                if let Err(error) = std::fs::write(&path, page) {
                    usage_error(format!("cannot write {}: {error}", path.display()));
                }
            }
            Ok(())
        }
        Cmd::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shoal", &mut script);
            output::print(&String::from_utf8_lossy(&script));
            Ok(())
        }
    };
    done.map(|()| 0)
}

/// The request body; fails only on too many labels, the one check clap cannot do per value.
fn label_request(
    set: Vec<(String, String)>,
    remove: Vec<String>,
) -> Result<LabelRequest, LabelError> {
    let mut labels = Labels::new();
    for (key, value) in &set {
        labels.insert(key, value)?;
    }
    Ok(LabelRequest {
        set: labels,
        remove,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn one_flag_per_idea_with_the_old_names_kept_and_durations_with_units() {
        let same = |a: &[&str], b: &[&str]| {
            let (a, b) = (parse(a).unwrap(), parse(b).unwrap());
            assert_eq!(format!("{:?}", a.command), format!("{:?}", b.command));
        };
        same(
            &["job", "run", "--image", "i", "--memory", "512", "true"],
            &["job", "run", "--image", "i", "--memory-mb", "512", "true"],
        );
        same(
            &["job", "run", "--image", "i", "--memory", "2G", "true"],
            &["job", "run", "--image", "i", "--memory", "2048", "true"],
        );
        same(
            &["template", "create", "t", "--image", "i", "--cpus", "1"],
            &["template", "create", "t", "--image", "i", "--cpu", "1"],
        );
        same(
            &["policy", "apply", "--max-cpus", "2"],
            &["policy", "apply", "--max-cpu", "2"],
        );
        same(
            &["job", "run", "--run-timeout", "10m", "true"],
            &["job", "run", "--run-timeout", "600s", "true"],
        );
        let bare = parse(&["token", "create", "--ttl", "90"])
            .unwrap_err()
            .to_string();
        assert!(
            bare.contains("\"90\" needs a unit: 90s, 90m, 90h or 90d"),
            "{bare}"
        );
    }

    #[test]
    fn every_visible_command_has_a_man_page() {
        let pages = man_pages(Cli::command());
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        for page in [
            "shoal.1",
            "shoal-job-run.1",
            "shoal-registry-login.1",
            "shoal-drain.1",
        ] {
            assert!(names.contains(&page), "{page} missing from {names:?}");
        }
        assert!(
            !names.contains(&"shoal-man.1"),
            "the hidden command has none"
        );
        let (_, roff) = &pages[0];
        assert!(String::from_utf8_lossy(roff).contains(".TH shoal 1"));
    }

    #[test]
    fn nouns_are_taken_singular_and_plural() {
        for (one, other) in [
            (["machines", "ls"], ["machine", "ls"]),
            (["job", "ls"], ["jobs", "ls"]),
            (["key", "ls"], ["keys", "ls"]),
            (["token", "ls"], ["tokens", "ls"]),
            (["template", "ls"], ["templates", "ls"]),
            (["session", "ls"], ["sessions", "ls"]),
            (["policy", "ls"], ["policies", "ls"]),
            (["registry", "ls"], ["registries", "ls"]),
            (["budget", "ls"], ["budgets", "ls"]),
        ] {
            let (a, b) = (parse(&one).unwrap(), parse(&other).unwrap());
            assert_eq!(
                format!("{:?}", a.command),
                format!("{:?}", b.command),
                "{one:?}"
            );
        }
    }

    #[test]
    fn completions_cover_the_subcommands() {
        let mut script = Vec::new();
        clap_complete::generate(
            clap_complete::Shell::Bash,
            &mut Cli::command(),
            "shoal",
            &mut script,
        );
        let script = String::from_utf8(script).unwrap();
        for word in ["machines", "job", "drain", "killswitch", "audit", "key"] {
            assert!(script.contains(word), "{word} missing");
        }
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = parse(&[
            "machines",
            "ls",
            "--json",
            "--addr",
            "10.0.0.1:7400",
            "--timeout",
            "3s",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.addr, "https://10.0.0.1:7400");
        assert_eq!(cli.timeout, 3);
        if std::env::var_os("SHOAL_ADDR").is_none() {
            assert_eq!(parse(&["health"]).unwrap().addr, "https://127.0.0.1:7400");
        }
        assert_eq!(
            parse(&["health", "--addr", "https://x:1"]).unwrap().addr,
            "https://x:1"
        );
        assert_eq!(
            parse(&["health", "--addr", "http://x:1"]).unwrap().addr,
            "http://x:1",
            "plain HTTP, for a node started with --insecure-http"
        );
        assert!(parse(&["health", "--addr", "ftp://x:1"]).is_err());
        assert!(parse(&["health", "--timeout", "0s"]).is_err());
        assert!(
            parse(&["health", "--timeout", "3"]).is_err(),
            "a bare number is refused: the unit is said"
        );
        assert_eq!(parse(&["health", "--timeout", "2m"]).unwrap().timeout, 120);
    }

    #[test]
    fn ls_filters_parse() {
        let cli = parse(&[
            "machines", "ls", "--status", "online", "--label", "zone=a", "--label", "gpu",
        ])
        .unwrap();
        let Cmd::Machines(MachinesCmd::Ls {
            status,
            labels,
            os,
            provider,
            sort,
            desc,
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(status, Some(MachineStatus::Online));
        assert_eq!(
            labels,
            [("zone".into(), "a".into()), ("gpu".into(), "true".into())]
        );
        assert_eq!((os, provider, sort, desc), (None, None, None, false));
        assert!(parse(&["machines", "ls", "--status", "sleepy"]).is_err());

        let cli = parse(&[
            "machines",
            "ls",
            "--os",
            "linux",
            "--provider",
            "vps",
            "--sort",
            "state",
            "--desc",
        ])
        .unwrap();
        let Cmd::Machines(MachinesCmd::Ls {
            os,
            provider,
            sort,
            desc,
            ..
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(os.as_deref(), Some("linux"));
        assert_eq!(provider.as_deref(), Some("vps"));
        assert_eq!(sort, Some(MachineSort::Status));
        assert!(desc);
        let err = parse(&["machines", "ls", "--sort", "load"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(
            err.to_string()
                .contains("use one of hostname, name, status"),
            "{err}"
        );
        assert!(matches!(
            parse(&["fleet", "summary", "--json"]).unwrap().command,
            Cmd::Fleet(FleetCmd::Summary)
        ));
        assert!(matches!(
            parse(&["fleet", "settings"]).unwrap().command,
            Cmd::Fleet(FleetCmd::Settings { action: None })
        ));
        assert!(matches!(
            parse(&["fleet", "rotate-key"]).unwrap().command,
            Cmd::Fleet(FleetCmd::RotateKey)
        ));
        let set = parse(&["fleet", "settings", "set", "--job-retention", "48h"]);
        assert!(matches!(
            set.unwrap().command,
            Cmd::Fleet(FleetCmd::Settings {
                action: Some(settings::SettingsCmd::Set {
                    job_retention: Some(settings::Setting(Some(172_800)))
                })
            })
        ));
    }

    #[test]
    fn bad_labels_are_refused_with_the_protocol_message() {
        let err = parse(&["machines", "label", "pi", "Bad Key=x"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
        let expected = LabelError::BadKey("Bad Key".into()).to_string();
        assert!(err.to_string().contains(&expected), "{err}");

        let err = parse(&["machines", "ls", "--label", "zone=a b"]).unwrap_err();
        assert!(
            err.to_string().contains("must be at most 128 printable"),
            "{err}"
        );
        assert!(parse(&["machines", "label", "pi", "--remove", "zone=a"]).is_err());
        assert!(parse(&["machines", "label", "pi", "--remove", "Zone"]).is_err());
    }

    #[test]
    fn label_needs_something_to_do() {
        let err = parse(&["machines", "label", "pi"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MissingRequiredArgument);
        let cli = parse(&[
            "machines",
            "label",
            "pi",
            "zone=attic",
            "gpu",
            "--remove",
            "old",
        ])
        .unwrap();
        let Cmd::Machines(MachinesCmd::Label {
            machine,
            set,
            remove,
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(machine, "pi");
        let request = label_request(set, remove).unwrap();
        assert_eq!(request.set.to_string(), "gpu=true,zone=attic");
        assert_eq!(request.remove, ["old"]);
        assert!(parse(&["machines", "label", "pi", "--remove", "old"]).is_ok());
    }

    #[test]
    fn history_takes_a_machine_and_a_duration() {
        let cli = parse(&["machines", "history", "pi", "--since", "10m", "--json"]).unwrap();
        assert!(cli.json);
        let Cmd::Machines(MachinesCmd::History { machine, since }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!((machine.as_str(), since), ("pi", Some(600)));
        let cli = parse(&["machines", "history", "pi"]).unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Machines(MachinesCmd::History { since: None, .. })
        ));
        let err = parse(&["machines", "history", "pi", "--since", "5w"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        assert!(parse(&["machines", "history"]).is_err());
    }

    #[test]
    fn too_many_labels_are_refused() {
        let set = (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(matches!(
            label_request(set, vec![]),
            Err(LabelError::TooMany(65))
        ));
    }
}
