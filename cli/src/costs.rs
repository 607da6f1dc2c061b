//! `shoal budget set|ls|rm` (daily limits per org) and `shoal costs` (spend, grouped).

use clap::{Args, Subcommand};
use shoal_protocol::JobKind;
use shoal_protocol::costs::{BudgetView, CostGroup, CostSheet, OnExceed, SetBudgetRequest};
use shoal_protocol::params::CostParams;

use crate::client::{Client, ClientError};
use crate::output::{Table, now_ms, print, print_json, print_json_list};

#[derive(Debug, Subcommand)]
pub enum BudgetCmd {
    /// Set an org's daily limits (UTC days); work is refused once one is met (admin).
    Set {
        /// The org.
        #[arg(long)]
        org: String,
        /// Most dollars a day.
        #[arg(long, value_name = "USD")]
        daily_usd: Option<f64>,
        /// Most runner minutes a day, all machines together.
        #[arg(long, value_name = "MINUTES")]
        daily_runner_minutes: Option<f64>,
        /// What running work does when a limit is crossed: finish (default) or stop.
        #[arg(long, value_enum, default_value = "finish")]
        on_exceed: OnExceedArg,
    },
    /// Budgets and what each org used today.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove an org's limits (admin).
    Rm {
        /// The org.
        org: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum OnExceedArg {
    Finish,
    Stop,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GroupArg {
    Day,
    Machine,
    Job,
    Session,
    Org,
}

/// `shoal costs`.
#[derive(Debug, Args)]
pub struct CostsArgs {
    /// Group by day (default), machine, job (jobs and sessions, by id), session or org.
    #[arg(long, value_enum, default_value = "day")]
    by: GroupArg,
    /// From this far back (e.g. 7d, 12h) [default: today, UTC].
    #[arg(long, value_name = "DURATION", value_parser = crate::operate::parse_duration)]
    since: Option<u64>,
    /// Only this org (an admin key sees every org without it).
    #[arg(long)]
    org: Option<String>,
}

pub async fn run_budget(client: &Client, cmd: BudgetCmd, json: bool) -> Result<(), ClientError> {
    match cmd {
        BudgetCmd::Set {
            org,
            daily_usd,
            daily_runner_minutes,
            on_exceed,
        } => {
            let request = SetBudgetRequest {
                daily_usd,
                daily_runner_minutes,
                on_exceed: match on_exceed {
                    OnExceedArg::Finish => OnExceed::Finish,
                    OnExceedArg::Stop => OnExceed::Stop,
                },
            };
            let view = client.set_budget(&org, &request).await?;
            match json {
                true => print_json(&view),
                false => show(&[view], false),
            }
        }
        BudgetCmd::Ls => show(&client.budgets().await?.budgets, json),
        BudgetCmd::Rm { org } => {
            let left = client.remove_budget(&org).await?;
            if json {
                print_json(&left);
            } else {
                print(&format!("org {org} has no budget now\n"));
            }
        }
    }
    Ok(())
}

fn show(budgets: &[BudgetView], json: bool) {
    if json {
        print_json_list("budgets", budgets);
        return;
    }
    let mut table = Table::new(&[
        "ORG",
        "SPENT TODAY",
        "DAILY USD",
        "MINUTES TODAY",
        "DAILY MINUTES",
        "ON EXCEED",
    ]);
    for b in budgets {
        table.row(vec![
            b.org.clone(),
            dollars(b.today.usd),
            b.daily_usd.map_or("-".into(), dollars),
            format!("{:.1}", b.today.runner_minutes),
            b.daily_runner_minutes
                .map_or("-".into(), |m| format!("{m}")),
            match b.on_exceed {
                OnExceed::Finish => "finish".into(),
                OnExceed::Stop => "stop".into(),
            },
        ]);
    }
    print(&table.render());
}

/// `$25.00`, `$0.001`, `$0.000252`: cents at least, and the digits a small amount needs
/// (to the micro-dollar the ledger keeps).
fn dollars(usd: f64) -> String {
    let micro = format!("{usd:.6}");
    let trimmed = micro.trim_end_matches('0');
    let decimals = trimmed.split_once('.').map_or(0, |(_, d)| d.len());
    format!("${usd:.prec$}", prec = decimals.max(2))
}

pub async fn run_costs(client: &Client, args: CostsArgs, json: bool) -> Result<(), ClientError> {
    let params = CostParams {
        by: Some(match args.by {
            GroupArg::Day => CostGroup::Day,
            GroupArg::Machine => CostGroup::Machine,
            GroupArg::Job => CostGroup::Job,
            GroupArg::Session => CostGroup::Session,
            GroupArg::Org => CostGroup::Org,
        }),
        since_ms: args
            .since
            .map(|secs| now_ms().saturating_sub(secs.saturating_mul(1000))),
        until_ms: None,
        org: args.org,
    };
    let sheet = client.costs(&params).await?;
    if json {
        print_json(&sheet);
    } else {
        print(&sheet_table(&sheet));
    }
    Ok(())
}

fn sheet_table(sheet: &CostSheet) -> String {
    let by = format!("{:?}", sheet.by).to_uppercase();
    // Rows by job say whether each is a job or a session.
    let kinds = sheet.by == CostGroup::Job;
    let mut header = vec![by.as_str()];
    if kinds {
        header.push("KIND");
    }
    header.extend(["USD", "RUN TIME USD", "REPORTED USD", "RUNNER MINUTES"]);
    let mut table = Table::new(&header);
    let rows = sheet.rows.iter().map(|row| (row, false));
    for (row, total) in rows.chain([(&sheet.total, true)]) {
        let mut cells = vec![row.key.clone()];
        if kinds {
            cells.push(match row.kind {
                _ if total => String::new(),
                Some(JobKind::Session) => "session".into(),
                _ => "job".into(),
            });
        }
        cells.extend([
            format!("{:.6}", row.usd),
            format!("{:.6}", row.runtime_usd),
            format!("{:.6}", row.reported_usd),
            format!("{:.2}", row.runner_minutes),
        ]);
        table.row(cells);
    }
    format!(
        "{} to {} (UTC)\n{}",
        sheet.since_day,
        sheet.until_day,
        table.render()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_show_cents_and_what_a_small_amount_needs() {
        assert_eq!(dollars(25.0), "$25.00");
        assert_eq!(dollars(0.5), "$0.50");
        assert_eq!(dollars(0.001), "$0.001");
        assert_eq!(dollars(0.000252), "$0.000252");
        assert_eq!(dollars(0.0), "$0.00");
    }
}
