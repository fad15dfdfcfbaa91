//! The HTTP client both extensions use (token endpoint, discovery, JWKS): rustls with ring,
//! the trust `tls:` configures, one attempt per call (retries are the callers'), bounded by
//! `request_timeout`, no redirect followed.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::TlsConfig;
use crate::error::OAuth2Error;

/// The bound on a response body read (a token answer, a discovery document, a key set).
pub const MAX_BODY: usize = 1 << 20;

/// A client trusting what `tls` says, each call bounded by `timeout`.
pub fn client(tls: &TlsConfig, timeout: Duration) -> Result<reqwest::Client, OAuth2Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config(tls)?)
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| OAuth2Error::Tls {
            message: format!("cannot build the HTTP client: {e}"),
        })
}

fn tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, OAuth2Error> {
    let mut roots = rustls::RootCertStore::empty();
    if tls.system_roots {
        // Unreadable entries of the system store are skipped, as browsers do.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if let Some(path) = &tls.ca_file {
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
            .map_err(|e| OAuth2Error::Unreadable {
                option: "tls.ca_file",
                path: path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        if certificates.is_empty() {
            return Err(OAuth2Error::File {
                option: "tls.ca_file",
                path: path.clone(),
                problem: "holds no PEM certificate".to_owned(),
            });
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| OAuth2Error::File {
                option: "tls.ca_file",
                path: path.clone(),
                problem: format!("holds a certificate that cannot be trusted: {e}"),
            })?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| OAuth2Error::Tls {
            message: e.to_string(),
        })
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// A response's body, at most [`MAX_BODY`] bytes.
pub async fn body(response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return Err(format!("the answer is larger than {MAX_BODY} bytes"));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("the answer could not be read: {}", one_line(&e)))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(format!("the answer is larger than {MAX_BODY} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line (reqwest's message alone says "error sending request").
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
