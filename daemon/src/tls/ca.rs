//! The fleet CA: made once when a fleet is formed, kept in `data_dir/tls/`, handed to
//! members over the encrypted peer channel, and used by every node to issue its own API
//! certificate.
//!
//! Every member holds the CA key, as every member holds the cluster secret: each node
//! issues itself a certificate for its own addresses at start, with no round trip to a
//! signing node, and a fleet that loses any machine can still add others. The key never
//! leaves the peer channel, and is given only to admitted members (see `fetch.rs`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

use crate::identity::write_private;

/// The directory inside the data directory that holds the CA and this node's certificate.
pub const TLS_DIR: &str = "tls";
/// The CA certificate, the file `shoal --cacert` takes.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA private key (0600).
pub const CA_KEY_FILE: &str = "ca.key";

/// The fleet CA as PEM text: what a data directory stores and a member hands over.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for FleetCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key, in a log line or a panic message.
        f.write_str("FleetCa(..)")
    }
}

/// What a node's certificate names besides its API address.
#[derive(Debug, Clone)]
pub struct Names {
    pub hostname: String,
    pub ips: Vec<IpAddr>,
}

impl FleetCa {
    /// Makes a new fleet CA (ECDSA P-256, valid for 20 years).
    pub fn generate() -> anyhow::Result<FleetCa> {
        let key = KeyPair::generate().context("making the fleet CA key")?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "Shoal fleet CA");
        name.push(DnType::OrganizationName, "Shoal");
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(20 * 365);
        let cert = params.self_signed(&key).context("signing the fleet CA")?;
        Ok(FleetCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Checks that the certificate and key parse and belong together.
    pub fn check(&self) -> anyhow::Result<()> {
        let key = KeyPair::from_pem(&self.key_pem).context("the fleet CA key does not parse")?;
        Issuer::from_ca_cert_pem(&self.cert_pem, &key)
            .context("the fleet CA certificate does not parse")?;
        let cert = rustls::pki_types::CertificateDer::from(
            pem_der(&self.cert_pem).context("the fleet CA certificate is not PEM")?,
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert)
            .map_err(|_| anyhow::anyhow!("the fleet CA certificate does not parse"))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            anyhow::bail!("the fleet CA key is not the certificate's");
        }
        Ok(())
    }

    /// Issues a server certificate for `names`, valid for a year; returns (cert, key) PEM.
    pub fn issue(&self, names: &Names) -> anyhow::Result<(String, String)> {
        self.issue_for(names, &[])
    }

    /// As [`FleetCa::issue`], naming `extra` DNS names too.
    pub fn issue_for(&self, names: &Names, extra: &[&str]) -> anyhow::Result<(String, String)> {
        let ca_key = KeyPair::from_pem(&self.key_pem).context("the fleet CA key does not parse")?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)
            .context("the fleet CA certificate does not parse")?;
        let mut sans = vec![names.hostname.clone(), "localhost".to_string()];
        sans.extend(extra.iter().map(|name| name.to_string()));
        let mut ips = names.ips.clone();
        ips.extend([
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ]);
        ips.retain(|ip| !ip.is_unspecified());
        ips.sort();
        ips.dedup();
        sans.extend(ips.iter().map(IpAddr::to_string));
        sans.retain(|name| !name.is_empty());
        sans.dedup();
        // A hostname that is no valid DNS name is left out rather than failing the start.
        let sans: Vec<String> = sans
            .into_iter()
            .filter(|name| {
                name.parse::<IpAddr>().is_ok()
                    || rcgen::string::Ia5String::try_from(name.as_str()).is_ok()
            })
            .collect();
        let mut params = CertificateParams::new(sans).context("the node's certificate names")?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, names.hostname.as_str());
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let key = KeyPair::generate().context("making the node's TLS key")?;
        let cert = params
            .signed_by(&key, &issuer)
            .context("signing the node's certificate")?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// The CA as `data_dir` holds it, if it does.
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<FleetCa>> {
        let (cert, key) = paths(data_dir);
        let cert_pem = match std::fs::read_to_string(&cert) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("cannot read {}", cert.display())),
        };
        let key_pem = std::fs::read_to_string(&key)
            .with_context(|| format!("cannot read {}", key.display()))?;
        let ca = FleetCa { cert_pem, key_pem };
        ca.check()
            .with_context(|| format!("the fleet CA in {}", cert.display()))?;
        Ok(Some(ca))
    }

    /// Writes the CA into `data_dir/tls/`: the key 0600, the certificate readable.
    pub fn store(&self, data_dir: &Path) -> anyhow::Result<()> {
        let (cert, key) = paths(data_dir);
        let dir = data_dir.join(TLS_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_private(&key, self.key_pem.as_bytes())?;
        let tmp = cert.with_extension("tmp");
        std::fs::write(&tmp, &self.cert_pem)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &cert).with_context(|| format!("cannot write {}", cert.display()))
    }

    /// The CA `data_dir` holds, or a new one written there.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<FleetCa> {
        if let Some(ca) = FleetCa::load(data_dir)? {
            return Ok(ca);
        }
        let ca = FleetCa::generate()?;
        ca.store(data_dir)?;
        Ok(ca)
    }
}

/// Where `data_dir` keeps the CA certificate and key.
pub fn paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join(TLS_DIR);
    (dir.join(CA_CERT_FILE), dir.join(CA_KEY_FILE))
}

/// The DER of the first PEM block of `text`.
fn pem_der(text: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(text.as_bytes())
        .ok()
        .map(|der| der.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_round_trips_through_a_data_dir_and_issues() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FleetCa::load(dir.path()).unwrap().is_none());
        let ca = FleetCa::load_or_create(dir.path()).unwrap();
        assert_eq!(FleetCa::load(dir.path()).unwrap(), Some(ca.clone()));
        let (_, key) = paths(dir.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names = Names {
            hostname: "box".into(),
            ips: vec!["10.0.0.5".parse().unwrap()],
        };
        let (cert, key) = ca.issue(&names).unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
    }

    #[test]
    fn a_key_from_another_ca_is_refused() {
        let one = FleetCa::generate().unwrap();
        let other = FleetCa::generate().unwrap();
        let mixed = FleetCa {
            cert_pem: one.cert_pem,
            key_pem: other.key_pem.clone(),
        };
        assert!(mixed.check().is_err());
        assert!(other.check().is_ok());
    }
}
