//! `shoal audit`: who changed what, newest first.

use shoal_protocol::audit::AuditView;
use shoal_protocol::params::AuditParams;

use crate::client::{Client, ClientError};
use crate::machines;
use crate::output::{Table, age, now_ms, print, print_json};

/// `shoal audit [--machine M] [--actor KEY] [--limit N]`.
pub async fn run(
    client: &Client,
    machine: Option<String>,
    actor: Option<String>,
    limit: Option<u32>,
    json: bool,
) -> Result<(), ClientError> {
    let machine = match machine {
        Some(machine) => Some(machines::resolve(client, &machine).await?.to_string()),
        None => None,
    };
    let params = AuditParams {
        machine,
        actor,
        limit: limit.map(|n| n as usize),
        ..AuditParams::default()
    };
    let list = client.audit(&params).await?;
    if json {
        print_json(&list);
    } else {
        print(&table(&list.entries));
    }
    Ok(())
}

fn table(entries: &[AuditView]) -> String {
    let now = now_ms();
    let mut table = Table::new(&["SEQ", "WHEN", "ACTOR", "ACTION", "TARGET", "OUTCOME"]);
    for e in entries {
        table.row(vec![
            e.seq.to_string(),
            age(now, e.at_ms),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            e.outcome.clone(),
        ]);
    }
    table.render()
}
