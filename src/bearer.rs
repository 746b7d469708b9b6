//! The bearer gate: which tool an API request comes from, and whether it may call the route
//! (Canvas `Lti::IMS::AccessTokenHelper#authorized_lti2_tool`, `AuthenticationMethods`).
//!
//! Order of checks ([`crate::authority::Authority::authenticate`]):
//! 1. the token, from `Authorization: Bearer …` (scheme case-insensitive, RFC 7235) or else
//!    the `access_token` query or form parameter ([`extract_token`]);
//! 2. the host the request was addressed to must be the host of a configured public base URL
//!    (the `Host` header is judged against them; `X-Forwarded-*` is never read);
//! 3. the signature against the key ring, the claims `iss sub exp aud iat nbf jti`, `iss`,
//!    `aud` containing the host, `exp`/`nbf` with Canvas's skew rule
//!    ([`crate::access_token::KeyRing::verify`]);
//! 4. the tool: a tool proxy whose guid is the `sub` must be active, its developer key (if
//!    any) active, and its security contract must list one of the route's service names with
//!    the request's method ([`contract_allows`]); a developer-key `sub` must name an active
//!    key, and only routes that accept developer keys let it through; a `sub` that is neither
//!    (a reg_key) only passes where the route accepts it ([`Requirement`]).
//!
//! Every failure is a [`GateError`]; the HTTP layer answers 401 with
//! `WWW-Authenticate: Bearer realm="lti2", error="invalid_token"` (RFC 6750 §3), or 503 when
//! the store cannot be read.

use std::sync::Arc;

use crate::access_token::{AccessTokenClaims, AccessTokenError};
use crate::profile::service_id;
use crate::store::{StoreError, ToolProxyRecord, ToolService};

/// Who may pass a route's gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirement {
    /// Service names (Canvas `lti2_service_name`) one of which a tool proxy's contract must
    /// list with the request's method; empty: no contract check.
    pub services: &'static [&'static str],
    /// Whether a tool proxy token passes.
    pub tool_proxy: bool,
    /// Whether a developer-key token passes.
    pub developer_key: bool,
    /// Whether a token whose `sub` is neither (a reg_key) passes.
    pub unregistered: bool,
}

impl Requirement {
    /// A tool-proxy-only route guarded by these service names (the plagiarism APIs).
    pub const fn service(services: &'static [&'static str]) -> Self {
        Self {
            services,
            tool_proxy: true,
            developer_key: false,
            unregistered: false,
        }
    }
}

/// Who the token belongs to.
#[derive(Debug, Clone)]
pub enum Identity {
    /// An active tool proxy whose contract allows the route.
    ToolProxy(Arc<ToolProxyRecord>),
    /// An active developer key (its global id).
    DeveloperKey(i64),
    /// Neither: the `sub` is a reg_key (or unknown).
    Unregistered,
}

/// A request that passed the gate.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The token's claims.
    pub claims: AccessTokenClaims,
    /// Who it belongs to.
    pub identity: Identity,
}

impl Authenticated {
    /// The tool proxy, when the token is one's.
    pub fn tool_proxy(&self) -> Option<&Arc<ToolProxyRecord>> {
        match &self.identity {
            Identity::ToolProxy(tp) => Some(tp),
            _ => None,
        }
    }

    /// The developer key the token speaks for: its own, or its tool proxy's.
    pub fn developer_key_id(&self) -> Option<i64> {
        match &self.identity {
            Identity::ToolProxy(tp) => tp.developer_key_id,
            Identity::DeveloperKey(id) => Some(*id),
            Identity::Unregistered => None,
        }
    }
}

/// Why the gate refused a request. Every variant but `Store` is a 401.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No token in the header or the parameters.
    #[error("no access token")]
    NoToken,
    /// The `Host` is not the host of a configured public base URL.
    #[error("the request host is not a configured public host")]
    Host,
    /// The token itself is invalid.
    #[error("invalid access token: {0}")]
    Token(#[from] AccessTokenError),
    /// The tool proxy is not active.
    #[error("the tool proxy is not active")]
    ToolProxyNotActive,
    /// The tool proxy's developer key is not active.
    #[error("the developer key is not active")]
    DeveloperKeyNotActive,
    /// The contract does not list the route's service.
    #[error("the tool proxy security contract does not include the service")]
    ServiceMissing,
    /// The contract lists the service without the request's method.
    #[error("the tool proxy security contract does not allow this method")]
    MethodMissing,
    /// This kind of token does not open this route.
    #[error("this token's subject may not use this route")]
    WrongSubject,
    /// The store could not be read (503).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl GateError {
    /// A short reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GateError::NoToken => "no_token",
            GateError::Host => "host",
            GateError::Token(AccessTokenError::Expired) => "expired",
            GateError::Token(AccessTokenError::Audience) => "aud",
            GateError::Token(AccessTokenError::Signature) => "signature",
            GateError::Token(_) => "invalid_token",
            GateError::ToolProxyNotActive => "tool_proxy_not_active",
            GateError::DeveloperKeyNotActive => "developer_key_not_active",
            GateError::ServiceMissing => "service_missing",
            GateError::MethodMissing => "method_missing",
            GateError::WrongSubject => "wrong_subject",
            GateError::Store(_) => "store_unavailable",
        }
    }
}

/// The largest access token read (bytes).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The token of an `Authorization` header value: the scheme `Bearer` in any case, then one or
/// more spaces, then the token (RFC 6750 §2.1, RFC 7235). None for another scheme or no token.
pub fn token_from_authorization(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_matches(' ');
    (!token.is_empty() && !token.contains(' ')).then_some(token)
}

/// The access token of a request: from the `Authorization` header when it carries a Bearer
/// token, else from the first non-blank `access_token` parameter (query or form, in that
/// order), as Canvas reads it.
pub fn extract_token<'a>(
    authorization: Option<&'a str>,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<&'a str> {
    authorization
        .and_then(token_from_authorization)
        .or_else(|| {
            params
                .into_iter()
                .find(|(k, v)| *k == "access_token" && !v.trim().is_empty())
                .map(|(_, v)| v.trim())
        })
}

/// Whether a security contract lets `method` call a route guarded by `names`: an entry whose
/// service id (after the last `:` and `#`) is one of `names` must list the method, compared
/// case-insensitively (Canvas `validate_services!`; Canvas looks only at the first entry with a
/// matching name, so a contract listing `ToolProxy.item` (GET) before `ToolProxy.collection`
/// (POST) could never re-register; lti2 accepts any matching entry). `HEAD` counts as `GET`.
pub fn contract_allows(
    contract: &[ToolService],
    names: &[&str],
    method: &str,
) -> Result<(), GateError> {
    let method = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    let mut named = contract
        .iter()
        .filter(|s| names.contains(&service_id(&s.service)))
        .peekable();
    if named.peek().is_none() {
        return Err(GateError::ServiceMissing);
    }
    if named.any(|s| s.action.iter().any(|a| a.eq_ignore_ascii_case(method))) {
        Ok(())
    } else {
        Err(GateError::MethodMissing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_spaces_are_tolerated() {
        for h in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "Bearer  abc",
            "Bearer abc ",
        ] {
            assert_eq!(token_from_authorization(h), Some("abc"), "{h}");
        }
        for h in ["Bearer", "Bearer ", "Basic abc", "Bearerabc", "Bearer a b"] {
            assert_eq!(token_from_authorization(h), None, "{h}");
        }
        assert_eq!(
            extract_token(Some("Basic x"), [("access_token", "tok")]),
            Some("tok")
        );
        assert_eq!(
            extract_token(Some("Bearer h"), [("access_token", "tok")]),
            Some("h")
        );
        assert_eq!(extract_token(None, [("access_token", " ")]), None);
    }

    #[test]
    fn any_matching_contract_entry_may_list_the_method() {
        let contract = vec![
            ToolService {
                service: "tcp#ToolProxy.item".into(),
                action: vec!["GET".into()],
            },
            ToolService {
                service: "tcp#ToolProxy.collection".into(),
                action: vec!["POST".into()],
            },
        ];
        let names = ["ToolProxy.collection", "ToolProxy.item"];
        assert!(contract_allows(&contract, &names, "POST").is_ok());
        assert!(contract_allows(&contract, &names, "HEAD").is_ok());
        assert!(matches!(
            contract_allows(&contract, &names, "DELETE"),
            Err(GateError::MethodMissing)
        ));
    }

    #[test]
    fn contract_entries_are_matched_by_service_id() {
        let contract = vec![
            ToolService {
                service:
                    "https://lms/api/lti/courses/1/tool_consumer_profile/u#vnd.Canvas.submission"
                        .into(),
                action: vec!["get".into()],
            },
            ToolService {
                service: "vnd.Canvas.User".into(),
                action: vec!["POST".into()],
            },
        ];
        assert!(contract_allows(&contract, &["vnd.Canvas.submission"], "GET").is_ok());
        assert!(matches!(
            contract_allows(&contract, &["vnd.Canvas.User"], "GET"),
            Err(GateError::MethodMissing)
        ));
        assert!(matches!(
            contract_allows(&contract, &["vnd.Canvas.Assignment"], "GET"),
            Err(GateError::ServiceMissing)
        ));
        assert!(matches!(
            contract_allows(&contract, &["submission"], "GET"),
            Err(GateError::ServiceMissing)
        ));
    }
}
