//! Image pulls against a real registry on loopback: Debian's `docker-registry` (the CNCF
//! distribution registry) on 127.0.0.1 at a free port, holding the test image pushed to it
//! and removed from the engine. Through a one-node cluster, a job pulls it (its output shows
//! the pull, then the command's) and runs; `always` pulls again; `never` fails at once for
//! an image the engine lacks; an image the registry lacks fails naming `not found` and the
//! registry.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use shoal_daemon::testsuite::{Cluster, http_client, init_logs};
use shoal_protocol::{JobId, JobRecord, JobState};

use crate::cluster::LeftBehind;
use crate::support::{IMAGE, docker, eventually, free_tcp_port, job_output, test_image};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// A registry serving 127.0.0.1:`port` from a temporary directory; killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    _storage: tempfile::TempDir,
}

impl Registry {
    async fn start() -> Registry {
        assert!(
            Path::new(REGISTRY).exists(),
            "the registry tests need {REGISTRY}: install it with \
             `apt-get install -y docker-registry` (as .ci/run does)"
        );
        let storage = tempfile::tempdir().unwrap();
        let port = free_tcp_port();
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new(REGISTRY)
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            child,
            port,
            _storage: storage,
        };
        registry.wait_ready().await;
        registry
    }

    /// Waits (10 s at most) until the registry answers `GET /v2/`.
    async fn wait_ready(&self) {
        let url = format!("http://{}/v2/", self.host());
        let client = http_client();
        let answered = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Ok(response) = client.get(&url).send().await
                    && response.status().is_success()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            answered.is_ok(),
            "the registry did not answer {url} within 10 s"
        );
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes the named images when dropped, also when the test fails.
struct Images(Vec<String>);

impl Drop for Images {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

fn image_present(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|out| out.status.success())
}

async fn finished(cluster: &Cluster, id: JobId) -> JobRecord {
    cluster
        .wait_job(0, id, "finished", |j| j.state.is_finished())
        .await
}

fn error_of(job: &JobRecord) -> String {
    job.attempts
        .last()
        .and_then(|attempt| attempt.error.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_pull_their_image_from_a_registry_as_their_pull_policy_says() {
    init_logs();
    let _image = test_image();
    let registry = Registry::start().await;
    let host = registry.host();
    let pushed = format!("{host}/shoal-test/busybox:pull");
    let _images = Images(vec![pushed.clone()]);
    docker(&["tag", IMAGE, &pushed]);
    docker(&["push", "-q", &pushed]);
    docker(&["rmi", &pushed]);
    assert!(
        !image_present(&pushed),
        "the pushed tag is gone from the engine"
    );

    let cluster = Cluster::start(1).await.unwrap();
    let _left_behind = LeftBehind(vec![cluster.node(0).id]);

    // Missing here (the default policy): pulled, then run.
    let job =
        json!({"image": pushed, "command": ["sh", "-c", "echo ran-after-pull"], "max_attempts": 1});
    let id = cluster.submit(0, job).await;
    let job = finished(&cluster, id).await;
    assert_eq!(job.state, JobState::Completed, "{job:#?}");
    let text = job_output(&cluster.api(0), id).await;
    let pulled_at = text.find(&format!("pulling {pushed} from {host}"));
    let ran_at = text.find("ran-after-pull");
    assert!(
        matches!((pulled_at, ran_at), (Some(p), Some(r)) if p < r),
        "the output shows the pull, then the command's output: {text:?}"
    );
    assert!(text.contains("Pulling from shoal-test/busybox"), "{text:?}");
    assert!(
        image_present(&pushed),
        "the pulled image stays on the engine"
    );

    // `always` pulls again though the image is there.
    let again = json!({"image": pushed, "command": ["sh", "-c", "echo again"], "pull": "always", "max_attempts": 1});
    let id = cluster.submit(0, again).await;
    assert_eq!(finished(&cluster, id).await.state, JobState::Completed);
    let text = job_output(&cluster.api(0), id).await;
    assert!(
        text.contains(&format!("pulling {pushed}")) && text.ends_with("again\n"),
        "{text:?}"
    );

    // `missing` with the image there: no pull.
    let cached =
        json!({"image": pushed, "command": ["sh", "-c", "echo cached"], "max_attempts": 1});
    let id = cluster.submit(0, cached).await;
    assert_eq!(finished(&cluster, id).await.state, JobState::Completed);
    assert_eq!(job_output(&cluster.api(0), id).await, "cached\n");

    // `never` with an image the engine lacks: fails at once, saying so.
    let absent = format!("{host}/shoal-test/busybox:absent");
    let never = json!({"image": absent, "command": ["true"], "pull": "never", "max_attempts": 1});
    let started = std::time::Instant::now();
    let id = cluster.submit(0, never).await;
    let job = finished(&cluster, id).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let error = error_of(&job);
    assert!(
        error.contains(&format!("image {absent} is not on machine"))
            && error.contains("pull is never"),
        "{error}"
    );

    // An image the registry does not hold: fails naming the registry, the image and why.
    let unknown = format!("{host}/shoal-test/nothing:here");
    let _images = Images(vec![unknown.clone()]);
    let missing = json!({"image": unknown, "command": ["true"], "max_attempts": 1});
    let id = cluster.submit(0, missing).await;
    let job = finished(&cluster, id).await;
    assert_eq!(job.state, JobState::Failed, "{job:#?}");
    let error = error_of(&job);
    assert!(
        error.contains(&format!(
            "pulling image {unknown} from registry {host} failed (not found)"
        )),
        "{error}"
    );

    // A registry that is not there: unreachable.
    drop(registry);
    eventually(Duration::from_secs(5), "the registry stopped", || {
        std::net::TcpStream::connect(&host).is_err()
    })
    .await;
    let gone = json!({"image": format!("{host}/shoal-test/busybox:gone"), "command": ["true"], "max_attempts": 1});
    let id = cluster.submit(0, gone).await;
    let job = finished(&cluster, id).await;
    let error = error_of(&job);
    assert!(
        error.contains(&format!("from registry {host} failed (unreachable)")),
        "{error}"
    );
}
