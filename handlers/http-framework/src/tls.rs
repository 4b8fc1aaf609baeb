//! HTTPS: a rustls server configuration (ring provider) from a PEM certificate chain and private key, read when a
//! server starts.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Reads `cert` (one or more PEM certificates, leaf first) and `key` (a PEM private key) and builds the
/// acceptor; HTTP/1.1 only.
///
/// # Errors
/// `"start-server: ..."` naming the file that could not be read or parsed, or rustls's reason for refusing the
/// pair (e.g. a key that does not match the certificate).
pub async fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |path: &Path| {
        let path = path.to_owned();
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|e| format!("start-server: reading {}: {e}", path.display()))
        }
    };
    let cert_pem = read(cert).await?;
    let key_pem = read(key).await?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("start-server: {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "start-server: {}: no PEM certificate",
            cert.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("start-server: {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("start-server: TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| format!("start-server: TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
