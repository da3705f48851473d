//! One TLS configuration for every client connection milvus-cdc opens: the source's etcd and
//! Milvus (snapshot reads), the target Milvus, and the etcd state store. The same four keys
//! everywhere, and the one place that reads their PEM files.
//!
//! The keys are `ca_path`, `cert_path`, `key_path` and `server_name`. The names milvus-cdc's
//! request and earlier versions of these configs used are accepted as aliases
//! (`ca_pem_path`, `client_pem_path`, `client_key_path`, and `domain`), so documents written
//! for either keep working.

use etcd_client::{Certificate, Identity, TlsOptions};
use serde::{Deserialize, Serialize};

/// TLS material of a client connection; the files must exist on the host that connects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA (or the self-signed server certificate) that signed the server's
    /// certificate. Without it, the system's root certificates are used.
    #[serde(
        default,
        alias = "ca_pem_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_path: Option<String>,
    /// PEM file of the client certificate, for mutual TLS (requires `key_path`).
    #[serde(
        default,
        alias = "client_pem_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cert_path: Option<String>,
    /// PEM file of the client private key, for mutual TLS (requires `cert_path`).
    #[serde(
        default,
        alias = "client_key_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_path: Option<String>,
    /// Name expected in the server certificate, when it differs from the endpoint's host.
    #[serde(default, alias = "domain", skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// What is wrong with the settings themselves, as `(field, message)` (files are read by
    /// [`TlsConfig::client_config`], where they are used).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (field, v) in [
            ("ca_path", &self.ca_path),
            ("cert_path", &self.cert_path),
            ("key_path", &self.key_path),
            ("server_name", &self.server_name),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push((field, "must not be empty; leave it out instead".to_string()));
            }
        }
        if self.cert_path.is_some() != self.key_path.is_some() {
            let missing = if self.cert_path.is_some() {
                "key_path"
            } else {
                "cert_path"
            };
            out.push((
                missing,
                "mutual TLS needs both cert_path and key_path".to_string(),
            ));
        }
        out
    }

    /// The client TLS settings (tonic's, which etcd-client shares), with the PEM files read.
    /// `at` is where this block sits in the configuration (e.g. `sinks.target.milvus.tls`);
    /// an error names `at.field`, the path and why it could not be read.
    pub fn client_config(&self, at: &str) -> Result<TlsOptions, String> {
        if let Some((field, message)) = self.problems().into_iter().next() {
            return Err(format!("field `{at}.{field}`: {message}"));
        }
        let read = |field: &str, path: &str| {
            std::fs::read(path).map_err(|e| {
                format!("field `{at}.{field}`: cannot read {path:?}: {e} (the file must exist on this host)")
            })
        };
        let mut t = TlsOptions::new();
        t = match &self.ca_path {
            Some(p) => t.ca_certificate(Certificate::from_pem(read("ca_path", p)?)),
            None => t.with_native_roots(),
        };
        if let (Some(c), Some(k)) = (&self.cert_path, &self.key_path) {
            t = t.identity(Identity::from_pem(
                read("cert_path", c)?,
                read("key_path", k)?,
            ));
        }
        if let Some(name) = &self.server_name {
            t = t.domain_name(name.clone());
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_read_into_the_same_settings() {
        let a: TlsConfig = serde_json::from_str(
            r#"{"ca_pem_path":"/ca","client_pem_path":"/c","client_key_path":"/k","domain":"h"}"#,
        )
        .unwrap();
        let b: TlsConfig = serde_json::from_str(
            r#"{"ca_path":"/ca","cert_path":"/c","key_path":"/k","server_name":"h"}"#,
        )
        .unwrap();
        assert_eq!(a, b);
        assert!(serde_json::from_str::<TlsConfig>(r#"{"ca":"/x"}"#).is_err());
    }

    #[test]
    fn half_a_client_identity_names_the_missing_field() {
        let t = TlsConfig {
            cert_path: Some("/c".into()),
            ..Default::default()
        };
        let e = t.client_config("milvus.tls").unwrap_err();
        assert!(e.contains("`milvus.tls.key_path`"), "{e}");
    }

    #[test]
    fn an_unreadable_file_names_field_and_path() {
        let t = TlsConfig {
            ca_path: Some("/surely/missing/ca.pem".into()),
            ..Default::default()
        };
        let e = t.client_config("etcd.tls").unwrap_err();
        assert!(
            e.contains("`etcd.tls.ca_path`") && e.contains("/surely/missing/ca.pem"),
            "{e}"
        );
        assert!(TlsConfig::default().client_config("x").is_ok());
    }
}
