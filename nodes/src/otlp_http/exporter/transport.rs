//! The HTTP side of `exporter:otlp_http`: one `POST` of a payload to its signal's URL, in its
//! own encoding, gzip-compressed (or zstd) unless told otherwise, and what the answer means.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use otap_df_core::data::{Encoding, OtlpPayload};

use super::config::{Compression, Endpoints};
use crate::export::identity::IdentityHeaders;
use crate::export::token::{self, TokenHeader};
use crate::export::{Attempt, Transport};
use crate::otlp_http::{media_type, status_message};
use crate::receive::payload::Coding;

/// The HTTP/1 client, over a pool of keep-alive connections.
pub(super) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The requests of one exporter instance.
pub(super) struct HttpTransport {
    pub(super) client: HttpClient,
    pub(super) endpoints: Endpoints,
    /// Sent with every request.
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    /// Set on each request from its payload's identity.
    pub(super) identity_headers: IdentityHeaders,
    pub(super) compression: Compression,
    /// Bound of one request, response included.
    pub(super) timeout: Duration,
    pub(super) token: Option<TokenHeader>,
    /// Requests sent.
    pub(super) requests: Arc<AtomicU64>,
    /// Records the server said it rejected in a partial success.
    pub(super) rejected: Arc<AtomicU64>,
}

impl Transport for HttpTransport {
    const PROTOCOL: &'static str = "OTLP/HTTP";

    fn body(&self, data: &OtlpPayload) -> std::io::Result<Bytes> {
        self.compression.compress(data.bytes())
    }

    fn carries_token(&self) -> bool {
        self.token.is_some()
    }

    async fn send(&self, data: &OtlpPayload, body: &Bytes, fresh: bool) -> Attempt {
        let from_identity = match self.identity_headers.of(data) {
            Ok(headers) => headers,
            Err(why) => return Attempt::Permanent(why),
        };
        let auth = match token::for_attempt(self.token.as_ref(), fresh).await {
            Ok(auth) => auth,
            Err(attempt) => return attempt,
        };
        let mut request = Request::post(self.endpoints.of(data.signal()).clone())
            .header(CONTENT_TYPE, media_type(data.encoding()));
        if let Some(coding) = self.compression.name() {
            request = request.header(CONTENT_ENCODING, coding);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        for (name, value) in from_identity.iter() {
            request = request.header(name.clone(), value.clone());
        }
        if let Some((name, value)) = auth {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(body.clone())) {
            Ok(request) => request,
            Err(e) => return Attempt::Permanent(format!("cannot build the request: {e}")),
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.exchange(data, request).await
    }
}

impl HttpTransport {
    /// Sends `request` (of `data`) and reads the answer, within the timeout.
    async fn exchange(&self, data: &OtlpPayload, request: Request<Full<Bytes>>) -> Attempt {
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let coding = match response.headers().get(CONTENT_ENCODING) {
                None => Some(Coding::Identity),
                Some(name) => Coding::named(name.as_bytes()),
            };
            // The body is read so that the connection can be reused.
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            // A response compressed in a coding this exporter does not read is not read.
            let body = coding.and_then(|coding| coding.decompress(body, 4 << 20).ok());
            Ok::<_, hyper_util::client::legacy::Error>((
                status,
                retry_after,
                body.unwrap_or_default(),
            ))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Attempt::Retry {
                reason: format!("no answer within {:?}", self.timeout),
                retry_after: None,
            },
            Ok(Err(error)) => Attempt::Retry {
                reason: format!("request failed: {}", crate::export::error_chain(&error)),
                retry_after: None,
            },
            Ok(Ok((status, retry_after, body))) => {
                let detail = || {
                    let message = status_message(data.encoding(), &body)
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    format!("{status}{message}")
                };
                match status {
                    s if s.is_success() => {
                        self.partial_success(data, &body);
                        Attempt::Delivered
                    }
                    StatusCode::UNAUTHORIZED => Attempt::Unauthorized(detail()),
                    StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry {
                        reason: detail(),
                        retry_after,
                    },
                    _ => Attempt::Permanent(detail()),
                }
            }
        }
    }

    /// Reads a success's body for a partial success, and reports the records it rejected
    /// (counted as `records_rejected`, and logged with the server's message): they are not
    /// retried, as the OTLP specification says. The body is in the request's encoding; an
    /// empty one (the usual answer) says nothing.
    fn partial_success(&self, data: &OtlpPayload, body: &Bytes) {
        if body.is_empty() || &body[..] == b"{}" {
            return;
        }
        let signal = data.signal();
        let partial = match data.encoding() {
            Encoding::Protobuf => crate::otlp::partial_success(signal, body),
            Encoding::Json => crate::otlp::partial_success_json(signal, body),
        };
        crate::export::rejected_in_part(signal, partial, &self.rejected);
    }
}
