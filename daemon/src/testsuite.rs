//! In-process clusters for tests and benchmarks: N nodes on 127.0.0.1 with
//! OS-assigned ports, short timings and their data in a temporary directory.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use shoal_protocol::{JobId, JobRecord, MachineId, MachineStatus, ProtocolLevel};

use crate::config::{Config, Settings, Timings};
use crate::node::{Listeners, Node, RunningNode};

/// The secret every test node shares.
pub const TEST_SECRET: &str = "shoal-test-cluster-secret";

/// The admin API key of every test cluster (org `default`), recorded when it bootstraps.
pub const TEST_KEY: &str =
    "shoal_7e57000000000001_5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// The header that carries [`TEST_KEY`], for clients built elsewhere.
pub fn keyed_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {TEST_KEY}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&bearer).expect("a valid header"),
    );
    headers
}

/// The fleet CA of every test cluster, made once per process: each node's data directory
/// gets it before the node starts, as joining would put it there.
pub static TEST_CA: std::sync::LazyLock<crate::tls::FleetCa> =
    std::sync::LazyLock::new(|| crate::tls::FleetCa::generate().expect("a test fleet CA"));

static TEST_TLS: std::sync::LazyLock<rustls::ClientConfig> = std::sync::LazyLock::new(|| {
    crate::tls::client_config(&TEST_CA.cert_pem).expect("a client config for the test CA")
});

/// A file holding [`TEST_CA`]'s certificate, for `shoal --cacert` and `curl --cacert`.
pub fn test_ca_file() -> PathBuf {
    static FILE: std::sync::LazyLock<tempfile::TempPath> = std::sync::LazyLock::new(|| {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), &TEST_CA.cert_pem).expect("writing the test CA");
        file.into_temp_path()
    });
    FILE.to_path_buf()
}

/// A rustls client config that trusts [`TEST_CA`] alone.
pub fn tls_config() -> rustls::ClientConfig {
    TEST_TLS.clone()
}

/// A client builder that trusts [`TEST_CA`], for clients built elsewhere.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(tls_config())
}

/// An HTTPS client that trusts [`TEST_CA`] and sends [`TEST_KEY`] with every request.
pub fn http_client() -> reqwest::Client {
    http_client_builder()
        .default_headers(keyed_headers())
        .build()
        .expect("an HTTP client")
}

/// `GET url` with [`http_client`], its JSON answer read as `T`; panics naming the URL.
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    let response = http_client().get(url).send().await;
    let response = response.unwrap_or_else(|err| panic!("GET {url}: {err}"));
    response
        .json()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
}

/// A WebSocket over TLS to a node (`wss://` or `https://` URL), trusting [`TEST_CA`].
pub type TestSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens `request` (a `wss://` URL or request) over TLS that trusts [`TEST_CA`].
pub async fn ws_connect(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest,
) -> Result<
    (
        TestSocket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    ws_connect_with(request, std::sync::Arc::new(tls_config())).await
}

/// As [`ws_connect`], trusting what `tls` trusts.
pub async fn ws_connect_with(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest,
    tls: std::sync::Arc<rustls::ClientConfig>,
) -> Result<
    (
        TestSocket,
        tokio_tungstenite::tungstenite::handshake::client::Response,
    ),
    tokio_tungstenite::tungstenite::Error,
> {
    use tokio_tungstenite::tungstenite::Error;
    let request = request.into_client_request()?;
    let uri = request.uri();
    let host = uri.host().unwrap_or("127.0.0.1").trim_matches(['[', ']']);
    let port = uri.port_u16().unwrap_or(443);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|err| Error::Io(std::io::Error::other(err)))?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    tokio_tungstenite::client_async(request, stream).await
}

/// Changes each node's validated config before it starts.
type Configure = Arc<dyn Fn(&mut Config) + Send + Sync>;

/// A cluster of in-process nodes. Node 0 bootstraps; the others join it.
pub struct Cluster {
    dir: tempfile::TempDir,
    nodes: Vec<Option<RunningNode>>,
    gossip_addrs: Vec<SocketAddr>,
    timings: Timings,
    configure: Configure,
    /// Nodes that claim a lower protocol level than this build's, as an older release
    /// would, until [`Cluster::upgrade`].
    older: BTreeMap<usize, ProtocolLevel>,
    /// Nodes started with no fleet CA in their data directory: they must get it from a
    /// member (or, with a token, in the join answer).
    without_ca: std::collections::BTreeSet<usize>,
}

impl Cluster {
    /// Starts `n` nodes with [`Timings::fast`] and waits until all are ONLINE everywhere
    /// and the autopilot has settled the voters.
    pub async fn start(n: usize) -> anyhow::Result<Cluster> {
        Self::start_with(n, Timings::fast()).await
    }

    /// Starts `n` nodes with the given timings and waits as [`Cluster::start`] does.
    pub async fn start_with(n: usize, timings: Timings) -> anyhow::Result<Cluster> {
        Self::start_configured(n, timings, |_| {}).await
    }

    /// Starts `n` nodes as [`Cluster::start_with`] does, each with its config changed by
    /// `configure` (also for nodes added or restarted later), e.g. to lift `max_running`
    /// or turn `run_jobs` off in a benchmark.
    pub async fn start_configured(
        n: usize,
        timings: Timings,
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> anyhow::Result<Cluster> {
        let cluster = Cluster {
            dir: tempfile::tempdir()?,
            nodes: Vec::new(),
            gossip_addrs: Vec::new(),
            timings,
            configure: Arc::new(configure),
            older: BTreeMap::new(),
            without_ca: Default::default(),
        };
        cluster.form(n).await
    }

    /// Starts `n` nodes as [`Cluster::start`] does, every one claiming protocol `level`
    /// as a build of an older release would: a fleet before its rolling upgrade.
    /// [`Cluster::upgrade`] restarts one at this build's level.
    pub async fn start_at_level(n: usize, level: ProtocolLevel) -> anyhow::Result<Cluster> {
        let cluster = Cluster {
            dir: tempfile::tempdir()?,
            nodes: Vec::new(),
            gossip_addrs: Vec::new(),
            timings: Timings::fast(),
            configure: Arc::new(|_| {}),
            older: (0..n).map(|i| (i, level)).collect(),
            without_ca: Default::default(),
        };
        cluster.form(n).await
    }

    /// Launches the first `n` nodes and waits until they form a settled fleet.
    async fn form(mut self, n: usize) -> anyhow::Result<Cluster> {
        for i in 0..n {
            if i > 0 {
                self.approve(i).await?;
            }
            let running = self.launch(i, Vec::new(), TEST_SECRET).await?;
            self.gossip_addrs.push(running.1);
            self.nodes.push(Some(running.0));
        }
        self.wait_all_online(n, Duration::from_secs(20)).await?;
        let voters = crate::autopilot::target_voters(n).min(n);
        self.wait_voters(voters, Duration::from_secs(20)).await?;
        wait_until(
            Duration::from_secs(20),
            "the test key on every node",
            || {
                self.running()
                    .into_iter()
                    .all(|i| self.node(i).fleet.read(|s| !s.api_keys.is_empty()))
                    .then_some(())
            },
        )
        .await?;
        Ok(self)
    }

    /// Starts a one-node fleet on a copy of the data directory `source` (a node that ran
    /// with [`TEST_SECRET`] and [`TEST_KEY`]), and waits until it leads and is ONLINE.
    pub async fn start_from_data_dir(
        source: &std::path::Path,
        timings: Timings,
        configure: impl Fn(&mut Config) + Send + Sync + 'static,
    ) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster {
            dir: tempfile::tempdir()?,
            nodes: Vec::new(),
            gossip_addrs: Vec::new(),
            timings,
            configure: Arc::new(configure),
            older: BTreeMap::new(),
            without_ca: Default::default(),
        };
        copy_dir(source, &cluster.data_dir(0))?;
        let running = cluster.launch(0, Vec::new(), TEST_SECRET).await?;
        cluster.gossip_addrs.push(running.1);
        cluster.nodes.push(Some(running.0));
        cluster.wait_leader(Duration::from_secs(20)).await?;
        let id = cluster.node(0).id;
        wait_until(Duration::from_secs(20), "the node ONLINE", || {
            (cluster.status_seen(0, id) == Some(MachineStatus::Online)).then_some(())
        })
        .await?;
        Ok(cluster)
    }

    /// Starts a fleet restored from `backup` (a snapshot file, e.g. from `GET /v1/snapshot`):
    /// node 0's data directory is restored offline (`shoald restore`) and it starts as a
    /// one-node group; `n - 1` more nodes join it. Waits until the new machines are ONLINE
    /// on every node (the old fleet's records stay, retired) and the voters settled.
    pub async fn restored(backup: &std::path::Path, n: usize) -> anyhow::Result<Cluster> {
        let mut cluster = Cluster {
            dir: tempfile::tempdir()?,
            nodes: Vec::new(),
            gossip_addrs: Vec::new(),
            timings: Timings::fast(),
            configure: Arc::new(|_| {}),
            older: BTreeMap::new(),
            without_ca: Default::default(),
        };
        let config = cluster.settings(0, Vec::new(), TEST_SECRET).validate()?;
        crate::restore::restore(backup, &config, false)?;
        for i in 0..n {
            if i > 0 {
                cluster.approve(i).await?;
            }
            let running = cluster.launch(i, Vec::new(), TEST_SECRET).await?;
            cluster.gossip_addrs.push(running.1);
            cluster.nodes.push(Some(running.0));
        }
        cluster.wait_new_online(Duration::from_secs(20)).await?;
        let voters = crate::autopilot::target_voters(n).min(n);
        cluster.wait_voters(voters, Duration::from_secs(20)).await?;
        Ok(cluster)
    }

    /// Waits until every running node lists every running node's machine as ONLINE.
    pub async fn wait_new_online(&self, timeout: Duration) -> anyhow::Result<()> {
        let ids: Vec<MachineId> = self.running().iter().map(|i| self.node(*i).id).collect();
        wait_until(timeout, "the running machines ONLINE on every node", || {
            self.running()
                .into_iter()
                .all(|i| {
                    self.node(i).fleet.read(|state| {
                        ids.iter().all(|id| {
                            state
                                .machines
                                .get(id)
                                .is_some_and(|m| m.status == MachineStatus::Online)
                        })
                    })
                })
                .then_some(())
        })
        .await
    }

    /// The settings node `i` runs with; `labels` are its own labels.
    pub fn settings(&self, i: usize, labels: Vec<String>, secret: &str) -> Settings {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        // Every other node's gossip address; node 0's first start has none and bootstraps.
        let join = self
            .gossip_addrs
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, addr)| addr.to_string())
            .collect();
        Settings {
            node_name: Some(format!("node-{i}")),
            data_dir: self.data_dir(i),
            bind: loopback,
            api_port: 0,
            gossip_port: 0,
            p2p_port: 0,
            join,
            labels,
            cluster_secret: Some(secret.to_string()),
            bootstrap_key: Some(TEST_KEY.to_string()),
            timings: self.timings.clone(),
            // The test machine's own load (a parallel build, say) must not make nodes BUSY.
            load_threshold: 1e9,
            allow_process_jobs: true,
            ..Settings::default()
        }
    }

    /// Where node `i` keeps its data.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    async fn launch(
        &self,
        i: usize,
        labels: Vec<String>,
        secret: &str,
    ) -> anyhow::Result<(RunningNode, SocketAddr)> {
        let mut config = self.settings(i, labels, secret).validate()?;
        (self.configure)(&mut config);
        if !self.without_ca.contains(&i) && crate::tls::FleetCa::load(&config.data_dir)?.is_none() {
            TEST_CA.store(&config.data_dir)?;
        }
        if let Some(level) = self.older.get(&i) {
            config.protocol_level = *level;
        }
        let listeners = Listeners::bind(&config).await?;
        let gossip = listeners.gossip.local_addr()?;
        Ok((Node::start(config, listeners).await?, gossip))
    }

    /// Admits node `i`, which will join with the cluster secret alone, through the first
    /// running node, as an admin would with `shoal machines approve`.
    async fn approve(&self, i: usize) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.data_dir(i))?;
        let keypair = crate::identity::load_or_create_keypair(&self.data_dir(i))?;
        let id = crate::identity::machine_id(&keypair.public().to_peer_id());
        let through = self
            .running()
            .into_iter()
            .next()
            .context("no node is running")?;
        // Boxed: the write path's future is deep, and every test awaits this one.
        Box::pin(crate::admission::approve_with_key(
            self.node(through),
            TEST_KEY,
            id,
        ))
        .await
        .map_err(|err| anyhow::anyhow!("approving node {i}: {}", err.message))
    }

    /// Starts one more node that joins the fleet with the secret (approved by an admin,
    /// as it would be), returning its index.
    pub async fn add_node(&mut self, labels: Vec<String>) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        self.approve(i).await?;
        let (running, gossip) = self.launch(i, labels, TEST_SECRET).await?;
        self.gossip_addrs.push(gossip);
        self.nodes.push(Some(running));
        Ok(i)
    }

    /// Starts one more node as [`Cluster::add_node`] does, with no fleet CA of its own:
    /// it asks a member for it. Returns its index.
    pub async fn add_node_without_ca(&mut self) -> anyhow::Result<usize> {
        self.without_ca.insert(self.nodes.len());
        self.add_node(Vec::new()).await
    }

    /// Starts one more node that joins the fleet claiming protocol `level`, as a machine
    /// on an older build would; returns its index.
    pub async fn add_node_at_level(&mut self, level: ProtocolLevel) -> anyhow::Result<usize> {
        self.older.insert(self.nodes.len(), level);
        self.add_node(Vec::new()).await
    }

    /// Starts one more node that joins with a registration token: it presents the token to
    /// node `via` over peer RPC and runs with the secret it gets back. Returns its index.
    pub async fn join_with_token(&mut self, via: usize, token: &str) -> anyhow::Result<usize> {
        let i = self.nodes.len();
        // The CA comes in the join answer.
        self.without_ca.insert(i);
        let peer = self.node(via).info.borrow().addr.p2p_addr.clone();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let name = format!("node-{i}");
        let joined = crate::join::request(&self.data_dir(i), loopback, &peer, token, &name).await?;
        let (running, gossip) = self.launch(i, Vec::new(), &joined.cluster_secret).await?;
        self.gossip_addrs.push(gossip);
        self.nodes.push(Some(running));
        Ok(i)
    }

    /// Starts a node that gossips to the fleet with a different secret. It is not
    /// part of the cluster's node list.
    pub async fn start_outsider(&self, secret: &str) -> anyhow::Result<RunningNode> {
        self.start_stranger(self.nodes.len() + 100, secret).await
    }

    /// Starts a machine that gossips to the fleet with `secret` and nothing else (no
    /// approval, no token), on the data directory of index `i`: the same identity each
    /// time for the same `i`. It is not part of the cluster's node list.
    pub async fn start_stranger(&self, i: usize, secret: &str) -> anyhow::Result<RunningNode> {
        Ok(self.launch(i, Vec::new(), secret).await?.0)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`; panics if it is stopped.
    pub fn node(&self, i: usize) -> &Arc<Node> {
        &self.nodes[i].as_ref().expect("node is running").node
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    /// The base URL of node `i`'s admin API: HTTPS, certified by [`TEST_CA`] (plain
    /// HTTP only for a node configured so).
    pub fn api(&self, i: usize) -> String {
        let node = self.node(i);
        let scheme = if node.config.api_tls.is_https() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", node.api_addr)
    }

    /// The base WebSocket URL of node `i`'s admin API (`wss://`).
    pub fn ws(&self, i: usize) -> String {
        format!("wss://{}", self.node(i).api_addr)
    }

    /// An HTTP client for the cluster's admin API: every test request goes through one of
    /// these, so it carries whatever credentials the API asks for.
    pub fn http(&self) -> reqwest::Client {
        http_client()
    }

    /// `POST /v1/jobs` of `body` through node `i`; the new job's id (201 asserted).
    pub async fn submit(&self, i: usize, body: serde_json::Value) -> JobId {
        let url = format!("{}/v1/jobs", self.api(i));
        let response = self.http().post(&url).json(&body).send().await;
        let response = response.unwrap_or_else(|err| panic!("POST {url}: {err}"));
        let status = response.status().as_u16();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(status, 201, "POST {url} {body}: {answer}");
        JobId(answer["job"]["id"].as_u64().expect("a job id"))
    }

    /// Waits until node `i`'s replica shows job `id` in a state `done` accepts; panics
    /// naming `what` and showing the job as it stands after 30 s.
    pub async fn wait_job(
        &self,
        i: usize,
        id: JobId,
        what: &str,
        done: impl Fn(&JobRecord) -> bool,
    ) -> JobRecord {
        let job = || self.node(i).fleet.read(|s| s.jobs.get(&id).cloned());
        match wait_until(Duration::from_secs(30), what, || job().filter(|j| done(j))).await {
            Ok(found) => found,
            Err(err) => panic!("{err}; the job is {:#?}", job()),
        }
    }

    /// Indexes of running nodes.
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.is_running(*i))
            .collect()
    }

    /// Waits until every running node's replica satisfies `holds`, or fails after
    /// `timeout` naming `what`.
    pub async fn wait_every_replica(
        &self,
        timeout: Duration,
        what: &str,
        holds: impl Fn(&shoal_protocol::FleetState) -> bool,
    ) -> anyhow::Result<()> {
        wait_until(timeout, what, || {
            self.running()
                .into_iter()
                .all(|i| self.node(i).fleet.read(&holds))
                .then_some(())
        })
        .await
    }

    /// The index of the node every running node agrees leads, if they agree.
    pub fn leader(&self) -> Option<usize> {
        let running = self.running();
        let leader = self.node(*running.first()?).leader()?;
        let agreed = running
            .iter()
            .all(|i| self.node(*i).leader() == Some(leader));
        let index = running.into_iter().find(|i| self.node(*i).id == leader)?;
        agreed.then_some(index)
    }

    /// Waits until the running nodes agree on a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        wait_until(timeout, "a leader all nodes agree on", || self.leader()).await
    }

    /// Waits until every running node sees a settled (not joint) membership with `n` voters.
    pub async fn wait_voters(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        wait_until(
            timeout,
            &format!("{n} voters settled on every node"),
            || {
                self.running()
                    .into_iter()
                    .all(|i| {
                        let metrics = self.node(i).raft.metrics();
                        let metrics = metrics.borrow();
                        let membership = metrics.membership_config.membership();
                        membership.get_joint_config().len() == 1
                            && membership.voter_ids().count() == n
                    })
                    .then_some(())
            },
        )
        .await
    }

    /// Stops node `i` and keeps its data directory.
    pub async fn stop(&mut self, i: usize) {
        if let Some(running) = self.nodes[i].take() {
            running.shutdown().await;
        }
    }

    /// Starts node `i` again on its data directory (with new ports).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        assert!(self.nodes[i].is_none(), "stop node {i} first");
        let (running, gossip) = self.launch(i, Vec::new(), TEST_SECRET).await?;
        self.gossip_addrs[i] = gossip;
        self.nodes[i] = Some(running);
        Ok(())
    }

    /// Upgrades node `i` as an operator would: stops it and starts it again on its data
    /// directory, now speaking this build's protocol level.
    pub async fn upgrade(&mut self, i: usize) -> anyhow::Result<()> {
        self.stop(i).await;
        self.older.remove(&i);
        self.restart(i).await
    }

    /// The status node `observer` reports for node `subject`.
    pub fn status_seen(&self, observer: usize, subject: MachineId) -> Option<MachineStatus> {
        self.node(observer)
            .fleet
            .read(|state| state.machines.get(&subject).map(|m| m.status))
    }

    /// Waits until every running node lists `n` machines, all ONLINE.
    pub async fn wait_all_online(&self, n: usize, timeout: Duration) -> anyhow::Result<()> {
        wait_until(
            timeout,
            &format!("{n} machines ONLINE on every node"),
            || {
                self.running()
                    .into_iter()
                    .all(|i| {
                        self.node(i).fleet.read(|state| {
                            state.machines.len() == n
                                && state
                                    .machines
                                    .values()
                                    .all(|m| m.status == MachineStatus::Online)
                        })
                    })
                    .then_some(())
            },
        )
        .await
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            self.stop(i).await;
        }
    }
}

/// A temporary directory process jobs may write in: they run as an unprivileged user
/// (`nobody` when the tests run as root), so it is open to every user, as `/tmp` is.
pub fn dir_for_process_jobs() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir
}

/// Copies the directory tree `from` to `to` (made if missing), keeping file modes.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Polls `check` every 20 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends logs to the test harness; `SHOAL_LOG` filters them (default: warnings).
pub fn init_logs() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SHOAL_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
