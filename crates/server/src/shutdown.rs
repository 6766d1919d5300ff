//! Graceful shutdown: one token, cancelled on SIGTERM or SIGINT, that every server, stream and
//! background loop watches. A second signal stops the process at once: a start stuck on the
//! database (a migration lock another replica holds), or a drain an operator will not wait for,
//! must not need `kill -9`.

use tokio_util::sync::CancellationToken;

/// A token cancelled when the process receives SIGTERM or SIGINT; the next one exits.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let mut signals = Signals::new();
        signals.next().await;
        let first = std::time::Instant::now();
        tracing::info!(
            "shutdown requested, draining in-flight calls (signal again to stop at once)"
        );
        trigger.cancel();
        loop {
            let signal = signals.next().await;
            // The same request delivered twice (a wrapper such as `timeout` forwards the signal
            // its process group also gave the process) is not a second one.
            if first.elapsed() >= std::time::Duration::from_secs(1) {
                tracing::warn!("shutdown requested again: stopping at once");
                // As a shell reports a process the signal ended: 128 + its number.
                std::process::exit(128 + signal);
            }
        }
    });
    token
}

/// SIGTERM and SIGINT, as they come.
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals(
            signal(SignalKind::terminate())
                .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)))
                .ok(),
        )
    }

    /// The next signal's number.
    async fn next(&mut self) -> i32 {
        const SIGINT: i32 = 2;
        const SIGTERM: i32 = 15;
        match &mut self.0 {
            Some((term, int)) => {
                tokio::select! {
                    _ = term.recv() => SIGTERM,
                    _ = int.recv() => SIGINT,
                }
            }
            // Without signal handlers there is nothing to wait for but ctrl-c.
            None => {
                let _ = tokio::signal::ctrl_c().await;
                SIGINT
            }
        }
    }
}
