//! A machine's identity key and the cluster secret, both kept in the data directory.
//!
//! The identity key gives the libp2p peer id and, through a digest of it, the
//! [`MachineId`], so a machine keeps its id across restarts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use libp2p::PeerId;
use libp2p::identity::Keypair;
use rand::RngCore;
use sha2::{Digest, Sha256};
use shoal_protocol::MachineId;

const KEY_FILE: &str = "node.key";
const SECRET_FILE: &str = "cluster.secret";

/// The machine id that goes with a peer id.
pub fn machine_id(peer_id: &PeerId) -> MachineId {
    MachineId::from_digest(&Sha256::digest(peer_id.to_bytes()))
}

/// Loads the identity key from `dir`, creating it on first start.
pub fn load_or_create_keypair(dir: &Path) -> anyhow::Result<Keypair> {
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a valid identity key", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .context("encoding identity key")?;
            write_private(&path, &bytes)?;
            Ok(keypair)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The cluster secret: the configured one, else the one stored in `dir`, else a new
/// random one that is stored there (for the first machine of a fleet).
pub fn load_or_create_secret(dir: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(secret) = configured {
        return Ok(secret.to_string());
    }
    let path = dir.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let secret = new_secret();
            write_private(&path, secret.as_bytes())?;
            tracing::info!(path = %path.display(), "generated a cluster secret; give it to machines that join");
            Ok(secret)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A new random cluster secret: 24 random bytes, in hex.
fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// `shoald init --cluster-secret-file PATH`: makes a new random secret in `path` (0600, its
/// directory made if missing) unless the file is there; returns whether it made one. A file
/// that is there but empty is an error: machines would start without a secret.
pub fn init_secret_file(path: &Path) -> anyhow::Result<bool> {
    match fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => {
            anyhow::bail!(
                "{} is empty: remove it, or put the fleet's secret in it",
                path.display()
            )
        }
        Ok(_) => Ok(false),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            write_private(path, format!("{}\n", new_secret()).as_bytes())?;
            Ok(true)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Keeps a secret received when joining, so later starts find it.
pub fn store_secret(dir: &Path, secret: &str) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    write_private(&dir.join(SECRET_FILE), secret.as_bytes())
}

/// Where the first start leaves the admin key it made (with no `shoald init` or
/// `--bootstrap-key`), readable by its owner only, for the operator to take and delete.
pub const FIRST_ADMIN_KEY_FILE: &str = "admin.key";

/// Keeps the first admin key the node made in `dir`; returns where.
pub fn keep_first_admin_key(dir: &Path, key: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join(FIRST_ADMIN_KEY_FILE);
    write_private(&path, key.as_bytes())?;
    Ok(path)
}

/// Makes `dir` (created if missing) and everything under it readable by the owner only:
/// directories 0700, files 0600. A data dir an older build left world-readable is
/// tightened at the next start; new files are private by the daemon's umask (077).
pub fn make_private(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let private = if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            continue; // symlinks, sockets: left as they are
        };
        if meta.permissions().mode() & 0o777 != private {
            fs::set_permissions(&path, fs::Permissions::from_mode(private))
                .with_context(|| format!("cannot make {} private", path.display()))?;
        }
    }
    Ok(())
}

/// Where `shoald init` leaves the first admin key until the fleet has recorded it.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap.key";

/// `shoald init`: makes the first admin key and leaves it in `dir` for the first start,
/// which records it and deletes the file. Refuses to run twice.
pub fn init_bootstrap_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(BOOTSTRAP_KEY_FILE);
    if path.exists() || dir.join("raft").exists() {
        anyhow::bail!(
            "{} is already initialised (a key is waiting in {}, or a fleet was formed here)",
            dir.display(),
            path.display()
        );
    }
    fs::create_dir_all(dir)?;
    let (key, _) = crate::keys::new_key(
        crate::keys::DEFAULT_ORG,
        shoal_protocol::keys::Scope::Admin,
        "bootstrap",
        "bootstrap",
        0,
    );
    write_private(&path, key.as_bytes())?;
    Ok(key)
}

/// `shoald init`, `join --no-run` or `restore` run as root on a data directory another user
/// owns (the package makes `/var/lib/shoal` the `shoal` user's): everything in it, and the
/// cluster secret file `also` names, become that user's, so the service, which runs as
/// that user, can read what was made. Run by anyone else, or on a directory root owns, it
/// changes nothing.
pub fn give_to_data_dir_owner(dir: &Path, also: Option<&Path>) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let meta = fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if meta.uid() == 0 {
        return Ok(());
    }
    let owner = |path: &Path| {
        std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
            .with_context(|| format!("cannot give {} to uid {}", path.display(), meta.uid()))
    };
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if fs::symlink_metadata(&path)?.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
        owner(&path)?;
    }
    also.map(owner).transpose()?;
    Ok(())
}

/// The dev fleet's admin API key, kept in its data directory so every start can show it.
pub fn load_or_create_dev_key(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin.key");
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let (key, _) = crate::keys::new_key(
                crate::keys::DEFAULT_ORG,
                shoal_protocol::keys::Scope::Admin,
                "dev",
                "dev",
                0,
            );
            write_private(&path, key.as_bytes())?;
            Ok(key)
        }
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a file only its owner can read, fsynced, atomically.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_keypair(dir.path()).unwrap();
        let again = load_or_create_keypair(dir.path()).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        assert_eq!(
            machine_id(&first.public().to_peer_id()),
            machine_id(&again.public().to_peer_id())
        );
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_data_dir_an_older_build_left_open_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("raft")).unwrap();
        fs::write(data.join("raft/raft.redb"), b"log").unwrap();
        fs::write(data.join("output.txt"), b"out").unwrap();
        for path in [&data, &data.join("raft")] {
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for file in ["raft/raft.redb", "output.txt"] {
            fs::set_permissions(data.join(file), fs::Permissions::from_mode(0o644)).unwrap();
        }
        make_private(&data).unwrap();
        let mode = |p: &str| fs::metadata(data.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(""), mode("raft")), (0o700, 0o700));
        assert_eq!((mode("raft/raft.redb"), mode("output.txt")), (0o600, 0o600));
        assert_eq!(fs::read(data.join("raft/raft.redb")).unwrap(), b"log");
    }

    #[test]
    fn init_makes_a_private_secret_file_once_and_keeps_one_that_is_there() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/shoal/cluster.secret");
        assert!(init_secret_file(&path).unwrap());
        let made = fs::read_to_string(&path).unwrap();
        assert_eq!(made.trim().len(), 48, "{made}");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!init_secret_file(&path).unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), made, "kept as it was");
        fs::write(&path, "\n").unwrap();
        assert!(
            init_secret_file(&path)
                .unwrap_err()
                .to_string()
                .contains("is empty")
        );
    }

    #[test]
    fn init_as_root_gives_what_it_made_to_the_data_dir_owner() {
        if !rustix::process::geteuid().is_root() {
            panic!("this test changes owners: run the tests as root (as .ci/run does)");
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let secret = dir.path().join("cluster.secret");
        fs::create_dir(&data).unwrap();
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        init_bootstrap_key(&data).unwrap();
        fs::create_dir(data.join("tls")).unwrap();
        write_private(&data.join("tls/ca.key"), b"key").unwrap();
        init_secret_file(&secret).unwrap();
        let uid = |p: &Path| fs::metadata(p).unwrap().uid();
        assert_eq!(uid(&data.join("tls/ca.key")), 0, "made by root");

        give_to_data_dir_owner(&data, Some(&secret)).unwrap();
        for path in [
            data.join(BOOTSTRAP_KEY_FILE),
            data.join("tls"),
            data.join("tls/ca.key"),
            secret.clone(),
        ] {
            assert_eq!(uid(&path), 65534, "{}", path.display());
        }
        assert_eq!(
            fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn secret_is_generated_once_and_configured_wins() {
        let dir = tempfile::tempdir().unwrap();
        let generated = load_or_create_secret(dir.path(), None).unwrap();
        assert_eq!(generated.len(), 48);
        assert_eq!(load_or_create_secret(dir.path(), None).unwrap(), generated);
        let given = "a-much-longer-configured-secret";
        assert_eq!(
            load_or_create_secret(dir.path(), Some(given)).unwrap(),
            given
        );
    }
}
