//! Messages published to the real RabbitMQ reach STOMP sessions in the
//! documented envelope, in order, and a slow session does not hold others back.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::time::Duration;

use common::{
    TestBridge,
    stomp::{Client, Event},
};
use serde_json::{Value, json};
use stompbridge::stomp::Command;

#[tokio::test]
async fn envelope_reaches_queue_topic_and_firehose() {
    let bridge = TestBridge::start(&[("iot", "iot")], "").await;
    let queue = bridge.queue("iot");
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("q", &format!("/topic/queues/{queue}"))
        .await;
    client.subscribe("all", "/topic/queues").await;

    let payload = json!({"sensorId": 123, "value": 75.5, "alertLevel": "warning"});
    bridge.publish("iot", payload.to_string().as_bytes()).await;

    let mut by_subscription = std::collections::HashMap::new();
    for _ in 0..2 {
        let frame = client.frame().await;
        assert_eq!(frame.command, Command::Message);
        assert_eq!(frame.get("content-type"), Some("application/json"));
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        by_subscription.insert(
            frame.get("subscription").unwrap().to_string(),
            (frame, body),
        );
    }

    let (frame, envelope) = &by_subscription["q"];
    assert_eq!(
        frame.get("destination"),
        Some(format!("/topic/queues/{queue}").as_str())
    );
    let keys: Vec<&str> = envelope
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "handlerType",
            "payload",
            "queueName",
            "routingKey",
            "timestamp"
        ]
    );
    assert_eq!(envelope["queueName"], json!(queue));
    assert_eq!(envelope["handlerType"], json!("generic"));
    assert_eq!(envelope["routingKey"], json!(bridge.routing_key("iot")));
    assert_eq!(envelope["payload"], payload);
    let timestamp = envelope["timestamp"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(timestamp).is_ok()
            && timestamp.ends_with('Z')
            && timestamp.len() == 24,
        "timestamp {timestamp} is not RFC 3339 UTC with milliseconds"
    );

    let (frame, firehose) = &by_subscription["all"];
    assert_eq!(frame.get("destination"), Some("/topic/queues"));
    assert_eq!(firehose, &json!({"queueName": queue, "data": envelope}));
    bridge.cleanup().await;
}

#[tokio::test]
async fn non_json_bodies_become_strings_or_null() {
    let bridge = TestBridge::start(&[("raw", "raw")], "").await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("q", &format!("/topic/queues/{}", bridge.queue("raw")))
        .await;

    bridge.publish("raw", b"plain text, not JSON").await;
    bridge.publish("raw", b"").await;
    bridge.publish("raw", b"caf\xe9").await;

    let mut payloads = Vec::new();
    for _ in 0..3 {
        let frame = client.frame().await;
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        payloads.push(body["payload"].clone());
    }
    assert_eq!(
        payloads,
        [
            json!("plain text, not JSON"),
            Value::Null,
            json!("caf\u{fffd}")
        ]
    );
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_payload_not_json_total{{queue=\"{}\"}}",
            bridge.queue("raw")
        )),
        2.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn thousand_messages_reach_fifty_sessions_in_order() {
    const SESSIONS: usize = 50;
    const MESSAGES: usize = 1000;
    let bridge = TestBridge::start(&[("seq", "seq")], "").await;
    let destination = format!("/topic/queues/{}", bridge.queue("seq"));
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        let mut client = Client::connect(&bridge.url("/ws-raw")).await;
        client.subscribe("s", &destination).await;
        clients.push(client);
    }

    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut seen = Vec::with_capacity(MESSAGES);
                while seen.len() < MESSAGES {
                    let frame = client.frame().await;
                    let body: Value = serde_json::from_slice(&frame.body).unwrap();
                    seen.push(body["payload"]["seq"].as_u64().unwrap() as usize);
                }
                seen
            })
        })
        .collect();
    for seq in 0..MESSAGES {
        bridge
            .publish("seq", json!({"seq": seq}).to_string().as_bytes())
            .await;
    }

    let expected: Vec<usize> = (0..MESSAGES).collect();
    for reader in readers {
        let seen = reader.await.unwrap();
        assert_eq!(
            seen, expected,
            "a session saw a gap, duplicate or reordering"
        );
    }
    let queue = bridge.queue("seq");
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_messages_delivered_total{{queue=\"{queue}\"}}"
        )),
        (SESSIONS * MESSAGES) as f64
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let bridge = TestBridge::start(&[("u", "u")], "").await;
    let destination = format!("/topic/queues/{}", bridge.queue("u"));
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client.subscribe("a", &destination).await;
    client.subscribe("b", &destination).await;

    bridge.publish("u", b"1").await;
    let mut first = [client.frame().await, client.frame().await];
    first.sort_by_key(|f| f.get("subscription").unwrap().to_string());
    assert_eq!(first[0].get("subscription"), Some("a"));
    assert_eq!(first[1].get("subscription"), Some("b"));

    client
        .send_text("UNSUBSCRIBE\nid:a\nreceipt:u1\n\n\0")
        .await;
    let receipt = client.frame().await;
    assert_eq!(receipt.get("receipt-id"), Some("u1"));

    bridge.publish("u", b"2").await;
    bridge.publish("u", b"3").await;
    for expected in ["2", "3"] {
        let frame = client.frame().await;
        assert_eq!(
            frame.get("subscription"),
            Some("b"),
            "message for an ended subscription"
        );
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        assert_eq!(body["payload"], json!(expected.parse::<u32>().unwrap()));
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn slow_session_is_closed_without_slowing_others() {
    const MESSAGES: usize = 400;
    let bridge = TestBridge::start(
        &[("slow", "slow")],
        "limits:\n  outbox_frames: 16\n  write_timeout: 2s\n",
    )
    .await;
    let destination = format!("/topic/queues/{}", bridge.queue("slow"));
    let mut slow = Client::connect(&bridge.url("/ws-raw")).await;
    slow.subscribe("s", &destination).await;
    let mut fast = Client::connect(&bridge.url("/ws-raw")).await;
    fast.subscribe("f", &destination).await;

    // 64 KiB bodies fill the slow client's socket buffers after a few hundred
    // messages, because it reads nothing until the end.
    let filler = "x".repeat(64 * 1024);
    let reader = tokio::spawn(async move {
        for seq in 0..MESSAGES {
            let frame = fast.frame().await;
            let body: Value = serde_json::from_slice(&frame.body).unwrap();
            assert_eq!(
                body["payload"]["seq"],
                json!(seq),
                "fast session lost or reordered a message"
            );
        }
    });
    for seq in 0..MESSAGES {
        let body = json!({"seq": seq, "filler": filler}).to_string();
        bridge.publish("slow", body.as_bytes()).await;
    }
    tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the fast session was held back by the slow one")
        .unwrap();

    let (error, _) = slow.closed().await;
    let slow_or_timeout = bridge.metric("stompbridge_disconnects_total{reason=\"slow_consumer\"}")
        + bridge.metric("stompbridge_disconnects_total{reason=\"write_timeout\"}");
    assert_eq!(
        slow_or_timeout, 1.0,
        "the slow session was not closed as slow"
    );
    if let Some(error) = error {
        assert!(error.get("message").unwrap().contains("slow consumer"));
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn server_heart_beats_arrive_at_the_negotiated_interval() {
    let bridge = TestBridge::start(
        &[("hb", "hb")],
        "stomp:\n  heart_beat:\n    send: 200ms\n    receive: 0s\n",
    )
    .await;
    let mut client = common::stomp::Client::open(
        &bridge.url("/ws-raw"),
        &["v12.stomp"],
        common::stomp::Framing::Raw,
    )
    .await;
    let connected = client.handshake("heart-beat:0,300").await;
    assert_eq!(connected.get("heart-beat"), Some("200,0"));
    let started = tokio::time::Instant::now();
    let mut beats = 0;
    while beats < 3 {
        match client.next().await {
            Event::HeartBeat => beats += 1,
            other => panic!("expected a heart-beat, got {other:?}"),
        }
    }
    // Three beats at max(200, 300) ms take at least 900 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(850),
        "{:?}",
        started.elapsed()
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn silent_client_is_closed_after_twice_its_interval() {
    let bridge = TestBridge::start(
        &[("silent", "silent")],
        "stomp:\n  heart_beat:\n    send: 0s\n    receive: 200ms\n",
    )
    .await;
    let mut client = common::stomp::Client::open(
        &bridge.url("/ws-raw"),
        &["v12.stomp"],
        common::stomp::Framing::Raw,
    )
    .await;
    client.handshake("heart-beat:100,0").await;
    let started = tokio::time::Instant::now();
    let (error, code) = client.closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350),
        "closed after {elapsed:?}"
    );
    let error = error.expect("an ERROR frame before the close");
    assert_eq!(error.get("message"), Some("no heart-beat received in time"));
    assert_eq!(code, Some(1008));
    bridge.cleanup().await;
}
