//! `shoald`'s command line: flags and `SHOAL_*` variables that overlay the config file.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "shoald",
    version,
    about = "The Shoal fleet daemon",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Run the daemon (the default).
    Run(Box<RunArgs>),
    /// Run a local dev fleet on loopback with no config.
    Dev(DevArgs),
    /// Make the first admin API key of a new fleet and print it once; the first start on
    /// this data directory records it.
    Init {
        /// The data directory [default: the config's, else /var/lib/shoal].
        #[arg(long, env = "SHOAL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Config file [default: /etc/shoal/shoald.toml if it exists].
        #[arg(long, env = "SHOAL_CONFIG")]
        config: Option<PathBuf>,
        /// Also make the fleet's cluster secret in this file (0600), unless it is there:
        /// give the same file to every machine (`--cluster-secret-file`) [default: without
        /// --data-dir, the config's `cluster_secret_file`, if set].
        #[arg(long, value_name = "FILE")]
        cluster_secret_file: Option<PathBuf>,
    },
    /// Join a fleet with a registration token from `shoal token create`, then run.
    Join {
        /// The registration token (`shoaljoin_...`).
        #[arg(long, env = "SHOAL_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Peer RPC address (`ip:port`, default port 7402) of any machine in the fleet.
        #[arg(long)]
        peer: String,
        /// Join, keep what the fleet answered in the data directory, and exit: the service
        /// (`systemctl enable --now shoald`) then runs this machine. Run as root on a data
        /// directory another user owns, what it keeps becomes that user's.
        #[arg(long)]
        no_run: bool,
        #[command(flatten)]
        run: Box<RunArgs>,
    },
    /// Start a new fleet from a backup (`shoal snapshot save`, or data_dir/backups/), offline:
    /// checks FILE, then writes it into an empty data directory as a one-node Raft group of
    /// this machine. Start shoald on that directory next; others join with a token.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Restore into a data directory that holds something: its Raft state is moved
        /// aside (`raft.before-restore-<time>`), its identity and secret are kept.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        run: Box<RunArgs>,
    },
    /// Check what this machine needs to run work (Docker, disk, memory, the data directory);
    /// exits 1 if a check fails.
    Diagnose {
        /// The data directory to check [default: the config's, else /var/lib/shoal].
        #[arg(long, env = "SHOAL_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Config file [default: /etc/shoal/shoald.toml if it exists].
        #[arg(long, env = "SHOAL_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print a shell completion script: `shoald completions bash > /etc/bash_completion.d/shoald`.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (`shoald.1`, one per subcommand) into a directory (packaging).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// The man pages of `cmd` and of each of its subcommands, as `(file name, roff)`:
/// `shoald.1`, `shoald-init.1`, ... (hidden commands left out).
pub fn man_pages(cmd: clap::Command) -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: clap::Command, name: String, pages: &mut Vec<(String, Vec<u8>)>) {
        let cmd = cmd.name(name.clone());
        let mut roff = Vec::new();
        if clap_mangen::Man::new(cmd.clone()).render(&mut roff).is_ok() {
            pages.push((format!("{name}.1"), roff));
        }
        for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            walk(sub.clone(), format!("{name}-{}", sub.get_name()), pages);
        }
    }
    let mut pages = Vec::new();
    let name = cmd.get_name().to_string();
    walk(cmd, name, &mut pages);
    pages
}

/// Flags that overlay the config file. Each also reads a `SHOAL_*` variable.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// Config file [default: /etc/shoal/shoald.toml if it exists].
    #[arg(long, env = "SHOAL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the log, snapshots and identity live [default: /var/lib/shoal].
    #[arg(long, env = "SHOAL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The machine's name in the fleet [default: the hostname].
    #[arg(long, env = "SHOAL_NODE_NAME")]
    pub node_name: Option<String>,
    /// IP every listener binds to [default: 127.0.0.1].
    #[arg(long, env = "SHOAL_BIND")]
    pub bind: Option<IpAddr>,
    /// IP other machines reach this one on [default: --bind].
    #[arg(long, env = "SHOAL_ADVERTISE")]
    pub advertise: Option<IpAddr>,
    /// Admin API port [default: 7400].
    #[arg(long, env = "SHOAL_API_PORT")]
    pub api_port: Option<u16>,
    /// Gossip UDP port [default: 7401].
    #[arg(long, env = "SHOAL_GOSSIP_PORT")]
    pub gossip_port: Option<u16>,
    /// Peer RPC TCP port [default: 7402].
    #[arg(long, env = "SHOAL_P2P_PORT")]
    pub p2p_port: Option<u16>,
    /// Gossip addresses of machines already in the fleet, comma-separated.
    #[arg(long, env = "SHOAL_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,
    /// Machines that must meet before the fleet bootstraps [default: 1].
    #[arg(long, env = "SHOAL_BOOTSTRAP_EXPECT")]
    pub bootstrap_expect: Option<usize>,
    /// A capability label `key=value`; repeat for more.
    #[arg(long = "label", env = "SHOAL_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// The shared cluster secret.
    #[arg(long, env = "SHOAL_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// A file holding the cluster secret.
    #[arg(long, env = "SHOAL_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The first admin API key, when this machine bootstraps the fleet (else one is made
    /// and kept in `<data dir>/admin.key`, 0600).
    #[arg(long, env = "SHOAL_BOOTSTRAP_KEY", hide_env_values = true)]
    pub bootstrap_key: Option<String>,
    /// Most jobs and sessions this machine runs at once [default: 8].
    #[arg(long, env = "SHOAL_MAX_RUNNING")]
    pub max_running: Option<u32>,
    /// What an hour of this machine costs, in dollars (for budgets) [default: 0].
    #[arg(long, env = "SHOAL_COST_PER_HOUR", value_name = "USD")]
    pub cost_per_hour: Option<f64>,
    /// Find seeds on the LAN with mDNS (multicast on every interface).
    #[arg(long, env = "SHOAL_MDNS")]
    pub mdns: bool,
    /// Run jobs without an image as plain processes (no isolation).
    #[arg(long, env = "SHOAL_ALLOW_PROCESS_JOBS")]
    pub allow_process_jobs: bool,
    /// Serve the admin API with this PEM certificate chain instead of one from the fleet
    /// CA (with --tls-key).
    #[arg(long, env = "SHOAL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "SHOAL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Serve the admin API as plain HTTP (say, behind a reverse proxy on this host);
    /// refused unless the API binds to loopback.
    #[arg(long, env = "SHOAL_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Allow --insecure-http on an address other machines reach.
    #[arg(long, env = "SHOAL_INSECURE_HTTP_ANY_ADDRESS")]
    pub insecure_http_any_address: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DevArgs {
    /// How many nodes to run.
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Where the dev fleet keeps its data.
    #[arg(long, default_value = ".shoal-dev")]
    pub data_dir: PathBuf,
    /// The first node's API port; node i uses base + 10*i for API, +1 gossip, +2 peer RPC.
    #[arg(long, default_value_t = 7400)]
    pub base_port: u16,
}

impl RunArgs {
    /// Lays the flags that were given over `settings`.
    pub fn overlay(self, mut settings: Settings) -> Settings {
        macro_rules! set {
            ($($field:ident),*) => {$( if let Some(value) = self.$field { settings.$field = value; } )*};
        }
        set!(
            data_dir,
            bind,
            api_port,
            gossip_port,
            p2p_port,
            bootstrap_expect,
            max_running
        );
        if self.node_name.is_some() {
            settings.node_name = self.node_name;
        }
        if self.cost_per_hour.is_some() {
            settings.cost_per_hour = self.cost_per_hour;
        }
        if self.advertise.is_some() {
            settings.advertise = self.advertise;
        }
        if self.cluster_secret.is_some() {
            settings.cluster_secret = self.cluster_secret;
        }
        if self.cluster_secret_file.is_some() {
            settings.cluster_secret_file = self.cluster_secret_file;
        }
        if self.bootstrap_key.is_some() {
            settings.bootstrap_key = self.bootstrap_key;
        }
        if !self.join.is_empty() {
            settings.join = self.join;
        }
        if !self.labels.is_empty() {
            settings.labels = self.labels;
        }
        if self.mdns {
            settings.discovery.mdns = true;
        }
        if self.allow_process_jobs {
            settings.allow_process_jobs = true;
        }
        if self.tls_cert.is_some() {
            settings.tls.cert = self.tls_cert;
        }
        if self.tls_key.is_some() {
            settings.tls.key = self.tls_key;
        }
        if self.insecure_http {
            settings.tls.insecure_http = true;
        }
        if self.insecure_http_any_address {
            settings.tls.insecure_http_any_address = true;
        }
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_overlay_the_file() {
        let cli = Cli::parse_from([
            "shoald",
            "--node-name",
            "m2",
            "--join",
            "10.0.0.1,10.0.0.2:7401",
            "--label",
            "gpu",
            "--label",
            "zone=attic",
            "--api-port",
            "0",
        ]);
        let settings = cli.run.overlay(Settings {
            max_running: 3,
            ..Settings::default()
        });
        assert_eq!(settings.node_name.as_deref(), Some("m2"));
        assert_eq!(settings.join, vec!["10.0.0.1", "10.0.0.2:7401"]);
        assert_eq!(settings.labels, vec!["gpu", "zone=attic"]);
        assert_eq!(settings.api_port, 0);
        assert_eq!(
            settings.max_running, 3,
            "file value kept when no flag is given"
        );
    }

    #[test]
    fn restore_takes_a_file_and_the_run_flags() {
        let cli = Cli::parse_from([
            "shoald",
            "restore",
            "fleet.snap",
            "--data-dir",
            "/tmp/d",
            "--force",
        ]);
        let Some(Commands::Restore { file, force, run }) = cli.command else {
            panic!("not restore");
        };
        assert_eq!(file, PathBuf::from("fleet.snap"));
        assert!(force);
        assert_eq!(run.data_dir, Some(PathBuf::from("/tmp/d")));
    }

    #[test]
    fn tls_flags_overlay_the_file() {
        let cli = Cli::parse_from([
            "shoald",
            "--tls-cert",
            "/etc/shoal/api.pem",
            "--tls-key",
            "/etc/shoal/api.key",
        ]);
        let settings = cli.run.overlay(Settings::default());
        assert_eq!(settings.tls.cert, Some(PathBuf::from("/etc/shoal/api.pem")));
        assert_eq!(settings.tls.key, Some(PathBuf::from("/etc/shoal/api.key")));
        let cli = Cli::parse_from(["shoald", "--insecure-http", "--insecure-http-any-address"]);
        let settings = cli.run.overlay(Settings::default());
        assert!(settings.tls.insecure_http && settings.tls.insecure_http_any_address);
    }

    #[test]
    fn dev_subcommand_parses() {
        let cli = Cli::parse_from(["shoald", "dev", "--nodes", "3"]);
        assert!(matches!(
            cli.command,
            Some(Commands::Dev(DevArgs { nodes: 3, .. }))
        ));
    }
}
