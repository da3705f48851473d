//! Built-in HTTPS for the task API (`tls: { cert_path, key_path }` in server.yaml), with
//! rustls (ring provider). With `tls` set the API port speaks only TLS: a plain-HTTP request
//! to it gets no HTTP answer.
//!
//! The files are read once at start; an unreadable or malformed file is a startup error that
//! names the field and the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

/// `tls:` in server.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the server certificate, followed by its intermediates (the chain).
    pub cert_path: PathBuf,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
}

impl TlsConfig {
    /// Check values without I/O; the error is `(field, message)` relative to `tls.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (field, p) in [("cert_path", &self.cert_path), ("key_path", &self.key_path)] {
            if p.as_os_str().is_empty() {
                return Err((field.into(), "must not be empty (a PEM file)".into()));
            }
        }
        Ok(())
    }

    /// Read the certificate chain and key and build the rustls server configuration.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate / key, or the key does not fit the
    /// certificate; the message names `tls.cert_path` or `tls.key_path` and the file.
    pub fn server_config(&self) -> Result<rustls::ServerConfig, String> {
        let certs = read_certs(&self.cert_path)?;
        let key = read_key(&self.key_path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "tls.key_path {}: the key does not fit the certificate in tls.cert_path {} \
                     ({e})",
                    self.key_path.display(),
                    self.cert_path.display()
                )
            })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| {
        format!(
            "tls.cert_path {}: cannot read a PEM certificate: {e}",
            path.display()
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no `BEGIN CERTIFICATE` block in the file"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "tls.key_path {}: cannot read a PEM private key: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem file\n").unwrap();
        let cfg = |c: &Path, k: &Path| TlsConfig {
            cert_path: c.to_path_buf(),
            key_path: k.to_path_buf(),
        };
        let missing = dir.path().join("missing.pem");
        let e = cfg(&missing, &junk).server_config().unwrap_err();
        assert!(
            e.starts_with("tls.cert_path") && e.contains("missing.pem"),
            "{e}"
        );
        let e = cfg(&junk, &junk).server_config().unwrap_err();
        assert!(
            e.starts_with("tls.cert_path") && e.contains("no `BEGIN"),
            "{e}"
        );
        let e = TlsConfig {
            cert_path: PathBuf::new(),
            key_path: junk,
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.0, "cert_path");
    }
}
