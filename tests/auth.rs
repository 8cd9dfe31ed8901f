//! Authentication, user destinations, access rules, client SEND and limits,
//! against the real RabbitMQ.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::{
    collections::BTreeMap,
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use common::{
    TestBridge,
    stomp::{Client, Framing},
    unique_prefix,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lapin::{options::QueueBindOptions, types::AMQPValue, types::FieldTable};
use serde_json::{Value, json};
use stompbridge::stomp::Command as StompCommand;
use tempfile::TempDir;

const SECRET: &[u8] = b"hs256-test-secret";
const AUDIENCE: &str = "tgm-web";

/// Keys written to files for the bridge: the HMAC secret and an RSA pair.
struct Keys {
    dir: TempDir,
    rsa_private: Vec<u8>,
    rsa_public: Vec<u8>,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("rsa.pem");
    let public = dir.path().join("rsa.pub.pem");
    let generated = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl to generate a test RSA key");
    assert!(generated.success());
    let exported = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap();
    assert!(exported.success());
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    Keys {
        rsa_private: std::fs::read(&private).unwrap(),
        rsa_public: std::fs::read(&public).unwrap(),
        dir,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(user: &str, roles: &[&str], exp_in: i64) -> Value {
    json!({"sub": user, "roles": roles, "aud": AUDIENCE, "exp": now() as i64 + exp_in})
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn rs256(keys: &Keys, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&keys.rsa_private).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn auth_yaml(keys: &Keys, anonymous: &str) -> String {
    format!(
        "auth:\n  anonymous: {anonymous}\n  jwt:\n    algorithms: [HS256, RS256]\n    secret_file: {}\n    \
         public_key_file: {}\n    audience: {AUDIENCE}\n    leeway: 0s\n\
         access:\n  - destination: /topic/admin/**\n    subscribe: {{roles: [admin]}}\n",
        keys.dir.path().join("secret").display(),
        keys.dir.path().join("rsa.pub.pem").display(),
    )
}

fn notification_queues(prefix: &str) -> String {
    format!(
        "  - name: {prefix}_notify\n    routing_key: \"{prefix}.notify\"\n    durable: false\n    handler: notification\n\
         \x20 - name: {prefix}_calendar\n    routing_key: \"{prefix}.calendar\"\n    durable: false\n    handler: notification\n\
         \x20   notification:\n      user_destination: /queue/calendar\n"
    )
}

async fn start(keys: &Keys, anonymous: &str, extra: &str) -> TestBridge {
    let prefix = unique_prefix();
    let queues = notification_queues(&prefix);
    TestBridge::start_yaml(
        prefix,
        "",
        &format!("{}{extra}", auth_yaml(keys, anonymous)),
        &queues,
        false,
    )
    .await
}

/// Opens a raw WebSocket and sends CONNECT with `headers`, returning the
/// client and the server's first frame.
async fn connect(bridge: &TestBridge, headers: &str) -> (Client, stompbridge::stomp::Frame) {
    let mut client = Client::open(&bridge.url("/ws-raw"), &["v12.stomp"], Framing::Raw).await;
    client
        .send_text(&format!(
            "CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n{headers}\n\0"
        ))
        .await;
    let frame = client.frame().await;
    (client, frame)
}

async fn connect_as(bridge: &TestBridge, token: &str) -> Client {
    let (client, frame) = connect(bridge, &format!("Authorization:Bearer {token}\n")).await;
    assert_eq!(
        frame.command,
        StompCommand::Connected,
        "CONNECT refused: {:?}",
        frame.get("message")
    );
    client
}

#[tokio::test]
async fn tokens_give_the_documented_result_under_allow_and_deny() {
    let keys = keys();
    let valid = claims("alice", &[], 300);
    let mut none_header = serde_json::Map::new();
    none_header.insert("alg".into(), json!("none"));
    none_header.insert("typ".into(), json!("JWT"));
    let encode = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        encode(&Value::Object(none_header)),
        encode(&valid)
    );
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &valid,
        &EncodingKey::from_secret(&keys.rsa_public).unwrap(),
    )
    .unwrap();
    let wrong_key = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &valid,
        &EncodingKey::from_secret(b"other").unwrap(),
    )
    .unwrap();
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("valid HS256", hs256(&valid), None),
        ("valid RS256", rs256(&keys, &valid), None),
        (
            "expired",
            hs256(&claims("alice", &[], -30)),
            Some("token expired"),
        ),
        (
            "not yet valid",
            hs256(&json!({"sub": "alice", "aud": AUDIENCE, "nbf": now() + 600})),
            Some("token not yet valid"),
        ),
        ("wrong signature", wrong_key, Some("bad signature")),
        (
            "wrong audience",
            hs256(&json!({"sub": "alice", "aud": "someone-else", "exp": now() + 300})),
            Some("wrong audience"),
        ),
        ("alg none", alg_none, Some("algorithm not allowed")),
        (
            "HS256 signed with the RS256 public key",
            confused,
            Some("bad signature"),
        ),
        ("no token", String::new(), Some("missing token")),
    ];

    for anonymous in ["allow", "deny"] {
        let bridge = start(&keys, anonymous, "").await;
        for (name, token, rejection) in &cases {
            let headers = if token.is_empty() {
                String::new()
            } else {
                format!("Authorization:Bearer {token}\n")
            };
            let (mut client, frame) = connect(&bridge, &headers).await;
            match (rejection, anonymous) {
                (None, _) => {
                    assert_eq!(
                        frame.command,
                        StompCommand::Connected,
                        "{name} under {anonymous}"
                    );
                    assert_eq!(frame.get("user-name"), Some("alice"), "{name}");
                }
                (Some(_), "allow") => {
                    assert_eq!(frame.command, StompCommand::Connected, "{name} under allow");
                    assert_eq!(
                        frame.get("user-name"),
                        None,
                        "{name} must give an anonymous session"
                    );
                }
                (Some(reason), _) => {
                    assert_eq!(frame.command, StompCommand::Error, "{name} under deny");
                    assert_eq!(
                        frame.get("message"),
                        Some(format!("authentication failed: {reason}").as_str()),
                        "{name}"
                    );
                    let (_, code) = client.closed().await;
                    assert_eq!(code, Some(1008));
                }
            }
        }
        bridge.cleanup().await;
    }
}

#[tokio::test]
async fn passcode_and_header_case_variants_carry_the_token() {
    let keys = keys();
    let bridge = start(&keys, "deny", "").await;
    let token = hs256(&claims("bob", &[], 300));
    for headers in [
        format!("login:bob\npasscode:{token}\n"),
        format!("authorization:bearer   {token}  \n"),
        format!("Authorization:Bearer {token}\nAuthorization:Bearer invalid\n"),
    ] {
        let (_, frame) = connect(&bridge, &headers).await;
        assert_eq!(frame.command, StompCommand::Connected, "{headers}");
        assert_eq!(frame.get("user-name"), Some("bob"));
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn notifications_reach_only_their_users() {
    const MESSAGES: usize = 200;
    let keys = keys();
    let bridge = start(&keys, "allow", "").await;
    let mut sessions = Vec::new();
    for user in ["A", "A", "B", "B"] {
        let mut client = connect_as(&bridge, &hs256(&claims(user, &[], 600))).await;
        client.subscribe("n", "/user/queue/notifications").await;
        sessions.push((user, client));
    }

    let mut expected: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for n in 0..MESSAGES {
        let (body, users): (Value, Vec<&str>) = match n % 3 {
            0 => (json!({"userId": "A", "n": n}), vec!["A"]),
            1 => (json!({"userId": "B", "n": n}), vec!["B"]),
            _ => (json!({"userIds": ["A", "B"], "n": n}), vec!["A", "B"]),
        };
        for user in users {
            expected.entry(user).or_default().push(n);
        }
        bridge.publish("notify", body.to_string().as_bytes()).await;
    }
    // A marker for both users ends each session's stream.
    bridge
        .publish("notify", br#"{"userIds":["A","B"],"end":true}"#)
        .await;

    for (user, client) in &mut sessions {
        let mut received = Vec::new();
        loop {
            let frame = client.frame().await;
            assert_eq!(frame.get("destination"), Some("/user/queue/notifications"));
            let body: Value = serde_json::from_slice(&frame.body).unwrap();
            if body["end"] == true {
                break;
            }
            received.push(body["n"].as_u64().unwrap() as usize);
        }
        assert_eq!(
            &received, &expected[*user],
            "session of {user} got another user's notifications"
        );
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn calendar_updates_use_their_own_user_destination() {
    let keys = keys();
    let bridge = start(&keys, "allow", "").await;
    let mut client = connect_as(&bridge, &hs256(&claims("42", &[], 600))).await;
    client.subscribe("n", "/user/queue/notifications").await;
    client.subscribe("c", "/user/queue/calendar").await;
    let event = json!({"userId": 42, "action": "created", "entityType": "inspection", "entityId": 42, "timestamp": "2026-02-17T14:30:00"});
    bridge
        .publish("calendar", event.to_string().as_bytes())
        .await;
    let frame = client.frame().await;
    assert_eq!(frame.get("subscription"), Some("c"));
    assert_eq!(serde_json::from_slice::<Value>(&frame.body).unwrap(), event);
    // Notifications are private: nothing appeared on the firehose.
    assert_eq!(
        bridge.metric(&format!(
            "stompbridge_messages_delivered_total{{queue=\"{}_calendar\"}}",
            bridge.prefix
        )),
        1.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn expired_session_ends_and_refreshed_one_stays() {
    let keys = keys();
    let bridge = start(&keys, "allow", "").await;
    let mut expiring = connect_as(&bridge, &hs256(&claims("carol", &[], 2))).await;
    let mut refreshed = connect_as(&bridge, &hs256(&claims("carol", &[], 2))).await;
    let fresh = hs256(&claims("carol", &[], 600));
    refreshed
        .send_text(&format!(
            "SEND\ndestination:/session/token\nreceipt:r1\n\n{fresh}\0"
        ))
        .await;
    assert_eq!(refreshed.frame().await.get("receipt-id"), Some("r1"));

    let (error, code) = expiring.closed().await;
    assert_eq!(error.unwrap().get("message"), Some("token expired"));
    assert_eq!(code, Some(1008));

    // Past the first token's expiry, the refreshed session still works.
    refreshed.subscribe("n", "/user/queue/notifications").await;
    bridge.publish("notify", br#"{"userId":"carol"}"#).await;
    assert_eq!(refreshed.frame().await.get("subscription"), Some("n"));

    // A token for another user is refused.
    let other = hs256(&claims("mallory", &[], 600));
    refreshed
        .send_text(&format!("SEND\ndestination:/session/token\n\n{other}\0"))
        .await;
    let (error, _) = refreshed.closed().await;
    assert_eq!(
        error.unwrap().get("message"),
        Some("the new token is for another user")
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn access_rules_refuse_as_documented() {
    let keys = keys();
    let bridge = start(&keys, "allow", "").await;
    let (mut anonymous, _) = connect(&bridge, "").await;
    anonymous
        .send_text("SUBSCRIBE\nid:1\ndestination:/user/queue/notifications\n\n\0")
        .await;
    let (error, _) = anonymous.closed().await;
    assert_eq!(
        error.unwrap().get("message"),
        Some("access denied: SUBSCRIBE to /user/queue/notifications")
    );

    let mut user = connect_as(&bridge, &hs256(&claims("dave", &["ops"], 600))).await;
    user.send_text("SUBSCRIBE\nid:1\ndestination:/topic/admin/stats\n\n\0")
        .await;
    let (error, _) = user.closed().await;
    assert_eq!(
        error.unwrap().get("message"),
        Some("access denied: SUBSCRIBE to /topic/admin/stats")
    );

    let mut admin = connect_as(&bridge, &hs256(&claims("erin", &["admin"], 600))).await;
    admin.subscribe("1", "/topic/admin/stats").await;
    assert_eq!(
        bridge.metric("stompbridge_access_denied_total{action=\"SUBSCRIBE\"}"),
        2.0
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn send_to_app_is_published_with_the_bridge_user_id() {
    let keys = keys();
    let mut bridge = start(&keys, "allow", "").await;
    let inbox = format!("{}_chat", bridge.prefix);
    bridge.track_queue(&inbox);
    bridge
        .channel
        .queue_declare(
            inbox.as_str().into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    bridge
        .channel
        .queue_bind(
            inbox.as_str().into(),
            format!("{}.app", bridge.prefix).as_str().into(),
            "chat.send".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let mut client = connect_as(&bridge, &hs256(&claims("frank", &[], 600))).await;
    client
        .send_text(
            "SEND\ndestination:/app/chat.send\nuser-id:someone-else\nx-room:7\ncontent-type:application/json\nreceipt:s1\n\n{\"text\":\"hi\"}\0",
        )
        .await;
    let receipt = client.frame().await;
    assert_eq!(receipt.get("receipt-id"), Some("s1"));
    // The RECEIPT came after the confirm, so the message is in the queue now.
    let message = bridge
        .get(&inbox)
        .await
        .expect("the SEND in the bound queue");
    assert_eq!(message.delivery.data, br#"{"text":"hi"}"#);
    let headers = message.delivery.properties.headers().clone().unwrap();
    let text = |name: &str| match headers.inner().get(name) {
        Some(AMQPValue::LongString(value)) => {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        }
        other => panic!("header {name}: {other:?}"),
    };
    assert_eq!(text("user-id"), "frank");
    assert_eq!(text("stomp-destination"), "/app/chat.send");
    assert_eq!(text("x-room"), "7");
    assert!(!text("session-id").is_empty());
    assert_eq!(
        message
            .delivery
            .properties
            .content_type()
            .as_ref()
            .map(|c| c.as_str()),
        Some("application/json")
    );

    // Nothing is bound for this routing key: the SEND fails with an ERROR.
    client
        .send_text("SEND\ndestination:/app/nobody.listens\nreceipt:s2\n\nx\0")
        .await;
    let (error, _) = client.closed().await;
    let error = error.unwrap();
    assert!(
        error
            .get("message")
            .unwrap()
            .starts_with("SEND failed: unroutable"),
        "{error:?}"
    );
    assert_eq!(error.get("receipt-id"), Some("s2"));

    let (mut anonymous, _) = connect(&bridge, "").await;
    anonymous
        .send_text("SEND\ndestination:/app/chat.send\n\nx\0")
        .await;
    let (error, _) = anonymous.closed().await;
    assert_eq!(
        error.unwrap().get("message"),
        Some("access denied: SEND to /app/chat.send")
    );
    bridge.cleanup().await;
}

#[tokio::test]
async fn each_limit_refuses_only_the_offending_session() {
    let keys = keys();
    let limits = "limits:\n  max_headers: 8\n  max_header_line_bytes: 512\n  max_subscriptions_per_session: 2\n  max_frame_bytes: 4096\n";
    let bridge = start(&keys, "allow", limits).await;
    let mut bystander = connect_as(&bridge, &hs256(&claims("gina", &[], 600))).await;
    bystander.subscribe("n", "/user/queue/notifications").await;

    let headers: String = (0..9).map(|i| format!("h{i}:v\n")).collect();
    let long_line = format!("x:{}\n", "y".repeat(600));
    let cases = [
        (format!("SEND\ndestination:/app/x\n{headers}\n\0"), "too many headers: more than 8"),
        (format!("SEND\ndestination:/app/x\n{long_line}\n\0"), "header line too long: more than 512 bytes"),
        (format!("SEND\ndestination:/app/x\n\n{}\0", "z".repeat(5000)), "frame too large: more than 4096 bytes"),
        (
            "SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:2\ndestination:/topic/b\n\n\0SUBSCRIBE\nid:3\ndestination:/topic/c\n\n\0".to_string(),
            "too many subscriptions: the limit is 2",
        ),
    ];
    for (input, message) in cases {
        let (mut client, frame) = connect(&bridge, "").await;
        assert_eq!(frame.command, StompCommand::Connected);
        client.send_text(&input).await;
        let (error, _) = client.closed().await;
        assert_eq!(error.unwrap().get("message"), Some(message));
        // The other session is unaffected.
        bridge.publish("notify", br#"{"userId":"gina"}"#).await;
        assert_eq!(bystander.frame().await.get("subscription"), Some("n"));
    }
    for limit in [
        "max_headers",
        "max_header_line_bytes",
        "max_frame_bytes",
        "max_subscriptions_per_session",
    ] {
        assert_eq!(
            bridge.metric(&format!(
                "stompbridge_limits_exceeded_total{{limit=\"{limit}\"}}"
            )),
            1.0,
            "{limit}"
        );
    }
    bridge.cleanup().await;
}

#[tokio::test]
async fn browser_origins_outside_the_list_are_refused() {
    let bridge = TestBridge::start_with(
        &[("o", "o")],
        "  allowed_origins: [\"https://app.example.com\"]\n",
        "",
    )
    .await;
    let attempt = |origin: &'static str| {
        let url = bridge.url("/ws-raw");
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = url.into_client_request().unwrap();
            request
                .headers_mut()
                .insert("Origin", origin.parse().unwrap());
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().unwrap());
            tokio_tungstenite::connect_async(request).await
        }
    };
    assert!(attempt("https://app.example.com").await.is_ok());
    match attempt("https://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let info = reqwest::Client::new()
        .get(format!("http://{}/ws/info", bridge.running.public_addr))
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(info.status(), 403);
    assert_eq!(
        bridge.metric("stompbridge_connections_rejected_total{reason=\"origin\"}"),
        2.0
    );
    bridge.cleanup().await;
}
