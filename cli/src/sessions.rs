//! `shoal template`, `shoal session` and `shoal policy`: templates with versions, sessions
//! made from them (exec, logs, terminate), and the policies machines apply to containers.

use clap::Subcommand;
use shoal_protocol::JobId;
use shoal_protocol::params::SessionParams;
use shoal_protocol::policies::{PolicyRequest, PolicyView};
use shoal_protocol::sessions::{CreateSessionRequest, ExecRequest, SessionState, SessionView};
use shoal_protocol::templates::{TemplateRequest, TemplateView};

use crate::client::{Client, ClientError};
use crate::job_args::{parse_env, secrets_from_shell};
use crate::output::{Table, age, now_ms, or_dash, print, print_json, print_json_list};
use crate::{follow, machines, parse_label, usage_error};

// Parsed once per run: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Make a template, or a new version of one: `shoal template create NAME --image IMG [-- CMD...]`.
    #[command(visible_alias = "update")]
    Create {
        name: String,
        /// The image sessions run.
        #[arg(long)]
        image: String,
        /// Pin the image: the id (sha256:...) every machine must have.
        #[arg(long)]
        digest: Option<String>,
        /// CPU cores a session may use.
        #[arg(long, alias = "cpu", value_name = "CORES")]
        cpus: Option<f64>,
        /// Memory a session may use: 512M, 2G, or MiB.
        #[arg(long, value_parser = parse_memory_mb)]
        memory: Option<u64>,
        /// Longest a session lives (e.g. 90m, 2h).
        #[arg(long, value_parser = crate::operate::parse_duration)]
        max_duration: Option<u64>,
        /// The user sessions run as (name, uid or uid:gid) [default: the image's].
        #[arg(long)]
        user: Option<String>,
        /// When a machine pulls the image: missing, always or never [default: missing].
        #[arg(long, value_name = "WHEN")]
        pull: Option<shoal_protocol::PullPolicy>,
        /// GPUs each session gets, 1 to 16: it waits for a machine with that many free.
        #[arg(long, value_name = "N")]
        gpus: Option<u32>,
        /// Only on machines with this label; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// An environment variable; repeat for several.
        #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// A secret variable, its value from this shell's variable of the same name; the
        /// fleet keeps it sealed and never shows it. Repeat for several.
        #[arg(long = "secret-env", value_name = "NAME")]
        secret_env: Vec<String>,
        /// The program and its arguments [default: the image's own].
        #[arg(trailing_var_arg = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Every template and its current version.
    #[command(visible_alias = "list")]
    Ls,
    /// One template with every version.
    Show { name: String },
    /// New sessions use an earlier version from now on.
    Rollback {
        name: String,
        #[arg(long)]
        version: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Start a session from a template on the least-loaded capable machine.
    Create {
        #[arg(long)]
        template: String,
        /// Only on machines with this label, besides the template's; repeat for several.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Only on this machine: full id, unique id prefix, or name.
        #[arg(long)]
        machine: Option<String>,
    },
    /// The caller's sessions, newest first.
    #[command(visible_alias = "list")]
    Ls {
        /// pending, starting, running, terminated or failed.
        #[arg(long)]
        state: Option<SessionState>,
        /// Only sessions on this machine: full id, unique id prefix, or name.
        #[arg(long)]
        machine: Option<String>,
        /// Another org's sessions (admin keys).
        #[arg(long)]
        org: Option<String>,
    },
    /// One session.
    Show { id: JobId },
    /// Run a command in the session and exit with its exit code: `shoal session exec ID -- CMD...`.
    Exec {
        id: JobId,
        /// Longest the command may run, in seconds [default: 60].
        #[arg(long, value_name = "SECS")]
        exec_timeout: Option<u64>,
        #[arg(trailing_var_arg = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// An interactive shell in the session, like `docker exec -it`; exits with its code.
    Attach { id: JobId },
    /// The session's output; -f to follow.
    Logs {
        #[arg(short, long)]
        follow: bool,
        id: JobId,
    },
    /// Stop the session and remove its container.
    Terminate { id: JobId },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Set a policy (admin): `shoal policy apply --allowed-image 'busybox:*' --max-memory 2G --selector role=worker`.
    Apply(Box<PolicyArgs>),
    /// Every policy.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove a policy (admin).
    Rm { name: String },
}

/// `shoal policy apply`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// The policy's name.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Machines with this label; repeat for several [default: every machine].
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub selector: Vec<(String, String)>,
    /// An image pattern containers may use (`*` matches anything); repeat for several.
    #[arg(long = "allowed-image", value_name = "PATTERN")]
    pub allowed_images: Vec<String>,
    /// Most CPU cores a container may have.
    #[arg(long, alias = "max-cpu", value_name = "CORES")]
    pub max_cpus: Option<f64>,
    /// 512M, 2G, or MiB.
    #[arg(long, value_parser = parse_memory_mb)]
    pub max_memory: Option<u64>,
    /// e.g. 2h.
    #[arg(long, value_parser = crate::operate::parse_duration)]
    pub max_duration: Option<u64>,
    /// none, bridge or host.
    #[arg(long)]
    pub network: Option<String>,
    /// A capability containers get beyond the default set (e.g. NET_RAW); repeat.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// A capability of the default set containers lose (e.g. SETUID); repeat.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Most processes in one container.
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u32>,
    /// The user containers run as (name, uid or uid:gid), whatever the job says.
    #[arg(long)]
    pub user: Option<String>,
    /// When images are pulled, whatever the job says: never (no pulls at all),
    /// always, or missing.
    #[arg(long, value_name = "WHEN")]
    pub pull: Option<shoal_protocol::PullPolicy>,
}

/// `512M`, `2G`, `1T` or a plain number of MiB, in MiB.
pub fn parse_memory_mb(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let upper = upper.strip_suffix('B').unwrap_or(&upper);
    let (number, factor) = match upper.chars().last() {
        Some('K') => (&upper[..upper.len() - 1], 1.0 / 1024.0),
        Some('M') => (&upper[..upper.len() - 1], 1.0),
        Some('G') => (&upper[..upper.len() - 1], 1024.0),
        Some('T') => (&upper[..upper.len() - 1], 1024.0 * 1024.0),
        _ => (upper, 1.0),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected an amount like 512M or 2G, got {text:?}"))?;
    if !value.is_finite() || value <= 0.0 {
        return Err(format!("expected a positive amount, got {text:?}"));
    }
    Ok((value * factor).round() as u64)
}

pub async fn run_template(
    client: &Client,
    cmd: TemplateCmd,
    json: bool,
) -> Result<(), ClientError> {
    match cmd {
        TemplateCmd::Create {
            name,
            image,
            digest,
            cpus,
            memory,
            max_duration,
            user,
            pull,
            gpus,
            labels,
            env,
            secret_env,
            command,
        } => {
            let env = env.into_iter().collect();
            let secret_env =
                secrets_from_shell(&secret_env, &env).unwrap_or_else(|e| usage_error(e));
            let spec = TemplateRequest {
                image,
                digest,
                command,
                env,
                secret_env,
                cpus,
                memory_mb: memory,
                user,
                pull,
                gpus,
                max_duration_seconds: max_duration,
                required_labels: labels.into_iter().collect(),
            };
            let template = client.put_template(&name, &spec).await?;
            show_one(&template, json, show_templates);
        }
        TemplateCmd::Ls => show_templates(&client.templates().await?.templates, json),
        TemplateCmd::Show { name } => {
            let template = client.template(&name).await?;
            if json {
                print_json(&template);
            } else {
                let mut table = Table::new(&["VERSION", "IMAGE", "COMMAND", "CREATED", "BY"]);
                for v in &template.versions {
                    let mark = if v.version == template.current {
                        " (current)"
                    } else {
                        ""
                    };
                    table.row(vec![
                        format!("v{}{mark}", v.version),
                        v.spec.image.clone(),
                        or_dash(Some(v.spec.command.join(" ")).filter(|c| !c.is_empty())),
                        age(now_ms(), v.created_at_ms),
                        v.created_by.clone(),
                    ]);
                }
                print(&table.render());
            }
        }
        TemplateCmd::Rollback { name, version } => {
            let template = client.rollback_template(&name, version).await?;
            show_one(&template, json, show_templates);
        }
    }
    Ok(())
}

/// One thing: as itself with `--json`, else as the one row of its table.
fn show_one<T: Clone + serde::Serialize>(item: &T, json: bool, table: fn(&[T], bool)) {
    match json {
        true => print_json(item),
        false => table(std::slice::from_ref(item), false),
    }
}

fn show_templates(templates: &[TemplateView], json: bool) {
    if json {
        print_json_list("templates", templates);
        return;
    }
    let mut table = Table::new(&["NAME", "CURRENT", "VERSIONS", "IMAGE", "MAX DURATION"]);
    for t in templates {
        let current = t.current_version();
        table.row(vec![
            t.name.clone(),
            format!("v{}", t.current),
            t.versions.len().to_string(),
            or_dash(current.map(|v| v.spec.image.clone())),
            or_dash(
                current
                    .and_then(|v| v.spec.max_duration_seconds)
                    .map(|s| format!("{s}s")),
            ),
        ]);
    }
    print(&table.render());
}

/// Carries out one `shoal session` command; `Ok` carries the exit code.
pub async fn run_session(client: &Client, cmd: SessionCmd, json: bool) -> Result<u8, ClientError> {
    match cmd {
        SessionCmd::Create {
            template,
            labels,
            machine,
        } => {
            let agent_id = match machine {
                Some(m) => Some(machines::resolve(client, &m).await?.to_string()),
                None => None,
            };
            let request = CreateSessionRequest {
                template_id: template,
                required_labels: labels.into_iter().collect(),
                agent_id,
                idempotency_key: None,
            };
            show_one(&client.create_session(&request).await?, json, show_sessions);
        }
        SessionCmd::Ls {
            state,
            machine,
            org,
        } => {
            let machine = match machine {
                Some(m) => Some(machines::resolve(client, &m).await?.to_string()),
                None => None,
            };
            let params = SessionParams {
                state: state.map(|s| s.as_str().to_string()),
                machine,
                org,
            };
            show_sessions(&client.sessions(&params).await?.sessions, json);
        }
        SessionCmd::Show { id } => show_one(&client.session(id).await?, json, show_sessions),
        SessionCmd::Exec {
            id,
            exec_timeout,
            command,
        } => {
            let request = ExecRequest {
                command,
                timeout_seconds: exec_timeout,
            };
            let result = client.exec(id, &request).await?;
            if json {
                print_json(&result);
            } else {
                print(&result.stdout);
                eprint!("{}", result.stderr);
            }
            return Ok(u8::try_from(result.exit_code.clamp(0, 255)).unwrap_or(1));
        }
        SessionCmd::Attach { id } => return crate::attach::run(client, id).await,
        SessionCmd::Logs { follow, id } => {
            follow::logs(client, id, None, follow, json).await?;
        }
        SessionCmd::Terminate { id } => {
            show_one(&client.terminate_session(id).await?, json, show_sessions);
        }
    }
    Ok(0)
}

fn show_sessions(sessions: &[SessionView], json: bool) {
    if json {
        print_json_list("sessions", sessions);
        return;
    }
    let mut table = Table::new(&["ID", "STATE", "TEMPLATE", "MACHINE", "AGE", "REASON"]);
    for s in sessions {
        table.row(vec![
            s.id.to_string(),
            s.state.as_str().to_string(),
            s.template.clone(),
            or_dash(s.machine),
            age(now_ms(), s.created_at_ms),
            or_dash(s.reason.clone()),
        ]);
    }
    print(&table.render());
}

pub async fn run_policy(client: &Client, cmd: PolicyCmd, json: bool) -> Result<(), ClientError> {
    let policies = match cmd {
        PolicyCmd::Apply(args) => {
            let PolicyArgs {
                name,
                selector,
                allowed_images,
                max_cpus,
                max_memory,
                max_duration,
                network,
                cap_add,
                cap_drop,
                pids_limit,
                user,
                pull,
            } = *args;
            let spec = PolicyRequest {
                selector: selector.into_iter().collect(),
                allowed_images,
                max_cpus,
                max_memory_mb: max_memory,
                max_duration_seconds: max_duration,
                network_mode: network,
                cap_add,
                cap_drop,
                pids_limit,
                user,
                pull,
            };
            let policy = client.put_policy(&name, &spec).await?;
            show_one(&policy, json, show_policies);
            return Ok(());
        }
        PolicyCmd::Ls => client.policies().await?.policies,
        PolicyCmd::Rm { name } => client.remove_policy(&name).await?.policies,
    };
    show_policies(&policies, json);
    Ok(())
}

fn show_policies(policies: &[PolicyView], json: bool) {
    if json {
        print_json_list("policies", policies);
        return;
    }
    let mut table = Table::new(&[
        "NAME",
        "SELECTOR",
        "IMAGES",
        "MAX CPU",
        "MAX MEMORY",
        "MAX DURATION",
        "NETWORK",
    ]);
    for p in policies {
        let s = &p.spec;
        let selector: Vec<String> = s.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        table.row(vec![
            p.name.clone(),
            if selector.is_empty() {
                "all".into()
            } else {
                selector.join(",")
            },
            if s.allowed_images.is_empty() {
                "any".into()
            } else {
                s.allowed_images.join(",")
            },
            or_dash(s.max_cpus),
            or_dash(s.max_memory_mb.map(|m| format!("{m}M"))),
            or_dash(s.max_duration_seconds.map(|d| format!("{d}s"))),
            or_dash(s.network_mode.clone()),
        ]);
    }
    print(&table.render());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_takes_units() {
        assert_eq!(parse_memory_mb("512M"), Ok(512));
        assert_eq!(parse_memory_mb("2G"), Ok(2048));
        assert_eq!(parse_memory_mb("2gb"), Ok(2048));
        assert_eq!(parse_memory_mb("64"), Ok(64));
        assert!(parse_memory_mb("lots").is_err());
        assert!(parse_memory_mb("-1G").is_err());
    }
}
