//! revstream-server: the HTTP action recognition service.

use anyhow::Context;
use clap::Parser;
use revstream::server::{self, AppState, ServerConfig};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Serve action recognition over HTTP.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerConfig,
    /// Log format.
    #[arg(
        long,
        env = "REVSTREAM_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    revstream::alloc::keep_freed_memory();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info"));
    match args.log_format {
        LogFormat::Pretty => tracing_subscriber::fmt().with_env_filter(filter).init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
    }

    let config = args.server;
    let address = format!("{}:{}", config.address, config.port);
    let state = AppState::new(config).context("starting the models")?;
    let listener = TcpListener::bind(&address)
        .await
        .with_context(|| format!("binding {address}"))?;

    // Serve at once (so /health answers 503 while loading), but stop if a model fails.
    let models = state.models.clone();
    let server = tokio::spawn(server::serve(listener, state, shutdown_signal()));
    if let Err(e) = models.wait_loaded().await {
        server.abort();
        anyhow::bail!("{e}");
    }
    tracing::info!("every model is ready");
    server
        .await
        .context("the server task")?
        .context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
