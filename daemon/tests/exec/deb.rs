//! The .deb (`packaging/build-deb`, as `.ci/run` builds it) installed into a real Debian
//! root (`.ci/debian-root`: debootstrap's minimal bookworm, imported as a Docker image, run
//! with no network): the `shoal` user and its data directory, both binaries run by that user
//! from the installed paths, a first machine made with `shoald init` and a second joined
//! with a token, the man pages, the completions, an upgrade, and a purge that keeps the
//! data unless asked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{docker, require_docker};

const IMAGE: &str = "shoal-debian-root:bookworm";
const CONFIG: &str = include_str!("../../../packaging/shoald.toml");
const UNIT: &str = include_str!("../../../packaging/shoald.service");

/// The .deb `packaging/build-deb` left in this build's target directory.
fn built_package() -> PathBuf {
    let target = Path::new(env!("CARGO_BIN_EXE_shoald"))
        .ancestors()
        .nth(2)
        .expect("the test binary lies in target/<profile>/");
    let arch = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .expect("dpkg --print-architecture");
    let arch = String::from_utf8_lossy(&arch.stdout).trim().to_string();
    let deb = target.join(format!(
        "debian/shoal_{}_{arch}.deb",
        env!("CARGO_PKG_VERSION")
    ));
    assert!(
        deb.is_file(),
        "{} is missing: build it with packaging/build-deb (as .ci/run does)",
        deb.display()
    );
    deb
}

/// A Debian root running `sleep`, removed when dropped.
struct Root(String);

impl Root {
    fn start(deb: &Path) -> Root {
        let image = Command::new("docker")
            .args(["image", "inspect", IMAGE])
            .output()
            .unwrap();
        assert!(
            image.status.success(),
            "the image {IMAGE} is missing: make it with .ci/debian-root (as .ci/run does)"
        );
        let name = format!("shoal-deb-test-{}", std::process::id());
        let mount = format!("{}:/tmp/shoal.deb:ro", deb.display());
        docker(&[
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--name",
            &name,
            "-v",
            &mount,
            IMAGE,
            "sleep",
            "600",
        ]);
        Root(name)
    }

    /// Runs `script` with bash as root, within 60 s.
    fn sh(&self, script: &str) -> Output {
        Command::new("docker")
            .args(["exec", "-e", "DEBIAN_FRONTEND=noninteractive", &self.0])
            .args(["timeout", "60", "bash", "-euc", script])
            .output()
            .unwrap()
    }

    /// Runs `script` and returns its stdout; panics, showing what it said, if it fails.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Waits up to `within` for `script` to succeed; returns its stdout.
    fn eventually(&self, within: Duration, script: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.sh(script);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).to_string();
            }
            assert!(
                start.elapsed() < within,
                "`{script}` did not succeed within {within:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

#[test]
fn the_package_installs_runs_as_shoal_joins_and_purges_in_a_debian_root() {
    require_docker();
    let deb = built_package();

    // Stripped release builds.
    let unpacked = tempfile::tempdir().unwrap();
    let extracted = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(extracted.success());
    for bin in ["shoald", "shoal"] {
        let file = Command::new("file")
            .arg(unpacked.path().join("usr/bin").join(bin))
            .output()
            .expect("the package test reads the binaries with `file` (apt-get install file)");
        let said = String::from_utf8_lossy(&file.stdout);
        assert!(said.contains(", stripped"), "{said}");
    }

    let root = Root::start(&deb);
    root.ok("dpkg -i /tmp/shoal.deb");

    // The user, in the docker group; the data directory is its alone.
    let user = root.ok("getent passwd shoal");
    assert!(
        user.trim().ends_with(":/var/lib/shoal:/usr/sbin/nologin"),
        "{user}"
    );
    assert!(
        root.ok("id -nG shoal")
            .split_whitespace()
            .any(|g| g == "docker")
    );
    assert_eq!(
        root.ok("stat -c '%U %a' /var/lib/shoal").trim(),
        "shoal 700"
    );

    // What the package installs is what the repository holds.
    assert_eq!(root.ok("cat /etc/shoal/shoald.toml"), CONFIG);
    assert!(
        root.ok("dpkg-query -W -f='${Conffiles}' shoal")
            .contains("/etc/shoal/shoald.toml")
    );
    let unit = root.ok("dpkg -L shoal | grep '/systemd/system/shoald.service$'");
    assert_eq!(root.ok(&format!("cat {}", unit.trim())), UNIT);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        root.ok("runuser -u shoal -- /usr/bin/shoald --version")
            .trim(),
        format!("shoald {version}")
    );
    assert_eq!(
        root.ok("runuser -u shoal -- /usr/bin/shoal --version")
            .trim(),
        format!("shoal {version}")
    );

    // Man pages and completions where man and bash-completion look.
    for page in ["shoald", "shoald-join", "shoal", "shoal-job-run"] {
        let path = root.ok(&format!("man -w {page}"));
        assert!(path.starts_with("/usr/share/man/man1/"), "{page}: {path}");
    }
    let loaded = root.ok(". /usr/share/bash-completion/bash_completion; \
         __load_completion shoald && __load_completion shoal && complete -p shoald shoal");
    assert_eq!(loaded.lines().count(), 2, "{loaded}");
    root.ok("test -s /usr/share/zsh/vendor-completions/_shoald");
    root.ok("test -s /usr/share/fish/vendor_completions.d/shoal.fish");

    // A first machine, as the README says: init as root, run as shoal with the installed
    // config. What init made is the shoal user's.
    let init = root.ok("shoald init");
    let key = init
        .lines()
        .find(|line| line.starts_with("shoal_"))
        .unwrap_or_else(|| panic!("init printed no key: {init}"))
        .to_string();
    assert_eq!(
        root.ok("stat -c %U /var/lib/shoal/bootstrap.key /var/lib/shoal/tls/ca.key"),
        "shoal\nshoal\n"
    );
    root.ok("runuser -u shoal -- sh -c 'echo $$ > /tmp/first.pid; \
         exec shoald 2> /tmp/first.log' > /dev/null 2>&1 &");
    let cli = format!("runuser -u shoal -- env SHOAL_TOKEN={key} shoal");
    // Up: ONLINE, or BUSY while the machine running the test is loaded.
    let listed = root.eventually(
        Duration::from_secs(60),
        &format!("{cli} machines ls | grep -Ew 'ONLINE|BUSY'"),
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");

    // A second machine joins with a token and the --no-run step the README gives for a
    // service; started on its own data directory, it is listed ONLINE beside the first.
    let made = root.ok(&format!("{cli} token create --ttl 10m"));
    let token = made
        .split_whitespace()
        .find(|word| word.starts_with("shoaljoin_"))
        .unwrap_or_else(|| panic!("no token in: {made}"))
        .to_string();
    let second = "--data-dir /var/lib/shoal-second --node-name second \
                  --api-port 7410 --gossip-port 7411 --p2p-port 7412";
    root.ok("install -d -o shoal -g shoal -m 0700 /var/lib/shoal-second");
    let joined = root.ok(&format!(
        "shoald join --token {token} --peer 127.0.0.1:7402 --no-run {second}"
    ));
    assert!(joined.contains("systemctl enable --now shoald"), "{joined}");
    assert_eq!(
        root.ok("find /var/lib/shoal-second ! -user shoal | wc -l")
            .trim(),
        "0",
        "join --no-run as root leaves the data directory the shoal user's"
    );
    root.ok(&format!(
        "runuser -u shoal -- sh -c 'echo $$ > /tmp/second.pid; \
         exec shoald {second} 2> /tmp/second.log' > /dev/null 2>&1 &"
    ));
    let both = root.eventually(
        Duration::from_secs(60),
        &format!("{cli} machines ls | grep -Ew 'ONLINE|BUSY' | grep -c . | grep -x 2 && {cli} machines ls"),
    );
    assert!(both.contains("second"), "{both}");

    // Clean logs: no colour codes off a terminal, no key.
    for log in ["/tmp/first.log", "/tmp/second.log"] {
        let text = root.ok(&format!("cat {log}"));
        assert!(!text.is_empty() && !text.contains('\x1b'), "{log}: {text}");
        assert!(!text.contains(&key), "{log} holds the admin key");
    }
    root.ok("kill $(cat /tmp/first.pid) $(cat /tmp/second.pid); \
         while kill -0 $(cat /tmp/first.pid) 2>/dev/null \
            || kill -0 $(cat /tmp/second.pid) 2>/dev/null; do sleep 0.2; done");

    // An upgrade (the same package again) keeps the user and the data.
    let uid = root.ok("id -u shoal");
    root.ok("dpkg -i /tmp/shoal.deb");
    assert_eq!(root.ok("id -u shoal"), uid);
    root.ok("test -s /var/lib/shoal/node.key");

    // A purge removes the user and the package's files, and keeps the data unless asked.
    root.ok("dpkg --purge shoal");
    assert!(!root.sh("getent passwd shoal").status.success());
    root.ok("test ! -e /usr/bin/shoald && test ! -e /etc/shoal/shoald.toml");
    root.ok("test -s /var/lib/shoal/node.key && test -s /var/lib/shoal-second/node.key");

    // Installed again, the new user gets the data it left; asked to, a purge removes it.
    root.ok("dpkg -i /tmp/shoal.deb");
    assert_eq!(
        root.ok("stat -c %U /var/lib/shoal/node.key").trim(),
        "shoal"
    );
    root.ok("echo 'shoal shoal/purge-data boolean true' | debconf-set-selections");
    root.ok("dpkg --purge shoal");
    root.ok("test ! -e /var/lib/shoal");
    assert!(!root.sh("getent passwd shoal").status.success());
}
