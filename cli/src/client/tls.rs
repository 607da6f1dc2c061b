//! Which CA `shoal` trusts for `https://`: the fleet CA from `--cacert FILE` /
//! `SHOAL_CACERT`, the PEM text in `SHOAL_CACERT_PEM` (what a job gets), or the one a
//! node keeps in its data directory (the dev fleet's `.shoal-dev`, then
//! `/var/lib/shoal`). Nothing else: no system roots, so a certificate the fleet did not
//! issue is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::ClientError;

/// Where a node keeps the fleet CA's certificate, inside its data directory.
const CA_IN_DATA_DIR: &str = "tls/ca.pem";
/// Data directories looked in when no CA is given: the dev fleet's (relative to the
/// working directory), then a local node's.
const DATA_DIRS: [&str; 2] = [".shoal-dev", "/var/lib/shoal"];

/// What to trust for HTTPS, and where it came from (for error messages).
#[derive(Clone)]
pub struct Trust {
    pub config: Arc<rustls::ClientConfig>,
    pub source: Option<String>,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trust")
            .field("source", &self.source)
            .finish()
    }
}

impl Trust {
    /// The CA in `file` if given, else `pem` text if given, else one found in a data
    /// directory, else none (every `https://` request then fails, saying how to give one).
    pub fn find(file: Option<&Path>, pem: Option<&str>) -> Result<Trust, ClientError> {
        if let Some(file) = file {
            let text = std::fs::read(file).map_err(|err| bad_ca(file, &err.to_string()))?;
            return Trust::from_pem(&text, file.display().to_string());
        }
        if let Some(pem) = pem.filter(|pem| !pem.trim().is_empty()) {
            return Trust::from_pem(pem.as_bytes(), "SHOAL_CACERT_PEM".to_string());
        }
        for dir in DATA_DIRS {
            let path = PathBuf::from(dir).join(CA_IN_DATA_DIR);
            if let Ok(text) = std::fs::read(&path) {
                return Trust::from_pem(&text, path.display().to_string());
            }
        }
        Ok(Trust {
            config: Arc::new(config(rustls::RootCertStore::empty())),
            source: None,
        })
    }

    /// Trusts the certificates in `pem` alone.
    pub fn from_pem(pem: &[u8], source: String) -> Result<Trust, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|err| bad_ca(Path::new(&source), &err.to_string()))?;
            roots
                .add(cert)
                .map_err(|err| bad_ca(Path::new(&source), &err.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad_ca(Path::new(&source), "no PEM certificate in it"));
        }
        Ok(Trust {
            config: Arc::new(config(roots)),
            source: Some(source),
        })
    }

    /// What to tell a user whose TLS handshake failed on the certificate.
    pub fn hint(&self) -> String {
        match &self.source {
            Some(source) => format!(
                "the node's certificate is not from the fleet CA in {source} (another fleet, or a wrong --cacert?)"
            ),
            None => "no fleet CA to check it against: pass --cacert FILE or set SHOAL_CACERT (every node keeps it in <data_dir>/tls/ca.pem)".to_string(),
        }
    }
}

fn config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn bad_ca(file: &Path, why: &str) -> ClientError {
    ClientError::Api(shoal_protocol::ApiError::bad_request(format!(
        "--cacert {}: cannot use it as the fleet CA: {why}",
        file.display()
    )))
}

/// Whether an error's text says the server's certificate was refused.
pub fn is_certificate_error(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    detail.contains("certificate") || detail.contains("unknownissuer")
}
