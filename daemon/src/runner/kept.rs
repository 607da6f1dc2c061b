//! Final reports a stopping node could not send: kept in `<data_dir>/reports/`, one
//! versioned frame per attempt, and sent once the node runs again.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shoal_protocol::{JobId, JobReport, frame};

const DIR: &str = "reports";

/// One report on its way to the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptReport {
    pub job: JobId,
    pub attempt: u32,
    pub report: JobReport,
}

fn path(data_dir: &Path, job: JobId, attempt: u32) -> PathBuf {
    data_dir.join(DIR).join(format!("{}-{attempt}.bin", job.0))
}

/// Writes the report down, atomically, to be sent after a restart.
pub fn keep(data_dir: &Path, kept: &KeptReport) -> std::io::Result<()> {
    let path = path(data_dir, kept.job, kept.attempt);
    std::fs::create_dir_all(path.parent().expect("a report path has a directory"))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, frame::encode(kept).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, &path)
}

/// Every report kept by an earlier run; an unreadable file is named in the log and left.
pub fn load_all(data_dir: &Path) -> Vec<KeptReport> {
    let Ok(entries) = std::fs::read_dir(data_dir.join(DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "bin"))
        .filter_map(|entry| {
            let bytes = std::fs::read(entry.path()).ok()?;
            frame::decode(&bytes)
                .inspect_err(|err| {
                    let file = entry.path();
                    tracing::warn!(file = %file.display(), %err, "a kept job report is unreadable");
                })
                .ok()
        })
        .collect()
}

/// Forgets a kept report: the log has it, or the attempt is no longer this machine's.
pub fn forget(data_dir: &Path, job: JobId, attempt: u32) {
    let _ = std::fs::remove_file(path(data_dir, job, attempt));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_report_reads_back_until_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_all(dir.path()).is_empty(), "nothing kept yet");
        let kept = KeptReport {
            job: JobId(7),
            attempt: 2,
            report: JobReport::Exited { exit_code: 3 },
        };
        keep(dir.path(), &kept).unwrap();
        std::fs::write(dir.path().join(DIR).join("8-1.bin"), b"garbage").unwrap();
        assert_eq!(load_all(dir.path()), vec![kept]);
        forget(dir.path(), JobId(7), 2);
        assert!(load_all(dir.path()).is_empty());
    }
}
