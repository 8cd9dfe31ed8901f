//! The `stompbridge` command: `run` (the default) and `check-config`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use stompbridge::config::{self, Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Bridges RabbitMQ queues to STOMP clients over WebSocket and SockJS.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the bridge (the default when no command is given).
    Run(RunArgs),
    /// Validate a configuration file, list every problem, and summarize what it
    /// declares. Exits with 0 when the file is valid, 1 otherwise.
    CheckConfig {
        /// The configuration file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The YAML configuration file.
    #[arg(
        long,
        short,
        env = "STOMPBRIDGE_CONFIG",
        default_value = "/etc/stompbridge/config.yaml"
    )]
    config: PathBuf,
    /// Log line format; overrides `log.format` in the configuration.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(file) {
        Ok(config) => {
            println!("{}: valid", file.display());
            print!("{}", summary(&config));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}

fn summary(config: &Config) -> String {
    let mut out = format!(
        "public listener: {}\nadmin listener: {}\nexchange: {}\nqueues: {}\n",
        config.server.listen,
        config.admin.listen,
        config.rabbitmq.exchange,
        config.queues.len()
    );
    for queue in config.queues.iter().map(|q| &q.value) {
        let state = match (queue.enabled, queue.auto_start) {
            (false, _) => "disabled",
            (true, false) => "declared, not consumed",
            (true, true) => "consumed",
        };
        out.push_str(&format!(
            "  {} ({}): handler {}, routing keys {}, {state}\n",
            queue.name,
            queue.display_name.as_deref().unwrap_or("no display name"),
            queue.handler.as_str(),
            queue.routing_key.0.join(", "),
        ));
    }
    out
}

fn run(args: RunArgs) -> ExitCode {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    init_logging(
        args.log_format.unwrap_or(config.log.format),
        &config.log.level,
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(serve(config, args.config));
    // Tasks still running after the grace period must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "stompbridge stopped");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, path: PathBuf) -> anyhow::Result<()> {
    let running = stompbridge::server::start(config, Some(path))
        .await
        .context("cannot start")?;
    wait_for_signal()
        .await
        .context("cannot listen for signals")?;
    running.shutdown(stompbridge::shutdown::DEFAULT_GRACE).await;
    Ok(())
}

async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "signal received"),
    }
    Ok(())
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
        // lapin logs every connection loss at error level, which the bridge
        // already reports once as a warning with the cause.
        if level.contains("lapin") {
            filter
        } else {
            filter.add_directive("lapin=off".parse().expect("a valid directive"))
        }
    });
    // Colors only on a terminal, so files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
        LogFormat::Text => builder.init(),
    }
}
