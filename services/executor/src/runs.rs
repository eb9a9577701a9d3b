//! The slot table: the runs this executor owns, one slot each. Admission is
//! idempotent (a redelivered dispatch of a run is answered from its slot, a run that
//! already ran here is refused) and bounded by the capacity; draining refuses new runs.
//! Each slot holds the run's shared state ([`RunState`]): its stop token and cause, its
//! pending human-loop requests, and whether it has ended — what the supervisor, the
//! control subject and the HTTP API act on.

use crate::budget::Exceeded;
use crate::human_loop::PendingRequests;
use crate::provider::EvidenceReport;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use switchyard_contracts::RunId;
use switchyard_contracts::dispatch::DispatchOutcome;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// How many ended run ids are remembered, so that a late redelivered dispatch of a run
/// that already ran here is refused rather than started again. A dispatch at a later
/// position is a new one (the run was queued again after this executor was lost).
const REMEMBERED_ENDED_RUNS: usize = 4096;

/// Why the supervisor stopped a run before its provider finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopCause {
    /// A stop request (control subject or HTTP), with the requester's reason.
    Requested(Option<String>),
    Timeout,
    /// The executor is shutting down and the run could not finish first.
    Shutdown(Shutdown),
    /// The sink lost the run (fenced or log unavailable).
    LogLost,
    /// The run went over its budget.
    OverBudget(Exceeded),
}

/// Why a shutting-down executor stopped the runs still active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shutdown {
    /// `executor.drain_timeout_ms` (the value) passed.
    DrainTimeout(u64),
    /// A second shutdown signal.
    Immediate,
    /// The run host running the run was told to stop (SIGTERM or SIGINT).
    HostSignal,
}

impl Shutdown {
    /// What the run's `diagnostic` and `run.completed` detail say.
    pub(crate) fn detail(self) -> String {
        match self {
            Shutdown::DrainTimeout(0) => {
                "executor shutdown: the executor does not wait for active runs \
                 (drain_timeout_ms = 0), so the run was stopped"
                    .to_owned()
            }
            Shutdown::DrainTimeout(ms) => format!(
                "executor shutdown: the run was still active when the executor's drain \
                 timeout of {ms} ms ran out, so it was stopped"
            ),
            Shutdown::Immediate => "executor shutdown: the executor was told to stop at once \
                 (a second shutdown signal) while the run was active"
                .to_owned(),
            Shutdown::HostSignal => "executor shutdown: the run's host process was told to \
                 stop (a signal) while the run was active"
                .to_owned(),
        }
    }
}

/// The shared state of one run, reachable from the supervisor, the control subject and
/// the HTTP API.
pub(crate) struct RunState {
    pub(crate) run_id: RunId,
    /// Cancelled to stop the run ([`RunState::request_stop`] says why first); a child of
    /// the table's token, so a shutdown reaches every run.
    pub(crate) stop: CancellationToken,
    cause: OnceLock<StopCause>,
    pub(crate) pending: Arc<PendingRequests>,
    /// Cancelled once the run's closing events are written (or given up on).
    pub(crate) ended: CancellationToken,
    /// The pid of the run host running the run, when it runs in one: control requests
    /// go to the host (over the run's control subject), not to `pending`.
    pub(crate) host: OnceLock<u32>,
    /// What the provider left when it wound down after a stop.
    pub(crate) evidence: EvidenceReport,
}

impl RunState {
    /// Stops the run; the first cause wins.
    pub(crate) fn request_stop(&self, cause: StopCause) {
        let _ = self.cause.set(cause);
        self.stop.cancel();
    }

    pub(crate) fn cause(&self) -> StopCause {
        // A stop token cancelled through its parent means the executor is shutting down.
        self.cause
            .get()
            .cloned()
            .unwrap_or(StopCause::Shutdown(Shutdown::Immediate))
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Completes when a stop was requested (or the executor stops every run).
    pub(crate) async fn stop_requested(&self) {
        self.stop.cancelled().await;
    }

    pub(crate) fn is_hosted(&self) -> bool {
        self.host.get().is_some()
    }
}

/// Where an admission stands, for redelivered dispatches of the same run to wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acceptance {
    Pending,
    Accepted,
    Rejected(DispatchOutcome),
}

struct Slot {
    run: Arc<RunState>,
    acceptance: watch::Receiver<Acceptance>,
    /// The `seq` the run's `run.dispatched` was to get: the position it was admitted at.
    admitted_at: u64,
}

#[derive(Default)]
struct Table {
    active: HashMap<RunId, Slot>,
    draining: bool,
    ended_order: VecDeque<RunId>,
    /// Runs that ended here, with the position they had been admitted at.
    ended: HashMap<RunId, u64>,
}

struct RunsInner {
    table: Mutex<Table>,
    capacity: usize,
    /// Poked when the number of active runs or draining changes (presence listens).
    changed: Notify,
    /// Parent of every run's stop token: cancelling it stops every run (shutdown).
    stop_all: CancellationToken,
}

/// The slot table. Every decision about a slot is made under one lock, so that
/// concurrent dispatches never over-fill the executor or admit a run twice.
#[derive(Clone)]
pub(crate) struct Runs {
    inner: Arc<RunsInner>,
}

/// The answer to a request for a slot.
pub(crate) enum Admission {
    /// A slot is reserved for the run; settle the ticket with `accept` or `reject`.
    Admitted(Ticket),
    /// The run is (being) admitted here already, at the given position.
    Existing(watch::Receiver<Acceptance>, u64),
    Full,
    Draining,
    /// The run already ran to its end on this executor.
    AlreadyRan,
}

impl Runs {
    pub(crate) fn new(capacity: u32) -> Self {
        Self {
            inner: Arc::new(RunsInner {
                table: Mutex::new(Table::default()),
                capacity: capacity as usize,
                changed: Notify::new(),
                stop_all: CancellationToken::new(),
            }),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // No code panics while holding the lock; keep going with the data as it is.
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for the run, dispatched at `next_seq` (the position the requester read).
    pub(crate) fn admit(&self, run_id: RunId, next_seq: u64) -> Admission {
        let mut table = self.table();
        if let Some(slot) = table.active.get(&run_id) {
            return Admission::Existing(slot.acceptance.clone(), slot.admitted_at);
        }
        if table.draining {
            return Admission::Draining;
        }
        if table
            .ended
            .get(&run_id)
            .is_some_and(|ran_at| next_seq <= *ran_at)
        {
            return Admission::AlreadyRan;
        }
        if table.active.len() >= self.inner.capacity {
            return Admission::Full;
        }
        let run = self.new_run(run_id);
        let (acceptance, receiver) = watch::channel(Acceptance::Pending);
        table.active.insert(
            run_id,
            Slot {
                run: run.clone(),
                acceptance: receiver,
                admitted_at: next_seq,
            },
        );
        drop(table);
        self.inner.changed.notify_one();
        Admission::Admitted(Ticket {
            runs: self.clone(),
            run,
            acceptance,
            settled: false,
        })
    }

    fn new_run(&self, run_id: RunId) -> Arc<RunState> {
        Arc::new(RunState {
            run_id,
            stop: self.inner.stop_all.child_token(),
            cause: OnceLock::new(),
            pending: Arc::new(PendingRequests::default()),
            ended: CancellationToken::new(),
            host: OnceLock::new(),
            evidence: EvidenceReport::default(),
        })
    }

    /// Takes over a run that a run host (`host_pid`) left by an earlier process under
    /// this executor's id is running: it holds a slot, as if admitted here at
    /// `admitted_at`. `None` when the run has a slot already.
    pub(crate) fn adopt(
        &self,
        run_id: RunId,
        admitted_at: u64,
        host_pid: u32,
    ) -> Option<Arc<RunState>> {
        let mut table = self.table();
        if table.active.contains_key(&run_id) {
            return None;
        }
        let run = self.new_run(run_id);
        let _ = run.host.set(host_pid);
        // Settled for good: a redelivered dispatch of the run is answered from it.
        let (_, acceptance) = watch::channel(Acceptance::Accepted);
        table.active.insert(
            run_id,
            Slot {
                run: run.clone(),
                acceptance,
                admitted_at,
            },
        );
        drop(table);
        self.inner.changed.notify_one();
        Some(run)
    }

    /// The run, if it has a slot here (admitted or being admitted).
    pub(crate) fn get(&self, run_id: &RunId) -> Option<Arc<RunState>> {
        self.table().active.get(run_id).map(|slot| slot.run.clone())
    }

    /// Where the admission of a run with a slot here stands, and its position.
    pub(crate) fn acceptance_of(
        &self,
        run_id: &RunId,
    ) -> Option<(watch::Receiver<Acceptance>, u64)> {
        self.table()
            .active
            .get(run_id)
            .map(|slot| (slot.acceptance.clone(), slot.admitted_at))
    }

    pub(crate) fn active(&self) -> u32 {
        u32::try_from(self.table().active.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn capacity(&self) -> u32 {
        u32::try_from(self.inner.capacity).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.table().draining
    }

    /// Takes no new runs from now on.
    pub(crate) fn start_draining(&self) {
        self.table().draining = true;
        self.inner.changed.notify_one();
    }

    /// Stops every run, present and future (their stop tokens are children of this one).
    pub(crate) fn stop_all(&self, why: Shutdown) {
        let runs: Vec<_> = self
            .table()
            .active
            .values()
            .map(|slot| slot.run.clone())
            .collect();
        for run in runs {
            run.request_stop(StopCause::Shutdown(why));
        }
        self.inner.stop_all.cancel();
    }

    /// Completes when the table changed since the last call (coalesced).
    pub(crate) async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    fn remove(&self, run_id: &RunId) {
        self.table().active.remove(run_id);
        self.inner.changed.notify_one();
    }

    /// Frees the run's slot and remembers that it ran here.
    pub(crate) fn finish(&self, run_id: RunId) {
        let mut table = self.table();
        let Some(slot) = table.active.remove(&run_id) else {
            return;
        };
        if table.ended.insert(run_id, slot.admitted_at).is_none() {
            table.ended_order.push_back(run_id);
        }
        while table.ended_order.len() > REMEMBERED_ENDED_RUNS {
            if let Some(old) = table.ended_order.pop_front() {
                table.ended.remove(&old);
            }
        }
        drop(table);
        self.inner.changed.notify_one();
    }
}

/// A reserved slot. Dropping it unsettled (a cancelled or failed acceptance) frees it.
pub(crate) struct Ticket {
    runs: Runs,
    run: Arc<RunState>,
    acceptance: watch::Sender<Acceptance>,
    settled: bool,
}

impl Ticket {
    pub(crate) fn run(&self) -> &Arc<RunState> {
        &self.run
    }

    pub(crate) fn accept(mut self) {
        self.settled = true;
        self.acceptance.send_replace(Acceptance::Accepted);
    }

    pub(crate) fn reject(mut self, outcome: DispatchOutcome) {
        self.settled = true;
        self.release(outcome);
    }

    fn release(&self, outcome: DispatchOutcome) {
        self.run.ended.cancel();
        self.runs.remove(&self.run.run_id);
        self.acceptance.send_replace(Acceptance::Rejected(outcome));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.release(DispatchOutcome::Full);
        }
    }
}

/// Waits until an admission in progress elsewhere settles.
pub(crate) async fn settled(mut acceptance: watch::Receiver<Acceptance>) -> Acceptance {
    match acceptance
        .wait_for(|a| *a != Acceptance::Pending)
        .await
        .map(|a| *a)
    {
        Ok(settled) => settled,
        // The ticket vanished without settling: its slot was freed, so try elsewhere.
        Err(_) => Acceptance::Rejected(DispatchOutcome::Full),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> Ticket {
        match admission {
            Admission::Admitted(ticket) => ticket,
            _ => panic!("expected a slot"),
        }
    }

    #[test]
    fn the_table_admits_up_to_capacity_once_per_run() {
        let runs = Runs::new(2);
        let (a, b, c) = (RunId::now_v7(), RunId::now_v7(), RunId::now_v7());
        let first = admitted(runs.admit(a, 3));
        assert!(matches!(runs.admit(a, 3), Admission::Existing(_, 3)));
        let second = admitted(runs.admit(b, 3));
        assert!(matches!(runs.admit(c, 3), Admission::Full));
        assert_eq!(runs.active(), 2);

        // A rejected admission frees its slot and does not count as having run.
        second.reject(DispatchOutcome::Conflict);
        let third = admitted(runs.admit(c, 3));
        third.accept();
        first.accept();
        assert_eq!(
            *runs.acceptance_of(&a).unwrap().0.borrow(),
            Acceptance::Accepted
        );

        runs.finish(a);
        assert!(matches!(runs.admit(a, 3), Admission::AlreadyRan));
        // Queued and dispatched again after a loss: a later position is a new dispatch.
        admitted(runs.admit(a, 6)).accept();
        runs.finish(a);
        assert!(matches!(runs.admit(a, 6), Admission::AlreadyRan));
        admitted(runs.admit(b, 3)).accept();

        runs.start_draining();
        runs.finish(c);
        assert!(matches!(
            runs.admit(RunId::now_v7(), 3),
            Admission::Draining
        ));
    }

    #[test]
    fn a_dropped_ticket_frees_its_slot_and_releases_waiters() {
        let runs = Runs::new(1);
        let run_id = RunId::now_v7();
        let ticket = admitted(runs.admit(run_id, 3));
        let (waiter, _) = runs.acceptance_of(&run_id).unwrap();
        drop(ticket);
        assert_eq!(
            *waiter.borrow(),
            Acceptance::Rejected(DispatchOutcome::Full)
        );
        assert_eq!(runs.active(), 0);
        admitted(runs.admit(run_id, 3)).accept();
    }
}
