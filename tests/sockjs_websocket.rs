//! The SockJS endpoints that exist so far: greeting, `/info`, the websocket
//! transport with SockJS framing, and raw WebSocket under the prefix.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use common::{
    TestBridge,
    stomp::{Client, Framing},
};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use stompbridge::stomp::Command;
use tokio_tungstenite::tungstenite::Message;

async fn bridge(extra: &str) -> TestBridge {
    TestBridge::start(&[("s", "s")], extra).await
}

fn http(bridge: &TestBridge, path: &str) -> String {
    format!("http://{}{path}", bridge.running.public_addr)
}

#[tokio::test]
async fn greeting_on_every_prefix() {
    let bridge = bridge("").await;
    for path in ["/ws", "/ws/", "/ws/chat", "/ws/chat/"] {
        let response = reqwest::get(http(&bridge, path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=UTF-8"
        );
        assert_eq!(response.text().await.unwrap(), "Welcome to SockJS!\n");
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn info_has_cors_and_no_cache() {
    let bridge = bridge("").await;
    let client = reqwest::Client::new();
    let response = client
        .get(http(&bridge, "/ws/info"))
        .header("Origin", "http://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["access-control-allow-origin"], "http://app.example");
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    assert_eq!(headers["content-type"], "application/json; charset=UTF-8");
    let info: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert_eq!(info["origins"], serde_json::json!(["*:*"]));
    assert!(info["entropy"].is_u64());

    let preflight = client
        .request(reqwest::Method::OPTIONS, http(&bridge, "/ws/chat/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "OPTIONS, GET"
    );
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    bridge.cleanup().await;
}

#[tokio::test]
async fn sockjs_websocket_carries_stomp_in_json_frames() {
    let bridge = bridge("").await;
    let destination = format!("/topic/queues/{}", bridge.queue("s"));
    for prefix in ["/ws", "/ws/chat"] {
        let url = bridge.url(&format!("{prefix}/123/abcdef/websocket"));
        let mut client = Client::open(&url, &[], Framing::SockJs).await;
        client.handshake("heart-beat:0,0").await;
        client.subscribe("0", &destination).await;
        bridge.publish("s", b"{\"ok\":true}").await;
        let message = client.frame().await;
        assert_eq!(message.command, Command::Message);
        let body: Value = serde_json::from_slice(&message.body).unwrap();
        assert_eq!(body["payload"]["ok"], true);
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn sockjs_heartbeat_and_close_frames() {
    let server = "  sockjs:\n    heartbeat_interval: 200ms\n";
    let bridge = TestBridge::start_with(&[("s", "s")], server, "").await;
    let url = bridge.url("/ws/000/hb/websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("o"));
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("h"));

    // Broken JSON ends the session.
    ws.send(Message::text("[\"unterminated")).await.unwrap();
    let mut closed = false;
    while let Some(message) = ws.next().await {
        match message {
            Ok(Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(closed, "the session stayed open after broken JSON");
    bridge.cleanup().await;
}

#[tokio::test]
async fn server_shutdown_sends_go_away() {
    let bridge = bridge("").await;
    let url = bridge.url("/ws/1/shut/websocket");
    let mut client = Client::open(&url, &[], Framing::SockJs).await;
    client.handshake("heart-beat:0,0").await;
    let state = bridge.running.bridge.clone();
    let closing = tokio::spawn(async move { client.closed().await });
    stompbridge::shutdown::run(&state, std::time::Duration::from_secs(5)).await;
    let (error, code) = closing.await.unwrap();
    assert_eq!(error.unwrap().get("message"), Some("server shutting down"));
    assert_eq!(code, Some(3000));
    bridge.cleanup().await;
}

#[tokio::test]
async fn raw_websocket_under_the_prefix() {
    let bridge = bridge("").await;
    let mut client = Client::connect(&bridge.url("/ws/websocket")).await;
    client.send_text("DISCONNECT\nreceipt:r\n\n\0").await;
    assert_eq!(client.frame().await.get("receipt-id"), Some("r"));
    bridge.cleanup().await;
}

#[tokio::test]
async fn unknown_or_invalid_urls_are_rejected() {
    let bridge = bridge("").await;
    for path in [
        "/nothing",
        "/ws/000/abc/nonsense",
        "/ws/iframe.htm",
        "/ws/0.1/abc/websocket",
        "/ws//abc/websocket",
        "/wsx/info",
    ] {
        let response = reqwest::get(http(&bridge, path)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    let response = reqwest::get(http(&bridge, "/ws/000/abc/websocket"))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.text().await.unwrap(),
        "Can \"Upgrade\" only to \"WebSocket\"."
    );
    bridge.cleanup().await;
}
