//! Operating the bridge: metrics that add up, readiness that follows the
//! broker, shutdown during a stream, JSON logs without secrets, and the
//! systemd unit.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::{
    collections::{BTreeSet, HashMap},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    TestBridge, amqp_channel, amqp_url,
    daemon::Daemon,
    stomp::{Client, Event, Framing},
    unique_prefix,
};
use lapin::{BasicProperties, options::BasicPublishOptions};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_stompbridge");

/// Parses the Prometheus text format into sample → value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(bridge: &TestBridge) -> String {
    reqwest::get(format!("http://{}/metrics", bridge.running.admin_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_add_up_after_a_scripted_run() {
    let p = unique_prefix();
    let queues = format!(
        "  - name: {p}_g\n    routing_key: \"{p}.g\"\n    durable: false\n\
         \x20 - name: {p}_i\n    routing_key: \"{p}.i\"\n    durable: false\n    handler: iot\n\
         \x20   dead_letter_exchange: {p}.dlx\n    dead_letter_queue: {p}_i.dl\n"
    );
    let mut bridge = TestBridge::start_yaml(p.clone(), "", "", &queues, true).await;
    bridge.track_queue(&format!("{p}_i.dl"));
    bridge.track_exchange(&format!("{p}.dlx"));

    let mut raw = Client::connect(&bridge.url("/ws-raw")).await;
    raw.subscribe("g", &format!("/topic/queues/{p}_g")).await;
    raw.subscribe("i", &format!("/topic/queues/{p}_i")).await;
    let mut sockjs = Client::open(&bridge.url("/ws/1/abc/websocket"), &[], Framing::SockJs).await;
    sockjs.handshake("heart-beat:0,0").await;
    sockjs.subscribe("g", &format!("/topic/queues/{p}_g")).await;

    for n in 0..3 {
        bridge.publish("g", format!("{n}").as_bytes()).await;
    }
    bridge.publish("i", br#"{"sensorId":1,"value":2}"#).await;
    bridge.publish("i", br#"{"sensorId":1}"#).await;
    for _ in 0..4 {
        raw.frame().await;
    }
    for _ in 0..3 {
        sockjs.frame().await;
    }
    bridge
        .wait_until("the dead letter", 5, |b| {
            b.metric(&format!(
                "stompbridge_messages_dead_lettered_total{{queue=\"{p}_i\"}}"
            )) == 1.0
        })
        .await;
    bridge.write_queues(&format!(
        "{queues}  - name: {p}_extra\n    routing_key: \"{p}.extra\"\n    durable: false\n"
    ));
    bridge.track_queue(&format!("{p}_extra"));
    bridge
        .wait_until("the reload", 5, |b| {
            b.metric("stompbridge_config_reloads_total{result=\"applied\"}") == 1.0
        })
        .await;
    bridge
        .wait_until("the added queue's consumer", 5, |b| {
            b.metric("stompbridge_rabbitmq_consumers") == 3.0
        })
        .await;

    let text = scrape(&bridge).await;
    let values = samples(&text);
    let value = |sample: String| {
        *values
            .get(&sample)
            .unwrap_or_else(|| panic!("{sample} missing from:\n{text}"))
    };
    let expected = [
        (
            "stompbridge_connections_total{transport=\"websocket\"}".to_string(),
            1.0,
        ),
        (
            "stompbridge_connections_total{transport=\"sockjs_websocket\"}".to_string(),
            1.0,
        ),
        (
            "stompbridge_connections{transport=\"websocket\"}".to_string(),
            1.0,
        ),
        ("stompbridge_sessions".to_string(), 2.0),
        ("stompbridge_subscriptions".to_string(), 3.0),
        (
            "stompbridge_frames_received_total{command=\"SUBSCRIBE\"}".to_string(),
            3.0,
        ),
        (
            "stompbridge_frames_received_total{command=\"CONNECT\"}".to_string(),
            2.0,
        ),
        (
            "stompbridge_frames_sent_total{command=\"MESSAGE\"}".to_string(),
            7.0,
        ),
        (
            "stompbridge_frames_sent_total{command=\"RECEIPT\"}".to_string(),
            3.0,
        ),
        (
            format!("stompbridge_messages_consumed_total{{queue=\"{p}_g\"}}"),
            3.0,
        ),
        (
            format!("stompbridge_messages_consumed_total{{queue=\"{p}_i\"}}"),
            2.0,
        ),
        (
            format!("stompbridge_messages_broadcast_total{{queue=\"{p}_i\"}}"),
            1.0,
        ),
        (
            format!("stompbridge_messages_delivered_total{{queue=\"{p}_g\"}}"),
            6.0,
        ),
        (
            format!("stompbridge_messages_delivered_total{{queue=\"{p}_i\"}}"),
            1.0,
        ),
        (
            format!("stompbridge_messages_dead_lettered_total{{queue=\"{p}_i\"}}"),
            1.0,
        ),
        (
            format!(
                "stompbridge_handler_failures_total{{queue=\"{p}_i\",reason=\"invalid_payload\"}}"
            ),
            1.0,
        ),
        (
            format!("stompbridge_delivery_latency_seconds_count{{queue=\"{p}_g\"}}"),
            3.0,
        ),
        (
            "stompbridge_config_reloads_total{result=\"applied\"}".to_string(),
            1.0,
        ),
        (
            "stompbridge_config_reloads_total{result=\"rejected\"}".to_string(),
            0.0,
        ),
        ("stompbridge_rabbitmq_connected".to_string(), 1.0),
        ("stompbridge_rabbitmq_consumers".to_string(), 3.0),
    ];
    for (sample, expected) in expected {
        assert_eq!(value(sample.clone()), expected, "{sample}");
    }
    assert!(
        text.contains("stompbridge_build_info{commit="),
        "no build_info in:\n{text}"
    );

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| {
            panic!("promtool is needed (Debian package prometheus; .ci/run installs it): {err}")
        });
    use std::io::Write;
    let mut promtool = promtool;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    bridge.cleanup().await;
}

/// A TCP proxy to RabbitMQ that a test can cut: cutting closes every open
/// connection and refuses new ones until the proxy is restored.
struct Proxy {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

async fn proxy() -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let open = Arc::new(AtomicBool::new(true));
    let cut = Arc::new(tokio::sync::Notify::new());
    let (accept_open, accept_cut) = (open.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if !accept_open.load(Ordering::SeqCst) {
                continue;
            }
            let cut = accept_cut.clone();
            tokio::spawn(async move {
                let Ok(mut broker) = TcpStream::connect("127.0.0.1:5672").await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                    () = cut.notified() => {}
                }
            });
        }
    });
    Proxy { addr, open, cut }
}

async fn readyz(bridge: &TestBridge) -> (u16, Value) {
    let response = reqwest::get(format!("http://{}/readyz", bridge.running.admin_addr))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn readyz_follows_the_broker_connection() {
    let proxy = proxy().await;
    let url = amqp_url().replace("127.0.0.1:5672", &proxy.addr.to_string());
    assert_ne!(
        url,
        amqp_url(),
        "the tests' AMQP URL must point at 127.0.0.1:5672"
    );
    let p = unique_prefix();
    let queues = format!("  - name: {p}_r\n    routing_key: \"{p}.r\"\n    durable: false\n");
    let bridge = TestBridge::start_via(&url, p, "", "", &queues, false).await;
    let (status, body) = readyz(&bridge).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ready"], true);

    proxy.open.store(false, Ordering::SeqCst);
    proxy.cut.notify_waiters();
    bridge
        .wait_until("readyz to report the loss", 10, |b| {
            !b.running.bridge.is_ready()
        })
        .await;
    let (status, body) = readyz(&bridge).await;
    assert_eq!(status, 503);
    assert_eq!(body["rabbitmq_connected"], false, "{body}");

    proxy.open.store(true, Ordering::SeqCst);
    bridge
        .wait_until("readyz to recover", 20, |b| b.running.bridge.is_ready())
        .await;
    let (status, body) = readyz(&bridge).await;
    assert_eq!(status, 200, "{body}");
    assert!(bridge.metric("stompbridge_rabbitmq_reconnects_total") >= 1.0);
    bridge.cleanup().await;
}

fn daemon_config(prefix: &str, extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 5s\nadmin:\n  listen: 127.0.0.1:0\n\
         rabbitmq:\n  url: {}\n  exchange: {prefix}.events\n  app_exchange: {prefix}.app\n\
         queues:\n  - name: {prefix}_s\n    routing_key: \"{prefix}.s\"\n    durable: false\n{extra}",
        amqp_url()
    )
}

#[tokio::test]
async fn sigterm_during_a_stream_delivers_or_requeues_every_message() {
    const MESSAGES: u64 = 10_000;
    let prefix = unique_prefix();
    let (mut daemon, _dir) = Daemon::start(&daemon_config(&prefix, ""), "info");
    let (public, admin) = daemon.addresses();
    daemon.wait_ready(&admin);

    let mut client = Client::connect(&format!("ws://{public}/ws-raw")).await;
    client
        .subscribe("s", &format!("/topic/queues/{prefix}_s"))
        .await;
    let (connection, channel) = amqp_channel().await;
    let exchange = format!("{prefix}.events");
    let key = format!("{prefix}.s");
    let publisher = {
        let (channel, exchange, key) = (channel.clone(), exchange.clone(), key.clone());
        tokio::spawn(async move {
            let mut confirms = Vec::new();
            for seq in 0..MESSAGES {
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        key.as_str().into(),
                        BasicPublishOptions::default(),
                        format!("{{\"seq\":{seq}}}").as_bytes(),
                        BasicProperties::default(),
                    )
                    .await
                    .unwrap();
                confirms.push(confirm);
            }
            for confirm in confirms {
                assert!(confirm.await.unwrap().is_ack());
            }
        })
    };

    let mut received = BTreeSet::new();
    let mut took = None;
    let mut shutdown_error = None;
    loop {
        match client.next().await {
            Event::Frame(frame) if frame.command == stompbridge::stomp::Command::Message => {
                let body: Value = serde_json::from_slice(&frame.body).unwrap();
                received.insert(body["payload"]["seq"].as_u64().unwrap());
                if received.len() == 2000 && took.is_none() {
                    let pid = daemon.child.id().to_string();
                    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
                    took = Some(Instant::now());
                }
            }
            Event::Frame(frame) => shutdown_error = Some(frame),
            Event::HeartBeat => {}
            Event::Closed(_) => break,
        }
    }
    let exit = daemon.child.wait().unwrap();
    let shutdown_time = took.unwrap().elapsed();
    assert!(exit.success(), "stompbridge exited with {exit}");
    assert!(
        shutdown_time < Duration::from_secs(6),
        "shutdown took {shutdown_time:?}"
    );
    let error = shutdown_error.expect("a shutdown ERROR frame");
    assert_eq!(error.get("message"), Some("server shutting down"));
    publisher.await.unwrap();

    // Every message is either delivered or back in its queue.
    let queue = format!("{prefix}_s");
    let mut requeued = BTreeSet::new();
    while let Some(message) = channel
        .basic_get(
            queue.as_str().into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
        requeued.insert(body["seq"].as_u64().unwrap());
    }
    let all: BTreeSet<u64> = received.union(&requeued).copied().collect();
    println!(
        "delivered {}, requeued {}, both {}",
        received.len(),
        requeued.len(),
        received.intersection(&requeued).count()
    );
    assert_eq!(all.len() as u64, MESSAGES, "messages lost in shutdown");
    let _ = channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await;
    for name in [exchange, format!("{prefix}.app")] {
        let _ = channel
            .exchange_delete(name.as_str().into(), Default::default())
            .await;
    }
    let _ = connection.close(200, "test done".into()).await;
}

#[tokio::test]
async fn json_logs_carry_fields_and_never_a_token() {
    const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZXN0In0.SECRET-SIGNATURE-VALUE";
    const PASSCODE: &str = "PASSCODE-NEVER-LOGGED";
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "log-test-secret").unwrap();
    let auth = format!(
        "auth:\n  jwt:\n    secret_file: {}\n",
        dir.path().join("secret").display()
    );
    let config = daemon_config(&prefix, "").replace("queues:", &format!("{auth}queues:"));
    let (mut daemon, _config_dir) = Daemon::start(&config, "trace");
    let (public, admin) = daemon.addresses();
    daemon.wait_ready(&admin);

    let mut raw = Client::open(
        &format!("ws://{public}/ws-raw"),
        &["v12.stomp"],
        Framing::Raw,
    )
    .await;
    raw.handshake(&format!(
        "Authorization:Bearer {TOKEN}\nlogin:x\npasscode:{PASSCODE}"
    ))
    .await;
    raw.send_text("SEND\ndestination:/app/x\n\nbody\0").await;
    raw.closed().await;
    let mut sockjs = Client::open(
        &format!("ws://{public}/ws/0/log/websocket"),
        &[],
        Framing::SockJs,
    )
    .await;
    sockjs.handshake(&format!("passcode:{PASSCODE}")).await;
    daemon.terminate();

    let lines = daemon.remaining_lines();
    assert!(
        lines.len() > 20,
        "too few log lines at trace level: {}",
        lines.len()
    );
    let mut session_lines = 0;
    for line in &lines {
        assert!(
            !line.contains("SECRET-SIGNATURE-VALUE"),
            "token in the log: {line}"
        );
        assert!(!line.contains(PASSCODE), "passcode in the log: {line}");
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        for field in ["timestamp", "level", "message", "target"] {
            assert!(event.get(field).is_some(), "{field} missing: {line}");
        }
        if event["span"]["name"] == "session" {
            assert!(event["span"]["session.id"].is_u64(), "{line}");
            assert!(event["span"]["transport"].is_string(), "{line}");
            session_lines += 1;
        }
    }
    assert!(session_lines >= 4, "session lines carry no session span");
    let delete = |name: String| async move {
        let (connection, channel) = amqp_channel().await;
        let _ = channel
            .queue_delete(format!("{name}_s").as_str().into(), Default::default())
            .await;
        for exchange in [format!("{name}.events"), format!("{name}.app")] {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await;
        }
        let _ = connection.close(200, "test done".into()).await;
    };
    delete(prefix).await;
}

#[test]
fn systemd_unit_passes_verification() {
    let Ok(output) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("systemd-analyze is not installed, so the unit file was not verified");
        return;
    };
    assert!(output.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/stompbridge.service"
    ))
    .unwrap();
    // Verification needs the ExecStart binary to exist.
    let unit = unit.replace("/usr/local/bin/stompbridge", BIN);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stompbridge.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
