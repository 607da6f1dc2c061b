//! The `[tls]` table of `shoald.toml` and its flags: HTTPS with the fleet CA by default,
//! a certificate of the user's own, or plain HTTP when asked, on loopback unless forced.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use serde::Deserialize;

/// How the admin API speaks: `[tls]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// A PEM certificate chain to serve instead of one the fleet CA issues (with `key`).
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Serve plain HTTP (for a reverse proxy on this host that terminates TLS). Refused
    /// unless the API binds to loopback or `insecure_http_any_address` is set too.
    pub insecure_http: bool,
    /// Allow `insecure_http` on an address other machines reach.
    pub insecure_http_any_address: bool,
}

/// The validated choice.
#[derive(Debug, Clone)]
pub enum ApiTls {
    /// HTTPS with a certificate this node issues itself from the fleet CA.
    Fleet,
    /// HTTPS with the user's certificate, checked at start.
    Own(Arc<CertifiedKey>),
    /// Plain HTTP.
    Off,
}

impl ApiTls {
    pub fn is_https(&self) -> bool {
        !matches!(self, ApiTls::Off)
    }
}

impl TlsSettings {
    /// Checks the choice against the address the API binds to, and reads a certificate
    /// of the user's own. Errors name the field (and the flag).
    pub fn validate(&self, bind: IpAddr) -> anyhow::Result<ApiTls> {
        if self.insecure_http {
            if self.cert.is_some() || self.key.is_some() {
                bail!(
                    "tls.insecure_http (--insecure-http): plain HTTP takes no certificate; drop tls.cert and tls.key"
                );
            }
            if !bind.is_loopback() && !self.insecure_http_any_address {
                bail!(
                    "tls.insecure_http (--insecure-http): the admin API would serve plain HTTP on {bind}, where other machines reach it and API keys travel in clear; bind to 127.0.0.1 (a reverse proxy on this host), or add --insecure-http-any-address"
                );
            }
            return Ok(ApiTls::Off);
        }
        match (&self.cert, &self.key) {
            (None, None) => Ok(ApiTls::Fleet),
            (Some(_), None) => bail!("tls.key (--tls-key): needed with tls.cert"),
            (None, Some(_)) => bail!("tls.cert (--tls-cert): needed with tls.key"),
            (Some(cert), Some(key)) => Ok(ApiTls::Own(load_own(cert, key)?)),
        }
    }
}

/// Reads and checks a certificate chain and its key.
pub fn load_own(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let cert_text = std::fs::read(cert)
        .with_context(|| format!("tls.cert (--tls-cert): cannot read {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            anyhow::anyhow!(
                "tls.cert (--tls-cert): {} is not PEM: {err}",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "tls.cert (--tls-cert): {} holds no PEM certificate",
            cert.display()
        );
    }
    let key_text = std::fs::read(key)
        .with_context(|| format!("tls.key (--tls-key): cannot read {}", key.display()))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_text).map_err(|err| {
        anyhow::anyhow!(
            "tls.key (--tls-key): {} holds no PEM private key: {err}",
            key.display()
        )
    })?;
    certified(chain, &key_der).map_err(|err| {
        anyhow::anyhow!(
            "tls.key (--tls-key): {} does not go with {}: {err}",
            key.display(),
            cert.display()
        )
    })
}

/// A chain and its key, checked to belong together.
pub fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> anyhow::Result<Arc<CertifiedKey>> {
    let signer = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|err| anyhow::anyhow!("an unsupported key: {err}"))?;
    let certified = CertifiedKey::new(chain, signer);
    certified
        .keys_match()
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(Arc::new(certified))
}

/// A chain and key from PEM text, as the fleet CA issues them.
pub fn certified_pem(cert: &str, key: &str) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| anyhow::anyhow!("a certificate that is not PEM: {err}"))?;
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|err| anyhow::anyhow!("a key that is not PEM: {err}"))?;
    certified(chain, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_forced() {
        let plain = TlsSettings {
            insecure_http: true,
            ..TlsSettings::default()
        };
        assert!(matches!(plain.validate(loopback()), Ok(ApiTls::Off)));
        let lan: IpAddr = "192.168.1.10".parse().unwrap();
        let err = plain.validate(lan).unwrap_err().to_string();
        assert!(err.contains("--insecure-http-any-address"), "{err}");
        let forced = TlsSettings {
            insecure_http_any_address: true,
            ..plain
        };
        assert!(matches!(forced.validate(lan), Ok(ApiTls::Off)));
    }

    #[test]
    fn a_certificate_needs_its_key_and_files_that_parse() {
        let dir = tempfile::tempdir().unwrap();
        let half = TlsSettings {
            cert: Some(dir.path().join("c.pem")),
            ..TlsSettings::default()
        };
        assert!(
            half.validate(loopback())
                .unwrap_err()
                .to_string()
                .contains("tls.key")
        );
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        std::fs::write(&key, "not a key").unwrap();
        let bad = TlsSettings {
            cert: Some(cert.clone()),
            key: Some(key.clone()),
            ..TlsSettings::default()
        };
        let err = bad.validate(loopback()).unwrap_err().to_string();
        assert!(err.contains("holds no PEM certificate"), "{err}");
        let ca = crate::tls::FleetCa::generate().unwrap();
        let names = crate::tls::Names {
            hostname: "box".into(),
            ips: Vec::new(),
        };
        let (cert_pem, _) = ca.issue(&names).unwrap();
        let (_, other_key) = ca.issue(&names).unwrap();
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &other_key).unwrap();
        let err = bad.validate(loopback()).unwrap_err().to_string();
        assert!(err.contains("does not go with"), "{err}");
    }
}
