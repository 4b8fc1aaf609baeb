//! What the message-server benchmarks share: the pair of `message-bench` actors they measure.

use std::sync::Arc;

use theater_handler_message_server::{MessageServerConfig, MessageServerHandler};
use theater_runtime::{ActorHandle, Handler, SpawnOptions, TheaterRuntime};

/// Messages (or requests) per call into the sender.
pub const MESSAGES: u32 = 1000;

/// A fresh pair (sender, receiver), so the recorded chains do not grow without bound.
pub async fn pair(
    theater: &TheaterRuntime,
    wasm: &[u8],
    recording: bool,
) -> (ActorHandle, ActorHandle) {
    let spawn = |name: &'static str| {
        let handlers: Vec<Arc<dyn Handler>> = vec![
            Arc::new(MessageServerHandler::new(MessageServerConfig {
                mailbox_capacity: 2 * MESSAGES,
                ..Default::default()
            })),
            Arc::new(theater_tests::probe::ProbeHandler::new()),
        ];
        let options = SpawnOptions::new(name, wasm.to_vec())
            .handlers(handlers)
            .recording(recording);
        async move { theater.spawn(options).await.expect("spawn") }
    };
    (spawn("sender").await, spawn("receiver").await)
}
