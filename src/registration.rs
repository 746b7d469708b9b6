//! The registration launch (Canvas `Lti::MessageController#registration`,
//! `Lti::RegistrationRequestService`): a `reg_key` and `reg_password` bound to one context for
//! one hour, and the IMS LTI 2.0 `ToolProxyRegistrationRequest` parameters a browser posts to
//! the tool.

use crate::secrets::{random_bytes, Secret};
use crate::store::{ContextRef, NewRegistration, Store, StoreError};

/// How long a registration stays usable, seconds (Canvas caches it for one hour).
pub const REGISTRATION_LIFETIME: i64 = 3600;

/// A new reg_key (a UUID v4, as Canvas makes it); it becomes the tool proxy's guid.
pub fn new_reg_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A new reg_password: 32 random bytes as 64 hex characters.
pub fn new_reg_password() -> String {
    hex::encode(random_bytes(32))
}

/// Checks the tool's registration URL: absolute `http` or `https` with a host (Canvas answers
/// 400 for anything else, e.g. `javascript:`). Returns the parsed URL.
pub fn check_tool_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("the tool URL is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("the tool URL must be an http or https URL with a host".into());
    }
    Ok(parsed)
}

/// The `ToolProxyRegistrationRequest` launch parameters, in Canvas's order, for a
/// registration of `ctx` served under `base_url` (`scheme://host[:port]`).
pub fn launch_params(
    base_url: &str,
    ctx: ContextRef,
    reg_key: &str,
    reg_password: &str,
    root_account_uuid: &str,
) -> Vec<(&'static str, String)> {
    let context = format!("{}/{}", ctx.kind.plural(), ctx.id);
    let api_domain = base_url
        .split_once("://")
        .map(|(_, a)| a)
        .unwrap_or(base_url)
        .to_owned();
    vec![
        ("lti_message_type", "ToolProxyRegistrationRequest".into()),
        ("lti_version", "LTI-2p0".into()),
        ("reg_key", reg_key.into()),
        ("reg_password", reg_password.into()),
        ("tool_proxy_guid", reg_key.into()),
        (
            "tool_proxy_url",
            format!("{base_url}/api/lti/{context}/tool_proxy"),
        ),
        (
            "tc_profile_url",
            format!("{base_url}/api/lti/{context}/tool_consumer_profile"),
        ),
        (
            "oauth2_access_token_url",
            format!("{base_url}/api/lti/{context}/authorize"),
        ),
        (
            "launch_presentation_return_url",
            format!("{base_url}/{context}/lti/registration_return"),
        ),
        ("launch_presentation_document_target", "iframe".into()),
        ("ext_tool_consumer_instance_guid", root_account_uuid.into()),
        ("ext_api_domain", api_domain),
    ]
}

/// A started registration.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The reg_key (the future tool proxy guid).
    pub reg_key: String,
    /// The reg_password.
    pub reg_password: String,
    /// When it stops being usable, seconds since the epoch.
    pub expires_at: i64,
    /// The launch parameters ([`launch_params`]).
    pub params: Vec<(&'static str, String)>,
}

/// Why a registration could not be started or an update applied.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The tool URL is not http(s).
    #[error("{0}")]
    ToolUrl(String),
    /// No such account or course, or tool proxy.
    #[error("{0} not found")]
    NotFound(String),
    /// Nothing to apply, or what is waiting cannot be applied.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts a registration of `ctx` at `now` (seconds since the epoch) for the tool at
/// `tool_url`: stores a new reg_key and reg_password for [`REGISTRATION_LIFETIME`] seconds and
/// returns the launch parameters built under `base_url` (what `lti2 admin registration start`
/// prints).
pub async fn start(
    store: &dyn Store,
    ctx: ContextRef,
    tool_url: &str,
    base_url: &str,
    now: i64,
) -> Result<Launch, RegistrationError> {
    check_tool_url(tool_url).map_err(RegistrationError::ToolUrl)?;
    let root = store
        .root_account(ctx)
        .await?
        .ok_or_else(|| RegistrationError::NotFound(format!("{} {}", ctx.kind.as_str(), ctx.id)))?;
    let reg_key = new_reg_key();
    let reg_password = new_reg_password();
    let expires_at = now + REGISTRATION_LIFETIME;
    store
        .create_registration(NewRegistration {
            reg_key: reg_key.clone(),
            reg_password: Secret::new(reg_password.clone().into_bytes()),
            context: ctx,
            tool_url: Some(tool_url.to_owned()),
            now,
            expires_at,
        })
        .await?;
    let params = launch_params(base_url, ctx, &reg_key, &reg_password, &root.uuid);
    Ok(Launch {
        reg_key,
        reg_password,
        expires_at,
        params,
    })
}

/// A re-registration waiting for the administrator.
#[derive(Debug, Clone)]
pub struct PendingUpdate {
    /// The tool proxy.
    pub guid: String,
    /// The tool's `VND-IMS-CONFIRM-URL`.
    pub acknowledgement_url: String,
    /// The staged payload, exactly as stored (applying checks it is still the one waiting).
    pub staged: String,
    /// The new document's content.
    pub content: crate::store::ToolProxyContent,
}

/// The re-registration waiting for a tool proxy. Errors: `NotFound`; `Invalid` when none is
/// waiting.
pub async fn pending_update(
    store: &dyn Store,
    guid: &str,
) -> Result<PendingUpdate, RegistrationError> {
    let detail = store
        .tool_proxy_detail(guid)
        .await?
        .ok_or_else(|| RegistrationError::NotFound(format!("tool proxy {guid}")))?;
    let staged = detail.update_payload.ok_or_else(|| {
        RegistrationError::Invalid(format!("tool proxy {guid} has no re-registration waiting"))
    })?;
    let update: serde_json::Value = serde_json::from_str(&staged).map_err(|_| {
        RegistrationError::Invalid("the waiting re-registration is not JSON".into())
    })?;
    let doc = update["payload"].to_string();
    let parsed = crate::tool_proxy::parse(doc.as_bytes()).map_err(|e| {
        RegistrationError::Invalid(format!(
            "the waiting re-registration is invalid: {}",
            e.body()
        ))
    })?;
    Ok(PendingUpdate {
        guid: guid.to_owned(),
        acknowledgement_url: update["acknowledgement_url"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        staged,
        content: parsed.content,
    })
}

/// Applies a waiting re-registration (Canvas's admin "accept update"): its new document,
/// handlers and shared secret, in one transaction. Call it once the tool has confirmed
/// (its `VND-IMS-CONFIRM-URL` answered 2xx), so that both sides switch secrets together.
pub async fn apply_update(
    store: &dyn Store,
    update: &PendingUpdate,
    now: i64,
) -> Result<(), RegistrationError> {
    store
        .apply_tool_proxy_update(&update.guid, &update.staged, &update.content, now)
        .await?;
    Ok(())
}

/// Escapes text for an HTML attribute or element.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page whose form posts `params` to `tool_url` as soon as it loads (with a button
/// for browsers without scripts).
pub fn auto_submit_form(tool_url: &str, params: &[(&str, String)]) -> String {
    let mut fields = String::new();
    for (k, v) in params {
        fields.push_str(&format!(
            "    <input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            html_escape(k),
            html_escape(v)
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Register an LTI 2 tool</title></head>\n<body onload=\"document.forms[0].submit()\">\n  <form method=\"post\" action=\"{}\" enctype=\"application/x-www-form-urlencoded\">\n{fields}    <noscript><button type=\"submit\">Register the tool</button></noscript>\n  </form>\n</body>\n</html>\n",
        html_escape(tool_url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ContextKind;

    #[test]
    fn tool_urls_must_be_http() {
        assert!(check_tool_url("https://tool.example/register").is_ok());
        assert!(check_tool_url("http://localhost:9000/r").is_ok());
        for bad in [
            "javascript:alert(1)",
            "ftp://tool.example/",
            "tool.example/r",
            "https://",
        ] {
            assert!(check_tool_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn launch_parameters_name_this_context() {
        let ctx = ContextRef {
            kind: ContextKind::Course,
            id: 5,
        };
        let p = launch_params("https://lms.example:8443", ctx, "rk", "pw", "root-uuid");
        let get = |k: &str| p.iter().find(|(n, _)| *n == k).unwrap().1.clone();
        assert_eq!(get("tool_proxy_guid"), "rk");
        assert_eq!(
            get("oauth2_access_token_url"),
            "https://lms.example:8443/api/lti/courses/5/authorize"
        );
        assert_eq!(
            get("tc_profile_url"),
            "https://lms.example:8443/api/lti/courses/5/tool_consumer_profile"
        );
        assert_eq!(get("ext_api_domain"), "lms.example:8443");
        let html = auto_submit_form("https://t.example/?a=1&b=\"2\"", &p);
        assert!(html.contains("action=\"https://t.example/?a=1&amp;b=&quot;2&quot;\""));
        assert!(html.contains("name=\"reg_password\" value=\"pw\""));
    }
}
