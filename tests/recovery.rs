//! Broker-side failures: a killed connection mid-stream and a queue that
//! already exists with other arguments.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::{collections::BTreeSet, time::Duration};

use common::{TestBridge, stomp::Client, unique_prefix};
use lapin::{options::QueueDeclareOptions, types::FieldTable};
use serde_json::Value;
use stompbridge::bridge::QueueState;

#[tokio::test]
async fn killed_connection_mid_stream_loses_nothing() {
    const MESSAGES: u64 = 5000;
    let bridge = TestBridge::start(&[("stream", "stream")], "").await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("s", &format!("/topic/queues/{}", bridge.queue("stream")))
        .await;

    let publisher = {
        let channel = bridge.channel.clone();
        let exchange = bridge.exchange.clone();
        let key = bridge.routing_key("stream");
        tokio::spawn(async move {
            let mut confirms = Vec::new();
            for seq in 0..MESSAGES {
                let body = format!("{{\"seq\":{seq}}}");
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        key.as_str().into(),
                        Default::default(),
                        body.as_bytes(),
                        Default::default(),
                    )
                    .await
                    .expect("publish");
                confirms.push(confirm);
            }
            for confirm in confirms {
                assert!(confirm.await.expect("confirm").is_ack());
            }
        })
    };

    let mut seen = BTreeSet::new();
    let mut last_fresh: Option<u64> = None;
    let mut redelivered = 0;
    let mut killed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while (seen.len() as u64) < MESSAGES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {MESSAGES} messages arrived",
            seen.len()
        );
        let frame = client.frame().await;
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        let seq = body["payload"]["seq"].as_u64().unwrap();
        if frame.get("redelivered") == Some("true") {
            redelivered += 1;
        } else {
            // Messages delivered for the first time keep the publish order.
            assert!(
                last_fresh.is_none_or(|last| seq > last),
                "{seq} after {last_fresh:?}"
            );
            last_fresh = Some(seq);
        }
        seen.insert(seq);
        if !killed && seen.len() >= 1000 {
            bridge.kill_broker_connection();
            killed = true;
        }
    }
    publisher.await.unwrap();
    assert!(killed);
    assert_eq!(seen.len() as u64, MESSAGES);
    assert!(bridge.metric("stompbridge_rabbitmq_reconnects_total") >= 1.0);
    println!("redelivered after the reconnect: {redelivered}");
    bridge.cleanup().await;
}

#[tokio::test]
async fn conflicting_queue_is_reported_and_passive_consumes_it() {
    let prefix = unique_prefix();
    let conflict = format!("{prefix}_conflict");
    let ok =
        format!("  - name: {prefix}_ok\n    routing_key: \"{prefix}.ok\"\n    durable: false\n");
    let mut bridge = TestBridge::start_yaml(prefix.clone(), "", "", &ok, true).await;
    bridge.track_queue(&conflict);

    // Another system owns the queue: durable, unlike what the bridge would declare.
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    bridge
        .channel
        .queue_declare(conflict.as_str().into(), options, FieldTable::default())
        .await
        .unwrap();
    bridge
        .channel
        .queue_bind(
            conflict.as_str().into(),
            bridge.exchange.as_str().into(),
            format!("{prefix}.conflict").as_str().into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let create = format!(
        "{ok}  - name: {conflict}\n    routing_key: \"{prefix}.conflict\"\n    durable: false\n"
    );
    bridge.write_queues(&create);
    bridge
        .wait_until("the conflict to be reported", 10, |b| {
            matches!(
                b.running.bridge.queue_states().get(&conflict),
                Some(QueueState::Failed(_))
            )
        })
        .await;
    let Some(QueueState::Failed(reason)) =
        bridge.running.bridge.queue_states().get(&conflict).cloned()
    else {
        unreachable!("checked above");
    };
    assert!(
        reason.contains(&conflict) && reason.contains("durable"),
        "{reason}"
    );
    let readiness = bridge.running.bridge.readiness();
    assert!(!readiness.ready);
    assert!(readiness.queues_not_consuming.contains_key(&conflict));

    // The other queue keeps running.
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client
        .subscribe("ok", &format!("/topic/queues/{prefix}_ok"))
        .await;
    client
        .subscribe("c", &format!("/topic/queues/{conflict}"))
        .await;
    bridge.publish("ok", b"1").await;
    assert_eq!(client.frame().await.get("subscription"), Some("ok"));

    // declare: passive consumes the queue as it is.
    let passive = format!(
        "{ok}  - name: {conflict}\n    routing_key: \"{prefix}.conflict\"\n    declare: passive\n"
    );
    bridge.write_queues(&passive);
    bridge
        .wait_until("the queue to be consumed", 10, |b| {
            b.running.bridge.is_ready()
        })
        .await;
    bridge.publish("conflict", b"2").await;
    assert_eq!(client.frame().await.get("subscription"), Some("c"));
    bridge.cleanup().await;
}
