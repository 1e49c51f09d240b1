//! CPU shared per bundle, not per request.
//!
//! Why: every running instance is one more task for tokio's scheduler, which is
//! fair per task, so a bundle with 18 busy requests would get 18 times the CPU
//! of a bundle with one, and its neighbour's short requests would queue behind
//! all 18. Here a guest runs only while holding a *turn*: there are as many turns
//! as threads that run guests. Each poll of a guest's future takes a turn and
//! gives it back when the poll returns (the guest finished, waits for I/O, or
//! reached the end of its slice — the epoch callback ends a slice).
//!
//! While turns are free, taking one is a lock and a counter (work-conserving: one
//! bundle alone uses every thread). When every turn is held, a guest queues under
//! its bundle, and a turn given back goes to the *next bundle* in rotation that
//! has a guest waiting (round robin over bundles, each bundle one turn per
//! round: equal weights), never to a task that did not wait. While anyone waits,
//! the runtime shortens the slices of running guests ([`CpuShare::contended`]),
//! so a turn comes back within one epoch tick; and when the guest that queues is of
//! a bundle holding no turn at all, the running guests are asked to end their
//! slices at once ([`CpuShare::with_preempt`]: the runtime advances the epoch), so a
//! neighbour's short request waits microseconds, not a tick.
//!
//! A turn given back wakes its new holder through tokio's *deferred* wake (the one
//! `yield_now` uses): the woken guest runs after the worker thread has looked for
//! I/O. Woken directly, guests that pass turns to each other would keep both
//! threads busy with back-to-back slices, and tokio polls the network only every
//! 61 task polls (its `event_interval`): with 10 ms slices a new request was not
//! even read for ~0.3 s while spinning guests held the threads (BENCHMARKS.md,
//! "Neighbour under attack").
//!
//! Each bundle's time on a thread and time waited for a turn are counted for
//! `/metrics` (`gtc_bundle_cpu_seconds_total`, `gtc_bundle_cpu_wait_seconds_total`).

use crate::metrics::CpuCounts;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// One bundle's place in the rotation and its counters.
#[derive(Debug)]
pub struct BundleCpu {
    key: usize,
    counts: Arc<CpuCounts>,
}

/// A guest waiting for a turn.
#[derive(Debug, Default)]
struct Ticket {
    granted: AtomicBool,
    cancelled: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

#[derive(Default)]
struct State {
    free: usize,
    /// Turns each bundle holds right now, by the bundle's key.
    held: Vec<usize>,
    /// Bundles with a guest waiting, in the order their next turn comes.
    rotation: VecDeque<usize>,
    waiting: HashMap<usize, VecDeque<Arc<Ticket>>>,
}

/// The turns of the whole host.
pub struct CpuShare {
    turns: usize,
    state: Mutex<State>,
    /// Guests waiting for a turn right now.
    waiters: AtomicUsize,
    /// Ends the running guests' slices now (set by the runtime).
    preempt: Option<Box<dyn Fn() + Send + Sync>>,
}

impl CpuShare {
    /// `turns`: how many guests may run at once (the threads that run guests).
    pub fn new(turns: usize) -> Self {
        let turns = turns.max(1);
        Self {
            turns,
            state: Mutex::new(State {
                free: turns,
                ..State::default()
            }),
            waiters: AtomicUsize::new(0),
            preempt: None,
        }
    }

    /// `preempt` makes every running guest end its slice at its next check (the
    /// runtime advances the engine's epoch); it is called when a guest of a bundle
    /// that holds no turn has to queue for one.
    pub fn with_preempt(mut self, preempt: impl Fn() + Send + Sync + 'static) -> Self {
        self.preempt = Some(Box::new(preempt));
        self
    }

    pub fn turns(&self) -> usize {
        self.turns
    }

    /// A new bundle's place in the rotation, counting into `counts`.
    pub fn register(&self, counts: Arc<CpuCounts>) -> Arc<BundleCpu> {
        let mut state = self.lock();
        let key = state.held.len();
        state.held.push(0);
        Arc::new(BundleCpu { key, counts })
    }

    /// Whether a guest is waiting for a turn (running guests then end their
    /// slices early).
    pub fn contended(&self) -> bool {
        self.waiters.load(Ordering::Relaxed) > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a free turn when nobody waits (`None`); otherwise queues a ticket
    /// under `bundle` and returns it.
    fn take_or_queue(&self, bundle: &BundleCpu) -> Option<Arc<Ticket>> {
        let (ticket, starved) = {
            let mut state = self.lock();
            if state.free > 0 && state.rotation.is_empty() {
                state.free -= 1;
                hold(&mut state, bundle.key);
                return None;
            }
            let ticket = Arc::new(Ticket::default());
            self.queue(&mut state, bundle, &ticket);
            (ticket, holds(&state, bundle.key) == 0)
        };
        if starved && let Some(preempt) = &self.preempt {
            preempt();
        }
        Some(ticket)
    }

    fn queue(&self, state: &mut State, bundle: &BundleCpu, ticket: &Arc<Ticket>) {
        let queue = state.waiting.entry(bundle.key).or_default();
        let first = queue.is_empty();
        queue.push_back(ticket.clone());
        if first {
            state.rotation.push_back(bundle.key);
        }
        self.waiters.fetch_add(1, Ordering::Relaxed);
    }

    /// `bundle` gives a turn back: to the next waiting bundle, or to the free
    /// count.
    fn give_back(&self, bundle: &BundleCpu) {
        let granted = {
            let mut state = self.lock();
            release(&mut state, bundle);
            self.grant_next(&mut state)
        };
        wake(granted);
    }

    /// A guest that ended its slice but wants to go on: queues `ticket` for it
    /// and gives its turn to the next bundle in rotation, in one step (so the
    /// turn never goes round the bundles that are already waiting while this
    /// one is not yet queued).
    fn pass_on(&self, bundle: &BundleCpu, ticket: &Arc<Ticket>) {
        let granted = {
            let mut state = self.lock();
            release(&mut state, bundle);
            self.queue(&mut state, bundle, ticket);
            self.grant_next(&mut state)
        };
        wake(granted);
    }

    /// The turn just given back goes to the waiting bundle that holds the
    /// fewest turns (the one furthest below its share), the earliest in the
    /// rotation among equals; with nobody waiting it is free.
    fn grant_next(&self, state: &mut State) -> Option<Arc<Ticket>> {
        loop {
            let position = state
                .rotation
                .iter()
                .enumerate()
                .min_by_key(|(at, key)| (holds(state, **key), *at))
                .map(|(at, _)| at);
            let Some(key) = position.and_then(|at| state.rotation.remove(at)) else {
                state.free += 1;
                return None;
            };
            let Some(queue) = state.waiting.get_mut(&key) else {
                continue;
            };
            let ticket = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&key);
            } else {
                state.rotation.push_back(key);
            }
            let Some(ticket) = ticket else {
                continue;
            };
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if ticket.cancelled.load(Ordering::Relaxed) {
                continue;
            }
            ticket.granted.store(true, Ordering::Release);
            hold(state, key);
            return Some(ticket);
        }
    }

    /// Runs `future` (a guest's request) in turns charged to `bundle`.
    /// `yielded` is set by whoever ends the guest's slice (the epoch callback):
    /// a poll that returns then passes its turn on and queues for the next.
    pub fn run<F: Future>(
        self: &Arc<Self>,
        bundle: &Arc<BundleCpu>,
        yielded: Arc<AtomicBool>,
        future: F,
    ) -> Fair<F> {
        Fair {
            inner: future,
            share: self.clone(),
            bundle: bundle.clone(),
            yielded,
            ticket: None,
        }
    }
}

/// The bundle with `key` takes a turn.
fn hold(state: &mut State, key: usize) {
    if let Some(held) = state.held.get_mut(key) {
        *held += 1;
    }
}

fn release(state: &mut State, bundle: &BundleCpu) {
    if let Some(held) = state.held.get_mut(bundle.key) {
        *held = held.saturating_sub(1);
    }
}

/// Turns the bundle with `key` holds.
fn holds(state: &State, key: usize) -> usize {
    state.held.get(key).copied().unwrap_or(0)
}

/// Wakes the guest a turn was granted to, deferred until the worker thread has
/// looked for I/O (see the module doc); outside a tokio worker, at once.
fn wake(granted: Option<Arc<Ticket>>) {
    let Some(ticket) = granted else {
        return;
    };
    let waker = ticket
        .waker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(waker) = waker {
        // `yield_now`'s first poll hands the waker it is polled with to the
        // worker's deferred list (or wakes it when not on a worker) and returns
        // Pending; nothing else of the future is used.
        let mut deferred = std::pin::pin!(tokio::task::yield_now());
        let _ = deferred.as_mut().poll(&mut Context::from_waker(&waker));
    }
}

pin_project_lite::pin_project! {
    /// A guest's future that runs only while holding a turn.
    pub struct Fair<F> {
        #[pin]
        inner: F,
        share: Arc<CpuShare>,
        bundle: Arc<BundleCpu>,
        yielded: Arc<AtomicBool>,
        // Set while queued: the ticket and when the wait began.
        ticket: Option<(Arc<Ticket>, Instant)>,
    }

    impl<F> PinnedDrop for Fair<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((ticket, _)) = this.ticket.take() {
                // Granted but never used: the turn goes on to the next guest.
                let _guard = this.share.lock();
                ticket.cancelled.store(true, Ordering::Relaxed);
                let granted = ticket.granted.load(Ordering::Acquire);
                drop(_guard);
                if granted {
                    this.share.give_back(this.bundle);
                }
            }
        }
    }
}

impl<F: Future> Future for Fair<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        match this.ticket.take() {
            Some((ticket, since)) => {
                if !ticket.granted.load(Ordering::Acquire) {
                    *ticket.waker.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(cx.waker().clone());
                    // Granted between the check and the waker's registration:
                    // the grant found no waker to wake, so look again.
                    if !ticket.granted.load(Ordering::Acquire) {
                        *this.ticket = Some((ticket, since));
                        return Poll::Pending;
                    }
                }
                this.bundle
                    .counts
                    .waited_nanos
                    .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
            None => {
                if let Some(ticket) = this.share.take_or_queue(this.bundle) {
                    *ticket.waker.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(cx.waker().clone());
                    let granted = ticket.granted.load(Ordering::Acquire);
                    *this.ticket = Some((ticket, Instant::now()));
                    if granted {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
            }
        }
        let started = Instant::now();
        // A poll that unwinds (a host fault) still gives its turn back.
        let turn = HeldTurn {
            share: this.share,
            bundle: this.bundle,
        };
        let result = this.inner.poll(cx);
        std::mem::forget(turn);
        this.bundle
            .counts
            .ran_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if result.is_pending() && this.yielded.swap(false, Ordering::Relaxed) {
            let ticket = Arc::new(Ticket::default());
            *ticket.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            this.share.pass_on(this.bundle, &ticket);
            *this.ticket = Some((ticket, Instant::now()));
        } else {
            this.share.give_back(this.bundle);
        }
        result
    }
}

/// A turn held during a guest's poll; given back if the poll unwinds (the normal
/// end of a poll forgets it and gives the turn back or passes it on itself).
struct HeldTurn<'a> {
    share: &'a CpuShare,
    bundle: &'a BundleCpu,
}

impl Drop for HeldTurn<'_> {
    fn drop(&mut self) {
        self.share.give_back(self.bundle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that is ready after `polls` polls, waking itself in between.
    struct Spin {
        polls: usize,
    }

    impl Future for Spin {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.polls == 0 {
                return Poll::Ready(());
            }
            self.polls -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[test]
    fn turns_rotate_over_bundles_not_over_guests() {
        let share = Arc::new(CpuShare::new(1));
        let (busy, quiet) = (
            share.register(Arc::default()),
            share.register(Arc::default()),
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        // The busy bundle holds the only turn...
        let mut running = Box::pin(share.run(&busy, Arc::default(), Spin { polls: 1 }));
        assert!(running.as_mut().poll(&mut cx).is_pending());
        // ...then queues three more guests and the quiet bundle one.
        let mut guests: Vec<(char, Pin<Box<Fair<Spin>>>)> = Vec::new();
        for name in ['a', 'b', 'c'] {
            guests.push((
                name,
                Box::pin(share.run(&busy, Arc::default(), Spin { polls: 0 })),
            ));
        }
        guests.push((
            'q',
            Box::pin(share.run(&quiet, Arc::default(), Spin { polls: 0 })),
        ));
        // Hold the turn while they queue.
        assert!(share.take_or_queue(&busy).is_none());
        for (_, guest) in guests.iter_mut() {
            assert!(guest.as_mut().poll(&mut cx).is_pending());
        }
        assert!(share.contended());
        share.give_back(&busy);
        // Poll in a loop: only a granted guest can finish.
        while !guests.is_empty() {
            let mut progressed = false;
            guests.retain_mut(|(name, guest)| match guest.as_mut().poll(&mut cx) {
                Poll::Ready(()) => {
                    order.lock().unwrap().push(*name);
                    progressed = true;
                    false
                }
                Poll::Pending => true,
            });
            assert!(progressed, "a turn was lost");
        }
        // The quiet bundle's guest ran second, not after the busy one's three.
        assert_eq!(*order.lock().unwrap(), ['a', 'q', 'b', 'c']);
        assert!(!share.contended());
        assert!(running.as_mut().poll(&mut cx).is_ready());
        assert_eq!(share.lock().free, 1, "every turn came back");
    }

    #[test]
    fn a_bundle_without_a_turn_that_queues_ends_the_running_slices() {
        let preempted = Arc::new(AtomicUsize::new(0));
        let counter = preempted.clone();
        let share = Arc::new(CpuShare::new(1).with_preempt(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        let (busy, quiet) = (
            share.register(Arc::default()),
            share.register(Arc::default()),
        );
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        assert!(share.take_or_queue(&busy).is_none());
        // The busy bundle queuing more of its own guests takes nothing from
        // anyone: its running guest keeps its slice.
        let mut more = Box::pin(share.run(&busy, Arc::default(), Spin { polls: 0 }));
        assert!(more.as_mut().poll(&mut cx).is_pending());
        assert_eq!(preempted.load(Ordering::Relaxed), 0);
        // A bundle holding no turn queues: the running slices end now.
        let mut neighbour = Box::pin(share.run(&quiet, Arc::default(), Spin { polls: 0 }));
        assert!(neighbour.as_mut().poll(&mut cx).is_pending());
        assert_eq!(preempted.load(Ordering::Relaxed), 1);
        // The turns then go round in the order the bundles queued.
        share.give_back(&busy);
        assert!(neighbour.as_mut().poll(&mut cx).is_pending());
        assert!(more.as_mut().poll(&mut cx).is_ready());
        assert!(neighbour.as_mut().poll(&mut cx).is_ready());
        assert_eq!(share.lock().free, 1);
    }

    #[test]
    fn a_guest_whose_poll_panics_gives_its_turn_back() {
        struct Panics;
        impl Future for Panics {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                panic!("a host fault in a guest's poll");
            }
        }
        let share = Arc::new(CpuShare::new(1));
        let bundle = share.register(Arc::default());
        let mut cx = Context::from_waker(Waker::noop());
        let mut faulty = Box::pin(share.run(&bundle, Arc::default(), Panics));
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = faulty.as_mut().poll(&mut cx);
        }));
        assert!(unwound.is_err());
        assert_eq!(share.lock().free, 1, "the turn went with the panic");
        let mut next = Box::pin(share.run(&bundle, Arc::default(), Spin { polls: 0 }));
        assert!(next.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_cancelled_waiter_passes_its_turn_on() {
        let share = Arc::new(CpuShare::new(1));
        let bundle = share.register(Arc::default());
        let noop = Waker::noop();
        let mut cx = Context::from_waker(noop);
        assert!(share.take_or_queue(&bundle).is_none());
        let mut gone = Box::pin(share.run(&bundle, Arc::default(), Spin { polls: 0 }));
        let mut next = Box::pin(share.run(&bundle, Arc::default(), Spin { polls: 0 }));
        assert!(gone.as_mut().poll(&mut cx).is_pending());
        assert!(next.as_mut().poll(&mut cx).is_pending());
        share.give_back(&bundle);
        // The first waiter was granted the turn and is dropped unused.
        drop(gone);
        assert!(next.as_mut().poll(&mut cx).is_ready());
        assert_eq!(share.lock().free, 1);
        assert_eq!(share.waiters.load(Ordering::Relaxed), 0);
    }
}
