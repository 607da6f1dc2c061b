//! `shoald restore FILE --data-dir D`: a new fleet from a backup, offline.
//!
//! ```text
//!  FILE ─▶ open (header, SHA-256, decode) ─▶ D empty? (or --force: raft/ set aside)
//!       ─▶ identity in D (made if missing) ─▶ for_new_group(me) ─▶ D/raft/snapshot.bin
//!  then `shoald --data-dir D`: a one-node Raft group of itself holding the state; other
//!  machines join with a registration token
//! ```
//!
//! Nothing in D changes until the file has been checked whole, so a damaged, truncated
//! or foreign file leaves D as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shoal_protocol::{MachineId, MemberAddr};
use shoal_raft::snapshot_summary::{self, SnapshotSummary};
use shoal_raft::{snapshot_format, snapshot_restore};

use crate::config::Config;
use crate::identity;
use crate::node::{RAFT_DIR, now_ms};

/// What a restore did.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// What the backup holds.
    pub summary: SnapshotSummary,
    /// This machine: the only voter of the new group.
    pub machine: MachineId,
    /// Machines of the old fleet kept as OFFLINE records and retired.
    pub retired: Vec<MachineId>,
    /// Where `--force` moved the Raft state that was there.
    pub set_aside: Option<PathBuf>,
}

/// Reads and checks a backup file: its header, its checksum and its contents.
pub fn open_backup(file: &Path) -> anyhow::Result<snapshot_format::Opened> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    snapshot_format::open(&bytes)
        .with_context(|| format!("{} is not a usable Shoal fleet snapshot", file.display()))
}

/// Restores the backup in `file` into `config.data_dir` as the start of a new fleet
/// whose only member is this machine, reachable at the addresses `config` gives.
/// Refuses a data directory that holds anything unless `force`; with `force` the Raft
/// state there is moved aside (`raft.before-restore-<unix time>`, and its gossip keyring
/// likewise) and the machine's identity and secret are kept.
pub fn restore(file: &Path, config: &Config, force: bool) -> anyhow::Result<RestoreReport> {
    let opened = open_backup(file)?;
    let summary = snapshot_summary::summarize(&opened);
    let dir = &config.data_dir;
    let held = entries(dir)?;
    if !held.is_empty() && !force {
        bail!(
            "data_dir: {} is not empty (it holds {}); restore into an empty directory, or \
             pass --force to set its Raft state aside",
            dir.display(),
            held.join(", ")
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let raft_dir = dir.join(RAFT_DIR);
    let set_aside = if raft_dir.exists() {
        let aside = dir.join(format!("{RAFT_DIR}.before-restore-{}", now_ms() / 1000));
        std::fs::rename(&raft_dir, &aside).with_context(|| {
            format!("cannot move {} to {}", raft_dir.display(), aside.display())
        })?;
        Some(aside)
    } else {
        None
    };
    // The gossip keys of the fleet this directory served go with its Raft state: the
    // restored group starts over at generation 0 (see `for_new_group`).
    let keyring = dir.join(crate::gossip_keys::file::KEYRING_FILE);
    if keyring.exists() {
        let aside = keyring.with_extension(format!("keyring.before-restore-{}", now_ms() / 1000));
        std::fs::rename(&keyring, &aside)
            .with_context(|| format!("cannot move {} to {}", keyring.display(), aside.display()))?;
    }
    let keypair = identity::load_or_create_keypair(dir)?;
    let peer_id = keypair.public().to_peer_id();
    let machine = identity::machine_id(&peer_id);
    let at = |port: u16| std::net::SocketAddr::new(config.advertise, port).to_string();
    let addr = MemberAddr {
        peer_id: peer_id.to_string(),
        p2p_addr: at(config.p2p_port),
        api_addr: at(config.api_port),
        gossip_addr: at(config.gossip_port),
    };
    let restored = snapshot_restore::for_new_group(opened.snapshot, machine, addr, now_ms());
    snapshot_restore::write_first_snapshot(&raft_dir, &restored.snapshot)?;
    Ok(RestoreReport {
        summary,
        machine,
        retired: restored.retired,
        set_aside,
    })
}

/// The names in `dir`, sorted; none when it does not exist.
fn entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    match std::fs::read_dir(dir) {
        Ok(read) => {
            let mut names: Vec<String> = read
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            Ok(names)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", dir.display())),
    }
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.summary)?;
        if let Some(aside) = &self.set_aside {
            writeln!(
                f,
                "\nthe Raft state that was there is now in {}",
                aside.display()
            )?;
        }
        writeln!(
            f,
            "\nrestored: start shoald on this data directory; machine {} is the only voter \
             of a new Raft group holding this state",
            self.machine
        )?;
        if !self.retired.is_empty() {
            writeln!(
                f,
                "{} machine(s) of the old fleet stay as OFFLINE records, retired: they \
                 come back only through `shoal token create` and `shoald join --token` \
                 with a fresh data directory",
                self.retired.len()
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn config(dir: &Path) -> Config {
        Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn a_foreign_or_damaged_file_is_named_and_the_directory_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let foreign = tmp.path().join("photo.jpg");
        std::fs::write(&foreign, b"\xff\xd8\xff\xe0 not a snapshot").unwrap();
        let err = format!(
            "{:#}",
            restore(&foreign, &config(&data), false).unwrap_err()
        );
        assert!(
            err.contains("photo.jpg is not a usable Shoal fleet snapshot"),
            "{err}"
        );
        assert!(err.contains("not a Shoal frame"), "{err}");
        assert!(!data.exists(), "nothing was made");
    }

    #[test]
    fn a_used_data_directory_needs_force_and_keeps_the_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let backup = tmp.path().join("fleet.snap");
        let snapshot: shoal_raft::StoredSnapshot = shoal_raft::StoredSnapshot {
            meta: openraft::SnapshotMeta {
                last_log_id: Some(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(1, MachineId(1)),
                    5,
                )),
                last_membership: Default::default(),
                snapshot_id: "1-5-copy".into(),
            },
            state: Default::default(),
        };
        std::fs::write(&backup, snapshot_format::encode(&snapshot).unwrap()).unwrap();
        std::fs::create_dir_all(data.join(RAFT_DIR)).unwrap();
        let before = identity::load_or_create_keypair(&data).unwrap();

        let err = format!("{:#}", restore(&backup, &config(&data), false).unwrap_err());
        assert!(err.starts_with("data_dir:"), "{err}");
        assert!(err.contains("node.key, raft"), "{err}");

        let report = restore(&backup, &config(&data), true).unwrap();
        let aside = report.set_aside.expect("the old raft state set aside");
        assert!(aside.is_dir());
        assert!(
            data.join(RAFT_DIR)
                .join(shoal_raft::SNAPSHOT_FILE)
                .is_file()
        );
        assert_eq!(
            report.machine,
            identity::machine_id(&before.public().to_peer_id())
        );
    }
}
