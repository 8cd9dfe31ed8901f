//! Runs the Node interop tests in `tests/interop/` (real @stomp/stompjs,
//! sockjs-client, ws and amqplib) against the `stompbridge` binary built for
//! this test run.

#![allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on any unexpected error"
)]

use std::{path::Path, process::Command};

#[test]
fn node_clients_interoperate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules").is_dir(),
        "the Node test clients are not installed: run `npm ci --prefix tests/interop` first"
    );
    let status = Command::new("npm")
        .arg("test")
        .current_dir(&dir)
        .env("STOMPBRIDGE_BIN", env!("CARGO_BIN_EXE_stompbridge"))
        .status()
        .unwrap_or_else(|err| panic!("cannot run npm (is Node.js installed?): {err}"));
    assert!(status.success(), "Node interop tests failed: {status}");
}
