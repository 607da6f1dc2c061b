//! Fleet settings kept in the log, so every leader acts alike: today the job retention.
//!
//! A setting the fleet has not set (`None`) falls back to the config of whichever node
//! leads, as before settings were in the log.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Shortest job retention accepted: the leader looks for finished jobs once a minute.
pub const MIN_JOB_RETENTION_SECONDS: u64 = 60;
/// Longest job retention accepted: a year.
pub const MAX_JOB_RETENTION_SECONDS: u64 = 365 * 24 * 3600;

/// The settings every node reads from the log (`FleetState::settings`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSettings {
    /// How long finished jobs (and their saved output) are kept, in seconds; `None`: each
    /// leader's own `job_retention` config.
    #[serde(default)]
    pub job_retention_seconds: Option<u64>,
}

impl FleetSettings {
    /// Checks every setting; the error names the field and the range it takes.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(seconds) = self.job_retention_seconds {
            let range = MIN_JOB_RETENTION_SECONDS..=MAX_JOB_RETENTION_SECONDS;
            if !range.contains(&seconds) {
                return Err(format!(
                    "job_retention_seconds must be between {MIN_JOB_RETENTION_SECONDS} (1 minute) \
                     and {MAX_JOB_RETENTION_SECONDS} (365 days), got {seconds}"
                ));
            }
        }
        Ok(())
    }

    /// The job retention in force: the fleet's setting, else `configured`.
    pub fn job_retention(&self, configured: Duration) -> Duration {
        self.job_retention_seconds
            .map_or(configured, Duration::from_secs)
    }
}

/// The fleet's settings as the API answers them (`FleetSettingsView::from`, the one
/// conversion); a setting not set (`null`) follows each leader's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FleetSettingsView {
    /// How long finished jobs (and their saved output) are kept, in seconds.
    #[serde(default)]
    pub job_retention_seconds: Option<u64>,
}

impl From<&FleetSettings> for FleetSettingsView {
    fn from(settings: &FleetSettings) -> Self {
        let FleetSettings {
            job_retention_seconds,
        } = settings;
        FleetSettingsView {
            job_retention_seconds: *job_retention_seconds,
        }
    }
}

/// `PUT /v1/fleet/settings`: the fleet's settings as a whole; a field left out (or `null`)
/// goes back to each leader's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FleetSettingsRequest {
    /// How long finished jobs are kept, in seconds (60 to 31536000).
    #[serde(default)]
    pub job_retention_seconds: Option<u64>,
}

impl FleetSettingsRequest {
    /// The settings asked for, checked.
    pub fn into_settings(self) -> Result<FleetSettings, String> {
        let settings = FleetSettings {
            job_retention_seconds: self.job_retention_seconds,
        };
        settings.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(seconds: Option<u64>) -> FleetSettingsRequest {
        FleetSettingsRequest {
            job_retention_seconds: seconds,
        }
    }

    #[test]
    fn retention_out_of_range_is_refused_naming_the_field() {
        for seconds in [0, 59, MAX_JOB_RETENTION_SECONDS + 1] {
            let err = retention(Some(seconds)).into_settings().unwrap_err();
            assert!(err.starts_with("job_retention_seconds must be"), "{err}");
            assert!(err.ends_with(&format!("got {seconds}")), "{err}");
        }
        for seconds in [60, 48 * 3600, MAX_JOB_RETENTION_SECONDS] {
            assert!(retention(Some(seconds)).into_settings().is_ok());
        }
        assert_eq!(
            retention(None).into_settings(),
            Ok(FleetSettings::default())
        );
    }

    #[test]
    fn the_fleet_setting_wins_over_the_config() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(FleetSettings::default().job_retention(day), day);
        let two_days = FleetSettings {
            job_retention_seconds: Some(48 * 3600),
        };
        assert_eq!(two_days.job_retention(day), 2 * day);
    }

    #[test]
    fn requests_with_unknown_fields_are_refused() {
        let typo = serde_json::from_str::<FleetSettingsRequest>(r#"{"job_retention": 60}"#);
        assert!(typo.is_err());
        let stored: FleetSettings = serde_json::from_str(r#"{"later_field": 1}"#).unwrap();
        assert_eq!(stored, FleetSettings::default());
    }
}
