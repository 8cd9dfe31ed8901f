//! Each handler against the real RabbitMQ: valid messages are broadcast where
//! they belong, invalid ones land in the dead-letter queue with the reason and
//! are not broadcast.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use common::{TestBridge, stomp::Client, unique_prefix};
use lapin::{BasicProperties, types::AMQPValue};
use serde_json::{Value, json};
use stompbridge::handler::webhook::sign;

/// A queue entry with a dead-letter exchange and queue, plus `options`.
fn queue(prefix: &str, name: &str, handler: &str, options: &str) -> String {
    format!(
        "  - name: {prefix}_{name}\n    routing_key: \"{prefix}.{name}\"\n    durable: false\n    handler: {handler}\n\
         \x20   dead_letter_exchange: {prefix}.dlx\n    dead_letter_queue: {prefix}_{name}.dl\n{options}"
    )
}

async fn start(prefix: String, queues: &str, names: &[&str]) -> TestBridge {
    let mut bridge = TestBridge::start_yaml(prefix.clone(), "", "", queues, false).await;
    for name in names {
        bridge.track_queue(&format!("{prefix}_{name}.dl"));
    }
    bridge.track_exchange(&format!("{prefix}.dlx"));
    bridge
}

fn body(frame: &stompbridge::stomp::Frame) -> Value {
    serde_json::from_slice(&frame.body).unwrap()
}

/// Reads the dead-lettered message of `queue` and returns its reason header.
async fn dead_letter_reason(bridge: &TestBridge, queue: &str) -> String {
    let dead_letters = format!("{queue}.dl");
    for _ in 0..100 {
        if let Some(message) = bridge.get(&dead_letters).await {
            let headers = message
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default();
            let reason = match headers.inner().get("x-stompbridge-reason") {
                Some(AMQPValue::LongString(text)) => {
                    String::from_utf8_lossy(text.as_bytes()).into_owned()
                }
                other => panic!("dead letter without a reason header: {other:?}"),
            };
            let origin = headers.inner().get("x-stompbridge-queue");
            assert!(
                matches!(origin, Some(AMQPValue::LongString(text)) if text.as_bytes() == queue.as_bytes()),
                "dead letter names the wrong queue: {origin:?}"
            );
            return reason;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing arrived in {dead_letters}");
}

#[tokio::test]
async fn iot_broadcasts_readings_and_dead_letters_invalid_ones() {
    let p = unique_prefix();
    let options = "    iot:\n      thresholds: {warning: 70, critical: 90}\n";
    let bridge = start(p.clone(), &queue(&p, "iot", "iot", options), &["iot"]).await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client.subscribe("event", "/topic/iot-event").await;
    client
        .subscribe("queue", &format!("/topic/queues/{p}_iot"))
        .await;

    bridge
        .publish("iot", br#"{"sensorId":"s-1","value":95}"#)
        .await;
    let mut frames = [client.frame().await, client.frame().await];
    frames.sort_by_key(|f| f.get("subscription").unwrap().to_string());
    assert_eq!(
        body(&frames[0]),
        json!({"sensorId":"s-1","value":95,"alertLevel":"critical"})
    );
    let envelope = body(&frames[1]);
    assert_eq!(envelope["handlerType"], "iot");
    assert_eq!(envelope["payload"]["alertLevel"], "critical");

    bridge.publish("iot", br#"{"sensorId":"s-1"}"#).await;
    let reason = dead_letter_reason(&bridge, &format!("{p}_iot")).await;
    assert!(reason.contains("value is missing"), "{reason}");
    // Nothing was broadcast for the invalid reading: the next frame is the marker.
    bridge
        .publish("iot", br#"{"sensorId":"marker","value":1}"#)
        .await;
    let next = body(&client.frame().await);
    let sensor = next.get("payload").unwrap_or(&next)["sensorId"].clone();
    assert_eq!(sensor, "marker");
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_messages_dead_lettered_total{{queue=\"{p}_iot\"}}"
        )),
        1.0
    );
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_handler_failures_total{{queue=\"{p}_iot\",reason=\"invalid_payload\"}}"
        )),
        1.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn entity_changes_reach_both_entity_topics() {
    let p = unique_prefix();
    let bridge = start(p.clone(), &queue(&p, "entity", "entity", ""), &["entity"]).await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client.subscribe("all", "/topic/entities").await;
    client.subscribe("one", "/topic/entities/inspections").await;
    client.subscribe("other", "/topic/entities/units").await;

    let change = json!({
        "resourceName": "inspections", "action": "created", "entityId": 42,
        "timestamp": "2026-02-17T14:30:00.123", "data": {"id": 42, "titleOfInspection": "Annual Turbine Check"}
    });
    bridge
        .publish("entity", change.to_string().as_bytes())
        .await;
    let mut frames = [client.frame().await, client.frame().await];
    frames.sort_by_key(|f| f.get("subscription").unwrap().to_string());
    assert_eq!(frames[0].get("subscription"), Some("all"));
    assert_eq!(frames[1].get("subscription"), Some("one"));
    for frame in &frames {
        assert_eq!(body(frame), change);
    }

    bridge
        .publish(
            "entity",
            br#"{"resourceName":"units","action":"archived","entityId":1}"#,
        )
        .await;
    let reason = dead_letter_reason(&bridge, &format!("{p}_entity")).await;
    assert!(reason.contains("action must be"), "{reason}");
    bridge
        .publish(
            "entity",
            br#"{"resourceName":"units","action":"deleted","entityId":1,"data":{"x":1}}"#,
        )
        .await;
    let deleted = client.frame().await;
    assert_eq!(
        deleted.get("subscription"),
        Some("all"),
        "the invalid change was broadcast"
    );
    assert_eq!(body(&deleted)["data"], Value::Null);
    bridge.cleanup().await;
}

#[tokio::test]
async fn erp_drops_redelivered_duplicates() {
    let p = unique_prefix();
    let bridge = start(
        p.clone(),
        &queue(&p, "erp", "erp", "    erp:\n      window: 1m\n"),
        &["erp"],
    )
    .await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("q", &format!("/topic/queues/{p}_erp"))
        .await;

    for (id, n) in [("doc-1", 1), ("doc-1", 2), ("doc-2", 3), ("doc-1", 4)] {
        let properties = BasicProperties::default().with_message_id(id.into());
        bridge
            .publish_with("erp", format!("{{\"n\":{n}}}").as_bytes(), properties)
            .await;
    }
    let first = body(&client.frame().await);
    let second = body(&client.frame().await);
    assert_eq!(first["payload"]["n"], 1);
    assert_eq!(second["payload"]["n"], 3);
    bridge
        .wait_until("both duplicates to be counted", 5, |b| {
            b.metric(&format!(
                "stompbridge_messages_duplicate_total{{queue=\"{p}_erp\"}}"
            )) == 2.0
        })
        .await;
    assert_eq!(bridge.message_count(&format!("{p}_erp")).await, 0);
    bridge.cleanup().await;
}

/// A webhook receiver on 127.0.0.1 that checks the signature and answers
/// with `statuses` in turn, then 200.
struct Receiver {
    url: String,
    calls: Arc<AtomicUsize>,
    bad_signatures: Arc<AtomicUsize>,
}

async fn receiver(secret: &'static [u8], statuses: Vec<StatusCode>) -> Receiver {
    #[derive(Clone)]
    struct Shared {
        secret: &'static [u8],
        statuses: Arc<Vec<StatusCode>>,
        calls: Arc<AtomicUsize>,
        bad_signatures: Arc<AtomicUsize>,
    }
    async fn hook(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let call = shared.calls.fetch_add(1, Ordering::SeqCst);
        let signature = headers
            .get("x-stompbridge-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if signature != sign(shared.secret, &body) {
            shared.bad_signatures.fetch_add(1, Ordering::SeqCst);
            return StatusCode::UNAUTHORIZED;
        }
        shared.statuses.get(call).copied().unwrap_or(StatusCode::OK)
    }
    let shared = Shared {
        secret,
        statuses: Arc::new(statuses),
        calls: Arc::default(),
        bad_signatures: Arc::default(),
    };
    let receiver = Receiver {
        url: String::new(),
        calls: shared.calls.clone(),
        bad_signatures: shared.bad_signatures.clone(),
    };
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver { url, ..receiver }
}

#[tokio::test]
async fn webhook_retries_server_errors_and_dead_letters_rejections() {
    const SECRET: &[u8] = b"test-secret";
    let p = unique_prefix();
    let flaky = receiver(
        SECRET,
        vec![
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
        ],
    )
    .await;
    let refusing = receiver(SECRET, vec![StatusCode::BAD_REQUEST; 10]).await;
    let secret_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret_file.path(), b"test-secret\n").unwrap();
    let options = |url: &str| {
        format!(
            "    retry: {{max_attempts: 5, initial_delay: 50ms, max_delay: 200ms}}\n    webhook:\n      url: {url}\n      timeout: 2s\n      secret_file: {}\n",
            secret_file.path().display()
        )
    };
    let queues = queue(&p, "flaky", "webhook", &options(&flaky.url))
        + &queue(&p, "refusing", "webhook", &options(&refusing.url));
    let bridge = start(p.clone(), &queues, &["flaky", "refusing"]).await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("f", &format!("/topic/queues/{p}_flaky"))
        .await;

    bridge.publish("flaky", br#"{"order":1}"#).await;
    let envelope = body(&client.frame().await);
    assert_eq!(envelope["handlerType"], "webhook");
    assert_eq!(envelope["payload"], json!({"order": 1}));
    assert_eq!(
        flaky.calls.load(Ordering::SeqCst),
        3,
        "two 503 answers, then success"
    );
    assert_eq!(flaky.bad_signatures.load(Ordering::SeqCst), 0);
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_handler_retries_total{{queue=\"{p}_flaky\"}}"
        )),
        2.0
    );

    bridge.publish("refusing", br#"{"order":2}"#).await;
    let reason = dead_letter_reason(&bridge, &format!("{p}_refusing")).await;
    assert!(reason.contains("400"), "{reason}");
    assert_eq!(
        refusing.calls.load(Ordering::SeqCst),
        1,
        "a 400 must not be retried"
    );
    assert_eq!(refusing.bad_signatures.load(Ordering::SeqCst), 0);
    bridge.cleanup().await;
}

#[tokio::test]
async fn template_values_never_reach_other_destinations() {
    let p = unique_prefix();
    let options = "    destinations:\n      - destination: /topic/reservoir/{payload.id}/sensors\n        body: payload\n";
    let bridge = start(p.clone(), &queue(&p, "res", "generic", options), &["res"]).await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    for (id, destination) in [
        ("ok", "/topic/reservoir/7/sensors"),
        ("nested", "/topic/reservoir/a/b/sensors"),
        ("short", "/topic/reservoir/a"),
        ("star", "/topic/reservoir/*/sensors"),
        ("hash", "/topic/reservoir/#/sensors"),
        ("space", "/topic/reservoir/a b/sensors"),
    ] {
        client.subscribe(id, destination).await;
    }

    for id in ["a/b", "*", "#", "a b", "a/sensors/x", ""] {
        bridge
            .publish("res", json!({ "id": id }).to_string().as_bytes())
            .await;
    }
    bridge.publish("res", br#"{"id": 7}"#).await;
    let frame = client.frame().await;
    assert_eq!(
        frame.get("subscription"),
        Some("ok"),
        "a message reached {:?}",
        frame.get("destination")
    );
    assert_eq!(body(&frame), json!({"id": 7}));
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_destinations_skipped_total{{queue=\"{p}_res\"}}"
        )),
        6.0
    );
    bridge.cleanup().await;
}

/// Ready and unacknowledged message counts of `queue`, from rabbitmqctl.
fn queue_counts(queue: &str) -> (u64, u64) {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-q",
            "--no-table-headers",
            "name",
            "messages_ready",
            "messages_unacknowledged",
        ])
        .output()
        .expect("run rabbitmqctl");
    let listing = String::from_utf8_lossy(&output.stdout);
    let line = listing
        .lines()
        .find(|line| line.split('\t').next() == Some(queue))
        .unwrap_or_else(|| panic!("queue {queue} not listed by rabbitmqctl:\n{listing}"));
    let counts: Vec<u64> = line
        .split('\t')
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    (counts[0], counts[1])
}

#[tokio::test]
async fn concurrent_handling_settles_every_delivery_once() {
    // Four deliveries in flight finish out of order, and acks (valid readings)
    // mix with rejects (invalid ones, with no dead-letter exchange). Each must
    // be settled exactly once, or the broker closes the channel or keeps
    // messages unacknowledged.
    let p = unique_prefix();
    let queues = format!(
        "  - name: {p}_mixed\n    routing_key: \"{p}.mixed\"\n    durable: false\n    handler: iot\n\
         \x20   concurrency: 4\n    prefetch: 20\n"
    );
    let bridge = TestBridge::start_yaml(p.clone(), "", "", &queues, false).await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("queue", &format!("/topic/queues/{p}_mixed"))
        .await;

    let total = 1_000;
    for n in 0..total {
        let body = if n % 5 == 4 {
            format!(r#"{{"sensorId":"s-{n}"}}"#)
        } else {
            format!(r#"{{"sensorId":"s-{n}","value":{n}}}"#)
        };
        bridge.publish("mixed", body.as_bytes()).await;
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..total / 5 * 4 {
        let envelope = body(&client.frame().await);
        // The envelope names `redelivered` only when it is true.
        assert_ne!(envelope["redelivered"], true, "{envelope}");
        let sensor = envelope["payload"]["sensorId"].as_str().unwrap().to_owned();
        assert!(
            seen.insert(sensor.clone()),
            "{sensor} delivered twice: {envelope}; seen {}",
            seen.len()
        );
    }
    let queue = format!("{p}_mixed");
    bridge
        .wait_until("every delivery settled", 30, |_| {
            queue_counts(&queue) == (0, 0)
        })
        .await;
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_messages_rejected_total{{queue=\"{p}_mixed\"}}"
        )),
        f64::from(total / 5)
    );
    // The channel survived: a later message still arrives, not redelivered.
    bridge
        .publish("mixed", br#"{"sensorId":"marker","value":1}"#)
        .await;
    let marker = body(&client.frame().await);
    assert_eq!(marker["payload"]["sensorId"], "marker");
    assert_ne!(marker["redelivered"], true);
    bridge.cleanup().await;
}
