//! The `lti2` binary: see [`lti2::cli`].

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use lti2::cli::{Cli, Command};
use lti2::clock::SystemClock;
use lti2::config::{LogFormat, Settings};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter =
        // sqlx's own notices (e.g. "relation _sqlx_migrations already exists") are not news.
        EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx=warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Serve(args) => {
            let settings = Settings::resolve(args.overrides())?;
            init_tracing(settings.log_format, "info");
            let mut running = lti2::server::start(settings, Arc::new(SystemClock)).await?;
            tokio::select! {
                _ = shutdown_signal() => {
                    tracing::info!("shutting down: finishing in-flight requests");
                    running.shutdown().await?;
                }
                r = running.wait() => r?,
            }
            tracing::info!("stopped");
            Ok(0)
        }
        Command::Admin(args) => {
            init_tracing(LogFormat::Text, "warn");
            lti2::cli::admin(args).await?;
            Ok(0)
        }
        Command::Token(args) => {
            init_tracing(LogFormat::Text, "warn");
            lti2::cli::token(args).await
        }
        Command::Jwt { command } => lti2::cli::jwt(command),
        Command::Bench(args) => {
            init_tracing(LogFormat::Text, "warn");
            let report = lti2::bench::run(&args).await?;
            lti2::cli::print_json(&serde_json::to_value(&report)?);
            Ok(if report.non_200 == 0 { 0 } else { 1 })
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
