//! The bearer token a request carries: the bound provider's current token while it is usable,
//! else its freshest one; rendered into a header value once per token, not once per request.
//! HTTP headers and gRPC metadata carry it alike.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};
use otap_df_core::capability::{BearerTokenProvider, local};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::{NodeContext, NodeError};
use otap_df_core::secret::BearerToken;

use super::Attempt;

/// The token header of the exporter's bound `bearer_token_provider`, if one is bound; its
/// header name checked once here rather than per request.
pub(crate) fn bound(
    context: &NodeContext,
    capabilities: &mut Capabilities,
) -> Result<Option<TokenHeader>, NodeError> {
    capabilities
        .optional_local::<BearerTokenProvider>()?
        .map(|provider| TokenHeader::new(provider, context.counters.named("token_refreshed")))
        .transpose()
        .map_err(|message| context.error(message))
}

/// The token header one attempt carries (`fresh`: the freshest token): none without a
/// provider; when the provider has no usable token now, the attempt ends retryable (its
/// source may be down, and give one later).
pub(crate) async fn for_attempt(
    token: Option<&TokenHeader>,
    fresh: bool,
) -> Result<Option<(HeaderName, HeaderValue)>, Attempt> {
    let Some(token) = token else {
        return Ok(None);
    };
    token
        .header(fresh)
        .await
        .map(Some)
        .map_err(|reason| Attempt::Retry {
            reason: format!("no usable token: {reason}"),
            retry_after: None,
        })
}

/// A token as it was last sent.
struct RenderedToken {
    /// The provider's `token_generation` when the token was read.
    generation: u64,
    token: BearerToken,
    /// The header value, marked sensitive.
    value: HeaderValue,
}

/// The token header of an exporter's requests (one core: never borrowed across an `await`).
pub(crate) struct TokenHeader {
    provider: Rc<dyn local::BearerTokenProvider>,
    /// The header the provider's token goes in.
    name: HeaderName,
    /// The last token sent and its rendered header value, so that a request costs one
    /// atomic read and no allocation for the header while the token does not change.
    last: RefCell<Option<RenderedToken>>,
    /// Fresh tokens asked for.
    refreshed: Arc<AtomicU64>,
}

impl TokenHeader {
    /// The header of `provider`'s tokens; `Err` when the provider names a header HTTP does
    /// not allow. `refreshed` counts the fresh tokens asked for.
    pub(crate) fn new(
        provider: Rc<dyn local::BearerTokenProvider>,
        refreshed: Arc<AtomicU64>,
    ) -> Result<Self, String> {
        let header = provider.header().name();
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|e| {
            format!("the token provider's header `{header}` is not a valid HTTP header name: {e}")
        })?;
        Ok(Self {
            provider,
            name,
            last: RefCell::new(None),
            refreshed,
        })
    }

    /// The `(name, value)` of the header: the current token while it is usable, else the
    /// freshest one (`fresh` forces that). `Err` when no usable token can be had.
    pub(crate) async fn header(&self, fresh: bool) -> Result<(HeaderName, HeaderValue), String> {
        let provider = &self.provider;
        let name = self.name.clone();
        // Read before the token (see `token_generation`).
        let generation = provider.token_generation();
        if !fresh
            && let Some(cached) = self.last.borrow().as_ref()
            && cached.generation == generation
            && cached.token.is_usable()
        {
            // The provider's token has not changed since it was rendered: one atomic read.
            return Ok((name, cached.value.clone()));
        }
        let current = if fresh {
            None
        } else {
            provider.current_token().filter(BearerToken::is_usable)
        };
        let token = match current {
            Some(token) => token,
            None => {
                self.refreshed.fetch_add(1, Ordering::Relaxed);
                let token = provider.fresh_token().await.map_err(|e| e.to_string())?;
                if !token.is_usable() {
                    return Err(
                        "the provider's freshest token is expired or about to expire".to_owned(),
                    );
                }
                token
            }
        };
        let mut last = self.last.borrow_mut();
        if let Some(cached) = last.as_mut()
            && cached.token.matches(&token)
        {
            cached.generation = generation;
            return Ok((name, cached.value.clone()));
        }
        let mut value = HeaderValue::from_str(provider.header().render(&token).expose())
            .map_err(|_| "the token holds characters HTTP headers do not allow".to_owned())?;
        value.set_sensitive(true);
        *last = Some(RenderedToken {
            generation,
            token,
            value: value.clone(),
        });
        Ok((name, value))
    }
}
