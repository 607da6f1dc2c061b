//! The systemd unit `examples/shoald.service` as systemd reads it: `systemd-analyze verify`
//! accepts it with `ExecStart` pointed at the `shoald` just built, and it keeps the
//! hardening a service on every machine a person owns should have.

use std::process::Command;

const UNIT: &str = include_str!("../../../examples/shoald.service");

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
