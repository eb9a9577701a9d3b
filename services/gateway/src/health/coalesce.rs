//! At most one probe per provider at a time, and its outcome reused for a while: every
//! `?probe=true` would otherwise start a real model run per provider, so a dashboard
//! polling the report, or several operators at once, would multiply them.
//!
//! The work runs in a task of its own (on the gateway's task tracker), not in the
//! request that started it: a report that gives up or is dropped leaves the run to be
//! followed to its end (or stopped) for whoever else waits on it.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Shares one piece of work per key among concurrent callers, and its result for
/// `keep` after it ended.
pub(super) struct Coalescer<K, V> {
    slots: Arc<Mutex<HashMap<K, Slot<V>>>>,
    keep: Duration,
    tasks: TaskTracker,
}

impl<K, V> Clone for Coalescer<K, V> {
    fn clone(&self) -> Self {
        Self {
            slots: Arc::clone(&self.slots),
            keep: self.keep,
            tasks: self.tasks.clone(),
        }
    }
}

enum Slot<V> {
    Running(watch::Receiver<Option<Finished<V>>>),
    Done(Finished<V>),
}

#[derive(Clone)]
struct Finished<V> {
    value: V,
    at: Instant,
    /// Whether later callers may be given it (an outcome cut short by one caller's
    /// deadline says nothing about the next one).
    reusable: bool,
}

/// How a caller gets its result.
pub(super) enum Share<V> {
    /// This call started the work.
    Started(Pending<V>),
    /// The work was already running for another caller.
    Joined(Pending<V>),
    /// The work ended `age` ago; its result is reused.
    Cached { value: V, age: Duration },
}

/// A result still being worked on.
pub(super) struct Pending<V>(watch::Receiver<Option<Finished<V>>>);

impl<V: Clone> Pending<V> {
    /// The result; `None` if the work was dropped unfinished (the runtime shutting down).
    pub(super) async fn wait(mut self) -> Option<V> {
        let finished = self.0.wait_for(Option::is_some).await.ok()?;
        finished.as_ref().map(|f| f.value.clone())
    }
}

impl<K, V> Coalescer<K, V>
where
    K: Eq + Hash + Copy + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(super) fn new(keep: Duration, tasks: TaskTracker) -> Self {
        Self {
            slots: Arc::new(Mutex::new(HashMap::new())),
            keep,
            tasks,
        }
    }

    /// The result of the work for `key`: a reusable one younger than `keep`, the one
    /// in flight, or else a new one from `start()`, which yields the value and whether
    /// it may be reused.
    pub(super) fn get<F, Fut>(&self, key: K, start: F) -> Share<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = (V, bool)> + Send + 'static,
    {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.get(&key) {
            Some(Slot::Done(done)) if done.reusable && done.at.elapsed() < self.keep => {
                return Share::Cached {
                    value: done.value.clone(),
                    age: done.at.elapsed(),
                };
            }
            // A sender dropped unfinished leaves nothing to wait for: start anew.
            Some(Slot::Running(running)) if running.has_changed().is_ok() => {
                return Share::Joined(Pending(running.clone()));
            }
            _ => {}
        }
        let (sender, receiver) = watch::channel(None);
        slots.insert(key, Slot::Running(receiver.clone()));
        drop(slots);
        let work = start();
        let slots = Arc::clone(&self.slots);
        self.tasks.spawn(async move {
            let (value, reusable) = work.await;
            let finished = Finished {
                value,
                at: Instant::now(),
                reusable,
            };
            slots
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, Slot::Done(finished.clone()));
            sender.send_replace(Some(finished));
        });
        Share::Started(Pending(receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    /// Work that counts its starts and ends when `gate` is released, with `value`.
    fn work(
        starts: &Arc<AtomicUsize>,
        gate: oneshot::Receiver<()>,
        value: u32,
        reusable: bool,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = (u32, bool)> + Send>> {
        let starts = Arc::clone(starts);
        move || {
            starts.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                let _ = gate.await;
                (value, reusable)
            })
        }
    }

    async fn value(share: Share<u32>) -> (u32, &'static str) {
        match share {
            Share::Started(p) => (p.wait().await.unwrap(), "started"),
            Share::Joined(p) => (p.wait().await.unwrap(), "joined"),
            Share::Cached { value, .. } => (value, "cached"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_run_then_its_result_is_cached_for_a_while() {
        let keep = Duration::from_secs(60);
        let coalescer = Coalescer::<u8, u32>::new(keep, TaskTracker::new());
        let starts = Arc::new(AtomicUsize::new(0));
        let (release, gate) = oneshot::channel();
        let first = coalescer.get(1, work(&starts, gate, 7, true));
        let (_unused, gate2) = oneshot::channel();
        let second = coalescer.get(1, work(&starts, gate2, 8, true));
        // Another key is other work.
        let (release3, gate3) = oneshot::channel();
        let other = coalescer.get(2, work(&starts, gate3, 9, true));
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        release.send(()).unwrap();
        release3.send(()).unwrap();
        assert_eq!(value(first).await, (7, "started"));
        assert_eq!(value(second).await, (7, "joined"));
        assert_eq!(value(other).await, (9, "started"));

        tokio::time::advance(Duration::from_secs(59)).await;
        let (_unused, gate4) = oneshot::channel();
        match coalescer.get(1, work(&starts, gate4, 10, true)) {
            Share::Cached { value, age } => {
                assert_eq!(value, 7);
                assert_eq!(age, Duration::from_secs(59));
            }
            _ => panic!("expected the cached result"),
        }
        assert_eq!(starts.load(Ordering::SeqCst), 2);

        // Once `keep` has passed, a new run.
        tokio::time::advance(Duration::from_secs(1)).await;
        let (release5, gate5) = oneshot::channel();
        let fresh = coalescer.get(1, work(&starts, gate5, 11, true));
        release5.send(()).unwrap();
        assert_eq!(value(fresh).await, (11, "started"));
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreusable_result_or_a_zero_keep_is_not_cached() {
        let starts = Arc::new(AtomicUsize::new(0));
        let coalescer = Coalescer::<u8, u32>::new(Duration::from_secs(60), TaskTracker::new());
        let (release, gate) = oneshot::channel();
        let cut_short = coalescer.get(1, work(&starts, gate, 1, false));
        release.send(()).unwrap();
        assert_eq!(value(cut_short).await, (1, "started"));
        let (release, gate) = oneshot::channel();
        let next = coalescer.get(1, work(&starts, gate, 2, true));
        release.send(()).unwrap();
        assert_eq!(value(next).await, (2, "started"));

        let uncached = Coalescer::<u8, u32>::new(Duration::ZERO, TaskTracker::new());
        for n in 0..2 {
            let (release, gate) = oneshot::channel();
            let share = uncached.get(1, work(&starts, gate, n, true));
            release.send(()).unwrap();
            assert_eq!(value(share).await, (n, "started"));
        }
        assert_eq!(starts.load(Ordering::SeqCst), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_leaves_the_run_to_the_others() {
        let starts = Arc::new(AtomicUsize::new(0));
        let coalescer = Coalescer::<u8, u32>::new(Duration::from_secs(60), TaskTracker::new());
        let (release, gate) = oneshot::channel();
        let first = coalescer.get(1, work(&starts, gate, 5, true));
        // The starting caller's request is dropped before the run ends.
        drop(first);
        let (_unused, gate2) = oneshot::channel();
        let second = coalescer.get(1, work(&starts, gate2, 6, true));
        release.send(()).unwrap();
        assert_eq!(value(second).await, (5, "joined"));
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}
