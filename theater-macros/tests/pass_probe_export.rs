//! A handler over `theater:test/probe` that also calls the `theater:test/probe-handlers` callbacks through the
//! generated typed callers.
#![deny(warnings)]

use std::time::Duration;

use theater_macros::theater_handler;
use theater_runtime::{ActorError, ActorHandle, Handler};

#[derive(Clone, Default)]
struct ProbeHandler;

#[theater_handler(
    wit = "../tests/wit",
    import = "theater:test/probe",
    export = "theater:test/probe-handlers",
    name = "probe"
)]
impl ProbeHandler {
    fn note(&self, msg: String) -> u32 {
        msg.len() as u32
    }

    fn work(&self, _ms: u32) {}
}

/// Typed callers: parameters and results are the callbacks' own, without the actor state.
#[allow(dead_code)]
async fn call(probe: &ProbeHandler, actor: &ActorHandle) -> Result<(), ActorError> {
    let total: u64 = probe.callbacks(actor).handle_add(1).await?;
    let output: String = probe
        .callbacks(actor)
        .with_timeout(Duration::from_secs(1))
        .handle_script("echo:hi".to_owned())
        .await?;
    let (): () = probe.callbacks(actor).handle_fail("no".to_owned()).await?;
    let _ = (total, output);
    Ok(())
}

#[test]
fn generated_handler_describes_its_interface() {
    let handler: &dyn Handler = &ProbeHandler;
    assert_eq!(handler.name(), "probe");
    assert_eq!(handler.imports(), Some("theater:test/probe"));
    assert_eq!(handler.exports(), Some("theater:test/probe-handlers"));
    assert_eq!(handler.functions(), ["note", "work"]);
}
