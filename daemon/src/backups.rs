//! Scheduled backups: every `snapshot_every` each node writes the fleet state it has
//! applied to `data_dir/backups/fleet-<unix time>.snap` (mode 0600, the format of
//! `shoal snapshot save`) and keeps the newest `snapshot_keep`.
//!
//! A node's own copy needs no read barrier: it is labelled with the log id it was applied
//! to, so it is a consistent (if slightly older) point in time. A tick with nothing
//! applied since the last backup writes nothing.

use std::fs::{self, OpenOptions};
use std::io::BufWriter;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use shoal_raft::snapshot_format;
use tokio::sync::watch;

use crate::node::{Node, now_ms};

/// The directory inside the data directory that holds the backups.
pub const BACKUP_DIR: &str = "backups";

const PREFIX: &str = "fleet-";
const SUFFIX: &str = ".snap";

/// `fleet-<unix seconds>.snap`.
pub fn backup_name(unix_secs: u64) -> String {
    format!("{PREFIX}{unix_secs}{SUFFIX}")
}

/// The time in a backup's file name; `None` for any other file.
pub fn backup_time(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

/// Which of `names` go so that the newest `keep` backups stay; other files are never named.
pub fn to_remove<'a>(names: impl IntoIterator<Item = &'a str>, keep: usize) -> Vec<&'a str> {
    let mut backups: Vec<(u64, &str)> = names
        .into_iter()
        .filter_map(|name| Some((backup_time(name)?, name)))
        .collect();
    backups.sort_unstable_by(|a, b| b.cmp(a));
    backups
        .into_iter()
        .skip(keep)
        .map(|(_, name)| name)
        .collect()
}

/// Writes the backup taken at `unix_secs` in `dir` (made 0700 if missing) with `write`,
/// which encodes into the file as it goes: a temporary file, fsynced, then renamed into
/// place. Returns its path and what `write` says it wrote.
pub fn write_backup(
    dir: &Path,
    unix_secs: u64,
    write: impl FnOnce(&mut fs::File) -> std::io::Result<u64>,
) -> std::io::Result<(PathBuf, u64)> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = backup_name(unix_secs);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = write(&mut file)?;
    file.sync_all()?;
    let path = dir.join(name);
    fs::rename(&tmp, &path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok((path, written))
}

/// Deletes all but the newest `keep` backups in `dir`; returns what it deleted.
pub fn prune(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let mut removed = Vec::new();
    for name in to_remove(names.iter().map(String::as_str), keep) {
        let path = dir.join(name);
        fs::remove_file(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// Writes a backup every `snapshot_every` until shutdown; idle when `snapshot_keep` is 0.
pub async fn backup_loop(node: Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    let (every, keep) = (node.config.snapshot_every, node.config.snapshot_keep);
    if keep == 0 {
        let _ = shutdown.wait_for(|stop| *stop).await;
        return;
    }
    let dir = node.config.data_dir.join(BACKUP_DIR);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_index = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        let Some(copy) = node.fleet.copy() else {
            continue;
        };
        let index = copy.meta.last_log_id.map(|id| id.index);
        if index == last_index {
            tracing::debug!(
                ?index,
                "no fleet backup: nothing applied since the last one"
            );
            continue;
        }
        let target = dir.clone();
        let written = tokio::task::spawn_blocking(move || {
            let taken_at_ms = now_ms();
            let (path, bytes) = write_backup(&target, taken_at_ms / 1000, |file| {
                snapshot_format::encode_to(&copy, taken_at_ms, BufWriter::new(file))
            })?;
            let removed = prune(&target, keep)?;
            Ok::<_, std::io::Error>((path, bytes, removed.len()))
        })
        .await;
        match written {
            Ok(Ok((path, bytes, removed))) => {
                last_index = index;
                tracing::info!(path = %path.display(), ?index, bytes, removed, "fleet backup written");
            }
            Ok(Err(err)) => tracing::warn!(dir = %dir.display(), %err, "fleet backup failed"),
            Err(err) => tracing::warn!(%err, "fleet backup task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn names_carry_the_time_and_nothing_else_is_a_backup() {
        assert_eq!(backup_name(1_700_000_000), "fleet-1700000000.snap");
        assert_eq!(backup_time("fleet-1700000000.snap"), Some(1_700_000_000));
        for other in [
            "fleet-.snap",
            "fleet-12.snap.tmp",
            ".fleet-12.snap.tmp",
            "notes.txt",
            "fleet-x.snap",
        ] {
            assert_eq!(backup_time(other), None, "{other}");
        }
    }

    #[test]
    fn the_newest_are_kept_and_other_files_left_alone() {
        let names = [
            "fleet-30.snap",
            "fleet-100.snap",
            "notes.txt",
            "fleet-9.snap",
            "fleet-200.snap",
        ];
        assert_eq!(to_remove(names, 2), vec!["fleet-30.snap", "fleet-9.snap"]);
        assert!(to_remove(names, 4).is_empty());
        assert_eq!(to_remove(names, 0).len(), 4);
    }

    #[test]
    fn backups_are_private_and_pruned_on_disk() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(BACKUP_DIR);
        for secs in [10, 20, 30] {
            write_backup(&dir, secs, |file| {
                file.write_all(b"bytes")?;
                Ok(5)
            })
            .unwrap();
        }
        fs::write(dir.join("keep-me.txt"), b"x").unwrap();
        let mode = fs::metadata(dir.join("fleet-30.snap"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let removed = prune(&dir, 2).unwrap();
        assert_eq!(removed, vec![dir.join("fleet-10.snap")]);
        let mut left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["fleet-20.snap", "fleet-30.snap", "keep-me.txt"]);
    }
}
