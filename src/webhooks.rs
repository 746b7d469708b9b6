//! Webhooks: which tool may subscribe to what (Canvas `Lti::SubscriptionsValidator`), which
//! events reach which subscription, how deliveries are signed and retried, which targets are
//! refused, and the delivery worker that runs inside `lti2 serve`.
//!
//! **Delivery.** Each event goes to every matching subscription as `POST` with
//! `Content-Type: application/json` and the message `{"metadata": …, "body": …}`, with a 15 s
//! timeout; any 2xx counts as delivered. Headers:
//! * `X-Lti2-Event-Id`: the event's UUID (the same on every retry and for every subscription;
//!   use it to drop duplicates);
//! * `X-Lti2-Subscription-Id`: the subscription;
//! * `X-Lti2-Timestamp`: seconds since the epoch when the attempt was signed;
//! * `X-Lti2-Signature`: `v1=` + lowercase hex HMAC-SHA256, keyed with the tool proxy's shared
//!   secret, of `timestamp + "." + body`.
//!
//! Failures are retried with exponential backoff and jitter ([`backoff`]) until
//! [`WebhookSettings::retry_for`] has passed since the event; then the delivery is failed. After
//! [`WebhookSettings::deactivate_after`] failed deliveries in a row a subscription is
//! deactivated (`State: "Deactivated"`). At most [`PER_SUBSCRIPTION`] deliveries per
//! subscription are in flight, so a slow receiver delays only itself. There is no ordering and
//! no deduplication: a receiver may see an event twice (after a crash or a lost 2xx).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::clock::SharedClock;
use crate::store::webhooks::{DeliveryOutcome, DueDelivery, Subscription};
use crate::store::Store;

/// The event types a similarity-detection tool proxy is subscribed to automatically.
pub const PLAGIARISM_EVENTS: &[&str] = &[
    "submission_created",
    "plagiarism_resubmit",
    "submission_updated",
    "assignment_updated",
    "assignment_created",
];

/// Capabilities that grant every event type.
pub const GRANT_ALL: &[&str] = &[
    "vnd.instructure.webhooks.root_account.all",
    "vnd.Canvas.webhooks.root_account.all",
];

/// The capabilities that allow subscribing to an event type through the API (Canvas
/// `WEBHOOK_SUBSCRIPTION_CAPABILITIES`); None for a type that only grant-all allows.
pub fn capabilities_for(event_type: &str) -> Option<Vec<String>> {
    match event_type {
        "submission_created"
        | "submission_updated"
        | "plagiarism_resubmit"
        | "attachment_created"
        | "quiz_submitted" => Some(vec![
            format!("vnd.instructure.webhooks.root_account.{event_type}"),
            format!("vnd.instructure.webhooks.assignment.{event_type}"),
        ]),
        "grade_change" => Some(vec![
            "vnd.instructure.webhooks.root_account.grade_change".into()
        ]),
        _ => None,
    }
}

/// Whether a tool proxy with `enabled_capability` may subscribe to every one of `event_types`.
pub fn may_subscribe(enabled_capability: &[String], event_types: &[String]) -> bool {
    if enabled_capability
        .iter()
        .any(|c| GRANT_ALL.contains(&c.as_str()))
    {
        return true;
    }
    event_types.iter().all(|t| {
        capabilities_for(t).is_some_and(|caps| caps.iter().any(|c| enabled_capability.contains(c)))
    })
}

/// What dispatch needs to know about an event.
#[derive(Debug, Clone)]
pub struct EventFacts<'a> {
    /// The event name.
    pub event_name: &'a str,
    /// Emitted by a background job (an import) rather than a user's request.
    pub system: bool,
    /// The root account.
    pub root_account_id: Option<i64>,
    /// The assignment it is about.
    pub assignment_id: Option<i64>,
    /// The tool proxy the assignment uses.
    pub associated_integration_id: Option<&'a str>,
}

/// Whether an event goes to a subscription: it is active; the event name is in `EventTypes`,
/// or in `SystemEventTypes`/`UserEventTypes` for system/user events; the root account (or the
/// assignment) is the subscription's; and a subscription with an `AssociatedIntegrationId` gets
/// only events that carry the same `associated_integration_id`.
pub fn matches(s: &Subscription, e: &EventFacts<'_>) -> bool {
    if s.state != "Active" {
        return false;
    }
    let listed = |l: &Option<Vec<String>>| {
        l.as_ref()
            .is_some_and(|l| l.iter().any(|t| t == e.event_name))
    };
    let wanted = listed(&s.event_types)
        || if e.system {
            listed(&s.system_event_types)
        } else {
            listed(&s.user_event_types)
        };
    if !wanted {
        return false;
    }
    let in_context = match s.context_type.as_str() {
        "root_account" => e.root_account_id == Some(s.root_account_id),
        "assignment" => e.assignment_id.is_some() && e.assignment_id == s.assignment_id,
        _ => false,
    };
    if !in_context {
        return false;
    }
    match &s.associated_integration_id {
        Some(id) => e.associated_integration_id == Some(id.as_str()),
        None => true,
    }
}

/// The `X-Lti2-Signature` value: `v1=` + hex HMAC-SHA256(secret, `timestamp.body`).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delay before retry number `attempts` (1 after the first failure), in seconds:
/// 10 s doubled each time, at most 10 minutes, then scaled by a random factor in [0.5, 1.0].
pub fn backoff(attempts: i64, jitter: f64) -> i64 {
    let exp = attempts.clamp(1, 16) - 1;
    let base = (10i64 << exp).min(600);
    ((base as f64) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))).ceil() as i64
}

/// Whether an address is one a tool must not make lti2 reach: loopback, private (RFC 1918,
/// RFC 4193), link-local, CGNAT, unspecified, multicast, broadcast or documentation ranges.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // IPv4 carried in IPv6: mapped (::ffff:a.b.c.d), compatible (::a.b.c.d),
            // NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
            let o = v6.octets();
            let embedded = v6.to_ipv4().or(
                if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                    Some(std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]))
                } else if s[0] == 0x2002 {
                    Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5]))
                } else {
                    None
                },
            );
            if let Some(v4) = embedded {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}

/// What the webhook parts of lti2 may do.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Allow `http` targets (else `https` only).
    pub allow_http: bool,
    /// Allow targets on internal addresses ([`is_internal`]).
    pub allow_private: bool,
    /// How long after an event its deliveries are retried before they fail.
    pub retry_for: i64,
    /// Failed deliveries in a row that deactivate a subscription.
    pub deactivate_after: i64,
    /// How long to wait for a receiver.
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private: false,
            retry_for: 3600,
            deactivate_after: 20,
            timeout: Duration::from_secs(15),
        }
    }
}

/// Checks a subscription URL: absolute, `https` (or `http` when allowed), with a host; when
/// internal targets are not allowed, a host that is an internal IP literal or `localhost` is
/// refused (names are checked again when delivering). Returns the message for a 400.
pub fn check_url(url: &str, transport: &str, settings: &WebhookSettings) -> Result<(), String> {
    let parsed = url::Url::parse(url)
        .map_err(|_| format!("TransportMetadata.Url '{url}' is not an absolute URL"))?;
    let scheme_ok = match transport {
        "https" => parsed.scheme() == "https" || (settings.allow_http && parsed.scheme() == "http"),
        "http" => settings.allow_http && parsed.scheme() == "http",
        _ => false,
    };
    if !scheme_ok {
        return Err(format!(
            "TransportMetadata.Url must be an https URL{}",
            if settings.allow_http {
                " (or http)"
            } else {
                ""
            }
        ));
    }
    let Some(host) = parsed.host() else {
        return Err("TransportMetadata.Url has no host".into());
    };
    if !settings.allow_private {
        let internal = match host {
            url::Host::Ipv4(a) => is_internal(IpAddr::V4(a)),
            url::Host::Ipv6(a) => is_internal(IpAddr::V6(a)),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                d == "localhost" || d.ends_with(".localhost")
            }
        };
        if internal {
            return Err("TransportMetadata.Url points to an internal address, which lti2 does not deliver to".into());
        }
    }
    Ok(())
}

/// At most this many deliveries per subscription are in flight.
pub const PER_SUBSCRIPTION: usize = 2;
/// At most this many deliveries are in flight in all.
pub const IN_FLIGHT: usize = 64;

/// The delivery worker: dispatches new events into deliveries and attempts the due ones, until
/// the task is aborted. `wake` is notified when events are written by this process.
pub async fn run_worker(
    store: Arc<dyn Store>,
    clock: SharedClock,
    settings: WebhookSettings,
    wake: Arc<tokio::sync::Notify>,
) {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let busy: Arc<std::sync::Mutex<HashMap<i64, String>>> = Default::default();
    let settings = Arc::new(settings);
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let now = clock.now();
        if let Err(e) = store.dispatch_events(now).await {
            tracing::warn!(error = %e, "webhook dispatch failed");
            continue;
        }
        let busy_ids: Vec<i64> = busy.lock().expect("busy lock").keys().copied().collect();
        if busy_ids.len() >= IN_FLIGHT {
            continue;
        }
        let due = match store.due_deliveries(now, 256, &busy_ids).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading due webhook deliveries failed");
                continue;
            }
        };
        for d in due {
            {
                let mut b = busy.lock().expect("busy lock");
                if b.len() >= IN_FLIGHT
                    || b.values().filter(|s| **s == d.subscription_id).count() >= PER_SUBSCRIPTION
                {
                    continue;
                }
                b.insert(d.id, d.subscription_id.clone());
            }
            let (store, clock, http, settings, busy, wake) = (
                store.clone(),
                clock.clone(),
                http.clone(),
                settings.clone(),
                busy.clone(),
                wake.clone(),
            );
            tokio::spawn(async move {
                let outcome = attempt(&store, &clock, &http, &settings, &d).await;
                let now = clock.now();
                match &outcome {
                    DeliveryOutcome::Delivered { status } => {
                        tracing::debug!(delivery = d.id, event = %d.event_id, status, "webhook delivered")
                    }
                    DeliveryOutcome::Retry { error, .. } => {
                        tracing::info!(delivery = d.id, event = %d.event_id, error = %error, "webhook delivery failed; will retry")
                    }
                    DeliveryOutcome::Failed { error, .. } => {
                        tracing::warn!(delivery = d.id, event = %d.event_id, subscription = %d.subscription_id, error = %error, "webhook delivery failed for good")
                    }
                }
                if let Err(e) = store
                    .record_delivery(d.id, &outcome, now, settings.deactivate_after)
                    .await
                {
                    tracing::warn!(error = %e, "recording a webhook delivery failed");
                }
                busy.lock().expect("busy lock").remove(&d.id);
                wake.notify_one();
            });
        }
    }
}

/// A transport error with its causes ("connection refused", "timed out after 15 s"), for
/// `lti2 admin deliveries list`.
fn describe(e: &reqwest::Error, settings: &WebhookSettings) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", settings.timeout.as_secs());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One attempt at one delivery.
async fn attempt(
    store: &Arc<dyn Store>,
    clock: &SharedClock,
    http: &reqwest::Client,
    settings: &WebhookSettings,
    d: &DueDelivery,
) -> DeliveryOutcome {
    let now = clock.now();
    let attempts = d.attempts + 1;
    let give_up = now - d.created_at >= settings.retry_for;
    let fail = |status: Option<u16>, error: String, retryable: bool| {
        if retryable && !give_up {
            DeliveryOutcome::Retry {
                status,
                error,
                next_attempt_at: now + backoff(attempts, rand::random::<f64>()),
            }
        } else {
            DeliveryOutcome::Failed { status, error }
        }
    };
    let secret = match store.tool_proxy(&d.tool_proxy_guid).await {
        Ok(Some(tp)) if tp.workflow_state == "active" => tp.shared_secret,
        Ok(Some(_)) => return fail(None, "the tool proxy is not active".into(), false),
        Ok(None) => return fail(None, "the tool proxy no longer exists".into(), false),
        Err(e) => return fail(None, format!("store: {e}"), true),
    };
    // Resolve the target and refuse internal addresses (again: a name may have changed since
    // the subscription was made); then connect to the address that was checked.
    let parsed = match url::Url::parse(&d.url) {
        Ok(u) => u,
        Err(_) => return fail(None, "the URL does not parse".into(), false),
    };
    let host = parsed
        .host_str()
        .unwrap_or("")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::SocketAddr> =
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => return fail(None, format!("cannot resolve {host}: {e}"), true),
        };
    let Some(addr) = addrs.first().copied() else {
        return fail(None, format!("{host} has no address"), true);
    };
    if !settings.allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
        return fail(
            None,
            format!("{host} resolves to an internal address"),
            false,
        );
    }
    let client = if parsed
        .host()
        .is_some_and(|h| matches!(h, url::Host::Domain(_)))
    {
        match reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr)
            .build()
        {
            Ok(c) => c,
            Err(e) => return fail(None, format!("client: {e}"), true),
        }
    } else {
        http.clone()
    };
    let body = d.message.clone().into_bytes();
    let sig = signature(secret.expose(), now, &body);
    let sent = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Lti2-Event-Id", &d.event_id)
        .header("X-Lti2-Subscription-Id", &d.subscription_id)
        .header("X-Lti2-Timestamp", now.to_string())
        .header("X-Lti2-Signature", sig)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => DeliveryOutcome::Delivered {
            status: r.status().as_u16(),
        },
        Ok(r) => fail(
            Some(r.status().as_u16()),
            format!("the receiver answered {}", r.status().as_u16()),
            true,
        ),
        Err(e) => fail(None, describe(&e, settings), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(ctx: &str) -> Subscription {
        Subscription {
            id: "s".into(),
            tool_proxy_guid: "tp".into(),
            developer_key_id: None,
            root_account_id: 1,
            context_type: ctx.into(),
            context_id: "x".into(),
            assignment_id: Some(7),
            event_types: Some(vec!["submission_created".into()]),
            system_event_types: None,
            user_event_types: None,
            format: "live-event".into(),
            transport_type: "https".into(),
            url: "https://t".into(),
            associated_integration_id: None,
            state: "Active".into(),
            automatic: false,
            consecutive_failures: 0,
            deactivated_reason: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn event<'a>(name: &'a str, assignment: i64, aii: Option<&'a str>) -> EventFacts<'a> {
        EventFacts {
            event_name: name,
            system: true,
            root_account_id: Some(1),
            assignment_id: Some(assignment),
            associated_integration_id: aii,
        }
    }

    #[test]
    fn capabilities_grant_event_types() {
        let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let types = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(may_subscribe(
            &caps(&["vnd.instructure.webhooks.assignment.submission_created"]),
            &types(&["submission_created"])
        ));
        assert!(!may_subscribe(
            &caps(&["vnd.instructure.webhooks.assignment.submission_created"]),
            &types(&["submission_updated"])
        ));
        assert!(!may_subscribe(
            &caps(&["vnd.instructure.webhooks.assignment.grade_change"]),
            &types(&["grade_change"])
        ));
        assert!(!may_subscribe(&caps(&[]), &types(&["assignment_created"])));
        assert!(may_subscribe(
            &caps(&["vnd.instructure.webhooks.root_account.all"]),
            &types(&["assignment_created", "anything"])
        ));
        assert!(!may_subscribe(
            &caps(&["vnd.instructure.webhooks.root_account.submission_created"]),
            &types(&["made_up"])
        ));
    }

    #[test]
    fn events_match_by_name_context_and_integration() {
        let s = sub("root_account");
        assert!(matches(&s, &event("submission_created", 9, None)));
        assert!(!matches(&s, &event("submission_updated", 9, None)));
        let mut a = sub("assignment");
        assert!(matches(&a, &event("submission_created", 7, None)));
        assert!(!matches(&a, &event("submission_created", 8, None)));
        a.associated_integration_id = Some("tp".into());
        assert!(matches(&a, &event("submission_created", 7, Some("tp"))));
        assert!(!matches(&a, &event("submission_created", 7, Some("other"))));
        assert!(!matches(&a, &event("submission_created", 7, None)));
        let mut auto = sub("root_account");
        auto.event_types = None;
        auto.system_event_types = Some(vec!["submission_created".into()]);
        assert!(matches(&auto, &event("submission_created", 1, None)));
        let user_event = EventFacts {
            system: false,
            ..event("submission_created", 1, None)
        };
        assert!(!matches(&auto, &user_event));
        let mut gone = sub("root_account");
        gone.state = "Deleted".into();
        assert!(!matches(&gone, &event("submission_created", 1, None)));
    }

    #[test]
    fn signature_is_hmac_of_timestamp_dot_body() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"k",b"5.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            signature(b"k", 5, b"{}"),
            "v1=d066254199a6f40d63f96c33c549959d7a371ef849d13d2a85811237089b2d00"
        );
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        assert_eq!(backoff(1, 1.0), 10);
        assert_eq!(backoff(2, 1.0), 20);
        assert_eq!(backoff(1, 0.0), 5);
        assert_eq!(backoff(30, 1.0), 600);
        assert!(backoff(3, 0.3) >= 20 && backoff(3, 0.3) <= 40);
    }

    #[test]
    fn internal_targets_are_refused_unless_allowed() {
        let strict = WebhookSettings::default();
        for bad in [
            "https://127.0.0.1/x",
            "https://10.1.2.3/",
            "https://[::1]/",
            "https://169.254.169.254/latest",
            "https://localhost:8443/",
            "https://192.168.1.1/",
            "https://[fd00::1]/",
            "https://100.64.0.1/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::127.0.0.1]:9443/",
            "https://[64:ff9b::7f00:1]/",
            "https://[fec0::1]/",
            "https://[2002:7f00:1::]/",
            "https://localhost./x",
        ] {
            assert!(check_url(bad, "https", &strict).is_err(), "{bad}");
        }
        assert!(check_url("http://tool.example/x", "https", &strict).is_err());
        assert!(check_url("https://tool.example/x", "https", &strict).is_ok());
        assert!(check_url("/relative", "https", &strict).is_err());
        let dev = WebhookSettings {
            allow_http: true,
            allow_private: true,
            ..Default::default()
        };
        assert!(check_url("http://127.0.0.1:9000/x", "https", &dev).is_ok());
        assert!(check_url("http://127.0.0.1:9000/x", "http", &dev).is_ok());
        assert!(check_url("http://127.0.0.1:9000/x", "http", &strict).is_err());
    }
}
