//! HTTPS on the admin API: a browser-like client (`curl --cacert`) and the test client
//! reach every route, WebSocket routes included, with the fleet CA; plain HTTP to the
//! HTTPS port gets nothing; plain HTTP off loopback is refused at start; a certificate
//! of one's own is served; a member without the CA gets it from the fleet; and a
//! relayed attach carries the caller's key only inside TLS that proves the fleet CA.

use std::io::Read;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use shoal_daemon::config::{Settings, Timings};
use shoal_daemon::p2p::{PeerRequest, PeerResponse};
use shoal_daemon::testsuite::{
    Cluster, TEST_CA, TEST_KEY, http_client, init_logs, test_ca_file, wait_until,
};
use shoal_daemon::tls::{ApiTls, FleetCa, Names};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `curl --cacert` of the test CA: the HTTP status, or curl's error.
fn curl(url: &str, extra: &[&str]) -> Result<u16, String> {
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(test_ca_file())
        .args(["-H", &format!("Authorization: Bearer {TEST_KEY}")])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs (apt-get install curl)");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).to_string());
    }
    let code = String::from_utf8_lossy(&output.stdout);
    code.trim()
        .parse()
        .map_err(|_| format!("curl printed {code}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_the_client_reach_every_route_over_https_and_plain_http_gets_nothing() {
    init_logs();
    let cluster = Cluster::start(1).await.unwrap();
    let api = cluster.api(0);
    assert!(api.starts_with("https://"), "{api}");

    // Every GET of the OpenAPI document, as a browser would reach it.
    let document: Value = crate::http::get(format!("{api}/v1/openapi.json")).await;
    let paths = document["paths"].as_object().unwrap();
    let mut reached = 0;
    for (path, item) in paths {
        if item.get("get").is_none() {
            continue;
        }
        let url = format!("{api}{}", path.replace("{id}", "1"));
        let api = url.clone();
        let status = tokio::task::spawn_blocking(move || curl(&api, &[]))
            .await
            .unwrap()
            .unwrap_or_else(|err| panic!("curl {url}: {err}"));
        // Served and answered (a missing job 1 is a 404 from the handler, not TLS).
        assert!(
            (200..500).contains(&status) && status != 401,
            "GET {url} over HTTPS: {status}"
        );
        reached += 1;
    }
    assert!(reached >= 20, "only {reached} GET routes in the document");
    // A write too.
    let url = format!("{api}/v1/jobs");
    let status = tokio::task::spawn_blocking(move || {
        curl(
            &url,
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "-d",
                r#"{"command":["true"]}"#,
            ],
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(status, 201, "POST /v1/jobs over HTTPS");

    // A WebSocket route (wss://), with the key, trusting the fleet CA.
    let mut request = format!("{}/v1/events?since=0", cluster.ws(0))
        .into_client_request()
        .unwrap();
    for (name, value) in &shoal_daemon::testsuite::keyed_headers() {
        request.headers_mut().insert(name, value.clone());
    }
    let (mut socket, _) = shoal_daemon::testsuite::ws_connect(request).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(Message::Text(_))))),
        "an event over wss: {first:?}"
    );

    // Plain HTTP to the HTTPS port: no HTTP answer at all.
    let plain = format!("http://{}/health", cluster.node(0).api_addr);
    let err = http_client().get(&plain).send().await.unwrap_err();
    assert!(!err.is_status(), "{err}");
    let curled = tokio::task::spawn_blocking(move || curl(&plain, &[]))
        .await
        .unwrap();
    assert!(
        curled.is_err() || curled == Ok(0),
        "plain HTTP got {curled:?}"
    );
    // Nor does a client that trusts another CA get past the handshake.
    let stranger = FleetCa::generate().unwrap();
    let other = reqwest::Client::builder()
        .tls_backend_preconfigured(shoal_daemon::tls::client_config(&stranger.cert_pem).unwrap())
        .build()
        .unwrap();
    let err = other.get(format!("{api}/health")).send().await.unwrap_err();
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );
    cluster.shutdown().await;
}

#[test]
fn insecure_http_is_refused_off_loopback_unless_forced() {
    let lan: IpAddr = "192.0.2.10".parse().unwrap();
    let mut settings = Settings {
        bind: lan,
        ..Settings::default()
    };
    settings.tls.insecure_http = true;
    let err = settings.clone().validate().unwrap_err().to_string();
    assert!(
        err.contains("insecure_http") && err.contains("--insecure-http-any-address"),
        "{err}"
    );
    settings.tls.insecure_http_any_address = true;
    let config = settings.validate().unwrap();
    assert!(matches!(config.api_tls, ApiTls::Off));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_http_on_loopback_serves_plain_http() {
    init_logs();
    let cluster = Cluster::start_configured(1, Timings::fast(), |config| {
        config.api_tls = ApiTls::Off;
    })
    .await
    .unwrap();
    let api = cluster.api(0);
    assert!(api.starts_with("http://"), "{api}");
    let status = http_client()
        .get(format!("{api}/v1/machines"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    cluster.shutdown().await;
}

/// A CA of the user's own and a certificate from it, as files.
fn own_certificate(dir: &std::path::Path) -> (FleetCa, std::path::PathBuf, std::path::PathBuf) {
    let own = FleetCa::generate().unwrap();
    let names = Names {
        hostname: "shoal.example".into(),
        ips: vec!["127.0.0.1".parse().unwrap()],
    };
    let (cert, key) = own.issue(&names).unwrap();
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    (own, cert_file, key_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_ones_own_is_served_and_nodes_still_prove_the_fleet_ca() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (own, cert, key) = own_certificate(dir.path());
    let loaded = shoal_daemon::tls::load_own(&cert, &key).unwrap();
    let cluster = Cluster::start_configured(1, Timings::fast(), move |config| {
        config.api_tls = ApiTls::Own(loaded.clone());
    })
    .await
    .unwrap();
    let api = cluster.api(0);
    // A client that trusts the user's CA gets the user's certificate.
    let mine = reqwest::Client::builder()
        .tls_backend_preconfigured(shoal_daemon::tls::client_config(&own.cert_pem).unwrap())
        .default_headers(shoal_daemon::testsuite::keyed_headers())
        .build()
        .unwrap();
    let status = mine
        .get(format!("{api}/v1/machines"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    // The fleet CA alone does not verify it.
    assert!(
        http_client()
            .get(format!("{api}/health"))
            .send()
            .await
            .is_err()
    );
    // A node that relays asks for the fleet certificate by name and gets it: the TLS
    // handshake passes, and the node answers (no such session: 404 before the upgrade).
    let url = shoal_daemon::attach::relay_url(
        &cluster.node(0).api_addr.to_string(),
        shoal_protocol::JobId(1),
        80,
        24,
    );
    let tls = Arc::new(shoal_daemon::testsuite::tls_config());
    let Err(err) = shoal_daemon::attach::connect(&url, TEST_KEY, tls).await else {
        panic!("attached to session 1, which does not exist");
    };
    assert!(err.contains("404"), "{err}");

    // Bad files are a clear error at start.
    std::fs::write(&key, "garbage").unwrap();
    let err = shoal_daemon::tls::load_own(&cert, &key)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tls.key") && err.contains("no PEM private key"),
        "{err}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_attach_never_sends_the_key_in_clear() {
    init_logs();
    // A plain TCP listener where a machine's API should be: it records every byte.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let mut tcp = tcp.into_std().unwrap();
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let seen = seen.clone();
                tokio::task::spawn_blocking(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tcp.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        })
    };
    // The URL a relay uses is wss://, and plain ws:// is refused before connecting.
    let url = shoal_daemon::attach::relay_url(&addr, shoal_protocol::JobId(7), 80, 24);
    assert!(url.starts_with("wss://"), "{url}");
    let tls = Arc::new(shoal_daemon::testsuite::tls_config());
    let plain = url.replacen("wss://", "ws://", 1);
    let err = shoal_daemon::attach::connect(&plain, TEST_KEY, tls.clone())
        .await
        .err()
        .unwrap();
    assert!(err.contains("wss://"), "{err}");
    // Against the listener that speaks no TLS: the handshake fails, the key never goes.
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        shoal_daemon::attach::connect(&url, TEST_KEY, tls),
    )
    .await
    .unwrap()
    .err()
    .unwrap();
    assert!(err.contains("TLS"), "{err}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bytes = seen.lock().unwrap().clone();
    assert!(!bytes.is_empty(), "the relay reached the listener");
    assert_eq!(bytes[0], 0x16, "a TLS handshake record first");
    let text = String::from_utf8_lossy(&bytes);
    let secret = TEST_KEY.rsplit('_').next().unwrap();
    assert!(
        !text.contains(secret) && !text.contains("Bearer") && !text.contains("attach"),
        "the key or the request went in clear: {text}"
    );
    recorder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_the_ca_gets_it_and_a_stranger_does_not() {
    init_logs();
    let mut cluster = Cluster::start(1).await.unwrap();
    let i = cluster.add_node_without_ca().await.unwrap();
    wait_until(
        Duration::from_secs(20),
        "the fleet CA on the new member",
        || cluster.node(i).tls.fleet_ca().filter(|ca| *ca == *TEST_CA),
    )
    .await
    .unwrap();
    // It serves a certificate from the fleet CA now, and keeps the CA on disk.
    let api = cluster.api(i);
    wait_until(Duration::from_secs(5), "a fleet certificate", || {
        std::thread::scope(|scope| {
            scope
                .spawn(|| curl(&format!("{api}/health"), &[]).ok())
                .join()
                .unwrap()
        })
        .filter(|status| *status == 200)
    })
    .await
    .unwrap();
    assert_eq!(
        FleetCa::load(&cluster.data_dir(i)).unwrap().as_ref(),
        Some(&*TEST_CA)
    );

    // A machine with the secret but not admitted is in gossip, yet gets no CA.
    let stranger = cluster
        .start_stranger(50, shoal_daemon::testsuite::TEST_SECRET)
        .await
        .unwrap();
    let member = cluster.node(0).info.borrow().addr.clone();
    let answer = stranger
        .node
        .p2p
        .request(
            &member.peer_id,
            &member.p2p_addr,
            PeerRequest::FleetCa,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert!(
        matches!(answer, PeerResponse::Refused(_)),
        "a stranger was answered {answer:?}"
    );
    stranger.shutdown().await;
    cluster.shutdown().await;
}
