//! Hot reload against the real RabbitMQ: queues added, changed and removed by
//! editing the watched file, while sessions stay connected.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::time::{Duration, Instant};

use common::{TestBridge, stomp::Client, unique_prefix};
use serde_json::Value;
use stompbridge::{bridge::QueueState, stomp::Frame};

fn queue_yaml(prefix: &str, name: &str, key: &str) -> String {
    format!("  - name: {prefix}_{name}\n    routing_key: \"{prefix}.{key}\"\n    durable: false\n")
}

async fn start(queues: &[(&str, &str)]) -> TestBridge {
    let prefix = unique_prefix();
    let yaml: String = queues
        .iter()
        .map(|(n, k)| queue_yaml(&prefix, n, k))
        .collect();
    TestBridge::start_yaml(prefix, "", "", &yaml, true).await
}

/// Publishes to `key` every 100 ms until `client` receives a MESSAGE, and
/// returns it with the time it took.
async fn publish_until_received(
    bridge: &TestBridge,
    client: &mut Client,
    key: &str,
) -> (Frame, Duration) {
    let started = Instant::now();
    let mut client_frame = std::pin::pin!(client.frame());
    loop {
        bridge.publish(key, b"{\"ping\":true}").await;
        tokio::select! {
            frame = &mut client_frame => return (frame, started.elapsed()),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no message 10 s after the edit"
        );
    }
}

#[tokio::test]
async fn added_queue_is_delivered_within_two_seconds() {
    let mut bridge = start(&[("old", "old")]).await;
    let p = bridge.prefix.clone();
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("new", &format!("/topic/queues/{p}_new"))
        .await;
    client
        .subscribe("renamed", &format!("/topic/queues/{p}_renamed"))
        .await;

    // A direct write of the file.
    bridge.track_queue(&format!("{p}_new"));
    bridge.write_queues(&(queue_yaml(&p, "old", "old") + &queue_yaml(&p, "new", "new")));
    let (frame, took) = publish_until_received(&bridge, &mut client, "new").await;
    assert_eq!(frame.get("subscription"), Some("new"));
    assert!(took < Duration::from_secs(2), "took {took:?}");

    // An editor's save: a temporary file renamed over the original.
    bridge.track_queue(&format!("{p}_renamed"));
    let all = queue_yaml(&p, "old", "old")
        + &queue_yaml(&p, "new", "new")
        + &queue_yaml(&p, "renamed", "renamed");
    bridge.rename_queues(&all);
    let (frame, took) = publish_until_received(&bridge, &mut client, "renamed").await;
    assert_eq!(frame.get("subscription"), Some("renamed"));
    assert!(took < Duration::from_secs(2), "took {took:?}");

    assert_eq!(
        bridge.metric("stompbridge_config_reloads_total{result=\"applied\"}"),
        2.0
    );
    assert_eq!(
        bridge.metric("stompbridge_connections{transport=\"websocket\"}"),
        1.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn invalid_edits_keep_the_running_configuration() {
    let bridge = start(&[("keep", "keep")]).await;
    let p = bridge.prefix.clone();
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("k", &format!("/topic/queues/{p}_keep"))
        .await;
    let head = bridge.file.as_ref().unwrap().head.clone();
    let valid = queue_yaml(&p, "keep", "keep");

    let invalid = [
        format!("{head}queues:\n{valid}  - name: [broken\n"),
        format!(
            "{head}queues:\n{valid}  - name: {p}_x\n    routing_key: x\n    handler: telepathy\n"
        ),
        format!(
            "{head}queues:\n{valid}  - name: {p}_y\n    routing_key: y\n    destinations:\n      - destination: /topic/{{payload.a\n"
        ),
    ];
    for (i, text) in invalid.iter().enumerate() {
        bridge.write_raw(text);
        bridge
            .wait_until("the reload to be rejected", 5, |b| {
                b.metric("stompbridge_config_reloads_total{result=\"rejected\"}") >= (i + 1) as f64
            })
            .await;
        assert_eq!(
            bridge.running.bridge.config().queues.len(),
            1,
            "an invalid file was applied"
        );
        bridge
            .publish("keep", format!("{{\"n\":{i}}}").as_bytes())
            .await;
        let frame = client.frame().await;
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        assert_eq!(body["payload"]["n"], i);
    }
    assert_eq!(
        bridge.metric("stompbridge_config_reloads_total{result=\"applied\"}"),
        0.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn removed_queue_stops_and_keeps_its_messages() {
    let bridge = start(&[("stay", "stay"), ("gone", "gone")]).await;
    let p = bridge.prefix.clone();
    let gone = format!("{p}_gone");
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("g", &format!("/topic/queues/{gone}"))
        .await;
    client
        .subscribe("s", &format!("/topic/queues/{p}_stay"))
        .await;

    bridge.write_queues(&queue_yaml(&p, "stay", "stay"));
    bridge
        .wait_until("the queue to be removed", 5, |b| {
            !b.running.bridge.queue_states().contains_key(&gone)
        })
        .await;
    for n in 0..3 {
        bridge.publish("gone", format!("{n}").as_bytes()).await;
    }
    assert_eq!(bridge.message_count(&gone).await, 3);

    // The session is still open and still served by the remaining queue.
    bridge.publish("stay", b"1").await;
    let frame = client.frame().await;
    assert_eq!(frame.get("subscription"), Some("s"));
    bridge.cleanup().await;
}

#[tokio::test]
async fn changed_routing_key_is_rebound() {
    let bridge = start(&[("q", "before")]).await;
    let p = bridge.prefix.clone();
    let queue = format!("{p}_q");
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("q", &format!("/topic/queues/{queue}"))
        .await;

    bridge.write_queues(&queue_yaml(&p, "q", "after"));
    let (frame, _) = publish_until_received(&bridge, &mut client, "after").await;
    assert_eq!(frame.get("subscription"), Some("q"));

    // The old binding is gone: nothing published with the old key reaches the queue.
    bridge.publish("before", b"old").await;
    bridge.publish("after", b"\"new\"").await;
    loop {
        let frame = client.frame().await;
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        assert_ne!(
            body["payload"], "old",
            "the old routing key still reaches the queue"
        );
        if body["payload"] == "new" {
            break;
        }
    }
    assert_eq!(bridge.message_count(&queue).await, 0);
    bridge.cleanup().await;
}

#[tokio::test]
async fn changed_handler_applies_to_the_next_message() {
    let bridge = start(&[("h", "h")]).await;
    let p = bridge.prefix.clone();
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client.subscribe("h", &format!("/topic/queues/{p}_h")).await;
    client.subscribe("iot", "/topic/iot-event").await;

    let iot = queue_yaml(&p, "h", "h") + "    handler: iot\n";
    bridge.write_queues(&iot);
    bridge
        .wait_until("the reload", 5, |b| {
            b.metric("stompbridge_config_reloads_total{result=\"applied\"}") == 1.0
        })
        .await;
    bridge.publish("h", br#"{"sensorId":1,"value":2}"#).await;
    let mut subscriptions = vec![
        client
            .frame()
            .await
            .get("subscription")
            .unwrap()
            .to_string(),
        client
            .frame()
            .await
            .get("subscription")
            .unwrap()
            .to_string(),
    ];
    subscriptions.sort();
    assert_eq!(subscriptions, ["h", "iot"]);
    assert_eq!(
        bridge.running.bridge.queue_states().get(&format!("{p}_h")),
        Some(&QueueState::Consuming)
    );
    bridge.cleanup().await;
}
