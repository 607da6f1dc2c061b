//! The `shoal` binary end to end against a real three-node cluster on loopback.

mod events;
mod jobs;
mod snapshot;
mod tls;

use std::process::{Command, Output};
use std::time::Duration;

use shoal_daemon::testsuite::{Cluster, init_logs, wait_until};
use shoal_protocol::api::MachineList;

fn shoal(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .env("SHOAL_ADDR", addr)
        .env("SHOAL_CACERT", shoal_daemon::testsuite::test_ca_file())
        .env("SHOAL_TOKEN", shoal_daemon::testsuite::TEST_KEY)
        .args(args)
        .output()
        .expect("running shoal")
}

/// Every subcommand path of `shoal` under `path` (`["job", "run"]`, ...), read from the
/// `Commands:` list of each `--help`, which must succeed.
fn commands(path: &[String]) -> Vec<Vec<String>> {
    let help = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(path)
        .arg("--help")
        .output()
        .expect("running shoal --help");
    let text = stdout(&help);
    assert!(
        text.contains(
            &format!("Usage: shoal {}", path.join(" "))
                .trim_end()
                .to_string()
        ),
        "shoal {} --help: {text}",
        path.join(" ")
    );
    let listed = text
        .split("\nCommands:\n")
        .nth(1)
        .map(|rest| rest.split("\n\n").next().unwrap_or(""))
        .unwrap_or("");
    let mut found = Vec::new();
    for line in listed.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name == "help" {
            continue;
        }
        let mut sub = path.to_vec();
        sub.push(name.to_string());
        found.extend(commands(&sub));
        found.push(sub);
    }
    found
}

#[test]
fn every_command_answers_help() {
    let all = commands(&[]);
    for expected in [
        &["job", "run"][..],
        &["machines", "approve"],
        &["registry", "login"],
    ] {
        assert!(
            all.iter().any(|path| path == expected),
            "{expected:?} not found among {all:?}"
        );
    }
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "shoal failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_a_real_cluster() {
    init_logs();
    let cluster = Cluster::start(3).await.unwrap();
    let addr = cluster.api(1);
    let run = |args: &'static [&'static str]| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || shoal(&addr, args))
    };

    let table = stdout(&run(&["machines", "ls"]).await.unwrap());
    for name in ["node-0", "node-1", "node-2"] {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }
    assert_eq!(table.matches("ONLINE").count(), 3, "{table}");

    let json = stdout(&run(&["--json", "machines", "ls"]).await.unwrap());
    let list: MachineList = serde_json::from_str(&json).unwrap();
    assert_eq!(list.machines.len(), 3);

    let shown = stdout(&run(&["machines", "show", "node-2"]).await.unwrap());
    assert!(
        shown.contains("node-2") && shown.contains("ONLINE"),
        "{shown}"
    );

    let status = stdout(&run(&["cluster", "status"]).await.unwrap());
    let leader = cluster.node(0).leader().unwrap().to_string();
    assert!(
        status.contains(&leader),
        "leader {leader} missing from:\n{status}"
    );

    assert!(
        status.contains("gossip key:      generation 0 (this node seals with 0)\n"),
        "{status}"
    );
    // A new gossip key, through a follower or the leader: every node seals with it.
    let rotated = stdout(&run(&["fleet", "rotate-key"]).await.unwrap());
    assert!(rotated.starts_with("gossip key generation 1 "), "{rotated}");
    wait_until(
        Duration::from_secs(5),
        "every node sealing with generation 1",
        || {
            (0..3)
                .all(|i| cluster.node(i).gossip_keys.sealing() == 1)
                .then_some(())
        },
    )
    .await
    .unwrap();

    let summary = stdout(&run(&["fleet", "summary"]).await.unwrap());
    assert!(
        summary.contains("health:     healthy\n")
            && summary.contains("machines:   3 (3 reachable, 0 unreachable)\n"),
        "{summary}"
    );
    let sorted = stdout(
        &run(&["machines", "ls", "--sort", "name", "--desc"])
            .await
            .unwrap(),
    );
    let order: Vec<usize> = ["node-2", "node-1", "node-0"]
        .iter()
        .map(|name| sorted.find(name).unwrap())
        .collect();
    assert!(order.is_sorted(), "{sorted}");

    stdout(
        &run(&["machines", "label", "node-2", "zone=attic"])
            .await
            .unwrap(),
    );
    let target = cluster.node(2).id;
    for i in 0..3 {
        let node = cluster.node(i);
        wait_until(Duration::from_secs(5), "label on every node", || {
            node.fleet.read(|s| {
                (s.machines.get(&target)?.labels().get("zone") == Some("attic")).then_some(())
            })
        })
        .await
        .unwrap();
    }
    let filtered = stdout(
        &run(&["machines", "ls", "--label", "zone=attic"])
            .await
            .unwrap(),
    );
    assert!(
        filtered.contains("node-2") && !filtered.contains("node-0"),
        "{filtered}"
    );

    // One line per machine a drain or an undrain names.
    let drained = stdout(&run(&["drain", "node-1", "node-2"]).await.unwrap());
    assert_eq!(drained.lines().count(), 2, "{drained}");
    assert!(
        drained
            .lines()
            .all(|l| l.starts_with("node-") && l.ends_with("): draining")),
        "{drained}"
    );
    let again = stdout(&run(&["drain", "node-1"]).await.unwrap());
    assert!(
        again.starts_with("node-1 (") && again.ends_with("): was draining already\n"),
        "{again}"
    );
    // Each line says what changed: node-0 was never drained.
    let undrained = stdout(&run(&["undrain", "--all"]).await.unwrap());
    let mut lines: Vec<&str> = undrained.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{undrained}");
    assert!(
        lines[0].starts_with("node-0 (") && lines[0].ends_with("): was not drained"),
        "{undrained}"
    );
    assert!(
        lines[1..].iter().all(|l| l.ends_with("): undrained")),
        "{undrained}"
    );

    // Output cut short by its reader (`| head -1`) ends quietly.
    let mut completions = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(completions.stdout.take());
    let cut = completions.wait_with_output().unwrap();
    assert!(
        cut.status.success(),
        "{}",
        String::from_utf8_lossy(&cut.stderr)
    );

    // Bad input: refused before any request, with the reason and exit code 2.
    let bad = run(&["machines", "label", "node-2", "Bad Key=x"])
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Bad Key"));
    // A duration without its unit is refused, naming the units it takes.
    let bare = run(&["token", "create", "--ttl", "90"]).await.unwrap();
    assert_eq!(bare.status.code(), Some(2));
    let said = String::from_utf8_lossy(&bare.stderr);
    assert!(
        said.contains("\"90\" needs a unit: 90s, 90m, 90h or 90d"),
        "{said}"
    );
    // Nouns singular or plural.
    let singular = stdout(&run(&["machine", "ls"]).await.unwrap());
    for name in ["node-0", "node-1", "node-2"] {
        assert!(singular.contains(name), "{name} missing from:\n{singular}");
    }
    stdout(&run(&["jobs", "ls"]).await.unwrap());
    // Without a key: the server's 401, and what to set.
    let keyless = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_shoal"))
                .env("SHOAL_ADDR", &addr)
                .env("SHOAL_CACERT", shoal_daemon::testsuite::test_ca_file())
                .env_remove("SHOAL_TOKEN")
                .args(["machines", "ls"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&keyless.stderr);
    assert_eq!(keyless.status.code(), Some(1), "{said}");
    assert!(said.contains("--token or SHOAL_TOKEN"), "{said}");
    // An unknown machine is an API error: exit code 1 and the server's message.
    let missing = run(&["machines", "show", "00000000000000ff"])
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not_found"));
    let no_session = run(&["session", "exec", "424242", "--", "true"])
        .await
        .unwrap();
    assert_eq!(no_session.status.code(), Some(1));
    let said = String::from_utf8_lossy(&no_session.stderr);
    assert!(said.contains("no session with id 424242"), "{said}");

    // Keys: an admin makes a read key; it lists machines and may not run jobs; no key is 401.
    let made = stdout(
        &run(&["key", "create", "--scope", "read", "--name", "viewer"])
            .await
            .unwrap(),
    );
    let reader = made.lines().next().unwrap().to_string();
    assert!(reader.starts_with("shoal_"), "{made}");
    let with_key = |key: String, args: &'static [&'static str]| {
        let addr = addr.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_shoal"))
                .env("SHOAL_ADDR", addr)
                .env("SHOAL_CACERT", shoal_daemon::testsuite::test_ca_file())
                .env("SHOAL_TOKEN", key)
                .args(args)
                .output()
                .unwrap()
        })
    };
    stdout(&with_key(reader.clone(), &["machines", "ls"]).await.unwrap());
    let refused = with_key(reader, &["job", "run", "--", "true"])
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("forbidden"));
    let anonymous = with_key(String::new(), &["machines", "ls"]).await.unwrap();
    assert_eq!(anonymous.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("unauthorized"));
    let keys = stdout(&run(&["key", "ls"]).await.unwrap());
    assert!(
        keys.contains("viewer") && keys.contains("bootstrap"),
        "{keys}"
    );
    let made = stdout(
        &run(&[
            "token", "create", "--count", "2", "--ttl", "10m", "--label", "gpu",
        ])
        .await
        .unwrap(),
    );
    assert_eq!(
        made.lines().filter(|l| l.starts_with("shoaljoin_")).count(),
        2,
        "{made}"
    );
    let listed = stdout(&run(&["token", "ls"]).await.unwrap());
    assert!(
        listed.contains("gpu=true") && listed.contains("in 9m"),
        "{listed}"
    );
    let audit = stdout(&run(&["audit", "--machine", "node-2"]).await.unwrap());
    assert!(
        audit.contains("label_machine") && audit.contains("7e57000000000001"),
        "{audit}"
    );

    jobs::the_job_commands(&cluster).await;

    // Budgets and costs: the jobs above ran in the test key's org.
    let set = stdout(
        &run(&[
            "budget",
            "set",
            "--org",
            "default",
            "--daily-usd",
            "25",
            "--on-exceed",
            "stop",
        ])
        .await
        .unwrap(),
    );
    assert!(
        set.contains("default") && set.contains("$25.00") && set.contains("stop"),
        "{set}"
    );
    let no_limit = run(&["budget", "set", "--org", "default"]).await.unwrap();
    assert_eq!(no_limit.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&no_limit.stderr).contains("daily_usd"),
        "{no_limit:?}"
    );
    let costs = stdout(
        &run(&["--json", "costs", "--by", "job", "--since", "1d"])
            .await
            .unwrap(),
    );
    let sheet: serde_json::Value = serde_json::from_str(&costs).unwrap();
    assert!(
        sheet["total"]["runner_minutes"].as_f64().unwrap() > 0.0,
        "{sheet}"
    );
    let summary = stdout(&run(&["fleet", "summary"]).await.unwrap());
    assert!(summary.contains("of $25 today"), "{summary}");

    // Every list prints the API's envelope: an object whose plural key holds the array.
    let lists = [
        (&["--json", "machines", "ls"][..], "machines"),
        (&["--json", "job", "ls"], "jobs"),
        (&["--json", "key", "ls"], "keys"),
        (&["--json", "token", "ls"], "tokens"),
        (&["--json", "template", "ls"], "templates"),
        (&["--json", "session", "ls"], "sessions"),
        (&["--json", "policy", "ls"], "policies"),
        (&["--json", "registry", "ls"], "registries"),
        (&["--json", "budget", "ls"], "budgets"),
    ];
    let mut every_ls: Vec<Vec<String>> = commands(&[])
        .into_iter()
        .filter(|path| path.last().is_some_and(|name| name == "ls"))
        .collect();
    every_ls.sort();
    let mut checked: Vec<Vec<String>> = lists
        .iter()
        .map(|(args, _)| args[1..].iter().map(|a| a.to_string()).collect())
        .collect();
    checked.sort();
    assert_eq!(every_ls, checked, "every `ls` the CLI has is checked here");
    for (args, key) in lists {
        let addr = addr.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let listed = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            shoal(&addr, &args)
        })
        .await
        .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
        let object = listed
            .as_object()
            .unwrap_or_else(|| panic!("{key}: {listed}"));
        assert!(object[key].is_array(), "{key}: {listed}");
    }
    cluster.shutdown().await;

    // Nobody listening: exit code 3, naming the address.
    let gone = tokio::task::spawn_blocking(move || shoal(&addr, &["machines", "ls"]))
        .await
        .unwrap();
    assert_eq!(gone.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("127.0.0.1"));
}
