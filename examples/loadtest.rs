//! Load tool: measures a STOMP-over-WebSocket server fed from RabbitMQ, so the
//! same run can measure stompbridge and RabbitMQ Web-STOMP.
//!
//! Modes:
//! - `fanout`: N subscribers, M messages of a given size published over AMQP
//!   with confirms (at full speed or at a fixed rate); reports delivered
//!   messages/s, latency percentiles (the publish time travels in the
//!   message), missing, duplicated and out-of-order counts, and the CPU time
//!   of the server and of this tool.
//! - `idle`: N subscribed connections held open; reports the accept rate
//!   (CONNECT and SUBSCRIBE) and the server's RSS per connection.
//! - `amqp`: publish and consume through one queue with no WebSocket, the
//!   broker's own ceiling.
//!
//! Only point it at servers you run on 127.0.0.1.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use lapin::{
    BasicProperties, Connection, ConnectionProperties,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
        QueueDeclareOptions,
    },
    types::FieldTable,
};
use tokio::sync::Barrier;
use tokio_tungstenite::tungstenite::{
    Message, client::IntoClientRequest, http::HeaderValue, protocol::WebSocketConfig,
};
use tokio_util::sync::CancellationToken;

/// Measure a STOMP-over-WebSocket server fed from RabbitMQ.
///
/// Each run prints one JSON line on standard output, progress on standard
/// error.
///
/// Fan-out: `seconds` runs from the first publish to the last delivery at
/// any subscriber. `delivered_per_second` is all subscribers' deliveries
/// over that time. `publish_per_second` counts publishes until their
/// confirms. `latency_ms` runs from the publish time in each body to its
/// arrival. `missing` counts messages not arrived when `--drain-secs` ran
/// out. CPU seconds cover the same window; the server's needs
/// `--server-pid`.
///
/// Idle: the connect rate counts connections through the subscription
/// RECEIPT. The server's RSS is read before connecting and after
/// `--hold-secs`.
#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Fan-out throughput and latency.
    Fanout(FanoutArgs),
    /// Idle connections: accept rate and memory per connection.
    Idle(IdleArgs),
    /// AMQP publish and consume through one queue, without WebSocket.
    Amqp(AmqpArgs),
}

#[derive(Debug, Args, Clone)]
struct Target {
    /// WebSocket URL of the STOMP endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:1337/ws-raw")]
    url: String,
    /// Destination the subscribers subscribe to.
    #[arg(long)]
    destination: String,
    /// PID of the server process, for its CPU time and RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Connections opened at once while connecting.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    target: Target,
    /// AMQP URL of the broker that feeds the server.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Exchange the messages are published to.
    #[arg(long)]
    exchange: String,
    /// Routing key of the messages.
    #[arg(long)]
    routing_key: String,
    /// Subscribing connections.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Messages published.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Size of each message body, in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Messages per second; 0 publishes as fast as confirms allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Time to wait for the last deliveries after publishing, in seconds.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Seconds to hold them before measuring memory.
    #[arg(long, default_value_t = 3)]
    hold_secs: u64,
}

#[derive(Debug, Args)]
struct AmqpArgs {
    /// AMQP URL of the broker.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp: String,
    /// Messages published and consumed, through a temporary queue.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Size of each message body, in bytes.
    #[arg(long, default_value_t = 200)]
    size: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().mode {
        Mode::Fanout(args) => fanout(args).await,
        Mode::Idle(args) => idle(args).await,
        Mode::Amqp(args) => amqp(args).await,
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a connection, sends CONNECT and SUBSCRIBE, and waits for the RECEIPT.
async fn subscribe(url: &str, destination: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("v12.stomp"),
    );
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true).await?;
    let frames = format!(
        "CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\0\
         SUBSCRIBE\nid:0\ndestination:{destination}\nreceipt:ready\n\n\0"
    );
    socket.send(Message::text(frames)).await?;
    let mut text = String::new();
    while !text.contains("receipt-id:ready") {
        match socket.next().await {
            Some(Ok(Message::Text(chunk))) => text.push_str(&chunk),
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => bail!("connection closed before the subscription receipt: {text}"),
        }
        if text.contains("ERROR") {
            bail!("server error: {text}");
        }
    }
    Ok(socket)
}

/// Opens `count` subscribed connections, `concurrency` at a time. Returns
/// them with the time it took.
async fn open_all(target: &Target, count: usize) -> anyhow::Result<(Vec<Socket>, Duration)> {
    let started = Instant::now();
    let results = futures_util::stream::iter(0..count)
        .map(|_| subscribe(&target.url, &target.destination))
        .buffer_unordered(target.connect_concurrency)
        .collect::<Vec<_>>()
        .await;
    let elapsed = started.elapsed();
    let sockets = results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok((sockets, elapsed))
}

/// Interval of the EOLs a subscriber sends while it reads.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// What one subscriber saw.
#[derive(Debug, Default)]
struct Seen {
    received: u64,
    duplicates: u64,
    out_of_order: u64,
    latencies_us: Vec<u64>,
    last_seq: Option<u64>,
    last_delivery: Option<Instant>,
    seen: Vec<bool>,
}

async fn fanout(args: FanoutArgs) -> anyhow::Result<()> {
    let (sockets, connect_time) = open_all(&args.target, args.subscribers).await?;
    eprintln!(
        "{} subscribers connected in {:.2}s",
        sockets.len(),
        connect_time.as_secs_f64()
    );
    let total = args.messages;
    let start_barrier = Arc::new(Barrier::new(sockets.len() + 1));
    let stop = CancellationToken::new();

    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(read(socket, total, start_barrier.clone(), stop.clone())))
        .collect();
    start_barrier.wait().await;

    let server_cpu_before = args.target.server_pid.and_then(process_cpu);
    let tool_cpu_before = self_cpu();
    let started = Instant::now();
    publish(&args).await?;
    let publish_time = started.elapsed();
    // Readers still short of messages give up when the drain time is over.
    let drain = tokio::spawn({
        let stop = stop.clone();
        let drain = Duration::from_secs(args.drain_secs);
        async move {
            tokio::time::sleep(drain).await;
            stop.cancel();
        }
    });

    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await??);
    }
    drain.abort();
    // From the start of publishing to the last delivery anywhere.
    let last_delivery = seen.iter().filter_map(|s| s.last_delivery).max();
    let elapsed = last_delivery.map_or(publish_time, |last| {
        last.saturating_duration_since(started).max(publish_time)
    });
    let delivered: u64 = seen.iter().map(|s| s.received).sum();
    let missing: u64 = seen
        .iter()
        .map(|s| s.seen.iter().filter(|got| !**got).count() as u64)
        .sum();
    let duplicates: u64 = seen.iter().map(|s| s.duplicates).sum();
    let out_of_order: u64 = seen.iter().map(|s| s.out_of_order).sum();
    let mut latencies: Vec<u64> = seen
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index] as f64 / 1000.0
    };
    let server_cpu = match (
        server_cpu_before,
        args.target.server_pid.and_then(process_cpu),
    ) {
        (Some(before), Some(after)) => format!("{:.2}", after - before),
        _ => "n/a".into(),
    };
    let tool_cpu = self_cpu() - tool_cpu_before;
    println!(
        "{{\"mode\":\"fanout\",\"subscribers\":{},\"messages\":{total},\"size\":{},\"rate\":{},\
         \"delivered\":{delivered},\"seconds\":{:.3},\"delivered_per_second\":{:.0},\
         \"publish_per_second\":{:.0},\"latency_ms\":{{\"p50\":{:.2},\"p90\":{:.2},\"p99\":{:.2},\"max\":{:.2}}},\
         \"missing\":{missing},\"duplicates\":{duplicates},\"out_of_order\":{out_of_order},\
         \"server_cpu_seconds\":{server_cpu},\"tool_cpu_seconds\":{tool_cpu:.2}}}",
        args.subscribers,
        args.size,
        args.rate,
        elapsed.as_secs_f64(),
        delivered as f64 / elapsed.as_secs_f64(),
        total as f64 / publish_time.as_secs_f64(),
        percentile(0.5),
        percentile(0.9),
        percentile(0.99),
        percentile(1.0),
    );
    Ok(())
}

/// Reads MESSAGE frames until every sequence number arrived or `stop` is
/// cancelled. Nothing here is shared between readers while messages flow, so
/// the readers cost little beside the server.
async fn read(
    mut socket: Socket,
    total: u64,
    barrier: Arc<Barrier>,
    stop: CancellationToken,
) -> anyhow::Result<Seen> {
    let mut seen = Seen {
        seen: vec![false; total as usize],
        latencies_us: Vec::with_capacity(total as usize),
        ..Seen::default()
    };
    barrier.wait().await;
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    // A subscriber that only reads looks idle to a server that times out
    // silent clients (Web-STOMP closed them after 60 s here, its WebSocket
    // idle timeout), so it sends an EOL, which STOMP allows between frames.
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    keepalive.reset();
    while seen.received < total {
        let message = tokio::select! {
            biased;
            () = &mut stopped => break,
            _ = keepalive.tick() => {
                socket.send(Message::text("\n")).await?;
                continue;
            }
            message = socket.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
            None => bail!("server closed the connection"),
        };
        let text = text.as_bytes();
        let Some(seq) = number_after(text, b"\"seq\":") else {
            continue;
        };
        if let Some(sent) = number_after(text, b"\"ts\":") {
            seen.latencies_us.push(now_micros().saturating_sub(sent));
        }
        if let Some(slot) = seen.seen.get_mut(seq as usize) {
            if *slot {
                seen.duplicates += 1;
            } else {
                *slot = true;
                seen.received += 1;
            }
        }
        if seen.last_seq.is_some_and(|last| seq <= last) {
            seen.out_of_order += 1;
        }
        seen.last_seq = Some(seq);
        seen.last_delivery = Some(Instant::now());
    }
    Ok(seen)
}

/// Parses the decimal number right after the first `key` in `text`.
fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = text.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = text[start..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for digit in digits {
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn body(seq: u64, size: usize) -> Vec<u8> {
    let head = format!("{{\"seq\":{seq},\"ts\":{},\"pad\":\"", now_micros());
    let pad = size.saturating_sub(head.len() + 2);
    let mut body = head.into_bytes();
    body.extend(std::iter::repeat_n(b'x', pad));
    body.extend_from_slice(b"\"}");
    body
}

/// Publishes the fan-out messages on a connection of its own.
async fn publish(args: &FanoutArgs) -> anyhow::Result<()> {
    let connection = Connection::connect(&args.amqp, ConnectionProperties::default())
        .await
        .context("connect to RabbitMQ")?;
    let channel = connection.create_channel().await?;
    let interval = (args.rate > 0).then(|| Duration::from_secs_f64(1.0 / args.rate as f64));
    let messages = Messages {
        exchange: &args.exchange,
        routing_key: &args.routing_key,
        count: args.messages,
        size: args.size,
        interval,
    };
    publish_confirmed(&channel, &messages).await?;
    connection.close(200, "done".into()).await?;
    Ok(())
}

/// The messages to publish: `count` numbered messages of `size` bytes, one
/// every `interval` or as fast as confirms allow.
struct Messages<'a> {
    exchange: &'a str,
    routing_key: &'a str,
    count: u64,
    size: usize,
    interval: Option<Duration>,
}

/// Publishes with confirms, keeping at most 1,000 unconfirmed.
async fn publish_confirmed(
    channel: &lapin::Channel,
    messages: &Messages<'_>,
) -> anyhow::Result<()> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::new();
    for seq in 0..messages.count {
        if let Some(interval) = messages.interval {
            let due = started + interval.mul_f64(seq as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let confirm = channel
            .basic_publish(
                messages.exchange.into(),
                messages.routing_key.into(),
                BasicPublishOptions::default(),
                &body(seq, messages.size),
                BasicProperties::default(),
            )
            .await?;
        pending.push_back(confirm);
        if pending.len() >= 1000
            && let Some(confirm) = pending.pop_front()
        {
            confirm.await?;
        }
    }
    for confirm in pending {
        confirm.await?;
    }
    Ok(())
}

async fn idle(args: IdleArgs) -> anyhow::Result<()> {
    let rss_before = args.target.server_pid.and_then(process_rss);
    let (sockets, elapsed) = open_all(&args.target, args.connections).await?;
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let rss_after = args.target.server_pid.and_then(process_rss);
    let per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) => format!(
            "{:.0}",
            (after.saturating_sub(before)) as f64 / sockets.len() as f64
        ),
        _ => "null".into(),
    };
    println!(
        "{{\"mode\":\"idle\",\"connections\":{},\"seconds\":{:.3},\"connections_per_second\":{:.0},\
         \"server_rss_before_bytes\":{},\"server_rss_after_bytes\":{},\"rss_per_connection_bytes\":{per_connection}}}",
        sockets.len(),
        elapsed.as_secs_f64(),
        sockets.len() as f64 / elapsed.as_secs_f64(),
        rss_before.map_or("null".into(), |v| v.to_string()),
        rss_after.map_or("null".into(), |v| v.to_string()),
    );
    drop(sockets);
    Ok(())
}

async fn amqp(args: AmqpArgs) -> anyhow::Result<()> {
    // Publisher and consumer on connections of their own, as in the fan-out
    // runs, where the tool publishes and the server consumes.
    let connection = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let consuming = Connection::connect(&args.amqp, ConnectionProperties::default()).await?;
    let publisher = connection.create_channel().await?;
    let consumer_channel = consuming.create_channel().await?;
    let queue = format!("loadtest-{:08x}", rand::random::<u32>());
    let declare = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    publisher
        .queue_declare(queue.as_str().into(), declare, FieldTable::default())
        .await?;
    consumer_channel.basic_qos(256, Default::default()).await?;
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "loadtest".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let total = args.messages;
    let started = Instant::now();
    let consume = tokio::spawn(async move {
        let mut received = 0;
        while received < total {
            let Some(delivery) = consumer.next().await else {
                break;
            };
            let delivery = delivery?;
            received += 1;
            // One acknowledgement for every 64 deliveries, as a fast consumer
            // would send them.
            if received % 64 == 0 || received == total {
                delivery
                    .acker
                    .ack(BasicAckOptions { multiple: true })
                    .await?;
            }
        }
        Ok::<u64, lapin::Error>(received)
    });
    let messages = Messages {
        exchange: "",
        routing_key: &queue,
        count: total,
        size: args.size,
        interval: None,
    };
    publish_confirmed(&publisher, &messages).await?;
    let received = consume.await??;
    let elapsed = started.elapsed();
    println!(
        "{{\"mode\":\"amqp\",\"messages\":{received},\"seconds\":{:.3},\"messages_per_second\":{:.0}}}",
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64()
    );
    connection.close(200, "done".into()).await?;
    consuming.close(200, "done".into()).await?;
    Ok(())
}

/// CPU seconds (user and system) of a process, from /proc.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of /proc/PID/stat, in clock ticks.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Resident set size of a process, in bytes.
fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU seconds used by this process so far.
fn self_cpu() -> f64 {
    process_cpu(std::process::id()).unwrap_or(0.0)
}
