//! Adoption after a daemon restart, played by dropping one executor and making another:
//! a container still running is followed to its real exit code, one that ended meanwhile
//! reports its exit code and logs, and another node's containers are left alone.

use std::time::Duration;

use shoal_daemon::exec::docker::container_name;
use shoal_daemon::exec::{Adopted, DockerConfig, DockerExecutor, Executor, Outcome};

use crate::support::{
    Containers, container_exists, container_sh as sh, docker, eventually, job_id, test_image,
    wait_for_text,
};

/// A node name no concurrent test run uses.
fn node(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

fn executor(name: &str) -> DockerExecutor {
    DockerExecutor::new(DockerConfig {
        node: Some(node(name)),
        ..DockerConfig::default()
    })
}

fn state(name: &str) -> String {
    docker(&["inspect", "--format", "{{.State.Status}}", name])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_adopts_a_running_container() {
    let _image = test_image();
    let job = job_id(21);
    let name = container_name(Some(&node("adopt-running")), job, 1);
    let _containers = Containers(vec![name.clone()]);

    let before = executor("adopt-running");
    let script = "echo started; sleep 4; echo finishing; exit 5";
    let handle = before.start(sh(job, script)).await.unwrap();
    wait_for_text(handle.output(), "started", Duration::from_secs(20)).await;
    drop(handle);
    drop(before);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        state(&name),
        "running",
        "the dropped executor left the container"
    );

    assert!(
        executor("someone-else").adopt().await.is_empty(),
        "another node's executor does not take it"
    );
    assert!(container_exists(&name));

    // The new executor stays alive while the adopted run goes on.
    let after = executor("adopt-running");
    let mut adopted = after.adopt().await;
    assert_eq!(adopted.len(), 1, "exactly the one container of this node");
    let Adopted::Running {
        job: found,
        attempt,
        handle,
        ..
    } = adopted.pop().unwrap()
    else {
        panic!("the container was still running");
    };
    assert_eq!((found, attempt), (job, 1));
    let outcome = tokio::time::timeout(Duration::from_secs(30), handle.wait())
        .await
        .expect("the adopted run ends");
    assert_eq!(outcome, Outcome::Exited { exit_code: 5 });
    assert_eq!(
        handle.output().snapshot().text(),
        "started\nfinishing\n",
        "the whole output, from before the restart too"
    );
    assert!(!container_exists(&name), "removed once its outcome is read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_ended_meanwhile_reports_its_exit_code() {
    let _image = test_image();
    let job = job_id(22);
    let name = container_name(Some(&node("adopt-ended")), job, 1);
    let _containers = Containers(vec![name.clone()]);

    let before = executor("adopt-ended");
    let handle = before
        .start(sh(job, "sleep 1; echo bye; exit 4"))
        .await
        .unwrap();
    drop(before);
    eventually(Duration::from_secs(30), "the container exits", || {
        state(&name) == "exited"
    })
    .await;
    assert_eq!(handle.outcome(), None, "nobody watched it end");

    let mut adopted = executor("adopt-ended").adopt().await;
    assert_eq!(adopted.len(), 1);
    let Adopted::Finished {
        job: found,
        outcome,
        output,
        ..
    } = adopted.pop().unwrap()
    else {
        panic!("the container had ended");
    };
    assert_eq!(found, job);
    assert_eq!(outcome, Outcome::Exited { exit_code: 4 });
    assert_eq!(output.text(), "bye\n");
    assert!(!container_exists(&name), "removed once its outcome is read");
}
