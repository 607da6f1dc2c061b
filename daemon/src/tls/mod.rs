//! HTTPS on the admin API: the fleet CA (`ca.rs`), the `[tls]` settings (`config.rs`), the
//! server's certificate and listener (`server.rs`), clients that trust the fleet CA
//! (`client.rs`), and how a member that lacks the CA gets it from another (`fetch.rs`).
//!
//! ```text
//!  fleet formed ─▶ CA made (shoald init, the dev fleet, or the first leader) ─▶ data_dir/tls/
//!  joiner ◀── Joined { fleet_ca } ── member          member ◀── FleetCa ── member
//!  every node: CA ─issue─▶ its own certificate (API addresses, hostname, loopback)
//! ```

mod ca;
mod client;
mod config;
pub mod fetch;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;

pub use ca::{CA_CERT_FILE, CA_KEY_FILE, FleetCa, Names, TLS_DIR, paths};
pub use client::client_config;
pub use config::{ApiTls, TlsSettings, certified_pem, load_own};
pub use server::{ApiCert, FLEET_SERVER_NAME, TlsListener, server_config};

/// A node's TLS state: the CA it holds (if it has it yet) and the certificate it serves.
pub struct NodeTls {
    pub mode: ApiTls,
    cert: Arc<ApiCert>,
    ca: RwLock<Option<FleetCa>>,
    relay: RwLock<Option<Arc<rustls::ClientConfig>>>,
    names: Names,
    data_dir: PathBuf,
}

impl NodeTls {
    /// Loads the CA from `data_dir` (making one when `make_ca`: a node about to found a
    /// fleet alone) and issues this node's certificate for `api` and `hostname`. Without
    /// a CA yet, the API serves a self-signed certificate until one arrives.
    pub fn start(
        mode: ApiTls,
        data_dir: PathBuf,
        api: SocketAddr,
        bind: IpAddr,
        hostname: &str,
        make_ca: bool,
    ) -> anyhow::Result<NodeTls> {
        let names = Names {
            hostname: hostname.to_string(),
            ips: vec![api.ip(), bind],
        };
        let ca = if make_ca {
            Some(FleetCa::load_or_create(&data_dir)?)
        } else {
            FleetCa::load(&data_dir)?
        };
        let fleet = match &ca {
            Some(ca) => issued(ca, &names)?,
            None => self_signed(&names)?,
        };
        let own = match &mode {
            ApiTls::Own(own) => Some(own.clone()),
            _ => None,
        };
        let relay = ca.as_ref().map(relay_config).transpose()?;
        Ok(NodeTls {
            mode,
            cert: Arc::new(ApiCert::new(fleet, own)),
            ca: RwLock::new(ca),
            relay: RwLock::new(relay),
            names,
            data_dir,
        })
    }

    /// The rustls config of the API listener, `None` for plain HTTP.
    pub fn server_config(&self) -> anyhow::Result<Option<rustls::ServerConfig>> {
        if !self.mode.is_https() {
            return Ok(None);
        }
        server_config(self.cert.clone()).map(Some)
    }

    /// The fleet CA, once this node has it.
    pub fn fleet_ca(&self) -> Option<FleetCa> {
        self.ca.read().expect("tls lock").clone()
    }

    pub fn has_ca(&self) -> bool {
        self.ca.read().expect("tls lock").is_some()
    }

    /// Takes `ca` as the fleet's: stores it, issues this node's certificate and serves it.
    /// A node that already has a CA keeps its own.
    pub fn adopt(&self, ca: FleetCa) -> anyhow::Result<()> {
        ca.check()?;
        let mut held = self.ca.write().expect("tls lock");
        if held.is_some() {
            return Ok(());
        }
        ca.store(&self.data_dir)?;
        self.cert.set_fleet(issued(&ca, &self.names)?);
        *self.relay.write().expect("tls lock") = Some(relay_config(&ca)?);
        *held = Some(ca);
        tracing::info!("serving the admin api with a certificate from the fleet ca");
        Ok(())
    }

    /// The client config for calls to another node's API (the relayed attach): trusts
    /// the fleet CA only. `None` until this node has the CA.
    pub fn relay_client(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.relay.read().expect("tls lock").clone()
    }
}

fn relay_config(ca: &FleetCa) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    Ok(Arc::new(client_config(&ca.cert_pem)?))
}

/// This node's certificate from the fleet CA.
fn issued(ca: &FleetCa, names: &Names) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let mut names = names.clone();
    names.hostname = sanitize(&names.hostname);
    let (cert, key) = ca.issue_for(&names, &[FLEET_SERVER_NAME])?;
    certified_pem(&cert, &key).context("the certificate the fleet CA issued")
}

/// A stand-in until the fleet CA arrives: no client that checks will trust it.
fn self_signed(names: &Names) -> anyhow::Result<Arc<rustls::sign::CertifiedKey>> {
    let ca = FleetCa::generate()?;
    issued(&ca, names)
}

/// A hostname as a DNS name: lowercase, letters, digits, '-' and '.'.
fn sanitize(hostname: &str) -> String {
    hostname
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect()
}
