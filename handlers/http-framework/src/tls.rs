//! HTTPS: a rustls server configuration (ring provider) from a PEM certificate chain and private key, read when a
//! server starts. Each file is re-resolved against `tls_dirs` and read bounded ([`MAX_TLS_FILE_BYTES`], regular
//! files only, opened non-blocking) on a blocking thread at every start, since it may have changed since
//! `create-server` checked it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Largest TLS certificate chain or private key file `start-server` reads, in bytes (default and fixed: 1 MiB).
/// A larger file, or one that is not a regular file (a FIFO, a device), fails the start instead of being read.
pub const MAX_TLS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads one TLS file: `path` canonicalized again must still lie under one of `dirs` (canonicalized), and is
/// read through [`theater_runtime::files::read_file_bounded`] with [`MAX_TLS_FILE_BYTES`].
fn read_tls_file(path: &Path, dirs: &[PathBuf]) -> Result<Vec<u8>, String> {
    let fail = |e: String| format!("start-server: reading {}: {e}", path.display());
    let canonical = path.canonicalize().map_err(|e| fail(e.to_string()))?;
    let inside = dirs
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .any(|dir| canonical.starts_with(dir));
    if !inside {
        return Err(format!(
            "start-server: permission denied: tls {} now resolves to {}, outside tls_dirs",
            path.display(),
            canonical.display()
        ));
    }
    theater_runtime::files::read_file_bounded(&canonical, MAX_TLS_FILE_BYTES, "MAX_TLS_FILE_BYTES")
        .map_err(fail)
}

/// Reads `cert` (one or more PEM certificates, leaf first) and `key` (a PEM private key) and builds the
/// acceptor; HTTP/1.1 only.
///
/// # Errors
/// `"start-server: ..."` naming the file that could not be read (missing, not a regular file, larger than
/// [`MAX_TLS_FILE_BYTES`], or no longer under `dirs`) or parsed, or rustls's reason for refusing the
/// pair (e.g. a key that does not match the certificate).
pub async fn acceptor(cert: &Path, key: &Path, dirs: &[PathBuf]) -> Result<TlsAcceptor, String> {
    let (cert_owned, key_owned, dirs) = (cert.to_owned(), key.to_owned(), dirs.to_vec());
    let (cert_pem, key_pem) = tokio::task::spawn_blocking(move || {
        Ok::<_, String>((
            read_tls_file(&cert_owned, &dirs)?,
            read_tls_file(&key_owned, &dirs)?,
        ))
    })
    .await
    .map_err(|e| format!("start-server: reading the TLS files: {e}"))??;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_the_bound_or_moved_outside_tls_dirs_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_owned()];
        let big = dir.path().join("big.pem");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_TLS_FILE_BYTES + 1)
            .unwrap();
        let error = read_tls_file(&big, &dirs).unwrap_err();
        assert!(error.contains("MAX_TLS_FILE_BYTES"), "{error}");

        let small = dir.path().join("small.pem");
        std::fs::write(&small, "x").unwrap();
        assert_eq!(read_tls_file(&small, &dirs).unwrap(), b"x");

        // Replaced by a symlink out of tls_dirs after create-server checked it.
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let error = read_tls_file(&link, &dirs).unwrap_err();
        assert!(error.contains("outside tls_dirs"), "{error}");
        // With tls_dirs covering /dev, the device is still refused: not a regular file.
        let error = read_tls_file(&link, &[PathBuf::from("/")]).unwrap_err();
        assert!(error.contains("not a regular file"), "{error}");
    }
}
