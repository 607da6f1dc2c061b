//! `shoal drain`, `shoal undrain` and `shoal killswitch`: steering the whole fleet.

use std::collections::HashMap;

use clap::{Args, Subcommand};
use shoal_protocol::batch::BatchAction;
use shoal_protocol::operate::{DrainRequest, KillSwitchRequest, KillSwitchState};
use shoal_protocol::{Labels, MachineId};

use crate::client::{Client, ClientError};
use crate::machines;
use crate::output::{age, now_ms, print, print_json};

/// Which machines: named ones, a label selector, or all.
#[derive(Debug, Args)]
pub struct Selection {
    /// Machines by full id or name.
    machines: Vec<String>,
    /// Only machines with this label; repeat for several (a bare KEY means KEY=true).
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::parse_label)]
    selector: Vec<(String, String)>,
    /// Every machine (narrowed by --selector).
    #[arg(long)]
    all: bool,
}

/// `shoal drain`.
#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    select: Selection,
    /// Only machines running nothing.
    #[arg(long)]
    idle_only: bool,
    /// After this long (e.g. 90s, 10m, 2h), work still there runs elsewhere.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    deadline: Option<u64>,
}

/// `shoal killswitch`.
#[derive(Debug, Subcommand)]
pub enum KillSwitchCmd {
    /// Whether dispatch is stopped, by whom and why.
    Status,
    /// Stop all dispatch fleet-wide; queued jobs wait.
    On {
        #[arg(long)]
        reason: String,
        /// Who is turning it on [default: $USER].
        #[arg(long)]
        actor: Option<String>,
        /// Also stop every job running now (it ends cancelled); queued jobs wait.
        #[arg(long)]
        terminate: bool,
    },
    /// Let dispatch go on.
    Off,
}

/// `90s`, `10m`, `2h` or `1d`, in seconds. A bare number is refused: the unit is said.
pub(crate) fn parse_duration(text: &str) -> Result<u64, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 10m or 2h"))?;
    let scale = match unit {
        "" => {
            return Err(format!(
                "{text:?} needs a unit: {text}s, {text}m, {text}h or {text}d"
            ));
        }
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    Ok(number.saturating_mul(scale))
}

/// Runs `shoal drain` (`Some`) or `shoal undrain` (`None`).
pub async fn run_drain(
    client: &Client,
    select: Selection,
    drain_args: Option<(bool, Option<u64>)>,
    json: bool,
) -> Result<(), ClientError> {
    let (idle_only, deadline) = drain_args.unwrap_or((false, None));
    let request = drain_request(
        select.machines,
        select.selector,
        idle_only,
        select.all,
        deadline,
    )
    .unwrap_or_else(|e| crate::usage_error(e));
    drain(client, drain_args.is_some(), &request, json).await
}

/// `shoal batch`.
#[derive(Debug, Subcommand)]
pub enum BatchCmd {
    /// Restart the sessions running on the machines, in place.
    Restart(Selection),
    /// Pull the images of the templates and of the sessions on the machines (with the
    /// registries' credentials), then restart the sessions whose image moved onto it.
    Update(Selection),
    /// Check what runs on the machines against the policies that select them.
    ApplyConfig(Selection),
}

/// Runs `shoal batch` and prints each machine's outcome; exits 1 if one failed.
pub async fn run_batch(client: &Client, cmd: BatchCmd, json: bool) -> Result<u8, ClientError> {
    let (action, select) = match cmd {
        BatchCmd::Restart(s) => (BatchAction::Restart, s),
        BatchCmd::Update(s) => (BatchAction::Update, s),
        BatchCmd::ApplyConfig(s) => (BatchAction::ApplyConfig, s),
    };
    let request = drain_request(select.machines, select.selector, false, select.all, None)
        .unwrap_or_else(|e| crate::usage_error(e));
    let report = client.batch(action, &request).await?;
    if json {
        print_json(&report);
    } else {
        for outcome in &report.machines {
            let status = if outcome.ok { "ok" } else { "FAILED" };
            print(&format!(
                "{} ({}): {status}: {}\n",
                outcome.name, outcome.machine, outcome.detail
            ));
        }
    }
    Ok(u8::from(report.machines.iter().any(|m| !m.ok)))
}

impl DrainArgs {
    pub fn into_parts(self) -> (Selection, (bool, Option<u64>)) {
        (self.select, (self.idle_only, self.deadline))
    }
}

/// Runs `shoal killswitch`.
pub async fn run_kill_switch(
    client: &Client,
    cmd: KillSwitchCmd,
    json: bool,
) -> Result<(), ClientError> {
    let request = match cmd {
        KillSwitchCmd::Status => None,
        KillSwitchCmd::On {
            reason,
            actor,
            terminate,
        } => Some(KillSwitchRequest {
            on: true,
            reason: Some(reason),
            actor: actor.or_else(|| std::env::var("USER").ok()),
            terminate,
        }),
        KillSwitchCmd::Off => Some(KillSwitchRequest {
            on: false,
            reason: None,
            actor: None,
            terminate: false,
        }),
    };
    kill_switch(client, request, json).await
}

/// Drains (`drain`) or undrains the selected machines and says which changed.
async fn drain(
    client: &Client,
    drain: bool,
    request: &DrainRequest,
    json: bool,
) -> Result<(), ClientError> {
    let answer = client.set_drain(drain, request).await?;
    if json {
        print_json(&answer);
        return Ok(());
    }
    if answer.machines.is_empty() {
        let verb = if drain { "drained" } else { "undrained" };
        print(&format!("no machine matched; nothing {verb}"));
        return Ok(());
    }
    let names = machines::names(client).await?;
    for id in &answer.machines {
        let unchanged = answer.unchanged.contains(id);
        print(&drain_line(drain, &name_of(&names, *id), unchanged));
    }
    Ok(())
}

/// One machine's line: what a drain or undrain changed on it.
fn drain_line(drain: bool, name: &str, unchanged: bool) -> String {
    match (drain, unchanged) {
        (true, true) => format!("{name}: was draining already"),
        (true, false) => format!("{name}: draining"),
        (false, true) => format!("{name}: was not drained"),
        (false, false) => format!("{name}: undrained"),
    }
}

fn name_of(names: &HashMap<MachineId, String>, id: MachineId) -> String {
    names
        .get(&id)
        .map_or_else(|| id.to_string(), |name| format!("{name} ({id})"))
}

/// The request for `shoal drain|undrain [MACHINE...] [--selector k=v] [--idle-only] [--all]`.
fn drain_request(
    machines: Vec<String>,
    selector: Vec<(String, String)>,
    idle_only: bool,
    all: bool,
    deadline_seconds: Option<u64>,
) -> Result<DrainRequest, String> {
    if machines.is_empty() && selector.is_empty() && !idle_only && !all {
        return Err(
            "select machines: name them, or give --selector KEY=VALUE or --all (drain also takes --idle-only)"
                .into(),
        );
    }
    let mut labels = Labels::new();
    for (key, value) in &selector {
        labels.insert(key, value).map_err(|e| e.to_string())?;
    }
    Ok(DrainRequest {
        machines,
        selector: labels,
        idle_only,
        all,
        deadline_seconds,
    })
}

/// `shoal killswitch status|on|off`.
async fn kill_switch(
    client: &Client,
    request: Option<KillSwitchRequest>,
    json: bool,
) -> Result<(), ClientError> {
    let state = match request {
        Some(request) => client.set_kill_switch(&request).await?,
        None => client.kill_switch().await?,
    };
    if json {
        print_json(&state);
    } else {
        print(&describe(&state));
    }
    Ok(())
}

fn describe(state: &KillSwitchState) -> String {
    match state.switch() {
        Some(switch) => format!(
            "kill switch ON: dispatch is stopped fleet-wide\n  reason: {}\n  by:     {}\n  since:  {}",
            switch.reason,
            switch.actor,
            age(now_ms(), switch.since_ms)
        ),
        None => "kill switch off: dispatch runs".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_of_nothing_names_the_flags() {
        let err = drain_request(Vec::new(), Vec::new(), false, false, None).unwrap_err();
        assert!(err.contains("--selector KEY=VALUE or --all"), "{err}");
        assert!(drain_request(Vec::new(), Vec::new(), true, false, None).is_ok());
    }

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert!(
            parse_duration("90")
                .unwrap_err()
                .contains("needs a unit: 90s, 90m")
        );
        assert_eq!(parse_duration("10m"), Ok(600));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert!(parse_duration("10 m").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5w").unwrap_err().contains("unit"));
    }
}
