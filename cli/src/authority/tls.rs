//! The authority's TLS server configuration: its certificate chain and key from PEM files, on rustls
//! with the ring provider (the one the rest of sectorcrypt uses).

use super::policy::AuthConfig;
use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

pub(crate) fn server_config(config: &AuthConfig) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.tls_cert)
        .with_context(|| format!("cannot read the TLS certificate {}", config.tls_cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", config.tls_cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no certificate", config.tls_cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&config.tls_key)
        .with_context(|| format!("cannot read the TLS key {}", config.tls_key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not go together")?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}
