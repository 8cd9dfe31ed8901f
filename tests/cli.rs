//! The `stompbridge` binary as an operator runs it: `check-config`, and the
//! log lines of a reload that was rejected or triggered by SIGHUP.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_stompbridge");

fn check_config(text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(BIN)
        .args(["check-config", path.to_str().unwrap()])
        .env("STOMPBRIDGE_JWT_SECRET", "test-secret")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_accepts_the_example_and_summarizes_it() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
        .unwrap();
    let (ok, stdout, stderr) = check_config(&text);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert!(
        stdout.contains("tgm_iot (IoT sensor readings): handler iot"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tgm_webhooks (Outgoing webhooks): handler webhook"),
        "{stdout}"
    );
    assert!(stdout.contains("disabled"), "{stdout}");
}

#[test]
fn check_config_lists_every_invalid_setting() {
    let text = "\
limits:
  outbox_frames: 0
queues:
  - name: a/b
    routing_key: x
  - name: ok
    routing_key: y
    handler: iot
    erp: {window: 1m}
  - name: t
    routing_key: z
    destinations:
      - destination: /topic/{nope}
  - name: q
    routing_key: w
    durable: false
    queue_type: quorum
";
    let (ok, _, stderr) = check_config(text);
    assert!(!ok);
    for expected in [
        "limits.outbox_frames",
        "queues[0].name",
        "queues[1].erp",
        "queues[2].destinations[0].destination",
        "unknown placeholder {nope}",
        "queues[3].durable",
    ] {
        assert!(
            stderr.contains(expected),
            "{expected} missing from:\n{stderr}"
        );
    }
    assert!(stderr.contains("5 invalid setting(s)"), "{stderr}");
}

#[test]
fn check_config_names_a_missing_jwt_secret() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    for value in [None, Some("")] {
        let mut command = Command::new(BIN);
        command.args(["check-config", path.to_str().unwrap()]);
        match value {
            Some(value) => command.env("STOMPBRIDGE_JWT_SECRET", value),
            None => command.env_remove("STOMPBRIDGE_JWT_SECRET"),
        };
        let output = command.output().unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("auth.jwt.secret_env") && stderr.contains("STOMPBRIDGE_JWT_SECRET"),
            "{stderr}"
        );
    }
}

#[test]
fn check_config_gives_position_of_a_yaml_error_once() {
    let (ok, _, stderr) = check_config("server:\n  lisen: 127.0.0.1:1\n");
    assert!(!ok);
    assert!(
        stderr.contains("config.yaml:2:3: unknown field `lisen`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("at line"),
        "position given twice: {stderr}"
    );
}

#[test]
fn check_config_names_the_cause_of_a_read_error() {
    let output = Command::new(BIN)
        .args(["check-config", "/nonexistent/stompbridge.yaml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

/// A daemon process with JSON logs on stdout, read line by line.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Daemon {
    fn start(path: &std::path::Path) -> Daemon {
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--config",
                path.to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", "info,stompbridge::config=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|_| panic!("log line is not JSON: {line}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines }
    }

    /// Returns the next log line whose message starts with `message`, failing
    /// after 10 s.
    fn wait_for(&mut self, message: &str) -> Value {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("no log line {message:?} within 10 s"));
            if line["message"]
                .as_str()
                .is_some_and(|text| text.starts_with(message))
            {
                return line;
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn rejected_reload_and_sighup_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    // amq.topic always exists, so the daemon declares nothing to clean up.
    let valid = format!(
        "server:\n  listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nrabbitmq:\n  url: {}\n  exchange: amq.topic\nqueues: []\n",
        common::amqp_url()
    );
    std::fs::write(&path, &valid).unwrap();
    let mut daemon = Daemon::start(&path);
    // Edits before the watch is in place would go unnoticed.
    daemon.wait_for("watching the configuration folder");

    std::fs::write(&path, format!("{valid}limits:\n  outbox_frames: [\n")).unwrap();
    let rejected = daemon.wait_for("configuration reload rejected");
    assert_eq!(rejected["level"], "WARN");
    let error = rejected["error"].as_str().unwrap();
    let location = error
        .strip_prefix(&format!("{}:", path.display()))
        .unwrap_or_default();
    let mut numbers = location.split(':').take(2).map(|n| n.parse::<u32>());
    assert!(
        matches!((numbers.next(), numbers.next()), (Some(Ok(_)), Some(Ok(_)))),
        "no file, line and column in {error:?}"
    );
    assert_eq!(rejected["file"], path.display().to_string());

    std::fs::write(&path, &valid).unwrap();
    daemon.wait_for("configuration unchanged");
    let status = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let unchanged = daemon.wait_for("configuration unchanged");
    assert_eq!(unchanged["trigger"], "SIGHUP");
}
