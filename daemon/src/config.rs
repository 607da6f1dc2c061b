//! `shoald` configuration: one file struct, CLI flags and `SHOAL_*` variables laid on top,
//! and one [`Settings::validate`] step that turns it into the runtime [`Config`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use shoal_protocol::costs::COST_LABEL;
use shoal_protocol::{Labels, PROTOCOL_LEVEL, ProtocolLevel};

use crate::exec::confine::ContainerLimits;

/// Where `shoald` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/shoal/shoald.toml";
/// Where `shoald` keeps its state when `--data-dir` is not given.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/shoal";
pub const DEFAULT_API_PORT: u16 = 7400;
pub const DEFAULT_GOSSIP_PORT: u16 = 7401;
pub const DEFAULT_P2P_PORT: u16 = 7402;
/// How long finished jobs are kept when `job_retention` is not given.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// How often each node writes a backup of the fleet state when `snapshot_every` is not given.
pub const DEFAULT_SNAPSHOT_EVERY: Duration = Duration::from_secs(3600);
/// How many backups each node keeps when `snapshot_keep` is not given.
pub const DEFAULT_SNAPSHOT_KEEP: usize = 24;
/// Shortest cluster secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// The config file, `shoald.toml`. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The machine's name in the fleet (default: the hostname).
    pub node_name: Option<String>,
    /// Where the Raft log, snapshots, identity key and secret live.
    pub data_dir: PathBuf,
    /// The IP every listener binds to.
    pub bind: IpAddr,
    /// The IP other machines reach this one on (default: `bind`; required when
    /// `bind` is an unspecified address such as 0.0.0.0).
    pub advertise: Option<IpAddr>,
    /// Admin API (HTTP, WebSocket, dashboard) port. 0 picks a free port.
    pub api_port: u16,
    /// Gossip (UDP) port. 0 picks a free port.
    pub gossip_port: u16,
    /// Peer RPC (libp2p TCP) port. 0 picks a free port.
    pub p2p_port: u16,
    /// Gossip addresses (`host` or `host:port`) of machines already in the fleet.
    pub join: Vec<String>,
    /// How many machines must meet before the fleet bootstraps. 1 bootstraps alone,
    /// unless `join` is set, in which case the machine waits to be added.
    pub bootstrap_expect: usize,
    /// Capability labels, as `key=value` (a bare `key` means `key=true`).
    pub labels: Vec<String>,
    /// The shared cluster secret. Also from `cluster_secret_file`; when neither is
    /// given, a secret is generated in the data directory on first start.
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    pub cluster_secret_file: Option<PathBuf>,
    /// The admin API key the bootstrapping machine records for the new fleet
    /// (`shoal_<16 hex>_<64 hex>`). Without one it makes a key and keeps it in
    /// `admin.key` in the data directory.
    pub bootstrap_key: Option<String>,
    /// Most jobs and sessions this machine runs at once.
    pub max_running: u32,
    /// What an hour of this machine costs, in dollars: work here accrues run time times
    /// this against its org's budget. The same as the label `cost_per_hour`; without
    /// either, work here costs nothing (its runner minutes still count).
    pub cost_per_hour: Option<f64>,
    /// Load (load average per core) at or over which the machine counts as BUSY.
    pub load_threshold: f32,
    /// Run jobs without an image as plain processes (like Nomad's raw_exec), each in a
    /// scratch directory of its own, without further isolation. Off by default.
    pub allow_process_jobs: bool,
    /// The user process jobs run as when shoald runs as root (default `nobody`; root is
    /// refused). A shoald that is not root runs them as its own user.
    pub process_user: Option<String>,
    /// What every container this machine starts is held to: all capabilities but a few
    /// dropped and no new privileges (always), processes, and memory when nothing else
    /// sets it.
    pub containers: ContainerLimits,
    /// HTTPS on the admin API: the fleet CA's certificate by default, or your own.
    pub tls: crate::tls::TlsSettings,
    /// How long finished jobs (and their saved output) are kept while the fleet has no
    /// `job_retention_seconds` setting of its own (`PUT /v1/fleet/settings`).
    #[serde(with = "humantime_serde")]
    pub job_retention: Duration,
    /// How often this node writes a backup of the fleet state to
    /// `data_dir/backups/fleet-<unix time>.snap` (the format of `shoal snapshot save`).
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
    /// How many of those backups are kept, newest first; 0 turns them off.
    pub snapshot_keep: usize,
    pub timings: Timings,
    pub discovery: Discovery,
}

/// Every timing, with defaults suited to a home LAN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timings {
    /// How often chitchat gossips with a peer.
    #[serde(with = "humantime_serde")]
    pub gossip_interval: Duration,
    /// How often a machine publishes a signed heartbeat.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often resources are sampled.
    #[serde(with = "humantime_serde")]
    pub sample_interval: Duration,
    /// Heartbeat age after which a machine counts as OFFLINE.
    #[serde(with = "humantime_serde")]
    pub offline_after: Duration,
    /// Heartbeat age after which a machine counts as STALE.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Heartbeat age after which a machine counts as DEAD and leaves the Raft group.
    #[serde(with = "humantime_serde")]
    pub dead_after: Duration,
    /// How long a voter may be unreachable before a healthy learner replaces it.
    #[serde(with = "humantime_serde")]
    pub voter_grace: Duration,
    /// How often the leader reconciles membership and statuses.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// Raft leader heartbeat.
    #[serde(with = "humantime_serde")]
    pub raft_heartbeat: Duration,
    /// Raft election timeout, lower bound.
    #[serde(with = "humantime_serde")]
    pub raft_election_min: Duration,
    /// Raft election timeout, upper bound.
    #[serde(with = "humantime_serde")]
    pub raft_election_max: Duration,
    /// Log entries between snapshots.
    pub snapshot_every_logs: u64,
    /// How long a node opens a new gossip key before it seals with it, so every node can
    /// open it first (see "Keys and rotation" in SECURITY.md).
    #[serde(with = "humantime_serde")]
    pub gossip_key_switch: Duration,
    /// How long a node still opens the old gossip key after it sealed with the new one.
    #[serde(with = "humantime_serde")]
    pub gossip_key_grace: Duration,
    /// How often a machine that is in no fleet yet, and whose seeds (`join`) do not
    /// answer, says so, naming them.
    #[serde(with = "humantime_serde")]
    pub seed_warning: Duration,
}

/// How machines find each other.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Discovery {
    /// Find seeds on the LAN with mDNS (multicast on every interface).
    pub mdns: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_name: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise: None,
            api_port: DEFAULT_API_PORT,
            gossip_port: DEFAULT_GOSSIP_PORT,
            p2p_port: DEFAULT_P2P_PORT,
            join: Vec::new(),
            bootstrap_expect: 1,
            labels: Vec::new(),
            cluster_secret: None,
            cluster_secret_file: None,
            bootstrap_key: None,
            max_running: 8,
            cost_per_hour: None,
            load_threshold: 0.8,
            allow_process_jobs: false,
            process_user: None,
            containers: ContainerLimits::default(),
            tls: crate::tls::TlsSettings::default(),
            job_retention: DEFAULT_JOB_RETENTION,
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            snapshot_keep: DEFAULT_SNAPSHOT_KEEP,
            timings: Timings::default(),
            discovery: Discovery::default(),
        }
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            gossip_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_millis(500),
            sample_interval: Duration::from_secs(5),
            offline_after: Duration::from_secs(3),
            stale_after: Duration::from_secs(5 * 60),
            dead_after: Duration::from_secs(15 * 60),
            voter_grace: Duration::from_secs(60),
            reconcile_interval: Duration::from_millis(250),
            raft_heartbeat: Duration::from_millis(100),
            raft_election_min: Duration::from_millis(300),
            raft_election_max: Duration::from_millis(600),
            snapshot_every_logs: 10_000,
            gossip_key_switch: Duration::from_secs(2),
            gossip_key_grace: Duration::from_secs(60),
            seed_warning: Duration::from_secs(60),
        }
    }
}

impl Timings {
    /// Short timings for tests and the benchmarks: a whole lifecycle in seconds.
    pub fn fast() -> Self {
        Timings {
            gossip_interval: Duration::from_millis(100),
            heartbeat_interval: Duration::from_millis(100),
            sample_interval: Duration::from_millis(500),
            offline_after: Duration::from_millis(1500),
            stale_after: Duration::from_secs(3),
            dead_after: Duration::from_secs(6),
            voter_grace: Duration::from_secs(2),
            reconcile_interval: Duration::from_millis(100),
            raft_heartbeat: Duration::from_millis(50),
            raft_election_min: Duration::from_millis(250),
            raft_election_max: Duration::from_millis(500),
            snapshot_every_logs: 200,
            gossip_key_switch: Duration::from_millis(500),
            gossip_key_grace: Duration::from_secs(2),
            seed_warning: Duration::from_secs(5),
        }
    }
}

/// The validated runtime configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub bind: IpAddr,
    pub advertise: IpAddr,
    pub api_port: u16,
    pub gossip_port: u16,
    pub p2p_port: u16,
    pub join: Vec<String>,
    pub bootstrap_expect: usize,
    pub labels: Labels,
    /// `None`: read or generate it in the data directory at start.
    pub cluster_secret: Option<String>,
    pub bootstrap_key: Option<String>,
    pub max_running: u32,
    pub load_threshold: f32,
    pub allow_process_jobs: bool,
    pub process_user: Option<String>,
    pub containers: ContainerLimits,
    /// How the admin API speaks: HTTPS (the fleet CA's certificate or the user's), or
    /// plain HTTP when asked.
    pub api_tls: crate::tls::ApiTls,
    pub job_retention: Duration,
    pub snapshot_every: Duration,
    /// 0: no scheduled backups.
    pub snapshot_keep: usize,
    /// Run the jobs dispatched to this machine. Always true from [`Settings::validate`];
    /// benchmarks of the control plane turn it off so placing jobs spawns nothing.
    pub run_jobs: bool,
    /// The highest protocol level this node claims to speak. Always this build's
    /// [`PROTOCOL_LEVEL`] from [`Settings::validate`]; tests lower it to play a machine on
    /// an older build in a mixed-version fleet.
    pub protocol_level: ProtocolLevel,
    /// Where the machine reads its GPUs: `None` (always, from [`Settings::validate`]) is
    /// NVML; tests give fake GPUs.
    pub fake_gpus: Option<crate::gpus::FakeGpus>,
    pub timings: Timings,
    pub mdns: bool,
}

impl Settings {
    /// Reads `path`; a missing default path gives the defaults, a missing explicit one is an error.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        let (path, explicit) = match path {
            Some(path) => (path, true),
            None => (Path::new(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Settings::default())
            }
            Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The machine's name: `node_name`, or the host's name.
    pub fn node_name(&self) -> String {
        match &self.node_name {
            Some(name) => name.clone(),
            None => sysinfo::System::host_name().unwrap_or_else(|_| "shoal".to_string()),
        }
    }

    /// Checks every field and builds the runtime config. Errors name the field.
    pub fn validate(self) -> anyhow::Result<Config> {
        let node_name = self.node_name();
        if node_name.is_empty()
            || node_name.len() > 63
            || !node_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            bail!(
                "node_name: {node_name:?} must be 1 to 63 characters of letters, digits, '-', '_' or '.'"
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            bail!("data_dir: must not be empty");
        }
        if self.bootstrap_expect == 0 {
            bail!("bootstrap_expect: must be at least 1");
        }
        let mut labels = Labels::from_pairs(self.labels.iter().map(String::as_str))
            .map_err(|err| anyhow::anyhow!("labels: {err}"))?;
        if let Some(usd) = self.cost_per_hour {
            shoal_protocol::costs::micros("cost_per_hour", usd).map_err(anyhow::Error::msg)?;
            if labels.get(COST_LABEL).is_some() {
                bail!("cost_per_hour: give it or the label {COST_LABEL}, not both");
            }
            labels
                .insert(COST_LABEL, &usd.to_string())
                .map_err(|err| anyhow::anyhow!("cost_per_hour: {err}"))?;
        }
        let cluster_secret = match (self.cluster_secret, self.cluster_secret_file) {
            (Some(_), Some(_)) => {
                bail!("cluster_secret: give either the secret or cluster_secret_file, not both")
            }
            (Some(secret), None) => Some(secret),
            (None, Some(file)) => Some(
                std::fs::read_to_string(&file)
                    .with_context(|| {
                        format!("cluster_secret_file: cannot read {}", file.display())
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(secret) = &cluster_secret
            && secret.len() < MIN_SECRET_LEN
        {
            bail!("cluster_secret: must be at least {MIN_SECRET_LEN} characters");
        }
        if !(self.load_threshold > 0.0 && self.load_threshold.is_finite()) {
            bail!(
                "load_threshold: must be a positive number, got {}",
                self.load_threshold
            );
        }
        if let Some(key) = &self.bootstrap_key {
            shoal_protocol::keys::parse_key(key)
                .map_err(|why| anyhow::anyhow!("bootstrap_key: {why}"))?;
        }
        if self.job_retention < Duration::from_secs(60) {
            bail!(
                "job_retention: must be at least 1m, got {:?}",
                self.job_retention
            );
        }
        if self.max_running == 0 {
            bail!("max_running: must be at least 1");
        }
        self.containers.validate()?;
        if self.snapshot_every < Duration::from_secs(1) {
            bail!(
                "snapshot_every: must be at least 1s, got {:?}",
                self.snapshot_every
            );
        }
        self.timings.check()?;
        if self.discovery.mdns && self.bind.is_loopback() {
            bail!(
                "discovery.mdns: needs bind to be a LAN address, not {}",
                self.bind
            );
        }
        for seed in &self.join {
            parse_seed(seed).with_context(|| format!("join: bad address {seed:?}"))?;
        }
        let advertise = match self.advertise {
            Some(ip) if ip.is_unspecified() => {
                bail!("advertise: {ip} is not an address others can reach")
            }
            Some(ip) => ip,
            None if self.bind.is_unspecified() => {
                bail!(
                    "advertise: bind is {} (every interface), so set the address other machines reach this one on",
                    self.bind
                )
            }
            None => self.bind,
        };
        let api_tls = self.tls.validate(self.bind)?;
        Ok(Config {
            api_tls,
            node_name,
            data_dir: self.data_dir,
            bind: self.bind,
            advertise,
            api_port: self.api_port,
            gossip_port: self.gossip_port,
            p2p_port: self.p2p_port,
            join: self.join,
            bootstrap_expect: self.bootstrap_expect,
            labels,
            cluster_secret,
            bootstrap_key: self.bootstrap_key,
            max_running: self.max_running,
            load_threshold: self.load_threshold,
            allow_process_jobs: self.allow_process_jobs,
            process_user: self.process_user,
            containers: self.containers,
            job_retention: self.job_retention,
            snapshot_every: self.snapshot_every,
            snapshot_keep: self.snapshot_keep,
            run_jobs: true,
            protocol_level: PROTOCOL_LEVEL,
            fake_gpus: None,
            timings: self.timings,
            mdns: self.discovery.mdns,
        })
    }
}

impl Timings {
    fn check(&self) -> anyhow::Result<()> {
        let nonzero = [
            ("timings.gossip_interval", self.gossip_interval),
            ("timings.heartbeat_interval", self.heartbeat_interval),
            ("timings.sample_interval", self.sample_interval),
            ("timings.reconcile_interval", self.reconcile_interval),
            ("timings.raft_heartbeat", self.raft_heartbeat),
            ("timings.gossip_key_switch", self.gossip_key_switch),
            ("timings.gossip_key_grace", self.gossip_key_grace),
            ("timings.seed_warning", self.seed_warning),
        ];
        for (name, value) in nonzero {
            if value.is_zero() {
                bail!("{name}: must be more than zero");
            }
        }
        if self.offline_after <= self.heartbeat_interval {
            bail!("timings.offline_after: must be longer than timings.heartbeat_interval");
        }
        if !(self.offline_after < self.stale_after && self.stale_after < self.dead_after) {
            bail!(
                "timings.stale_after: must lie between timings.offline_after and timings.dead_after"
            );
        }
        if self.raft_election_min <= self.raft_heartbeat * 2 {
            bail!("timings.raft_election_min: must be more than twice timings.raft_heartbeat");
        }
        if self.raft_election_max <= self.raft_election_min {
            bail!("timings.raft_election_max: must be more than timings.raft_election_min");
        }
        if self.snapshot_every_logs == 0 {
            bail!("timings.snapshot_every_logs: must be at least 1");
        }
        let hour = Duration::from_secs(3600);
        if self.gossip_key_switch > hour || self.gossip_key_grace > hour {
            bail!("timings.gossip_key_switch, timings.gossip_key_grace: at most an hour each");
        }
        Ok(())
    }
}

impl Config {
    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.api_port)
    }

    pub fn gossip_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.gossip_port)
    }

    pub fn p2p_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.p2p_port)
    }

    /// Seeds as `host:port`, with the default gossip port where none was given.
    pub fn seeds(&self) -> Vec<String> {
        self.join
            .iter()
            .filter_map(|seed| parse_seed(seed).ok())
            .collect()
    }
}

/// `host` or `host:port` (IPv6 as `[::1]:7401`), checked and completed with the gossip port.
fn parse_seed(seed: &str) -> anyhow::Result<String> {
    let seed = seed.trim();
    if seed.is_empty() {
        bail!("empty address");
    }
    if seed.parse::<SocketAddr>().is_ok() {
        return Ok(seed.to_string());
    }
    if let Ok(ip) = seed.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_GOSSIP_PORT).to_string());
    }
    match seed.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>()
                .with_context(|| format!("bad port {port:?}"))?;
            if host.is_empty() {
                bail!("missing host");
            }
            Ok(seed.to_string())
        }
        None => Ok(format!("{seed}:{DEFAULT_GOSSIP_PORT}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(settings: Settings) -> String {
        format!("{:#}", settings.validate().unwrap_err())
    }

    #[test]
    fn the_example_config_parses_and_states_the_defaults() {
        let text = include_str!("../../packaging/shoald.toml");
        let example: Settings = toml::from_str(text).expect("packaging/shoald.toml parses");
        let defaults = Settings::default();
        assert_eq!(example.job_retention, defaults.job_retention);
        assert_eq!(example.snapshot_every, defaults.snapshot_every);
        assert_eq!(example.snapshot_keep, defaults.snapshot_keep);
        assert_eq!(example.max_running, defaults.max_running);
        assert_eq!(example.allow_process_jobs, defaults.allow_process_jobs);
        assert_eq!(example.containers, defaults.containers);
        assert_eq!(example.tls.insecure_http, defaults.tls.insecure_http);
        assert_eq!(example.tls.cert, defaults.tls.cert);
        assert_eq!(example.timings.stale_after, defaults.timings.stale_after);
        example.validate().expect("the example is a valid config");
    }

    #[test]
    fn defaults_are_valid() {
        let config = Settings::default().validate().unwrap();
        assert_eq!(config.api_port, 7400);
        assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(config.advertise, config.bind);
        assert_eq!(config.timings.stale_after, Duration::from_secs(300));
        assert_eq!(config.timings.dead_after, Duration::from_secs(900));
        assert_eq!(config.snapshot_every, Duration::from_secs(3600));
        assert_eq!(config.snapshot_keep, 24);
    }

    #[test]
    fn backups_parse_and_a_too_short_interval_is_named() {
        let settings: Settings =
            toml::from_str("snapshot_every = \"30m\"\nsnapshot_keep = 0").unwrap();
        let config = settings.validate().unwrap();
        assert_eq!(config.snapshot_every, Duration::from_secs(1800));
        assert_eq!(config.snapshot_keep, 0);
        let eager = Settings {
            snapshot_every: Duration::from_millis(10),
            ..Settings::default()
        };
        assert!(err_of(eager).starts_with("snapshot_every:"));
    }

    #[test]
    fn file_fields_parse_with_durations() {
        let settings: Settings = toml::from_str(
            r#"
            node_name = "m1"
            labels = ["gpu", "zone=attic"]
            join = ["10.0.0.2", "nas.lan:7401"]
            [timings]
            stale_after = "2m"
            dead_after = "10m"
            "#,
        )
        .unwrap();
        let config = settings.validate().unwrap();
        assert_eq!(config.labels.get("gpu"), Some("true"));
        assert_eq!(config.timings.stale_after, Duration::from_secs(120));
        assert_eq!(config.seeds(), vec!["10.0.0.2:7401", "nas.lan:7401"]);
    }

    #[test]
    fn cost_per_hour_becomes_the_machines_rate_label() {
        let priced = Settings {
            cost_per_hour: Some(0.12),
            ..Settings::default()
        };
        let config = priced.validate().unwrap();
        assert_eq!(config.labels.get(COST_LABEL), Some("0.12"));
        let both = Settings {
            cost_per_hour: Some(0.12),
            labels: vec!["cost_per_hour=0.5".into()],
            ..Settings::default()
        };
        assert!(err_of(both).contains("not both"));
        let negative = Settings {
            cost_per_hour: Some(-1.0),
            ..Settings::default()
        };
        assert!(err_of(negative).starts_with("cost_per_hour"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = toml::from_str::<Settings>("nod_name = 'x'").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let short = Settings {
            cluster_secret: Some("short".into()),
            ..Settings::default()
        };
        assert!(err_of(short).starts_with("cluster_secret:"));
        let label = Settings {
            labels: vec!["Bad Key=1".into()],
            ..Settings::default()
        };
        assert!(err_of(label).starts_with("labels:"));
        let timings = Timings {
            stale_after: Duration::from_secs(1),
            ..Timings::default()
        };
        let timing = Settings {
            timings,
            ..Settings::default()
        };
        assert!(err_of(timing).starts_with("timings.stale_after:"));
        for (switch, grace, field) in [
            (
                Duration::ZERO,
                Duration::from_secs(60),
                "timings.gossip_key_switch:",
            ),
            (
                Duration::from_secs(2),
                Duration::ZERO,
                "timings.gossip_key_grace:",
            ),
            (
                Duration::from_secs(2),
                Duration::from_secs(7200),
                "timings.gossip_key_switch, timings.gossip_key_grace:",
            ),
        ] {
            let timings = Timings {
                gossip_key_switch: switch,
                gossip_key_grace: grace,
                ..Timings::default()
            };
            let settings = Settings {
                timings,
                ..Settings::default()
            };
            assert!(err_of(settings).starts_with(field), "{field}");
        }
        let join = Settings {
            join: vec!["host:notaport".into()],
            ..Settings::default()
        };
        assert!(err_of(join).starts_with("join:"));
        let expect = Settings {
            bootstrap_expect: 0,
            ..Settings::default()
        };
        assert!(err_of(expect).starts_with("bootstrap_expect:"));
    }

    #[test]
    fn fast_timings_are_valid() {
        Timings::fast().check().unwrap();
    }
}
