//! The run clock: how long a run has been *active*. It is paused while a human is being
//! asked to decide something, so that waiting for a person never counts against the
//! run's timeout.

use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct ClockState {
    /// Open pauses (one per pending human-loop request); the clock runs when 0.
    holds: usize,
    /// Active time accumulated before the current running stretch.
    banked: Duration,
    /// Start of the current running stretch, `None` while paused.
    running_since: Option<Instant>,
}

impl ClockState {
    fn active(&self, now: Instant) -> Duration {
        self.banked + self.running_since.map_or(Duration::ZERO, |t| now - t)
    }
}

/// Active time of one run. State changes go through a `watch` channel so that a waiter
/// re-plans its sleep exactly when the clock is paused or resumed, without polling.
#[derive(Debug)]
pub(crate) struct ActiveClock {
    state: watch::Sender<ClockState>,
}

impl ActiveClock {
    /// A clock that starts running now.
    pub(crate) fn start() -> Self {
        let (state, _) = watch::channel(ClockState {
            holds: 0,
            banked: Duration::ZERO,
            running_since: Some(Instant::now()),
        });
        Self { state }
    }

    #[cfg(test)]
    fn active(&self) -> Duration {
        self.state.borrow().active(Instant::now())
    }

    #[cfg(test)]
    fn is_paused(&self) -> bool {
        self.state.borrow().running_since.is_none()
    }

    /// Pauses the clock until the guard is dropped. Pauses nest: the clock runs again
    /// when the last guard is gone.
    pub(crate) fn pause(&self) -> PauseGuard<'_> {
        self.state.send_modify(|s| {
            if s.holds == 0 {
                let now = Instant::now();
                s.banked = s.active(now);
                s.running_since = None;
            }
            s.holds += 1;
        });
        PauseGuard { clock: self }
    }

    fn resume(&self) {
        self.state.send_modify(|s| {
            s.holds = s.holds.saturating_sub(1);
            if s.holds == 0 && s.running_since.is_none() {
                s.running_since = Some(Instant::now());
            }
        });
    }

    /// Completes once the clock has been active for `limit` in total.
    pub(crate) async fn reached(&self, limit: Duration) {
        let mut changes = self.state.subscribe();
        loop {
            let state = *changes.borrow_and_update();
            let active = state.active(Instant::now());
            if active >= limit {
                return;
            }
            if state.running_since.is_some() {
                tokio::select! {
                    _ = tokio::time::sleep(limit - active) => {}
                    changed = changes.changed() => if changed.is_err() { return std::future::pending().await },
                }
            } else if changes.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen while we borrow it.
                return std::future::pending().await;
            }
        }
    }
}

/// Keeps the clock paused while alive.
#[derive(Debug)]
pub(crate) struct PauseGuard<'a> {
    clock: &'a ActiveClock,
}

impl Drop for PauseGuard<'_> {
    fn drop(&mut self) {
        self.clock.resume();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paused_time_does_not_count() {
        let clock = ActiveClock::start();
        tokio::time::advance(Duration::from_millis(100)).await;
        {
            let _outer = clock.pause();
            let _inner = clock.pause();
            assert!(clock.is_paused());
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        assert!(!clock.is_paused());
        tokio::time::advance(Duration::from_millis(50)).await;
        assert_eq!(clock.active(), Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn reached_waits_out_pauses() {
        let clock = std::sync::Arc::new(ActiveClock::start());
        let started = Instant::now();
        let waiter = tokio::spawn({
            let clock = clock.clone();
            async move { clock.reached(Duration::from_millis(300)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let _pause = clock.pause();
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert!(!waiter.is_finished());
        }
        waiter.await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(5_300) && waited < Duration::from_millis(5_400),
            "{waited:?}"
        );
    }
}
