//! Image pulls against a real registry on loopback: Debian's `docker-registry` (the CNCF
//! distribution registry) on 127.0.0.1 at a free port, holding the test image pushed to it
//! and removed from the engine. Through a one-node cluster, a job pulls it (its output shows
//! the pull, then the command's) and runs; `always` pulls again; `never` fails at once for
//! an image the engine lacks; an image the registry lacks fails naming `not found` and the
//! registry. A registry behind basic auth (htpasswd) refuses a pull without the fleet's
//! credentials and serves one with them; `batch update` after a new push restarts a
//! session onto the new image.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use shoal_daemon::testsuite::{Cluster, http_client, init_logs};
use shoal_protocol::{JobId, JobRecord, JobState};

use crate::cluster::LeftBehind;
use crate::support::{IMAGE, docker, eventually, free_tcp_port, job_output, test_image};

const REGISTRY: &str = "/usr/bin/docker-registry";

/// A registry serving 127.0.0.1:`port`; killed when dropped.
struct Registry {
    child: Child,
    port: u16,
    _storage: Option<tempfile::TempDir>,
}

impl Registry {
    /// A registry of its own, open to all.
    async fn start() -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let mut registry = Registry::serve(storage.path(), None).await;
        registry._storage = Some(storage);
        registry
    }

    /// A registry serving the images under `storage`; with `htpasswd`, only to the users
    /// that file names (basic auth).
    async fn serve(storage: &Path, htpasswd: Option<&Path>) -> Registry {
        assert!(
            Path::new(REGISTRY).exists(),
            "the registry tests need {REGISTRY}: install it with \
             `apt-get install -y docker-registry` (as .ci/run does)"
        );
        let port = free_tcp_port();
        let config = storage.join(format!("config-{port}.yml"));
        let auth = match htpasswd {
            Some(file) => format!(
                "auth:\n  htpasswd:\n    realm: shoal-test\n    path: {}\n",
                file.display()
            ),
            None => String::new(),
        };
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n{auth}",
                storage.join("data").display()
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
            _storage: None,
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
                // 401: up, and asking for a login.
                if let Ok(response) = client.get(&url).send().await
                    && (response.status().is_success() || response.status().as_u16() == 401)
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
    // The machine tells the fleet which images it holds, for placement to prefer it.
    let key = shoal_protocol::image_ref::image_key(IMAGE);
    let holds = || {
        cluster
            .node(0)
            .info
            .borrow()
            .images
            .binary_search(&key)
            .is_ok()
    };
    eventually(
        Duration::from_secs(10),
        "the machine publishes its images",
        holds,
    )
    .await;

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

    // A policy's `never` over the job's default: no pull on the machines it selects.
    air_gapped(&cluster, true).await;
    let kept_out = json!({"image": pushed.replace(":pull", ":kept-out"), "command": ["true"], "max_attempts": 1});
    let id = cluster.submit(0, kept_out).await;
    let error = error_of(&finished(&cluster, id).await);
    assert!(error.contains("pull is never"), "{error}");
    air_gapped(&cluster, false).await;

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

/// `method` on `path` of node 0's API with `body`: the status and the JSON answer.
async fn call(cluster: &Cluster, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let url = format!("{}{path}", cluster.api(0));
    let mut request = cluster.http().request(method, &url);
    if !body.is_null() {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Sets (`on`) or removes a policy `air-gapped` that keeps every machine from pulling.
async fn air_gapped(cluster: &Cluster, on: bool) {
    let path = "/v1/policies/air-gapped";
    let (status, body) = match on {
        true => call(cluster, Method::PUT, path, json!({"pull": "never"})).await,
        false => call(cluster, Method::DELETE, path, Value::Null).await,
    };
    assert_eq!(status, 200, "{body}");
}

/// `POST /v1/batch/update` of every machine through node 0: machine 0's outcome.
async fn update_all(cluster: &Cluster) -> (bool, String) {
    let (status, report) = call(
        cluster,
        Method::POST,
        "/v1/batch/update",
        json!({"all": true}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let outcome = &report["machines"][0];
    let detail = outcome["detail"].as_str().unwrap_or_default().to_string();
    (outcome["ok"] == json!(true), detail)
}

fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "-f", "{{.Id}}", image])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_asks_for_a_login_is_pulled_from_with_the_fleets_credentials() {
    init_logs();
    let _image = test_image();
    // One store, served twice: open (to push to) and behind basic auth (to pull from).
    let storage = tempfile::tempdir().unwrap();
    let htpasswd = storage.path().join("htpasswd");
    let entry = Command::new("htpasswd")
        .args(["-Bbn", "ci", "s3cret-pass"])
        .output()
        .expect("the registry auth test needs htpasswd: apt-get install -y apache2-utils");
    std::fs::write(&htpasswd, &entry.stdout).unwrap();
    let open = Registry::serve(storage.path(), None).await;
    let locked = Registry::serve(storage.path(), Some(&htpasswd)).await;
    let pushed = format!("{}/shoal-test/private:1", open.host());
    let private = format!("{}/shoal-test/private:1", locked.host());
    let _images = Images(vec![pushed.clone(), private.clone()]);
    docker(&["tag", IMAGE, &pushed]);
    docker(&["push", "-q", &pushed]);
    docker(&["rmi", &pushed]);

    let cluster = Cluster::start(1).await.unwrap();
    let _left_behind = LeftBehind(vec![cluster.node(0).id]);
    let job =
        json!({"image": private, "command": ["sh", "-c", "echo private-ran"], "max_attempts": 1});

    // Without credentials: refused, saying so.
    let id = cluster.submit(0, job.clone()).await;
    let failed = finished(&cluster, id).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:#?}");
    let error = error_of(&failed);
    let registry = locked.host();
    assert!(
        error.contains(&format!(
            "pulling image {private} from registry {registry} failed (unauthorized)"
        )),
        "{error}"
    );

    // Bad input changes nothing.
    let path = format!("/v1/registries/{registry}");
    let (status, body) = call(
        &cluster,
        Method::PUT,
        &path,
        json!({"username": "ci", "password": ""}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &cluster,
        Method::PUT,
        "/v1/registries/Not%20A%20Host",
        json!({"username": "ci", "password": "x"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, listed) = call(&cluster, Method::GET, "/v1/registries", Value::Null).await;
    assert_eq!(
        (status, &listed["registries"]),
        (200, &json!([])),
        "{listed}"
    );

    // An admin logs the fleet in: the password is neither answered nor kept in clear.
    let login = json!({"username": "ci", "password": "s3cret-pass"});
    let (status, body) = call(&cluster, Method::PUT, &path, login).await;
    assert_eq!((status, &body["username"]), (200, &json!("ci")), "{body}");
    let (_, listed) = call(&cluster, Method::GET, "/v1/registries", Value::Null).await;
    assert_eq!(
        listed["registries"][0]["registry"],
        json!(registry),
        "{listed}"
    );
    assert!(!listed.to_string().contains("s3cret-pass"), "{listed}");
    let snapshot = cluster
        .http()
        .get(format!("{}/v1/snapshot", cluster.api(0)))
        .send()
        .await
        .unwrap();
    assert_eq!(snapshot.status().as_u16(), 200);
    let snapshot = snapshot.bytes().await.unwrap();
    let clear = snapshot
        .windows(b"s3cret-pass".len())
        .any(|w| w == b"s3cret-pass");
    assert!(
        !clear && snapshot.len() > 100,
        "the fleet's snapshot holds the password sealed"
    );

    // With them: pulled and run.
    let id = cluster.submit(0, job.clone()).await;
    let ran = finished(&cluster, id).await;
    assert_eq!(ran.state, JobState::Completed, "{ran:#?}");
    let text = job_output(&cluster.api(0), id).await;
    assert!(
        text.contains(&format!("pulling {private} from {registry} as ci"))
            && text.ends_with("private-ran\n"),
        "{text:?}"
    );

    // Logged out: the list is empty again, and a fresh pull is refused.
    let (status, body) = call(&cluster, Method::DELETE, &path, Value::Null).await;
    assert_eq!((status, &body["registries"]), (200, &json!([])), "{body}");
    let (status, body) = call(&cluster, Method::DELETE, &path, Value::Null).await;
    assert_eq!(status, 404, "{body}");
    docker(&["rmi", &private]);
    let id = cluster.submit(0, job).await;
    let error = error_of(&finished(&cluster, id).await);
    assert!(error.contains("(unauthorized)"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_update_pulls_and_restarts_a_session_onto_the_new_image() {
    init_logs();
    let _image = test_image();
    let registry = Registry::start().await;
    let app = format!("{}/shoal-test/app:latest", registry.host());
    let _images = Images(vec![app.clone()]);
    docker(&["tag", IMAGE, &app]);
    docker(&["push", "-q", &app]);
    let first = image_id(&app);

    let cluster = Cluster::start(1).await.unwrap();
    let _left_behind = LeftBehind(vec![cluster.node(0).id]);
    let template =
        json!({"image": app, "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]});
    let (status, body) = call(&cluster, Method::PUT, "/v1/templates/app", template).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &cluster,
        Method::POST,
        "/v1/sessions",
        json!({"template_id": "app"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let session = JobId(body["id"].as_u64().unwrap());
    cluster
        .wait_job(0, session, "running", |j| j.state == JobState::Running)
        .await;
    let label = format!("label=shoal.job={session}");
    // The image of the session's running container; none while it is being made anew.
    let container_image = || {
        let id = docker(&["ps", "-q", "--filter", &label]);
        let inspect = Command::new("docker")
            .args(["inspect", "-f", "{{.Image}}", &id])
            .output()
            .ok()?;
        let image = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
        (inspect.status.success() && !id.is_empty()).then_some(image)
    };
    assert_eq!(container_image(), Some(first.clone()));

    // A new image under the same tag, pushed; the engine keeps the old one under it.
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nLABEL shoal.test.version=2\n"),
    )
    .unwrap();
    docker(&[
        "build",
        "-q",
        "-t",
        &app,
        &context.path().display().to_string(),
    ]);
    let second = image_id(&app);
    assert_ne!(first, second);
    docker(&["push", "-q", &app]);
    docker(&["tag", IMAGE, &app]);

    let (ok, detail) = update_all(&cluster).await;
    assert!(ok, "{detail}");
    assert!(
        detail.contains(&format!("{app}: pulled {}", &second[..19]))
            && detail.contains(&format!("restarting sessions {session} onto")),
        "{detail}"
    );
    eventually(
        Duration::from_secs(30),
        "the session runs the new image",
        || container_image() == Some(second.clone()),
    )
    .await;
    let job = cluster
        .wait_job(0, session, "running", |j| j.state == JobState::Running)
        .await;
    assert_eq!(
        job.attempts.len(),
        1,
        "the same session, restarted in place: {job:#?}"
    );

    // Nothing new: up to date, no restart.
    let (_, detail) = update_all(&cluster).await;
    assert!(
        detail.contains(&format!("{app}: up to date")) && detail.contains("no session to restart"),
        "{detail}"
    );
    // A policy's `never` here: the image is only checked, nothing is pulled.
    air_gapped(&cluster, true).await;
    let (_, detail) = update_all(&cluster).await;
    assert!(
        detail.contains(&format!("{app}: pull never, present (sha256:")),
        "{detail}"
    );
    air_gapped(&cluster, false).await;
    let (status, body) = call(
        &cluster,
        Method::POST,
        &format!("/v1/sessions/{session}/terminate"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_shows_in_events_and_a_cancel_ends_it_at_once() {
    init_logs();
    // A "registry" on loopback that takes connections and never answers: the pull hangs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = silent.local_addr().unwrap().to_string();
    let holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let cluster = Cluster::start(1).await.unwrap();
    let _left_behind = LeftBehind(vec![cluster.node(0).id]);
    let image = format!("{host}/shoal-test/slow:1");
    let _images = Images(vec![image.clone()]);
    let job = json!({"image": image, "command": ["true"], "max_attempts": 1});
    let id = cluster.submit(0, job).await;
    let pulling = cluster
        .wait_job(0, id, "pulling", |j| {
            j.attempts.last().is_some_and(|a| a.pulling.is_some())
        })
        .await;
    assert_eq!(pulling.state, JobState::Dispatched, "{pulling:#?}");

    // The pull is an event of the job, naming the image.
    let events = cluster
        .http()
        .get(format!("{}/v1/events?topic=job", cluster.api(0)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let told = events
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .any(|event| {
            event["kind"] == "job_pulling"
                && event["subject"] == json!(id.to_string())
                && event["detail"]["image"] == json!(image)
        });
    assert!(told, "{events}");

    // Cancelled mid-pull: it ends at once, not when the pull gives up.
    let started = std::time::Instant::now();
    let (status, body) = call(
        &cluster,
        Method::POST,
        &format!("/v1/jobs/{id}/cancel"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let job = finished(&cluster, id).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(job.state, JobState::Cancelled, "{job:#?}");
    assert_eq!(error_of(&job), "cancelled while its image was pulled");
    holding.abort();
}
