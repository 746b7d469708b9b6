//! Prometheus metrics of one server process, served at `GET /metrics` (OpenMetrics text).
//!
//! Counters and histograms live in memory, per process (Prometheus sums them across
//! instances); the webhook gauges are counted in the database at scrape time, so they are the
//! same whichever instance is scraped.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `lti2_http_requests_total` | counter | `route` (the matched route template, or `unmatched`), `method` (RFC 9110's, else `other`), `status` |
//! | `lti2_access_tokens_issued_total` | counter | `credential` (`tool_proxy`, `developer_key`, `registration`) |
//! | `lti2_assertions_rejected_total` | counter | `reason` (the token endpoint's reason code, e.g. `replay`, `bad_signature`) |
//! | `lti2_nonce_store_duration_seconds` | histogram | (none): time to claim a `jti` |
//! | `lti2_nonce_store_errors_total` | counter | (none): claims that failed (answered 503) |
//! | `lti2_assertion_clock_offset_seconds` | histogram | (none): `iat − now` of verified assertions, seconds (negative: the tool's clock is behind) |
//! | `lti2_webhook_deliveries` | gauge | `outcome` (`pending`, `delivered`, `failed`) |
//! | `lti2_webhook_subscriptions` | gauge | `state` (`Active`, `Deactivated`, `Deleted`) |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::Method;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<String>,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    credential: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The metrics of one server process.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Route labels, shared so that counting a request allocates nothing. Bounded: the keys
    /// are route templates (and `unmatched`), never raw paths.
    routes: RwLock<HashMap<String, Arc<String>>>,
    requests: Family<RequestLabels, Counter>,
    tokens: Family<CredentialLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    nonce_latency: Histogram,
    nonce_errors: Counter,
    clock_offset: Histogram,
    deliveries: Family<OutcomeLabels, Gauge>,
    subscriptions: Family<StateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A new, empty set of metrics.
    pub fn new() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let tokens = Family::<CredentialLabels, Counter>::default();
        let rejected = Family::<ReasonLabels, Counter>::default();
        // 50 µs … ~0.8 s.
        let nonce_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 15));
        let nonce_errors = Counter::default();
        let clock_offset = Histogram::new([
            -300.0, -120.0, -60.0, -30.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 30.0,
            60.0, 120.0, 300.0,
        ]);
        let deliveries = Family::<OutcomeLabels, Gauge>::default();
        let subscriptions = Family::<StateLabels, Gauge>::default();
        let mut r = Registry::default();
        r.register(
            "lti2_http_requests",
            "HTTP requests by matched route, method and status",
            requests.clone(),
        );
        r.register(
            "lti2_access_tokens_issued",
            "Access tokens issued by the authorize endpoint, by credential kind",
            tokens.clone(),
        );
        r.register(
            "lti2_assertions_rejected",
            "Token requests refused by the authorize endpoint, by reason code",
            rejected.clone(),
        );
        r.register(
            "lti2_nonce_store_duration_seconds",
            "Time to claim a jti in the nonce store, seconds",
            nonce_latency.clone(),
        );
        r.register(
            "lti2_nonce_store_errors",
            "jti claims that failed because the nonce store failed or was unreachable",
            nonce_errors.clone(),
        );
        r.register(
            "lti2_assertion_clock_offset_seconds",
            "iat minus the server's now for verified assertions, seconds",
            clock_offset.clone(),
        );
        r.register(
            "lti2_webhook_deliveries",
            "Webhook deliveries by outcome (counted in the database)",
            deliveries.clone(),
        );
        r.register(
            "lti2_webhook_subscriptions",
            "Webhook subscriptions by state (counted in the database)",
            subscriptions.clone(),
        );
        Self {
            registry: Mutex::new(r),
            routes: RwLock::default(),
            requests,
            tokens,
            rejected,
            nonce_latency,
            nonce_errors,
            clock_offset,
            deliveries,
            subscriptions,
        }
    }

    /// Counts one answered request. `route` must be a route template (axum's `MatchedPath`) or
    /// `unmatched`, so that the number of series stays bounded; methods outside RFC 9110's
    /// are counted as `other` for the same reason.
    pub fn request(&self, route: &str, method: &Method, status: u16) {
        let route = self.route_label(route);
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method_label(method),
                status,
            })
            .inc();
    }

    fn route_label(&self, route: &str) -> Arc<String> {
        if let Some(r) = self.routes.read().expect("route labels lock").get(route) {
            return r.clone();
        }
        self.routes
            .write()
            .expect("route labels lock")
            .entry(route.to_owned())
            .or_insert_with(|| Arc::new(route.to_owned()))
            .clone()
    }

    /// Counts one issued access token.
    pub fn token_issued(&self, credential: &'static str) {
        self.tokens
            .get_or_create(&CredentialLabels { credential })
            .inc();
    }

    /// Counts one refused token request.
    pub fn assertion_rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records one nonce claim: its duration in seconds, and whether it failed.
    pub fn nonce_claim(&self, seconds: f64, failed: bool) {
        self.nonce_latency.observe(seconds);
        if failed {
            self.nonce_errors.inc();
        }
    }

    /// Records a verified assertion's `iat − now`, seconds.
    pub fn clock_offset(&self, seconds: f64) {
        self.clock_offset.observe(seconds);
    }

    /// Sets the webhook gauges from database counts.
    pub fn set_webhook_counts(
        &self,
        deliveries: &[(String, i64)],
        subscriptions: &[(String, i64)],
    ) {
        for outcome in ["pending", "delivered", "failed"] {
            let n = count_of(deliveries, outcome);
            self.deliveries
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_owned(),
                })
                .set(n);
        }
        for state in ["Active", "Deactivated", "Deleted"] {
            let n = count_of(subscriptions, state);
            self.subscriptions
                .get_or_create(&StateLabels {
                    state: state.to_owned(),
                })
                .set(n);
        }
    }

    /// The OpenMetrics text of every metric (see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

fn count_of(counts: &[(String, i64)], key: &str) -> i64 {
    counts
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, n)| *n)
        .unwrap_or(0)
}
