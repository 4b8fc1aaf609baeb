//! The `message-peer` guest (tests/actors/message-peer) as the message-server tests drive it: spawned with the
//! message-server handler, scripts run in its `handle-script`, the lines its callbacks log read from its state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_runtime::{ActorHandle, Handler, TheaterRuntime};

use crate::guests;
use crate::probe::ProbeHandler;
use crate::support::{script, spawn};

/// Spawns a `message-peer` guest named `name` with the message-server handler configured by `config`.
pub async fn peer(rt: &TheaterRuntime, name: &str, config: MessageServerConfig) -> ActorHandle {
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(MessageServerHandler::new(config)),
        Arc::new(ProbeHandler::new()),
    ];
    spawn(rt, name, guests::MESSAGE_PEER, handlers, None)
        .await
        .expect("spawning message-peer")
}

/// Peers with the default configuration.
pub async fn peers<const N: usize>(rt: &TheaterRuntime) -> [ActorHandle; N] {
    let mut out = Vec::new();
    for i in 0..N {
        out.push(peer(rt, &format!("peer-{i}"), Default::default()).await);
    }
    out.try_into().expect("N peers")
}

/// Runs `text` in `actor`'s `handle-script`; the output has one entry per command, joined by `|`.
pub async fn run(actor: &ActorHandle, text: &str) -> String {
    script(actor, text).await.expect("handle-script")
}

/// Runs `text` in `actor`'s `handle-script` in the background (for calls that wait on another actor).
pub fn run_later(actor: &ActorHandle, text: String) -> tokio::task::JoinHandle<String> {
    let actor = actor.clone();
    tokio::spawn(async move { run(&actor, &text).await })
}

/// The lines `actor`'s callbacks logged in its state.
pub fn log(actor: &ActorHandle) -> Vec<String> {
    let state = actor.state().unwrap_or_default();
    String::from_utf8_lossy(&state)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits (generously) until `actor`'s log satisfies `done`, and returns it.
pub async fn log_until(actor: &ActorHandle, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let started = Instant::now();
    loop {
        let lines = log(actor);
        if done(&lines) {
            return lines;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "gave up waiting; log of {}: {lines:?}",
            actor.name()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `actor` lists exactly `n` outstanding requests, and returns their ids.
pub async fn outstanding(actor: &ActorHandle, n: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let out = run(actor, "list").await;
        let ids: Vec<String> = out
            .strip_prefix("list=")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.len() == n {
            return ids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} lists {ids:?}, expected {n} ids",
            actor.name()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
