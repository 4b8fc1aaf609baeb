//! A spinner with the elapsed time on stderr for long steps (compiling a component, verifying a chain), shown
//! only when stderr is a terminal: piped or redirected output gets nothing extra.

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shows `message` and a spinner until dropped, then clears its line.
pub struct Spinner {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    /// Starts showing `message` on stderr if it is a terminal; otherwise does nothing.
    pub fn start(message: impl Into<String>) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            let message = message.into();
            std::thread::spawn(move || {
                let started = Instant::now();
                let frames = ['|', '/', '-', '\\'];
                let mut frame = 0;
                while !done.load(Ordering::Relaxed) {
                    let elapsed = started.elapsed().as_secs_f32();
                    eprint!("\r{} {message} {elapsed:.1}s", frames[frame % frames.len()]);
                    let _ = std::io::stderr().flush();
                    frame += 1;
                    std::thread::park_timeout(Duration::from_millis(100));
                }
                // Clear the line.
                eprint!("\r\x1b[2K");
                let _ = std::io::stderr().flush();
            })
        });
        Self { done, thread }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}
