//! A stompbridge process started from the test binary's build, with JSON logs.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::amqp_url;

const BIN: &str = env!("CARGO_BIN_EXE_stompbridge");

/// The daemon as a process with JSON logs, its stdout read line by line.
pub struct Daemon {
    pub child: std::process::Child,
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Daemon {
    pub fn start(config: &str, rust_log: &str) -> (Daemon, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(BIN)
            .args([
                "run",
                "--config",
                path.to_str().unwrap(),
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (Daemon { child, lines }, dir)
    }

    /// Waits for the startup line and returns the public and admin addresses.
    pub fn addresses(&self) -> (String, String) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .expect("stompbridge started");
            let event: Value = serde_json::from_str(&line).unwrap();
            if event["message"] == "stompbridge started" {
                return (
                    event["public"].as_str().unwrap().to_owned(),
                    event["admin"].as_str().unwrap().to_owned(),
                );
            }
        }
    }

    /// Polls `/readyz` for up to 20 s; on failure shows the last readiness
    /// report and the daemon's log.
    pub fn wait_ready(&self, admin: &str) {
        let started = Instant::now();
        let mut report = String::new();
        while started.elapsed() < Duration::from_secs(20) {
            let output = Command::new(BIN)
                .args(["probe", &format!("http://{admin}/readyz")])
                .output()
                .unwrap();
            if output.status.success() {
                return;
            }
            report = String::from_utf8_lossy(&output.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = self.remaining_lines().join("\n");
        panic!(
            "the daemon did not become ready; is RabbitMQ reachable at {}?\nreadiness: {report}\nlog:\n{log}",
            amqp_url()
        );
    }

    /// Sends SIGTERM and returns how long the process took to exit.
    pub fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "stompbridge exited with {exit}");
        started.elapsed()
    }

    pub fn remaining_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
