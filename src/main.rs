//! The `stompbridge` command: `run` (the default) and `check-config`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use stompbridge::config::{self, Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Bridges RabbitMQ queues to STOMP clients over WebSocket and SockJS.
#[derive(Debug, Parser)]
#[command(version = stompbridge::VERSION, args_conflicts_with_subcommands = true)]
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
    /// Request a URL of the admin listener (such as
    /// http://127.0.0.1:9464/healthz) and exit with 0 on a 2xx status, 1
    /// otherwise. For container health checks, which have no curl.
    Probe {
        /// The URL to request.
        url: String,
        /// Time allowed for the request.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
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
        Some(Command::Probe { url, timeout }) => probe(&url, timeout),
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

fn probe(url: &str, timeout: std::time::Duration) -> ExitCode {
    let request = async {
        stompbridge::install_tls_provider();
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let response = client.get(url).send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await.unwrap_or_default()))
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(request) {
        Ok((status, _)) if status.is_success() => {
            println!("{url}: {status}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("{url}: {status}\n{}", body.trim_end());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("{url}: request failed: {error}");
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
    use tracing_subscriber::{
        Layer,
        filter::{FilterExt, LevelFilter, Targets},
        layer::SubscriberExt,
        util::SubscriberInitExt,
    };

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
    // Whatever RUST_LOG says, these libraries log at most at info: at debug
    // and trace they print WebSocket messages and AMQP frames, which carry
    // tokens and message bodies, and notify logs every event of the watched
    // folder.
    let cap = Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("tungstenite", LevelFilter::INFO)
        .with_target("tokio_tungstenite", LevelFilter::INFO)
        .with_target("hyper", LevelFilter::INFO)
        .with_target("h2", LevelFilter::INFO)
        .with_target("lapin", LevelFilter::INFO)
        .with_target("amq_protocol", LevelFilter::INFO)
        .with_target("notify", LevelFilter::INFO);
    let filter = filter.and(cap);
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colors only on a terminal, so files and journald get plain text.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_filter(filter),
            )
            .init(),
    }
}
