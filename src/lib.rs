//! # lti2
//!
//! A standalone, Canvas-compatible LTI 2 platform security service, and the tool-side client.
//!
//! A tool signs a short-lived HS256 JWT **assertion** (RFC 7523) with a secret it shares with
//! the platform, and trades it at `POST /api/lti/{accounts|courses}/{id}/authorize` for a JWT
//! **access token**. This crate holds both sides.
//!
//! ## Layout
//!
//! * [`clock`]: injected time (seconds since the epoch).
//! * [`jose`]: strict compact JWS parsing and HMAC signing.
//! * [`assertion`]: the pure assertion checks (claims, `aud`, times, allow-list).
//! * [`access_token`]: minting and verifying access tokens with a key ring.
//! * [`secrets`]: the master key and encryption of secrets at rest.
//! * [`store`]: persistence behind traits: embedded SQLite (default) or PostgreSQL (several
//!   instances), with group-commit nonce stores, and optionally Redis for nonces.
//! * [`authority`]: the authorize use case: credential lookup, validation, replay, minting;
//!   and the bearer gate of the APIs.
//! * [`bearer`]: the bearer gate's rules (token extraction, service and method checks).
//! * [`plagiarism`]: originality report rules, tool association, the APIs' JSON shapes.
//! * [`profile`]: the IMS LTI 2.0 tool consumer profile.
//! * [`tool_proxy`]: ToolProxy documents: reading and validating them for registration.
//! * [`registration`]: registration launches (`ToolProxyRegistrationRequest` parameters).
//! * [`server`]: the axum HTTP service.
//! * [`metrics`]: the Prometheus metrics of one process.
//! * [`import`]: the LMS import document and the content-addressed file store.
//! * [`webhooks`]: subscriptions' rules, event matching, signing, and the delivery worker.
//! * [`config`]: settings from a TOML file, `LTI2_…` environment variables and flags.
//! * [`client`]: the tool side: an assertion builder and a caching token client.
//! * [`cli`]: the `lti2` command line (`serve`, `admin`, `token`, `jwt`, `bench`).

pub mod access_token;
pub mod assertion;
pub mod authority;
pub mod bearer;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod import;
pub mod jose;
pub mod metrics;
pub mod plagiarism;
pub mod profile;
pub mod registration;
pub mod secrets;
pub mod server;
pub mod store;
pub mod tool_proxy;
pub mod webhooks;
