//! What a request must pass before the admin endpoint serves it.
//!
//! - **Addressed to this machine.** On a loopback address, only requests whose `Host` is
//!   `localhost` or an IP address are served: a web page that rebinds its own name to
//!   127.0.0.1 (DNS rebinding) reaches the socket, but under its name, and is refused (403).
//! - **Not from a web page.** A request that changes something (`POST /reload`) is refused
//!   (403) when a browser sent it on a page's behalf (`Origin`, or `Sec-Fetch-Site` other than
//!   `none`), and (415) when it has a form's content type (`text/plain`, form-urlencoded,
//!   multipart): what a page can send to another site without asking it first.
//! - **With a token**, when an engine extension's `bearer_token_authorizer` is bound
//!   (`engine.admin.capabilities`): for the requests that change something, or for every one
//!   but the probes (`require_token_for: all`). A missing or refused token is 401; an
//!   authorizer that cannot decide, or is not started yet, refuses (503: fail closed).
//!
//! `/livez` and `/readyz` need no token: orchestrators probe them without one.

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};

use crate::core::capability::{AuthorizeError, AuthzDecision};
use crate::core::config::TokenScope;
use crate::core::runtime::AdminAuthorizer;
use crate::core::secret::{AuthHeader, Credential};

/// What a refused request is answered: status, text, and a header to add.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) text: String,
    pub(super) challenge: Option<HeaderValue>,
}

impl Refusal {
    fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self {
            status,
            text: text.into(),
            challenge: None,
        }
    }
}

/// The checks of one endpoint.
pub(super) struct Guard {
    /// Whether the endpoint listens on loopback (the `Host` check).
    pub(super) loopback: bool,
    pub(super) require_token_for: TokenScope,
    /// The bound authorizer, when a token is required.
    pub(super) authorizer: Option<AdminAuthorizer>,
}

/// Whether `request` changes something.
pub(super) fn mutates<B>(request: &Request<B>) -> bool {
    request.method() == Method::POST
}

impl Guard {
    /// `Ok` when `request` may be served.
    pub(super) fn check<B>(&self, request: &Request<B>) -> Result<(), Refusal> {
        if self.loopback && !addressed_to_this_machine(request) {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "refused: this endpoint listens on loopback and answers requests addressed to \
                 `localhost` or an IP address only (a web page's name here looks like DNS \
                 rebinding)\n",
            ));
        }
        if mutates(request) {
            from_a_web_page(request)?;
        }
        match &self.authorizer {
            Some(authorizer) if self.needs_token(request) => authorized(authorizer, request),
            _ => Ok(()),
        }
    }

    /// The token decision of an authorizer that waits for it (one whose tokens live in a
    /// store), once [`check`](Self::check) passed: nothing for one that does not.
    pub(super) async fn check_waiting<B>(&self, request: &Request<B>) -> Result<(), Refusal> {
        let Some(authorizer) = &self.authorizer else {
            return Ok(());
        };
        if !self.needs_token(request) {
            return Ok(());
        }
        let Some(current) = authorizer.current().filter(|a| a.waits()) else {
            return Ok(());
        };
        let credential = credential(current.header(), request)?;
        decided(
            current.authorize_waiting(credential).await,
            current.header(),
        )
    }

    /// Whether `request` needs a token: a change always, anything but the probes when
    /// `require_token_for: all`.
    fn needs_token<B>(&self, request: &Request<B>) -> bool {
        let probe = matches!(request.uri().path(), "/livez" | "/readyz");
        mutates(request) || (self.require_token_for == TokenScope::All && !probe)
    }
}

/// The `Host` (or the URI's authority) is `localhost` (or a name under it) or an IP address.
fn addressed_to_this_machine<B>(request: &Request<B>) -> bool {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().host());
    let Some(host) = host else {
        // HTTP/1.0 without a Host: not a browser's.
        return true;
    };
    let name = match host.strip_prefix('[') {
        // `[::1]:8888`
        Some(bracketed) => bracketed.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        }),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Refuses what a browser sent on a page's behalf, and a form's content type.
fn from_a_web_page<B>(request: &Request<B>) -> Result<(), Refusal> {
    let headers = request.headers();
    if let Some(origin) = headers.get("origin") {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!(
                "refused: a web page sent this (Origin: {}); reload from the command line \
                 (`curl -X POST …/reload`, or SIGHUP)\n",
                origin.to_str().unwrap_or("?")
            ),
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"none"
    {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "refused: a browser sent this on a page's behalf (Sec-Fetch-Site); reload from the \
             command line (`curl -X POST …/reload`, or SIGHUP)\n",
        ));
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if let Some(content_type) = content_type
        && matches!(
            content_type.as_str(),
            "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
        )
    {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "refused: `{content_type}` is what a web page can post to another site without \
                 asking; send no body (or `application/json`)\n"
            ),
        ));
    }
    Ok(())
}

/// The request's token, decided by the bound authorizer (one that waits for its decision is
/// asked by [`Guard::check_waiting`]).
fn authorized<B>(authorizer: &AdminAuthorizer, request: &Request<B>) -> Result<(), Refusal> {
    let Some(authorizer) = authorizer.current() else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "refused: the extension that decides on the token is not started yet; retry\n",
        ));
    };
    if authorizer.waits() {
        return Ok(());
    }
    let credential = credential(authorizer.header(), request)?;
    decided(authorizer.authorize(credential), authorizer.header())
}

/// A `401` naming `header`'s scheme in its challenge.
fn unauthorized(header: &AuthHeader, text: &str) -> Refusal {
    let scheme = if header.scheme().is_empty() {
        "Bearer"
    } else {
        header.scheme()
    };
    Refusal {
        status: StatusCode::UNAUTHORIZED,
        text: format!("{text}\n"),
        challenge: HeaderValue::from_str(&format!("{scheme} realm=\"otap-df admin\"")).ok(),
    }
}

/// The one credential of `request` in `header`.
fn credential<'r, B>(
    header: &AuthHeader,
    request: &'r Request<B>,
) -> Result<Credential<'r>, Refusal> {
    let mut values = request.headers().get_all(header.name()).iter();
    let Some(value) = values.next() else {
        return Err(unauthorized(
            header,
            &format!("refused: send a token in `{}`", header.name()),
        ));
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!(
                "refused: more than one `{}` header; send one\n",
                header.name()
            ),
        ));
    }
    value
        .to_str()
        .ok()
        .and_then(|value| header.credential(value).ok())
        .ok_or_else(|| unauthorized(header, "refused: the token is not accepted"))
}

/// The decision as the request's fate.
fn decided(
    decision: Result<AuthzDecision, AuthorizeError>,
    header: &AuthHeader,
) -> Result<(), Refusal> {
    match decision {
        Ok(AuthzDecision::Allow { .. }) => Ok(()),
        Ok(AuthzDecision::Deny { .. }) => {
            Err(unauthorized(header, "refused: the token is not accepted"))
        }
        Err(error) => {
            tracing::warn!(%error, "admin endpoint: the authorizer could not decide; refused");
            Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "refused: the token could not be checked now; retry\n",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn open_guard() -> Guard {
        Guard {
            loopback: true,
            require_token_for: TokenScope::Mutating,
            authorizer: None,
        }
    }

    #[test]
    fn on_loopback_only_requests_addressed_to_localhost_or_an_address_are_served() {
        let guard = open_guard();
        for host in [
            "localhost:8888",
            "LOCALHOST",
            "127.0.0.1:8888",
            "[::1]:8888",
            "10.1.2.3",
            "admin.localhost:8888",
        ] {
            let get = request(Method::GET, "/status", &[("host", host)]);
            assert_eq!(guard.check(&get), Ok(()), "{host}");
        }
        for host in ["evil.example:8888", "localhost.evil.example", "example.com"] {
            let get = request(Method::GET, "/status", &[("host", host)]);
            assert_eq!(
                guard.check(&get).map_err(|r| r.status),
                Err(StatusCode::FORBIDDEN),
                "{host}"
            );
        }
        // On another address, names are how people reach it.
        let open = Guard {
            loopback: false,
            ..open_guard()
        };
        let get = request(Method::GET, "/status", &[("host", "admin.internal")]);
        assert_eq!(open.check(&get), Ok(()));
    }

    #[test]
    fn a_reload_a_web_page_could_send_is_refused_and_the_command_lines_is_served() {
        let guard = open_guard();
        let host = ("host", "127.0.0.1:8888");
        let refused = [
            (vec![host, ("origin", "https://evil.example")], 403),
            (vec![host, ("origin", "null")], 403),
            (vec![host, ("sec-fetch-site", "cross-site")], 403),
            (vec![host, ("sec-fetch-site", "same-origin")], 403),
            (
                vec![host, ("content-type", "text/plain;charset=UTF-8")],
                415,
            ),
            (
                vec![host, ("content-type", "application/x-www-form-urlencoded")],
                415,
            ),
            (
                vec![host, ("content-type", "multipart/form-data; boundary=x")],
                415,
            ),
        ];
        for (headers, status) in refused {
            let post = request(Method::POST, "/reload", &headers);
            assert_eq!(
                guard.check(&post).map_err(|r| r.status.as_u16()),
                Err(status),
                "{headers:?}"
            );
        }
        for headers in [
            vec![host],
            vec![host, ("content-type", "application/json")],
            vec![host, ("sec-fetch-site", "none")],
        ] {
            let post = request(Method::POST, "/reload", &headers);
            assert_eq!(guard.check(&post), Ok(()), "{headers:?}");
        }
        // Reading is not changing: a page may read what it could anyway (same origin).
        let get = request(
            Method::GET,
            "/status",
            &[host, ("origin", "http://localhost")],
        );
        assert_eq!(guard.check(&get), Ok(()));
    }

    #[test]
    fn a_token_required_before_the_authorizer_started_refuses_and_says_so() {
        let guard = Guard {
            authorizer: Some(AdminAuthorizer::default()),
            ..open_guard()
        };
        let post = request(Method::POST, "/reload", &[("host", "localhost")]);
        let refusal = guard.check(&post).unwrap_err();
        assert_eq!(refusal.status, StatusCode::SERVICE_UNAVAILABLE);
        // The probes and reads need none under `mutating`.
        for path in ["/livez", "/readyz", "/status", "/metrics"] {
            let get = request(Method::GET, path, &[("host", "localhost")]);
            assert_eq!(guard.check(&get), Ok(()), "{path}");
        }
        let all = Guard {
            require_token_for: TokenScope::All,
            ..guard
        };
        for (path, needs) in [
            ("/livez", false),
            ("/readyz", false),
            ("/status", true),
            ("/metrics", true),
        ] {
            let get = request(Method::GET, path, &[("host", "localhost")]);
            assert_eq!(all.check(&get).is_err(), needs, "{path}");
        }
    }

    #[test]
    fn an_authorizer_that_waits_decides_after_the_other_checks_where_the_endpoint_waits() {
        let mut token = otap_df_tests::fixtures::FixedToken::new("admin-secret");
        token.waits = true;
        let token: std::sync::Arc<dyn crate::core::capability::shared::BearerTokenAuthorizer> =
            std::sync::Arc::new(token);
        let authorizer = AdminAuthorizer::from(token);
        let guard = Guard {
            require_token_for: TokenScope::All,
            authorizer: Some(authorizer),
            ..open_guard()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let decide = |headers: &[(&str, &str)]| {
            let mut all = vec![("host", "localhost")];
            all.extend_from_slice(headers);
            let get = request(Method::GET, "/status", &all);
            // The synchronous checks leave the token to the waiting one.
            assert_eq!(guard.check(&get), Ok(()));
            runtime
                .block_on(guard.check_waiting(&get))
                .map_err(|refusal| refusal.status)
        };
        assert_eq!(decide(&[("authorization", "Bearer admin-secret")]), Ok(()));
        assert_eq!(
            decide(&[("authorization", "Bearer guess")]),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(decide(&[]), Err(StatusCode::UNAUTHORIZED));
        // The probes need none.
        let probe = request(Method::GET, "/readyz", &[("host", "localhost")]);
        assert_eq!(runtime.block_on(guard.check_waiting(&probe)), Ok(()));
    }
}
