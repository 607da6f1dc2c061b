//! Who a process run runs as, and where: an unprivileged user (when shoald is root) in a
//! scratch directory of its own, so a job reaches neither the data directory (0700,
//! shoald's) nor another run's files.
//!
//! ```text
//!  <temp>/shoal-runs/             0711, shoald's user: others pass through, list nothing
//!  <temp>/shoal-runs/<job>.<attempt>-<random>/   0700, the run's user: cwd, HOME, TMPDIR
//! ```
//!
//! The scratch directory is removed when the run ends.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::unistd::{Uid, User};

/// The user process runs take when shoald is root and the config names none.
pub const DEFAULT_PROCESS_USER: &str = "nobody";

/// A user to run as, by name and ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The user process runs take: `user` (default [`DEFAULT_PROCESS_USER`]) when shoald
    /// is root. A shoald that is not root cannot switch user: `None`, its runs are its
    /// own user's, and naming another user is an error. Root is refused: a run as root
    /// reads the data directory.
    pub fn resolve(user: Option<&str>) -> anyhow::Result<Option<RunAs>> {
        let me = Uid::effective();
        if !me.is_root() {
            let own = User::from_uid(me).ok().flatten().map(|u| u.name);
            return match user {
                Some(name) if Some(name) != own.as_deref() => bail!(
                    "process_user {name}: shoald runs as {}, not root, so its process jobs run as that user; leave process_user out or run shoald as root",
                    own.as_deref().unwrap_or("an unnamed user")
                ),
                _ => Ok(None),
            };
        }
        let name = user.unwrap_or(DEFAULT_PROCESS_USER);
        let found = User::from_name(name)
            .with_context(|| format!("process_user {name}: looking the user up"))?
            .with_context(|| format!("process_user {name}: no such user on this machine"))?;
        if found.uid.is_root() {
            bail!(
                "process_user {name} is root: name an unprivileged user (default {DEFAULT_PROCESS_USER})"
            );
        }
        Ok(Some(RunAs {
            name: name.to_string(),
            uid: found.uid.as_raw(),
            gid: found.gid.as_raw(),
        }))
    }
}

/// Where scratch directories of process runs are made.
pub fn scratch_root() -> PathBuf {
    std::env::temp_dir().join("shoal-runs")
}

/// Makes a fresh scratch directory for one run under `root`, owned by `run_as` (shoald's
/// own user when `None`) and private to it. `root` is made if missing (its parent, the
/// temporary directory, must exist and let every user through, as `/tmp` does), and must
/// belong to shoald's user (another user's could hold links into the data directory).
pub fn make_scratch(
    root: &Path,
    job: u64,
    attempt: u32,
    run_as: Option<&RunAs>,
) -> anyhow::Result<PathBuf> {
    match std::fs::create_dir(root) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(err).with_context(|| format!("making {}", root.display()));
        }
        _ => {}
    }
    let meta = std::fs::metadata(root)?;
    if std::os::unix::fs::MetadataExt::uid(&meta) != Uid::effective().as_raw() {
        bail!(
            "{} belongs to another user: remove it, shoald makes its own",
            root.display()
        );
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o711))?;
    let dir = root.join(format!("{job}.{attempt}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&dir).with_context(|| format!("making {}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(user) = run_as {
        std::os::unix::fs::chown(&dir, Some(user.uid), Some(user.gid))
            .with_context(|| format!("giving {} to {}", dir.display(), user.name))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_never_the_process_user() {
        if Uid::effective().is_root() {
            let refused = RunAs::resolve(Some("root")).unwrap_err();
            assert!(refused.to_string().contains("is root"), "{refused}");
            let nobody = RunAs::resolve(None).unwrap().unwrap();
            assert_eq!(nobody.name, DEFAULT_PROCESS_USER);
            assert_ne!(nobody.uid, 0);
        } else {
            assert_eq!(RunAs::resolve(None).unwrap(), None);
            assert!(RunAs::resolve(Some("root")).is_err());
        }
        let missing = RunAs::resolve(Some("no-such-user-7f3a"));
        assert!(missing.is_err());
    }

    #[test]
    fn scratch_directories_are_private_and_fresh() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("runs");
        let first = make_scratch(&root, 7, 1, None).unwrap();
        let second = make_scratch(&root, 7, 1, None).unwrap();
        assert_ne!(first, second);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&root), mode(&first)), (0o711, 0o700));
    }
}
