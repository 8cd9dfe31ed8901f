//! Several bridge processes behind one RabbitMQ with `cluster.enabled`.
//! Each message is handled once (one webhook call) but reaches every
//! subscribed session on every instance, once and in order. User
//! notifications reach the user wherever their sessions are. A killed
//! instance's unacknowledged messages are redelivered to a survivor, and a
//! late instance serves at once.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::StatusCode, routing::post};
use common::{
    amqp_channel, amqp_url,
    daemon::Daemon,
    stomp::{Client, Event, Framing},
    unique_prefix,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lapin::{BasicProperties, Channel, options::BasicPublishOptions};
use serde_json::{Value, json};
use stompbridge::stomp::Command;

const SECRET: &[u8] = b"cluster-secret";

/// One cluster of instances sharing a prefix, a configuration and a broker.
struct Cluster {
    prefix: String,
    dir: tempfile::TempDir,
    hook_url: String,
    instances: Vec<Instance>,
}

struct Instance {
    name: String,
    daemon: Daemon,
    public: String,
    admin: String,
    _config: tempfile::TempDir,
}

fn token(user: &str) -> String {
    let claims = json!({"sub": user, "exp": 4_000_000_000u64});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

impl Cluster {
    fn new(hook_url: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        Cluster {
            prefix: unique_prefix(),
            dir,
            hook_url: hook_url.to_owned(),
            instances: Vec::new(),
        }
    }

    fn config(&self, instance: &str) -> String {
        let p = &self.prefix;
        format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 2s\nadmin:\n  listen: 127.0.0.1:0\n\
             rabbitmq:\n  url: {url}\n  connection_name: {p}\n  exchange: {p}.events\n  app_exchange: {p}.app\n\
             \x20 reconnect_initial_delay: 100ms\n  reconnect_max_delay: 1s\n\
             auth:\n  jwt:\n    secret_file: {secret}\n\
             cluster:\n  enabled: true\n  exchange: {p}.cluster\n  instance_id: {instance}\n\
             queues:\n\
             \x20 - name: {p}_s\n    routing_key: \"{p}.s\"\n    durable: false\n    handler: webhook\n\
             \x20   prefetch: 50\n    webhook:\n      url: {hook}\n      timeout: 5s\n\
             \x20 - name: {p}_n\n    routing_key: \"{p}.n\"\n    queue_type: quorum\n    handler: notification\n",
            url = amqp_url(),
            secret = self.dir.path().join("secret").display(),
            hook = self.hook_url,
        )
    }

    /// Starts an instance and waits until it is ready.
    fn start(&mut self, name: &str) {
        let (daemon, config) = Daemon::start(&self.config(name), "info");
        let (public, admin) = daemon.addresses();
        daemon.wait_ready(&admin);
        self.instances.push(Instance {
            name: name.to_owned(),
            daemon,
            public,
            admin,
            _config: config,
        });
    }

    fn url(&self, index: usize) -> String {
        format!("ws://{}/ws-raw", self.instances[index].public)
    }

    async fn cleanup(self) {
        let (connection, channel) = amqp_channel().await;
        for queue in [format!("{}_s", self.prefix), format!("{}_n", self.prefix)] {
            let _ = channel
                .queue_delete(queue.as_str().into(), Default::default())
                .await;
        }
        for exchange in ["events", "app", "cluster"] {
            let name = format!("{}.{exchange}", self.prefix);
            let _ = channel
                .exchange_delete(name.as_str().into(), Default::default())
                .await;
        }
        let _ = connection.close(200, "test done".into()).await;
        drop(self.instances);
    }
}

/// Starts a webhook receiver that records every call's sequence number.
async fn hook_server() -> (String, Arc<Mutex<HashMap<u64, u32>>>) {
    async fn hook(State(calls): State<Arc<Mutex<HashMap<u64, u32>>>>, body: Bytes) -> StatusCode {
        let envelope: Value = serde_json::from_slice(&body).unwrap();
        let seq = envelope["payload"]["seq"].as_u64().unwrap();
        *calls.lock().unwrap().entry(seq).or_default() += 1;
        StatusCode::OK
    }
    let calls = Arc::new(Mutex::new(HashMap::new()));
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

async fn publish(channel: &Channel, exchange: &str, key: &str, body: &Value) {
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            body.to_string().as_bytes(),
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

async fn subscribed(url: &str, user: &str, destination: &str) -> Client {
    let mut client = Client::open(url, &["v12.stomp"], Framing::Raw).await;
    client
        .handshake(&format!(
            "heart-beat:0,0\nAuthorization:Bearer {}",
            token(user)
        ))
        .await;
    client.subscribe("0", destination).await;
    client
}

/// Reads MESSAGE frames until `count` distinct sequence numbers arrived;
/// returns them in arrival order, duplicates included.
async fn read_seqs(mut client: Client, count: usize) -> Vec<(u64, bool)> {
    let mut seen = std::collections::HashSet::new();
    let mut order = Vec::new();
    while seen.len() < count {
        let frame = client.frame().await;
        let body: Value = serde_json::from_slice(&frame.body).unwrap();
        let seq = body["payload"]["seq"].as_u64().unwrap();
        seen.insert(seq);
        order.push((seq, frame.get("redelivered") == Some("true")));
    }
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_once_in_order_everywhere() {
    const MESSAGES: u64 = 5000;
    let (hook_url, calls) = hook_server().await;
    let mut cluster = Cluster::new(&hook_url);
    for name in ["i1", "i2", "i3"] {
        cluster.start(name);
    }
    let destination = format!("/topic/queues/{}_s", cluster.prefix);
    let mut readers = Vec::new();
    for index in 0..3 {
        for _ in 0..2 {
            let client = subscribed(&cluster.url(index), "viewer", &destination).await;
            readers.push(tokio::spawn(read_seqs(client, MESSAGES as usize)));
        }
    }

    let (connection, channel) = amqp_channel().await;
    let exchange = format!("{}.events", cluster.prefix);
    let key = format!("{}.s", cluster.prefix);
    for seq in 0..MESSAGES {
        publish(&channel, &exchange, &key, &json!({ "seq": seq })).await;
    }
    let expected: Vec<(u64, bool)> = (0..MESSAGES).map(|seq| (seq, false)).collect();
    for reader in readers {
        let order = tokio::time::timeout(Duration::from_secs(120), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            order, expected,
            "a client saw a gap, duplicate or reordering"
        );
    }
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len() as u64, MESSAGES, "the webhook missed messages");
    assert!(
        calls.values().all(|n| *n == 1),
        "the webhook was called twice for a message"
    );
    let _ = connection.close(200, "done".into()).await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_follow_the_user() {
    let (hook_url, _calls) = hook_server().await;
    let mut cluster = Cluster::new(&hook_url);
    for name in ["i1", "i2", "i3"] {
        cluster.start(name);
    }
    let mut alice_1 = subscribed(&cluster.url(0), "alice", "/user/queue/notifications").await;
    let mut bob_2 = subscribed(&cluster.url(1), "bob", "/user/queue/notifications").await;
    let mut alice_3 = subscribed(&cluster.url(2), "alice", "/user/queue/notifications").await;
    let listing = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "name", "type"])
        .output()
        .expect("run rabbitmqctl");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let quorum = format!("{}_n\tquorum", cluster.prefix);
    assert!(
        listing.contains(&quorum),
        "{quorum} missing from:\n{listing}"
    );

    let (connection, channel) = amqp_channel().await;
    let exchange = format!("{}.events", cluster.prefix);
    let key = format!("{}.n", cluster.prefix);
    publish(
        &channel,
        &exchange,
        &key,
        &json!({"userId": "alice", "title": "for alice"}),
    )
    .await;
    publish(
        &channel,
        &exchange,
        &key,
        &json!({"userId": "bob", "title": "for bob"}),
    )
    .await;
    for client in [&mut alice_1, &mut alice_3] {
        let body: Value = serde_json::from_slice(&client.frame().await.body).unwrap();
        assert_eq!(body["title"], "for alice");
    }
    // Bob's first message is his own: nothing for Alice reached instance 2.
    let body: Value = serde_json::from_slice(&bob_2.frame().await.body).unwrap();
    assert_eq!(body["title"], "for bob");
    let _ = connection.close(200, "done".into()).await;
    cluster.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_and_late_instances() {
    const MESSAGES: u64 = 3000;
    let (hook_url, calls) = hook_server().await;
    let mut cluster = Cluster::new(&hook_url);
    for name in ["i1", "i2", "i3"] {
        cluster.start(name);
    }
    let destination = format!("/topic/queues/{}_s", cluster.prefix);
    let (connection, channel) = amqp_channel().await;
    let exchange = format!("{}.events", cluster.prefix);
    let key = format!("{}.s", cluster.prefix);

    // The single active consumer is the instance that publishes the first
    // message to the cluster exchange.
    publish(&channel, &exchange, &key, &json!({ "seq": 0 })).await;
    let active = active_instance(&cluster).await;
    let other = (active + 1) % 3;
    let survivor = subscribed(&cluster.url(other), "viewer", &destination).await;
    let survivor = tokio::spawn(read_seqs(survivor, MESSAGES as usize - 1));
    let publisher = {
        let (channel, exchange, key) = (channel.clone(), exchange.clone(), key.clone());
        tokio::spawn(async move {
            for seq in 1..MESSAGES {
                publish(&channel, &exchange, &key, &json!({ "seq": seq })).await;
                if seq % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A client on the instance about to die, which reconnects to a survivor.
    let doomed_url = cluster.url(active);
    let mut doomed = subscribed(&doomed_url, "viewer", &destination).await;
    assert!(
        !publisher.is_finished(),
        "the kill must land while messages flow"
    );
    cluster.instances[active].daemon.child.kill().unwrap();
    cluster.instances[active].daemon.child.wait().unwrap();
    println!(
        "killed the active instance {}",
        cluster.instances[active].name
    );
    loop {
        if let Event::Closed(_) = doomed.next().await {
            break;
        }
    }
    let reconnected = subscribed(&cluster.url(other), "viewer", &destination).await;
    let reconnected = tokio::spawn(async move {
        let mut client = reconnected;
        let frame = client.frame().await;
        serde_json::from_slice::<Value>(&frame.body).unwrap()["payload"]["seq"]
            .as_u64()
            .unwrap()
    });

    // An instance started now picks up the configuration and serves at once.
    cluster.start("i4");
    let late = subscribed(&cluster.url(3), "viewer", &destination).await;
    let late = tokio::spawn(async move {
        let mut client = late;
        client.frame().await.command
    });

    publisher.await.unwrap();
    let order = tokio::time::timeout(Duration::from_secs(120), survivor)
        .await
        .unwrap()
        .unwrap();
    let fresh: Vec<u64> = order
        .iter()
        .filter(|(_, again)| !again)
        .map(|(seq, _)| *seq)
        .collect();
    assert!(
        fresh.windows(2).all(|w| w[0] < w[1]),
        "fresh messages out of order"
    );
    let redelivered = order.iter().filter(|(_, again)| *again).count();
    println!(
        "survivor got {} frames, {redelivered} redelivered",
        order.len()
    );
    assert!(reconnected.await.unwrap() < MESSAGES);
    assert_eq!(late.await.unwrap(), Command::Message);
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len() as u64, MESSAGES, "a message was never handled");
    let _ = connection.close(200, "done".into()).await;
    cluster.cleanup().await;
}

/// Waits until one instance has published to the cluster exchange.
async fn active_instance(cluster: &Cluster) -> usize {
    for _ in 0..100 {
        for (index, instance) in cluster.instances.iter().enumerate() {
            if metric(&instance.admin, "stompbridge_cluster_published_total").await > 0.0 {
                return index;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no instance published to the cluster exchange within 10 s; check the webhook handler and the instances' logs"
    );
}

/// Returns one sample from an instance's /metrics, or 0 when it is absent.
async fn metric(admin: &str, sample: &str) -> f64 {
    let metrics = scrape(admin).await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Polls a sample until it reaches `at_least`, for up to 20 s.
async fn wait_metric(admin: &str, sample: &str, at_least: f64) {
    for _ in 0..200 {
        if metric(admin, sample).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sample} on {admin} stayed below {at_least}");
}

async fn scrape(admin: &str) -> String {
    stompbridge::install_tls_provider();
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_cluster_queue_comes_back() {
    let (hook_url, _calls) = hook_server().await;
    let mut cluster = Cluster::new(&hook_url);
    for name in ["i1", "i2"] {
        cluster.start(name);
    }
    let destination = format!("/topic/queues/{}_s", cluster.prefix);
    let mut client = subscribed(&cluster.url(1), "viewer", &destination).await;
    let (connection, channel) = amqp_channel().await;
    let exchange = format!("{}.events", cluster.prefix);
    let key = format!("{}.s", cluster.prefix);
    let admin = cluster.instances[1].admin.clone();

    // Deleted by an operator while the connection lives. The queue is
    // exclusive, so only rabbitmqctl can delete it.
    let queue = format!("{}.cluster.i2", cluster.prefix);
    let status = std::process::Command::new("rabbitmqctl")
        .args(["delete_queue", &queue])
        .status()
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl delete_queue failed");
    wait_metric(&admin, "stompbridge_cluster_restarts_total", 1.0).await;
    cluster.instances[1].daemon.wait_ready(&admin);
    publish(&channel, &exchange, &key, &json!({ "seq": 0 })).await;
    assert_eq!(seq_of(&mut client).await, 0);
    assert_eq!(
        metric(&admin, "stompbridge_cluster_restarts_total").await,
        1.0,
        "the cluster queue is set up again once, not in a loop"
    );

    // Gone with the broker connection, as in a broker restart.
    close_broker_connection(&format!("{} ", cluster.prefix), "i2");
    wait_metric(&admin, "stompbridge_rabbitmq_reconnects_total", 1.0).await;
    cluster.instances[1].daemon.wait_ready(&admin);
    publish(&channel, &exchange, &key, &json!({ "seq": 1 })).await;
    assert_eq!(seq_of(&mut client).await, 1);
    let _ = connection.close(200, "done".into()).await;
    cluster.cleanup().await;
}

async fn seq_of(client: &mut Client) -> u64 {
    let frame = tokio::time::timeout(Duration::from_secs(20), client.frame())
        .await
        .expect("a MESSAGE within 20 s");
    let body: Value = serde_json::from_slice(&frame.body).unwrap();
    body["payload"]["seq"].as_u64().unwrap()
}

/// Closes, through rabbitmqctl, the broker connection whose name starts
/// with `prefix` and ends with `instance`.
fn close_broker_connection(prefix: &str, instance: &str) {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("run rabbitmqctl");
    let listing = String::from_utf8_lossy(&output.stdout);
    let pid = listing
        .lines()
        .find(|line| {
            line.contains(&format!("\"{prefix}")) && line.contains(&format!(" {instance}\""))
        })
        .and_then(|line| line.split('\t').next())
        .unwrap_or_else(|| panic!("no broker connection for {instance} in:\n{listing}"));
    let status = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", pid, "closed by a test"])
        .status()
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl close_connection failed");
}
