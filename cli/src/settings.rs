//! `shoal fleet settings`: show the settings every leader follows alike, and `set` them
//! (admin; the fleet must be at protocol level 2).

use clap::Subcommand;
use shoal_protocol::settings::{FleetSettingsRequest, FleetSettingsView};

use crate::client::{Client, ClientError};
use crate::operate::parse_duration;
use crate::output::{key_values, print, print_json};

/// `shoal fleet settings set`.
#[derive(Debug, Subcommand)]
pub enum SettingsCmd {
    /// Change settings; those not given stay as they are.
    Set {
        /// Keep finished jobs and their output this long (1m to 365d), e.g. 48h; `default`
        /// gives it back to each leader's `job_retention` config.
        #[arg(long, value_name = "DURATION|default", value_parser = parse_setting)]
        job_retention: Option<Setting>,
    },
}

/// A duration to set, in seconds, or `None` to fall back to the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting(pub Option<u64>);

fn parse_setting(text: &str) -> Result<Setting, String> {
    if text == "default" {
        return Ok(Setting(None));
    }
    parse_duration(text).map(|seconds| Setting(Some(seconds)))
}

/// Runs `shoal fleet settings [set ...]`.
pub async fn run(
    client: &Client,
    action: Option<SettingsCmd>,
    json: bool,
) -> Result<(), ClientError> {
    let settings = match action {
        None => client.fleet_settings().await?,
        Some(SettingsCmd::Set { job_retention }) => {
            if job_retention.is_none() {
                crate::usage_error("give a setting to change, such as --job-retention 48h");
            }
            // PUT replaces them all: start from the settings as they are.
            let mut request = request_of(client.fleet_settings().await?);
            if let Some(Setting(seconds)) = job_retention {
                request.job_retention_seconds = seconds;
            }
            client.set_fleet_settings(&request).await?
        }
    };
    if json {
        print_json(&settings);
    } else {
        print(&block(&settings));
    }
    Ok(())
}

/// The request that leaves `settings` as they are.
fn request_of(settings: FleetSettingsView) -> FleetSettingsRequest {
    FleetSettingsRequest {
        job_retention_seconds: settings.job_retention_seconds,
    }
}

/// The settings as `key: value` lines.
pub fn block(settings: &FleetSettingsView) -> String {
    let retention = match settings.job_retention_seconds {
        Some(seconds) => exact(seconds),
        None => "default (each leader's job_retention config)".to_string(),
    };
    key_values(&[("job retention", retention)])
}

/// Seconds in the largest unit that divides them evenly: `90s`, `36h`, `2d`.
fn exact(seconds: u64) -> String {
    let units = [(86_400, "d"), (3600, "h"), (60, "m")];
    units
        .iter()
        .find(|(size, _)| seconds > 0 && seconds.is_multiple_of(*size))
        .map_or_else(
            || format!("{seconds}s"),
            |(size, unit)| format!("{}{unit}", seconds / size),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_show_the_exact_retention_or_the_default() {
        let set = |seconds| FleetSettingsView {
            job_retention_seconds: Some(seconds),
        };
        assert_eq!(block(&set(48 * 3600)), "job retention:  2d\n");
        assert_eq!(block(&set(36 * 3600)), "job retention:  36h\n");
        assert_eq!(block(&set(90)), "job retention:  90s\n");
        assert!(block(&FleetSettingsView::default()).contains("default"));
    }

    #[test]
    fn retention_takes_a_duration_or_default() {
        assert_eq!(parse_setting("48h"), Ok(Setting(Some(48 * 3600))));
        assert_eq!(parse_setting("default"), Ok(Setting(None)));
        assert!(parse_setting("soon").is_err());
    }
}
