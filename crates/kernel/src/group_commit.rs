//! Leader/follower group commit, shared by the event log ([`crate::eventlog`]) and the event
//! ledger ([`crate::events::ledger`]).
//!
//! Appenders queue their request; the first to find no commit in flight becomes the leader, takes
//! every queued request (whole requests, up to a cap), commits them with one write and one fsync,
//! hands the next commit to the first request queued meanwhile, and wakes only the requests it
//! committed. Each request waits on its own slot: with one condvar for the whole queue, every
//! commit woke every waiting thread, and at 64 callers the wake-ups cost more than the work.
//!
//! Invariant: `leading` is false only while `pending` is empty (a leader with work queued behind
//! it hands over instead of stepping down), so a thread that becomes leader, fresh or handed
//! over, has its own request at the front of the queue, and its commit includes it.
//!
//! Async submitters ([`GroupCommit::submit_async`]) wait as futures, not as threads, so they
//! cannot lead: a commit blocks on `fdatasync`, and a task doing that would stall its executor.
//! Leadership that would fall to one goes to the owner's helper thread instead
//! ([`GroupCommit::serve_helper`]), which commits for them the way a thread would for itself. The
//! invariant above still holds: whoever holds the lead (a thread or the helper) commits the
//! front of the queue.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A queue of requests `R`, each answered with a `Result<T, E>` once committed.
pub(crate) struct GroupCommit<R, T, E> {
    queue: Mutex<Queue<R, T, E>>,
    helper: Arc<HelperSignal>,
}

struct Queue<R, T, E> {
    pending: VecDeque<(R, Arc<Slot<T, E>>)>,
    leading: bool,
}

struct Slot<T, E> {
    state: Mutex<SlotInner<T, E>>,
    ready: Condvar,
    /// Submitted by [`GroupCommit::submit_async`]: never handed the lead.
    asynchronous: bool,
}

struct SlotInner<T, E> {
    state: SlotState<T, E>,
    /// The task to wake when an async request is done.
    waker: Option<Waker>,
}

enum SlotState<T, E> {
    Waiting,
    /// The previous leader handed the next commit to this request's thread.
    Lead,
    Done(Result<T, E>),
}

/// Tells the helper thread it holds the lead (or that its group is gone).
#[derive(Default)]
pub(crate) struct HelperSignal {
    state: Mutex<HelperState>,
    wake: Condvar,
}

#[derive(Default)]
struct HelperState {
    lead: bool,
    closed: bool,
}

/// What the helper thread is told to do next.
pub(crate) enum HelperTurn {
    Lead,
    Stop,
}

impl HelperSignal {
    fn raise(&self) {
        lock(&self.state).lead = true;
        self.wake.notify_one();
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }

    /// Block until the helper holds the lead or the group is dropped.
    pub(crate) fn wait(&self) -> HelperTurn {
        let mut state = lock(&self.state);
        loop {
            if std::mem::take(&mut state.lead) {
                return HelperTurn::Lead;
            }
            if state.closed {
                return HelperTurn::Stop;
            }
            state = self
                .wake
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// Lock, taking over a mutex a panicking thread left behind: no code here panics while holding
/// these locks, and every state they guard is updated in one step.
pub(crate) fn lock<X>(mutex: &Mutex<X>) -> MutexGuard<'_, X> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T, E> Slot<T, E> {
    fn new(asynchronous: bool) -> Arc<Self> {
        Arc::new(Slot {
            state: Mutex::new(SlotInner {
                state: SlotState::Waiting,
                waker: None,
            }),
            ready: Condvar::new(),
            asynchronous,
        })
    }

    fn set(&self, state: SlotState<T, E>) {
        let waker = {
            let mut inner = lock(&self.state);
            inner.state = state;
            inner.waker.take()
        };
        self.ready.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wait(&self) -> SlotState<T, E> {
        let mut inner = lock(&self.state);
        loop {
            match std::mem::replace(&mut inner.state, SlotState::Waiting) {
                SlotState::Waiting => {
                    inner = self
                        .ready
                        .wait(inner)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                other => return other,
            }
        }
    }
}

/// An async request's answer: `Some(result)` once committed, `None` if its group was dropped
/// with the request still queued.
pub(crate) struct Pending<T, E> {
    slot: Arc<Slot<T, E>>,
    /// The group, to tell a drop with the request still queued from a slow commit.
    helper: Arc<HelperSignal>,
}

impl<T, E> Future for Pending<T, E> {
    type Output = Option<Result<T, E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut inner = lock(&self.slot.state);
        match std::mem::replace(&mut inner.state, SlotState::Waiting) {
            SlotState::Done(result) => Poll::Ready(Some(result)),
            // Async slots are never handed the lead; treat it as still waiting.
            SlotState::Waiting | SlotState::Lead => {
                if lock(&self.helper.state).closed {
                    return Poll::Ready(None);
                }
                match &mut inner.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    w => *w = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl<R, T, E> std::fmt::Debug for GroupCommit<R, T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queue = lock(&self.queue);
        f.debug_struct("GroupCommit")
            .field("queued", &queue.pending.len())
            .field("leading", &queue.leading)
            .finish()
    }
}

impl<R, T, E> Default for GroupCommit<R, T, E> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                leading: false,
            }),
            helper: Arc::default(),
        }
    }
}

impl<R, T, E> Drop for GroupCommit<R, T, E> {
    fn drop(&mut self) {
        self.helper.close();
        // Async requests still queued are answered `None` rather than left waiting.
        let pending = std::mem::take(&mut lock(&self.queue).pending);
        for (_, slot) in pending {
            let waker = lock(&slot.state).waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// Writes and syncs a group; one result per request, in order.
pub(crate) type CommitFn<'a, R, T, E> = &'a dyn Fn(&[R]) -> Vec<Result<T, E>>;

/// How one group is committed.
pub(crate) struct Committer<'a, R, T, E> {
    /// Most records per commit (a single request is never split, whatever its size).
    pub cap: usize,
    /// Records in a request.
    pub size: &'a dyn Fn(&R) -> usize,
    pub commit: CommitFn<'a, R, T, E>,
    /// The error every request of a group gets when its commit panicked or answered short.
    pub interrupted: &'a dyn Fn() -> E,
}

impl<R, T, E> GroupCommit<R, T, E> {
    /// Queue `request` and return once a commit holding it is durable, leading that commit if
    /// no other thread is.
    pub(crate) fn submit(&self, request: R, how: &Committer<'_, R, T, E>) -> Result<T, E> {
        let slot = Slot::new(false);
        let lead_now = {
            let mut queue = lock(&self.queue);
            queue.pending.push_back((request, Arc::clone(&slot)));
            !std::mem::replace(&mut queue.leading, true)
        };
        if !lead_now {
            if let SlotState::Done(result) = slot.wait() {
                return result;
            }
        }
        self.lead(how);
        match slot.wait() {
            SlotState::Done(result) => result,
            _ => Err((how.interrupted)()),
        }
    }

    /// Queue `request` and answer once a commit holding it is durable, without blocking: when no
    /// commit is in flight, the helper thread (see [`GroupCommit::serve_helper`]) is told to lead
    /// one. The owner must run a helper before using this.
    pub(crate) fn submit_async(&self, request: R) -> Pending<T, E> {
        let slot = Slot::new(true);
        let lead_now = {
            let mut queue = lock(&self.queue);
            queue.pending.push_back((request, Arc::clone(&slot)));
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead_now {
            self.helper.raise();
        }
        Pending {
            slot,
            helper: Arc::clone(&self.helper),
        }
    }

    /// The signal the helper thread waits on; it holds no reference to the group, so a helper
    /// waiting on it does not keep the group (and its owner) alive.
    pub(crate) fn helper_signal(&self) -> Arc<HelperSignal> {
        Arc::clone(&self.helper)
    }

    /// One turn of the helper thread, after its signal said [`HelperTurn::Lead`]: commit the
    /// front of the queue for the async requests there.
    pub(crate) fn serve_helper(&self, how: &Committer<'_, R, T, E>) {
        self.lead(how);
    }

    fn lead(&self, how: &Committer<'_, R, T, E>) {
        let mut requests = Vec::new();
        let mut slots = Vec::new();
        {
            let mut queue = lock(&self.queue);
            let mut records = 0usize;
            while let Some((request, _)) = queue.pending.front() {
                let n = (how.size)(request);
                if !requests.is_empty() && records + n > how.cap {
                    break;
                }
                records += n;
                if let Some((request, slot)) = queue.pending.pop_front() {
                    requests.push(request);
                    slots.push(slot);
                }
            }
        }
        let mut guard = LeaderGuard {
            group: self,
            slots,
            results: None,
            interrupted: how.interrupted,
        };
        guard.results = Some((how.commit)(&requests));
    }
}

/// Hands the next commit over (or steps down) and gives a commit's results to its waiters, also
/// if the commit panicked (then every waiter of the group gets an error instead of waiting
/// forever).
struct LeaderGuard<'a, R, T, E> {
    group: &'a GroupCommit<R, T, E>,
    slots: Vec<Arc<Slot<T, E>>>,
    results: Option<Vec<Result<T, E>>>,
    interrupted: &'a dyn Fn() -> E,
}

impl<R, T, E> Drop for LeaderGuard<'_, R, T, E> {
    fn drop(&mut self) {
        // Hand over first, so the next fsync starts while this group's threads wake up.
        {
            let mut queue = lock(&self.group.queue);
            match queue.pending.front() {
                Some((_, next)) if next.asynchronous => self.group.helper.raise(),
                Some((_, next)) => next.set(SlotState::Lead),
                None => queue.leading = false,
            }
        }
        let mut results = self.results.take().unwrap_or_default().into_iter();
        for slot in &self.slots {
            let result = results.next().unwrap_or_else(|| Err((self.interrupted)()));
            slot.set(SlotState::Done(result));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A commit function for the tests: answers `r * 2`, remembering what it committed.
    #[derive(Default)]
    struct Recorder {
        commits: AtomicUsize,
        committed: Mutex<Vec<usize>>,
    }

    impl Recorder {
        fn commit(&self, requests: &[usize]) -> Vec<Result<usize, String>> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(1));
            lock(&self.committed).extend_from_slice(requests);
            requests.iter().map(|r| Ok(r * 2)).collect()
        }

        /// `threads` submitters sent requests `t * 100 + i` for `i` in `0..20`: each was
        /// committed exactly once, and fewer commits than requests means groups formed.
        fn assert_committed_once_and_shared(&self, threads: usize) {
            let mut all = lock(&self.committed).clone();
            all.sort_unstable();
            let expected: Vec<usize> = (0..threads)
                .flat_map(|t| (0..20).map(move |i| t * 100 + i))
                .collect();
            assert_eq!(all, expected, "each request committed exactly once");
            assert!(
                self.commits.load(Ordering::SeqCst) < threads * 20,
                "concurrent requests share commits"
            );
        }
    }

    #[test]
    fn every_request_is_answered_once_and_groups_form_under_load() {
        let group: GroupCommit<usize, usize, String> = GroupCommit::default();
        let recorder = Recorder::default();
        let size = |_: &usize| 1;
        let commit = |requests: &[usize]| recorder.commit(requests);
        let interrupted = || "interrupted".to_string();
        std::thread::scope(|s| {
            for t in 0..32usize {
                let (group, size, commit, interrupted) = (&group, &size, &commit, &interrupted);
                s.spawn(move || {
                    let how = Committer {
                        cap: 1000,
                        size,
                        commit,
                        interrupted,
                    };
                    for i in 0..20usize {
                        let n = t * 100 + i;
                        assert_eq!(group.submit(n, &how), Ok(n * 2));
                    }
                });
            }
        });
        recorder.assert_committed_once_and_shared(32);
    }

    #[test]
    fn a_panicking_commit_fails_its_group_and_the_queue_goes_on() {
        let group: GroupCommit<u32, (), String> = GroupCommit::default();
        let size = |_: &u32| 1;
        let commit = |requests: &[u32]| -> Vec<Result<(), String>> {
            if requests.contains(&13) {
                panic!("disk on fire");
            }
            requests.iter().map(|_| Ok(())).collect()
        };
        let interrupted = || "interrupted".to_string();
        let how = Committer {
            cap: 1,
            size: &size,
            commit: &commit,
            interrupted: &interrupted,
        };
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.submit(13, &how)));
        assert!(caught.is_err(), "the leader's own thread sees the panic");
        assert_eq!(group.submit(1, &how), Ok(()), "the queue is not stuck");
    }

    /// Drives a future on this thread (the tests need no executor): polls with a waker that
    /// unparks it.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return out;
            }
            std::thread::park();
        }
    }

    #[test]
    fn async_and_thread_submitters_share_commits_led_by_threads_or_the_helper() {
        let group: Arc<GroupCommit<usize, usize, String>> = Arc::default();
        let recorder = Recorder::default();
        let size = |_: &usize| 1;
        let commit = |requests: &[usize]| recorder.commit(requests);
        let interrupted = || "interrupted".to_string();
        let signal = group.helper_signal();
        std::thread::scope(|s| {
            let (group_ref, size, commit, interrupted) = (&group, &size, &commit, &interrupted);
            let how = move || Committer {
                cap: 1000,
                size,
                commit,
                interrupted,
            };
            s.spawn(move || {
                while let HelperTurn::Lead = signal.wait() {
                    group_ref.serve_helper(&how());
                }
            });
            let mut workers = Vec::new();
            for t in 0..16usize {
                workers.push(s.spawn(move || {
                    for i in 0..20usize {
                        let n = t * 100 + i;
                        let answer = if t % 2 == 0 {
                            block_on(group_ref.submit_async(n))
                        } else {
                            Some(group_ref.submit(n, &how()))
                        };
                        assert_eq!(answer, Some(Ok(n * 2)), "request {n}");
                    }
                }));
            }
            for w in workers {
                w.join().expect("submitter");
            }
            // Stop the helper: the group stays alive, so close its signal by hand.
            group.helper.close();
        });
        recorder.assert_committed_once_and_shared(16);
    }

    #[test]
    fn an_async_request_of_a_dropped_group_is_answered_none() {
        let group: GroupCommit<u32, (), String> = GroupCommit::default();
        // No helper runs: the request stays queued until the group goes.
        let pending = group.submit_async(7);
        drop(group);
        assert_eq!(block_on(pending), None);
    }
}
