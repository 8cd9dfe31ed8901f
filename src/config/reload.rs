//! Hot reload: watch the configuration file's folder and listen for SIGHUP,
//! then parse, validate and apply the whole file, or keep the running
//! configuration when the file is invalid.
//!
//! The folder is watched rather than the file, because editors and Kubernetes
//! ConfigMaps replace a file by renaming another over it (ConfigMaps through a
//! symlink swap), which a watch on the old file would miss. Events are
//! debounced, so one save that touches the folder several times reloads once.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::Config;
use crate::bridge::Bridge;

/// Quiet time after the last file event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Settings read only at startup; a reload that changes them logs a warning.
const RESTART_SETTINGS: &[&str] = &[
    "server.listen",
    "server.websocket_path",
    "server.sockjs.paths",
    "admin.listen",
    "limits.max_sessions",
    "log.format",
    "log.level",
    "cluster",
];

/// Changes that a reload applies.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// Top-level sections that changed, e.g. `limits`.
    pub sections: Vec<&'static str>,
    /// Changed settings that need a restart to take effect.
    pub need_restart: Vec<&'static str>,
}

/// Watches `path` and applies every valid new version until shutdown.
pub async fn watch(bridge: Arc<Bridge>, path: PathBuf) {
    let (events_tx, mut events) = mpsc::channel::<()>(1);
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && concerns(&event, &name)
        {
            // A full channel already has a pending reload.
            let _ = events_tx.try_send(());
        }
    });
    let _watcher = match watcher
        .and_then(|mut w| w.watch(&folder, RecursiveMode::NonRecursive).map(|()| w))
    {
        Ok(watcher) => {
            bridge
                .config_watched
                .store(true, std::sync::atomic::Ordering::Relaxed);
            debug!(folder = %folder.display(), "watching the configuration folder");
            Some(watcher)
        }
        Err(error) => {
            warn!(folder = %folder.display(), %error, "cannot watch the configuration folder; reload with SIGHUP");
            None
        }
    };
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP");
            None
        }
    };

    loop {
        let trigger = tokio::select! {
            () = bridge.shutdown.cancelled() => return,
            Some(()) = events.recv() => {
                // Wait until the folder is quiet, so a save in several steps is read once.
                while tokio::time::timeout(DEBOUNCE, events.recv()).await.is_ok_and(|e| e.is_some()) {}
                "file changed"
            }
            Some(()) = async { hangup.as_mut()?.recv().await } => "SIGHUP",
        };
        reload(&bridge, &path, trigger);
    }
}

/// Returns whether a folder event may have changed the configuration file: it names the
/// file, or a `..`-prefixed entry (Kubernetes swaps `..data` to update a
/// ConfigMap), or no path at all. Other files in the folder, such as a log,
/// are ignored.
fn concerns(event: &notify::Event, name: &OsStr) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.is_empty()
        || event.paths.iter().any(|path| {
            path.file_name()
                .is_some_and(|file| file == name || file.as_encoded_bytes().starts_with(b".."))
        })
}

/// Reads `path` and applies it if it is valid and differs from the running one.
pub fn reload(bridge: &Bridge, path: &Path, trigger: &str) {
    let next = match super::load(path) {
        Ok(next) => next,
        Err(error) => {
            bridge.metrics.config_reload("rejected");
            warn!(file = %path.display(), trigger, error = %error, "configuration reload rejected, running configuration kept");
            return;
        }
    };
    let current = bridge.config();
    let changes = diff(&current, &next);
    if changes == Changes::default() {
        bridge.metrics.config_reload("unchanged");
        debug!(file = %path.display(), trigger, "configuration unchanged");
        return;
    }
    for setting in &changes.need_restart {
        warn!(setting, "setting changed; it takes effect after a restart");
    }
    if let Err(error) = bridge.apply_config(Arc::new(next)) {
        bridge.metrics.config_reload("rejected");
        warn!(file = %path.display(), trigger, %error, "configuration reload rejected, running configuration kept");
        return;
    }
    bridge.metrics.config_reload("applied");
    info!(
        file = %path.display(),
        trigger,
        added = ?changes.added,
        removed = ?changes.removed,
        changed = ?changes.changed,
        sections = ?changes.sections,
        "configuration reloaded"
    );
}

/// Compares two configurations: queues by name, other settings by section.
pub fn diff(old: &Config, new: &Config) -> Changes {
    let mut changes = Changes::default();
    let old_queues: Vec<_> = old.queues.iter().map(|q| &q.value).collect();
    let new_queues: Vec<_> = new.queues.iter().map(|q| &q.value).collect();
    for queue in &new_queues {
        match old_queues.iter().find(|q| q.name == queue.name) {
            None => changes.added.push(queue.name.clone()),
            Some(previous) if previous != queue => changes.changed.push(queue.name.clone()),
            Some(_) => {}
        }
    }
    for queue in &old_queues {
        if !new_queues.iter().any(|q| q.name == queue.name) {
            changes.removed.push(queue.name.clone());
        }
    }

    let sections: [(&'static str, bool); 7] = [
        ("server", old.server != new.server),
        ("admin", old.admin != new.admin),
        ("rabbitmq", old.rabbitmq != new.rabbitmq),
        ("stomp", old.stomp != new.stomp),
        ("limits", old.limits != new.limits),
        ("log", old.log != new.log),
        ("cluster", old.cluster != new.cluster),
    ];
    changes.sections = sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect();

    let restart: [(&'static str, bool); 8] = [
        ("server.listen", old.server.listen != new.server.listen),
        (
            "server.websocket_path",
            old.server.websocket_path != new.server.websocket_path,
        ),
        (
            "server.sockjs.paths",
            old.server.sockjs.paths != new.server.sockjs.paths,
        ),
        ("admin.listen", old.admin.listen != new.admin.listen),
        (
            "limits.max_sessions",
            old.limits.max_sessions != new.limits.max_sessions,
        ),
        ("log.format", old.log.format != new.log.format),
        ("log.level", old.log.level != new.log.level),
        ("cluster", old.cluster != new.cluster),
    ];
    debug_assert!(
        restart
            .iter()
            .all(|(name, _)| RESTART_SETTINGS.contains(name))
    );
    changes.need_restart = restart
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect();
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        super::super::parse("test.yaml", text, |_| None).unwrap()
    }

    #[test]
    fn diff_names_queues_and_sections() {
        let old = parse("queues:\n  - {name: a, routing_key: a}\n  - {name: b, routing_key: b}\n");
        let new = parse(
            "limits: {max_sessions: 5}\nqueues:\n  - {name: a, routing_key: [a, a2]}\n  - {name: c, routing_key: c}\n",
        );
        let changes = diff(&old, &new);
        assert_eq!(changes.added, ["c"]);
        assert_eq!(changes.removed, ["b"]);
        assert_eq!(changes.changed, ["a"]);
        assert_eq!(changes.sections, ["limits"]);
        assert_eq!(changes.need_restart, ["limits.max_sessions"]);
    }

    #[test]
    fn moving_lines_is_no_change() {
        let old = parse("queues:\n  - {name: a, routing_key: a}\n");
        let new = parse("# a comment\n\nqueues:\n\n  - name: a\n    routing_key: a\n");
        assert_eq!(diff(&old, &new), Changes::default());
    }
}
