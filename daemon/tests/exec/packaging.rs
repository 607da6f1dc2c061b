//! What a package ships beside the binary: the systemd unit `packaging/shoald.service` as
//! systemd reads it (`systemd-analyze verify` accepts it with `ExecStart` pointed at the
//! `shoald` just built, and it keeps the hardening a service on every machine a person owns
//! should have), the man pages `shoald man` writes, and the completions bash loads.

use std::process::Command;

const UNIT: &str = include_str!("../../../packaging/shoald.service");

#[test]
fn the_unit_is_hardened_and_systemd_accepts_it() {
    for line in [
        "User=shoal",
        "SupplementaryGroups=docker",
        "Restart=on-failure",
        "StateDirectory=shoal",
        "StateDirectoryMode=0700",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/shoal",
    ] {
        assert!(UNIT.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("shoald.service");
    let built = env!("CARGO_BIN_EXE_shoald");
    assert!(UNIT.contains("ExecStart=/usr/bin/shoald "), "{UNIT}");
    std::fs::write(&unit, UNIT.replace("/usr/bin/shoald", built)).unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect(
            "the unit test needs systemd-analyze: apt-get install -y systemd (as .ci/run does)",
        );
    let said = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && said.trim().is_empty(),
        "{said}"
    );
}

#[test]
fn shoald_writes_its_man_pages_and_completions_bash_loads() {
    let dir = tempfile::tempdir().unwrap();
    let made = Command::new(env!("CARGO_BIN_EXE_shoald"))
        .args(["man", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for page in [
        "shoald.1",
        "shoald-init.1",
        "shoald-join.1",
        "shoald-restore.1",
    ] {
        let roff = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(roff.contains(".TH"), "{page}: {roff}");
    }
    assert!(
        !dir.path().join("shoald-man.1").exists(),
        "the hidden command has no page"
    );

    // bash sources the script and completes shoald with it.
    let shoald = env!("CARGO_BIN_EXE_shoald");
    let script = format!("source <({shoald} completions bash) && complete -p shoald");
    let loaded = Command::new("bash").args(["-c", &script]).output().unwrap();
    let said = String::from_utf8_lossy(&loaded.stdout);
    assert!(
        loaded.status.success() && said.contains("shoald"),
        "{said}{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    // A reader that stops at once is no error.
    let mut cut = Command::new(shoald)
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(cut.stdout.take());
    let cut = cut.wait_with_output().unwrap();
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );
}
