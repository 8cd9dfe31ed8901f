//! Records the git commit the binary is built from, for `--version` and the
//! build-info metric. `STOMPBRIDGE_COMMIT` in the build environment overrides
//! it (for builds without a git checkout, such as container images).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=STOMPBRIDGE_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("STOMPBRIDGE_COMMIT").ok().or_else(git_commit);
    println!(
        "cargo:rustc-env=STOMPBRIDGE_COMMIT={}",
        commit.unwrap_or_else(|| "unknown".into())
    );
}

fn git_commit() -> Option<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
