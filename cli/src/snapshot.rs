//! `shoal snapshot save FILE` and `shoal snapshot inspect FILE`: backups of the fleet
//! state in the snapshot format (`shoal_raft::snapshot_format`).
//!
//! `save` checks what the node sent (header and SHA-256) before it writes FILE (mode
//! 0600: it holds API key and token hashes). `inspect` needs no node. A file that is not
//! a whole Shoal snapshot, damaged, truncated or foreign, is named with the reason, and
//! the command exits 1.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;
use shoal_raft::snapshot_format;
use shoal_raft::snapshot_summary::{SnapshotSummary, summarize};

use crate::client::{Client, ClientError};
use crate::output::print_json;

#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save a consistent copy of the fleet state to FILE (admin; any node).
    Save {
        /// Where to write it (replaced if it exists).
        file: PathBuf,
    },
    /// Print what a snapshot file holds after checking its SHA-256; needs no node.
    Inspect {
        /// A file from `shoal snapshot save` or a node's data_dir/backups/.
        file: PathBuf,
    },
}

/// What `save --json` prints.
#[derive(Serialize)]
struct Saved<'a> {
    file: &'a Path,
    bytes: usize,
    snapshot: SnapshotSummary,
}

/// Runs a snapshot command; `Ok` carries the exit code.
pub async fn run(client: &Client, cmd: SnapshotCmd, json: bool) -> Result<u8, ClientError> {
    match cmd {
        SnapshotCmd::Save { file } => save(client, &file, json).await,
        SnapshotCmd::Inspect { file } => Ok(inspect(&file, json)),
    }
}

async fn save(client: &Client, file: &Path, json: bool) -> Result<u8, ClientError> {
    let bytes = client.snapshot().await?;
    let opened = snapshot_format::open(&bytes).map_err(|err| ClientError::BadResponse {
        url: "/v1/snapshot".to_string(),
        detail: format!("the snapshot does not check out: {err}"),
    })?;
    if let Err(err) = write_private(file, &bytes) {
        eprintln!("error: cannot write {}: {err}", file.display());
        return Ok(1);
    }
    let snapshot = summarize(&opened);
    if json {
        print_json(&Saved {
            file,
            bytes: bytes.len(),
            snapshot,
        });
    } else {
        println!(
            "saved {} ({} bytes)\n{snapshot}",
            file.display(),
            bytes.len()
        );
    }
    Ok(0)
}

fn inspect(file: &Path, json: bool) -> u8 {
    match read_summary(file) {
        Ok(summary) if json => print_json(&summary),
        Ok(summary) => print!("{summary}"),
        Err(why) => {
            eprintln!("error: {why}");
            return 1;
        }
    }
    0
}

/// The summary of a snapshot file, or why it is not a usable one.
fn read_summary(file: &Path) -> Result<SnapshotSummary, String> {
    let bytes = fs::read(file).map_err(|err| format!("cannot read {}: {err}", file.display()))?;
    let opened = snapshot_format::open(&bytes).map_err(|err| {
        format!(
            "{} is not a usable Shoal fleet snapshot: {err}",
            file.display()
        )
    })?;
    Ok(summarize(&opened))
}

/// Writes `bytes` to `path` through a temporary file beside it, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_file_that_is_no_snapshot_is_named_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let foreign = dir.path().join("notes.txt");
        fs::write(&foreign, "hello").unwrap();
        let err = read_summary(&foreign).unwrap_err();
        assert!(
            err.contains("notes.txt is not a usable Shoal fleet snapshot"),
            "{err}"
        );
        let missing = read_summary(&dir.path().join("nope.snap")).unwrap_err();
        assert!(missing.starts_with("cannot read"), "{missing}");
    }

    #[test]
    fn saved_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.snap");
        write_private(&path, b"one").unwrap();
        write_private(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
