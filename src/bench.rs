//! `lti2 bench`: an HTTP load generator for the authorize endpoint.
//!
//! It pre-signs N unique assertions (so signing costs nothing during the run), opens C
//! keep-alive HTTP/1.1 connections, and keeps one request in flight on each until all N are
//! sent. It reports successful exchanges per second, p50/p99/max latency, and the count of
//! non-200 answers (which must be 0 for a valid run).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde::Serialize;

use crate::authority::JWT_BEARER;
use crate::client::{system_now, AssertionBuilder};

/// `lti2 bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The authorize URL (http only), e.g. http://127.0.0.1:3000/api/lti/accounts/1/authorize.
    #[arg(long)]
    pub url: String,
    /// A tool proxy guid known to the server.
    #[arg(long)]
    pub sub: String,
    /// Its shared secret.
    #[arg(long)]
    pub secret: String,
    /// Number of token exchanges.
    #[arg(long, default_value_t = 200_000)]
    pub requests: usize,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Assertion lifetime, seconds (must fit the server's max_assertion_lifetime).
    #[arg(long, default_value_t = 240)]
    pub lifetime: i64,
    /// Where to connect (`host:port`), repeatable: connections are spread over these in turn,
    /// as a load balancer in front of several instances would, while `--url` stays the public
    /// URL (the assertions' `aud` and the `Host` header). Default: `--url`'s own host and port.
    #[arg(long)]
    pub connect: Vec<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Requests sent.
    pub requests: usize,
    /// Connections.
    pub concurrency: usize,
    /// 200 answers.
    pub ok: usize,
    /// Other answers (or transport errors).
    pub non_200: usize,
    /// Wall time of the run, seconds.
    pub seconds: f64,
    /// `ok / seconds`.
    pub exchanges_per_second: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Largest latency, milliseconds.
    pub max_ms: f64,
}

/// Runs the benchmark.
pub async fn run(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let url: url::Url = args.url.parse().context("--url is not a URL")?;
    anyhow::ensure!(
        url.scheme() == "http",
        "only http:// URLs can be benchmarked"
    );
    let host = url.host_str().context("--url has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.clone(),
    };
    let path = url.path().to_owned();
    let targets: Vec<String> = if args.connect.is_empty() {
        vec![format!("{host}:{port}")]
    } else {
        args.connect.clone()
    };
    let now = system_now();
    let builder = AssertionBuilder::new(&args.sub, &args.url).lifetime(args.lifetime);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..args.requests)
            .map(|_| {
                let a = builder.sign(args.secret.as_bytes(), now);
                Bytes::from(format!(
                    "grant_type={}&assertion={a}",
                    urlencode(JWT_BEARER)
                ))
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.concurrency.max(1) {
        let bodies = bodies.clone();
        let next = next.clone();
        let target = targets[c % targets.len()].clone();
        let (authority, path) = (authority.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(target.as_str()).await?;
            stream.set_nodelay(true)?;
            let io = hyper_util::rt::TokioIo::new(stream);
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await?;
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut bad = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    break;
                }
                let req = Request::post(path.as_str())
                    .header("host", authority.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Full::new(bodies[i].clone()))?;
                let t = Instant::now();
                let ok = match sender.send_request(req).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let _ = resp.into_body().collect().await;
                        status == 200
                    }
                    Err(_) => false,
                };
                lat.push(t.elapsed());
                if !ok {
                    bad += 1;
                }
                if sender.ready().await.is_err() {
                    break;
                }
            }
            anyhow::Ok((lat, bad))
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(args.requests);
    let mut non_200 = 0;
    for t in tasks {
        let (lat, bad) = t.await??;
        all.extend(lat);
        non_200 += bad;
    }
    let seconds = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[idx].as_secs_f64() * 1000.0
    };
    let ok = all.len() - non_200;
    Ok(BenchReport {
        requests: args.requests,
        concurrency: args.concurrency,
        ok,
        non_200: non_200 + (args.requests - all.len()),
        seconds,
        exchanges_per_second: ok as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: pct(1.0),
    })
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
