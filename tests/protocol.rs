//! STOMP over a real WebSocket connection: subprotocols, framing across and
//! within messages, errors and limits.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use common::{
    TestBridge,
    stomp::{Client, Framing},
};
use futures_util::SinkExt;
use stompbridge::stomp::Command;
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

async fn bridge(extra: &str) -> TestBridge {
    TestBridge::start(&[("p", "p")], extra).await
}

#[tokio::test]
async fn server_echoes_the_highest_offered_subprotocol() {
    let bridge = bridge("").await;
    let url = bridge.url("/ws-raw");
    for (offered, selected) in [
        (
            &["v10.stomp", "v11.stomp", "v12.stomp"][..],
            Some("v12.stomp"),
        ),
        (&["v10.stomp", "v11.stomp"][..], Some("v11.stomp")),
        (&["v10.stomp"][..], Some("v10.stomp")),
        (&[][..], None),
    ] {
        let client = Client::open(&url, offered, Framing::Raw).await;
        assert_eq!(client.protocol.as_deref(), selected, "offered {offered:?}");
    }

    // Only unknown subprotocols offered: the server selects none, which a
    // client that requires one (every browser) treats as a failed handshake.
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let result = tokio_tungstenite::connect_async(request).await;
    let error = result.expect_err("handshake succeeded without a common subprotocol");
    assert!(error.to_string().contains("no subprotocol"), "{error}");
    bridge.cleanup().await;
}

#[tokio::test]
async fn frames_split_and_packed() {
    let bridge = bridge("").await;
    let mut client = Client::open(&bridge.url("/ws-raw"), &["v12.stomp"], Framing::Raw).await;
    for piece in ["CONN", "ECT\naccept-version:1.2\nhost:x\n", "\n", "\0"] {
        client.ws.send(Message::text(piece)).await.unwrap();
    }
    assert_eq!(client.frame().await.command, Command::Connected);

    let destination = format!("/topic/queues/{}", bridge.queue("p"));
    let packed = format!(
        "SUBSCRIBE\nid:1\ndestination:{destination}\nreceipt:a\n\n\0\nSUBSCRIBE\nid:2\ndestination:/topic/queues\nreceipt:b\n\n\0"
    );
    client.ws.send(Message::text(packed)).await.unwrap();
    assert_eq!(client.frame().await.get("receipt-id"), Some("a"));
    assert_eq!(client.frame().await.get("receipt-id"), Some("b"));

    bridge.publish("p", b"{\"n\":1}").await;
    let mut subscriptions = [
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
    assert_eq!(subscriptions, ["1", "2"]);
    bridge.cleanup().await;
}

#[tokio::test]
async fn binary_messages_are_accepted() {
    let bridge = bridge("").await;
    let mut client = Client::open(&bridge.url("/ws-raw"), &["v12.stomp"], Framing::Raw).await;
    let connect = b"CONNECT\naccept-version:1.2\nhost:x\n\n\0".to_vec();
    client.ws.send(Message::binary(connect)).await.unwrap();
    assert_eq!(client.frame().await.command, Command::Connected);
    bridge.cleanup().await;
}

#[tokio::test]
async fn protocol_error_sends_error_then_closes() {
    let bridge = bridge("").await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client.send_text("FROB\nreceipt:9\n\n\0").await;
    let (error, code) = client.closed().await;
    let error = error.expect("an ERROR frame");
    assert_eq!(error.get("message"), Some("unknown command \"FROB\""));
    assert_eq!(code, Some(1002));
    assert_eq!(
        bridge.metric("stompbridge_disconnects_total{reason=\"malformed_frame\"}"),
        1.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn unsupported_version_is_refused_with_the_supported_list() {
    let bridge = bridge("").await;
    let mut client = Client::open(&bridge.url("/ws-raw"), &[], Framing::Raw).await;
    client
        .send_text("CONNECT\naccept-version:2.0\nhost:x\n\n\0")
        .await;
    let (error, _) = client.closed().await;
    let error = error.expect("an ERROR frame");
    assert_eq!(error.get("version"), Some("1.0,1.1,1.2"));
    bridge.cleanup().await;
}

#[tokio::test]
async fn oversize_frame_is_refused() {
    let bridge = bridge("limits:\n  max_frame_bytes: 2048\n").await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    let body = "x".repeat(4096);
    client
        .send_text(&format!("SEND\ndestination:/app/x\n\n{body}\0"))
        .await;
    let (error, _) = client.closed().await;
    assert_eq!(
        error.expect("an ERROR frame").get("message"),
        Some("frame too large: more than 2048 bytes")
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn connection_without_connect_times_out() {
    let bridge = bridge("limits:\n  connect_timeout: 300ms\n").await;
    let mut client = Client::open(&bridge.url("/ws-raw"), &["v12.stomp"], Framing::Raw).await;
    let (error, code) = client.closed().await;
    assert_eq!(
        error.expect("an ERROR frame").get("message"),
        Some("no CONNECT frame received in time")
    );
    assert_eq!(code, Some(1008));
    bridge.cleanup().await;
}

#[tokio::test]
async fn disconnect_is_acknowledged_then_closed() {
    let bridge = bridge("").await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    client.send_text("DISCONNECT\nreceipt:bye\n\n\0").await;
    let receipt = client.frame().await;
    assert_eq!(receipt.get("receipt-id"), Some("bye"));
    let (error, code) = client.closed().await;
    assert!(error.is_none());
    assert_eq!(code, Some(1000));
    bridge.cleanup().await;
}

#[tokio::test]
async fn sessions_past_the_limit_are_refused() {
    let bridge = bridge("limits:\n  max_sessions: 1\n").await;
    let _first = Client::connect(&bridge.url("/ws-raw")).await;
    let second = tokio_tungstenite::connect_async(bridge.url("/ws-raw")).await;
    match second {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn shutdown_sends_error_to_every_session() {
    let bridge = bridge("").await;
    let mut client = Client::connect(&bridge.url("/ws-raw")).await;
    let bridge_state = bridge.running.bridge.clone();
    let closing = tokio::spawn(async move { client.closed().await });
    stompbridge::shutdown::run(&bridge_state, std::time::Duration::from_secs(5)).await;
    let (error, code) = closing.await.unwrap();
    assert_eq!(
        error.expect("an ERROR frame").get("message"),
        Some("server shutting down")
    );
    assert_eq!(code, Some(1001));
    bridge.cleanup().await;
}

#[tokio::test]
async fn extreme_heart_beat_values_are_harmless() {
    let bridge = bridge("").await;
    let mut client = Client::open(&bridge.url("/ws-raw"), &["v12.stomp"], Framing::Raw).await;
    let max = u64::MAX;
    let connected = client.handshake(&format!("heart-beat:{max},{max}")).await;
    assert_eq!(connected.command, Command::Connected);
    client
        .subscribe("1", &format!("/topic/queues/{}", bridge.queue("p")))
        .await;
    bridge.publish("p", b"1").await;
    assert_eq!(client.frame().await.get("subscription"), Some("1"));
    bridge.cleanup().await;
}
