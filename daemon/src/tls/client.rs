//! Client side: a rustls config that trusts the fleet CA only, for the hops a node makes
//! to another node's API (the relayed attach) and for the test suite's clients.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A client config trusting the certificates in `ca_pem` and nothing else.
pub fn client_config(ca_pem: &str) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let mut any = false;
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.context("the CA certificate is not PEM")?;
        roots
            .add(cert)
            .context("the CA certificate does not parse")?;
        any = true;
    }
    if !any {
        anyhow::bail!("no CA certificate in the PEM text");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
