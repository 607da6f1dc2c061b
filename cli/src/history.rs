//! `shoal machines history M [--since 10m]`: a machine's recent CPU, load and memory, one
//! line per sample, as the machine itself kept them.

use shoal_protocol::UnixMillis;
use shoal_protocol::api::MachineHistory;

use crate::client::{Client, ClientError};
use crate::machines::resolve;
use crate::output::{Table, human_bytes, note, now_ms, percent, print, print_json};

/// `shoal machines history`: the samples of the last `since_secs` (all kept without).
pub async fn history(
    client: &Client,
    machine: &str,
    since_secs: Option<u64>,
    json: bool,
) -> Result<(), ClientError> {
    let id = resolve(client, machine).await?;
    let since_ms = since_secs.map(|secs| now_ms().saturating_sub(secs.saturating_mul(1000)));
    let history = client.machine_history(id, since_ms).await?;
    if json {
        print_json(&history);
    } else if history.samples.is_empty() {
        note(&format!(
            "machine {} has kept no samples in that time",
            history.machine
        ));
    } else {
        print(&table(&history));
    }
    Ok(())
}

/// The `machines history` table, oldest sample first.
pub fn table(history: &MachineHistory) -> String {
    let mut table = Table::new(&["TIME (UTC)", "CPU", "LOAD", "MEM"]);
    for s in &history.samples {
        table.row(vec![
            clock(s.at_ms),
            percent(s.cpu_usage),
            format!("{:.2}", s.load),
            format!(
                "{}/{}",
                human_bytes(s.memory_used_bytes),
                human_bytes(s.memory_total_bytes)
            ),
        ]);
    }
    table.render()
}

/// The UTC time of day, `HH:MM:SS`: the history spans an hour, so no date is needed.
fn clock(at_ms: UnixMillis) -> String {
    let secs = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_protocol::MachineId;
    use shoal_protocol::api::ResourceSample;

    #[test]
    fn table_has_a_line_per_sample() {
        // 2023-11-14 22:13:20 UTC.
        let t0: UnixMillis = 1_700_000_000_000;
        let sample = |at_ms, cpu_usage, load| ResourceSample {
            at_ms,
            cpu_usage,
            load,
            memory_used_bytes: 3_328_599_654,
            memory_total_bytes: 16_750_372_454,
            disk_free_bytes: 120 << 30,
        };
        let history = MachineHistory {
            machine: MachineId(1),
            interval_ms: 5_000,
            samples: vec![sample(t0, 0.25, 0.5), sample(t0 + 5_250, 1.0, 1.25)],
        };
        assert_eq!(
            table(&history),
            "TIME (UTC)  CPU   LOAD  MEM\n\
             22:13:20    25%   0.50  3.1G/15.6G\n\
             22:13:25    100%  1.25  3.1G/15.6G\n"
        );
    }
}
