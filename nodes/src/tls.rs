//! rustls configurations from PEM files, with the `ring` provider (no process-wide default is
//! needed or installed).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(field: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `{field}` `{}`: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{field}` `{}` is not valid PEM: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "`{field}` `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        ));
    }
    Ok(certificates)
}

/// A server configuration with the certificate chain in `cert_file` and the key in
/// `key_file`; errors name the option and the file.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, String> {
    let chain = certificates("tls.cert_file", cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        format!(
            "`tls.key_file` `{}` holds no usable private key: {e}",
            key_file.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("`tls.cert_file` and `tls.key_file` do not make a pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration trusting the CA certificates in `ca_file`, or the system's trust
/// store without one.
pub fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(ca_file) => {
            for certificate in certificates("tls.ca_file", ca_file)? {
                roots
                    .add(certificate)
                    .map_err(|e| format!("`tls.ca_file` `{}`: {e}", ca_file.display()))?;
            }
        }
        None => {
            // Unreadable entries of the system store are skipped, as browsers do.
            let (added, _) =
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if added == 0 {
                tracing::warn!(
                    "no CA certificate in the system trust store; HTTPS servers will not be trusted without `tls.ca_file`"
                );
            }
        }
    }
    // No ALPN here: the HTTP connector sets the protocols it speaks.
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}
