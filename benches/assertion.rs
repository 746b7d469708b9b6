//! Criterion benchmarks of the pure hot path: assertion validation (parse, HMAC, claims) and
//! access-token minting and verification.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use lti2::access_token::{KeyRing, MintRequest, SigningKey};
use lti2::assertion::{self, normalize_url, AssertionPolicy, Subject};
use lti2::client::AssertionBuilder;

const NOW: i64 = 1_767_225_600;
const AUD: &str = "https://lms.example.edu/api/lti/accounts/1/authorize";
const SECRET: &[u8] = b"k3y-0123456789abcdef0123456789ab";

fn benches(c: &mut Criterion) {
    let policy = AssertionPolicy::default();
    let expected = vec![normalize_url(AUD).unwrap()];
    let token = AssertionBuilder::new("tp-1", AUD)
        .jti("688700c2-4bc1-40b7-83e5-7cbf54f93305")
        .sign(SECRET, NOW);
    c.bench_function("assertion/parse+verify+claims", |b| {
        b.iter(|| {
            let parsed = assertion::parse(black_box(&token), &policy).unwrap();
            parsed.verify(SECRET, &expected, &policy, NOW).unwrap()
        })
    });
    c.bench_function("assertion/parse_only", |b| {
        b.iter(|| assertion::parse(black_box(&token), &policy).unwrap())
    });
    let ring = KeyRing::new(vec![SigningKey::new("k1", vec![7u8; 32])]).unwrap();
    let aud = vec!["lms.example.edu".to_string()];
    let sub = Subject::Str("tp-1".into());
    let req = MintRequest {
        sub: &sub,
        reg_key: "tp-1",
        aud: &aud,
        iss: "Canvas",
        now: NOW,
        lifetime: 3600,
    };
    c.bench_function("access_token/mint", |b| {
        b.iter(|| ring.mint(black_box(&req)))
    });
    let minted = ring.mint(&req);
    c.bench_function("access_token/verify", |b| {
        b.iter(|| {
            ring.verify(black_box(&minted), "Canvas", "lms.example.edu", NOW)
                .unwrap()
        })
    });
    c.bench_function("client/sign_assertion", |b| {
        let builder = AssertionBuilder::new("tp-1", AUD);
        b.iter(|| builder.sign(SECRET, black_box(NOW)))
    });
}

criterion_group!(group, benches);
criterion_main!(group);
