//! The fleet under test: an image `FROM scratch` with this build's `shoald`, the libraries
//! it links and Debian's static busybox (so process jobs can run `sh -c`), five containers
//! on a network of their own, each API published on 127.0.0.1 only, and the marks
//! directory they share with the host. Dropping the [`Fleet`] removes all of it.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use shoal_protocol::MachineId;
use shoal_protocol::api::{ClusterStatus, MachineList};

/// The static busybox the image runs process jobs with (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";
/// The API port inside each container.
const API_PORT: &str = "7400/tcp";
/// Every container's shared secret (the fleet is private to this run).
const SECRET: &str = "chaos-suite-cluster-secret";

/// How to build the fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The `shoald` binary to put in the image.
    pub shoald: PathBuf,
    pub nodes: usize,
    /// `timings.snapshot_every_logs`: lower than the shipped 10,000 so that a machine
    /// coming back catches up by a snapshot install within a run, as in issue 12.
    pub snapshot_every_logs: u64,
}

/// One `shoald` container.
#[derive(Debug)]
pub struct Member {
    /// Container name, also its hostname and node name suffix.
    pub container: String,
    /// Short name (`n1`..), what the marks carry.
    pub name: String,
    pub ip: Ipv4Addr,
    /// Its machine id, known once the fleet formed.
    pub id: OnceLock<MachineId>,
}

/// A running fleet; everything it made is removed on drop.
pub struct Fleet {
    /// Unique per run: container, network and key prefix.
    pub name: String,
    pub network: String,
    pub image: String,
    pub members: Vec<Member>,
    /// The directory every container mounts at `/marks`.
    pub marks: tempfile::TempDir,
    /// When the run started; the book's times count from here.
    pub epoch: Instant,
    /// Unix time (ms) of `epoch`.
    pub epoch_unix_ms: f64,
    /// Unix time (ms) of the kernel's boot, for the `/proc/uptime` stamps in the marks.
    pub boot_unix_ms: f64,
    pub http: reqwest::Client,
    ports: Mutex<Vec<Option<SocketAddr>>>,
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs `docker args`, returning stdout, or an error with stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .context("running docker: is the Docker CLI installed?")?;
    if !output.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// [`docker`] off the async threads.
pub async fn docker_async(args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)
    })
    .await?
}

/// Fails, saying why, unless a Docker engine answers and the static busybox is there.
pub fn require_docker() -> anyhow::Result<()> {
    docker(&["version", "--format", "{{.Server.Version}}"]).context(
        "the chaos suite needs a running Docker engine (and fails without one, on purpose)",
    )?;
    if !Path::new(BUSYBOX).exists() {
        bail!("the chaos suite needs {BUSYBOX}: apt-get install -y busybox-static");
    }
    Ok(())
}

fn now_unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Unix time of boot, from this host's `/proc/uptime` (containers share the kernel's).
fn boot_unix_ms() -> anyhow::Result<f64> {
    let uptime = std::fs::read_to_string("/proc/uptime")?;
    let secs: f64 = uptime.split_whitespace().next().unwrap_or("").parse()?;
    Ok(now_unix_ms() - secs * 1000.0)
}

/// The shared libraries `binary` links, from `ldd`.
fn linked_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let output = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

/// Builds the image: `shoald` and its libraries, busybox as `/bin/sh` and friends, and a
/// config file.
fn build_image(tag: &str, options: &FleetOptions) -> anyhow::Result<()> {
    let context = tempfile::tempdir()?;
    let root = context.path().join("root");
    let shoald = &options.shoald;
    let mut files: Vec<(PathBuf, PathBuf)> = linked_libraries(shoald)?
        .into_iter()
        .map(|lib| (root.join(lib.strip_prefix("/").unwrap()), lib))
        .collect();
    files.push((root.join("shoald"), shoald.clone()));
    files.push((root.join("bin/busybox"), PathBuf::from(BUSYBOX)));
    for (target, source) in &files {
        std::fs::create_dir_all(target.parent().unwrap())?;
        std::fs::copy(source, target).with_context(|| format!("copying {}", source.display()))?;
    }
    // The containers share this host's cores: its load would make every one BUSY, and
    // nothing is placed on a BUSY machine. Everything else is the shipped default.
    let config = format!(
        "load_threshold = 1000.0\n\n[timings]\nsnapshot_every_logs = {}\n",
        options.snapshot_every_logs
    );
    // Every member starts with the test fleet CA, which the harness's client trusts.
    shoal_daemon::testsuite::TEST_CA.store(&root.join("data"))?;
    std::fs::create_dir_all(root.join("etc/shoal"))?;
    std::fs::write(root.join("etc/shoal/shoald.toml"), config)?;
    // Process jobs run as `nobody`, as on any Debian machine.
    let passwd = "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    std::fs::write(root.join("etc/passwd"), passwd)?;
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN [\"/bin/busybox\", \"mkdir\", \"-m\", \"1777\", \"/tmp\"]\n\
         ENTRYPOINT [\"/shoald\"]\n",
    )?;
    docker(&["build", "-q", "-t", tag, context.path().to_str().unwrap()])?;
    Ok(())
}

impl Fleet {
    /// Builds the image, creates the network and starts the containers; returns once every
    /// member sees the same leader, five voters and every machine ONLINE.
    pub async fn start(options: FleetOptions) -> anyhow::Result<Fleet> {
        require_docker()?;
        let pid = std::process::id();
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let name = format!("shoal-chaos-{pid}-{run}");
        let marks = tempfile::tempdir()?;
        // Process jobs write their marks as `nobody`.
        std::fs::set_permissions(marks.path(), std::fs::Permissions::from_mode(0o1777))?;
        let epoch = Instant::now();
        let http = shoal_daemon::testsuite::http_client_builder()
            .default_headers(shoal_daemon::testsuite::keyed_headers())
            .connect_timeout(Duration::from_millis(500))
            .build()?;
        let mut fleet = Fleet {
            network: name.clone(),
            image: format!("{name}:local"),
            members: Vec::new(),
            marks,
            epoch,
            epoch_unix_ms: now_unix_ms(),
            boot_unix_ms: boot_unix_ms()?,
            http,
            ports: Mutex::new(vec![None; options.nodes]),
            name,
        };
        let image = fleet.image.clone();
        let shoald = options.clone();
        tokio::task::spawn_blocking(move || build_image(&image, &shoald)).await??;
        // A subnet of its own: a few tries, in case another run holds one.
        let mut prefix = None;
        for attempt in 0..8u32 {
            let (a, b) = (
                100 + (pid + attempt * 7) % 100,
                (pid / 100 + run + attempt) % 250,
            );
            let subnet = format!("10.{a}.{b}.0/24");
            if docker_async(&["network", "create", "--subnet", &subnet, &fleet.network])
                .await
                .is_ok()
            {
                prefix = Some(format!("10.{a}.{b}"));
                break;
            }
        }
        let prefix = prefix.context("no free subnet for the chaos network")?;
        for i in 0..options.nodes {
            fleet.members.push(Member {
                container: format!("{}-n{}", fleet.name, i + 1),
                name: format!("n{}", i + 1),
                ip: format!("{prefix}.{}", 10 + i).parse()?,
                id: OnceLock::new(),
            });
        }
        let marks = fleet.marks.path().to_str().unwrap().to_string();
        for (i, member) in fleet.members.iter().enumerate() {
            let ip = member.ip.to_string();
            let join = fleet
                .members
                .iter()
                .filter(|m| m.ip != member.ip)
                .map(|m| format!("{}:7401", m.ip))
                .collect::<Vec<_>>()
                .join(",");
            let nodes = options.nodes.to_string();
            let volume = format!("{marks}:/marks");
            docker_async(&[
                "run",
                "-d",
                "--name",
                &member.container,
                "--hostname",
                &member.name,
                "--network",
                &fleet.network,
                "--ip",
                &ip,
                "-p",
                "127.0.0.1::7400",
                "-v",
                &volume,
                &fleet.image,
                "--bind",
                "0.0.0.0",
                "--advertise",
                &ip,
                "--data-dir",
                "/data",
                "--node-name",
                &member.name,
                "--cluster-secret",
                SECRET,
                "--bootstrap-expect",
                &nodes,
                "--join",
                &join,
                "--bootstrap-key",
                shoal_daemon::testsuite::TEST_KEY,
                "--allow-process-jobs",
            ])
            .await?;
            fleet.refresh_port(i).await;
        }
        fleet.wait_formed(Duration::from_secs(90)).await?;
        Ok(fleet)
    }

    /// Seconds since the run began.
    pub fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Looks up where member `i`'s API is published now (a restart picks a new port).
    pub async fn refresh_port(&self, i: usize) {
        let found = docker_async(&["port", &self.members[i].container, API_PORT])
            .await
            .ok()
            .and_then(|out| {
                out.lines()
                    .find_map(|l| l.trim().parse::<SocketAddr>().ok())
            });
        self.ports.lock().unwrap()[i] = found;
    }

    /// Member `i`'s API base URL, if it is published now.
    pub fn url(&self, i: usize, path: &str) -> Option<String> {
        let port = self.ports.lock().unwrap()[i]?;
        Some(format!("https://{port}{path}"))
    }

    /// `GET path` on member `i` as JSON, within `timeout`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<T> {
        let url = self.url(i, path).context("not published")?;
        let response = self.http.get(url).timeout(timeout).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("GET {path} on {}: {status}", self.members[i].name);
        }
        Ok(response.json().await?)
    }

    /// Member `i`'s view of the cluster.
    pub async fn cluster(&self, i: usize) -> anyhow::Result<ClusterStatus> {
        self.get(i, "/v1/cluster", Duration::from_secs(1)).await
    }

    /// The member index of this machine id.
    pub fn index_of(&self, id: MachineId) -> Option<usize> {
        self.members.iter().position(|m| m.id.get() == Some(&id))
    }

    /// The leader most members that answer agree on, and its term.
    pub async fn leader(&self) -> Option<(usize, u64)> {
        let mut votes: Vec<(MachineId, u64)> = Vec::new();
        for i in 0..self.members.len() {
            if let Ok(status) = self.cluster(i).await
                && let Some(leader) = status.leader
            {
                votes.push((leader, status.term));
            }
        }
        let best = votes
            .iter()
            .max_by_key(|(l, t)| (votes.iter().filter(|v| v.0 == *l).count(), *t))?;
        Some((self.index_of(best.0)?, best.1))
    }

    /// Waits for a leader the majority of members names, for at most `within`.
    pub async fn wait_leader(&self, within: Duration) -> Option<(usize, u64)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = self.leader().await {
                return Some(found);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every member names one leader among five voters and lists every
    /// machine ONLINE; records the machine ids.
    async fn wait_formed(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let n = self.members.len();
        let mut last = String::new();
        loop {
            let mut leaders = Vec::new();
            let mut ready = 0;
            for i in 0..n {
                match self.cluster(i).await {
                    Ok(status) => {
                        let _ = self.members[i].id.set(status.machine_id);
                        leaders.push(status.leader);
                        if status.voters.len() == n {
                            ready += 1;
                        }
                    }
                    Err(err) => last = format!("{}: {err}", self.members[i].name),
                }
            }
            let agreed = leaders.len() == n
                && leaders[0].is_some()
                && leaders.iter().all(|l| *l == leaders[0]);
            if agreed && ready == n {
                let list: MachineList = self.get(0, "/v1/machines", Duration::from_secs(1)).await?;
                let online = list
                    .machines
                    .iter()
                    .filter(|m| m.status == shoal_protocol::MachineStatus::Online)
                    .count();
                if online == n {
                    return Ok(());
                }
                last = format!("{online} of {n} machines ONLINE");
            } else if leaders.len() == n {
                last = format!("leaders {leaders:?}, {ready} members see {n} voters");
            }
            if Instant::now() > deadline {
                let logs = docker(&["logs", "--tail", "30", &self.members[0].container])
                    .unwrap_or_default();
                bail!("the fleet did not form within {within:?} ({last}); n1 logs:\n{logs}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Fleet {
    /// Each container's log (stdout and stderr), written to `dir/<name>.log`.
    pub fn save_logs(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        for member in &self.members {
            let output = Command::new("docker")
                .args(["logs", "-t", &member.container])
                .output()?;
            let mut text = output.stdout;
            text.extend_from_slice(&output.stderr);
            std::fs::write(dir.join(format!("{}.log", member.name)), text)?;
        }
        Ok(())
    }

    /// The last `lines` of every container's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for member in &self.members {
            let output = Command::new("docker")
                .args(["logs", "--tail", &lines.to_string(), &member.container])
                .output();
            if let Ok(output) = output {
                out.push_str(&format!("--- {} ---\n", member.name));
                out.push_str(&String::from_utf8_lossy(&output.stdout));
                out.push_str(&String::from_utf8_lossy(&output.stderr));
            }
        }
        out
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for member in &self.members {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v", &member.container])
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.network])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}
