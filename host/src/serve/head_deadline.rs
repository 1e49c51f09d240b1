//! The request-head deadline of one client connection, kept with one timer per
//! connection instead of one per request.
//!
//! hyper's HTTP/1 server bounds the time a client may take to send a request head
//! (`header_read_timeout`, which is also the keep-alive idle timeout). Each time it
//! starts waiting for a head it asks its [`Timer`] for a new sleep, and it drops
//! that sleep once the head is in: on a keep-alive connection, once per request.
//! With tokio's timer every one of those is an insertion into the timer wheel and
//! a removal from it, each under the wheel's lock.
//!
//! [`HeadDeadline`] is the timer of one connection. The sleeps it hands out only
//! record their deadline; they share one tokio sleep, which is re-armed only when
//! it fires before the deadline of the sleep that is waiting on it. A client that
//! sends a request every few milliseconds therefore costs one timer registration
//! per timeout period, not one per request, and a client that sends nothing is
//! still cut off at its deadline: a sleep completes only once the clock has passed
//! its own deadline, and a sleep being polled first pulls the shared sleep back to
//! its deadline if that is earlier.
//!
//! The shared sleep wakes the task that polled it last, so the sleeps of one
//! [`HeadDeadline`] must all be polled by one task: it is meant only as the
//! `http1::Builder` timer of one connection, whose task alone polls the one sleep
//! hyper holds at a time.

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The timer of one connection (`http1::Builder::timer`, set per connection); its
/// sleeps must be polled by that connection's task only (see the module docs).
#[derive(Default)]
pub(crate) struct HeadDeadline {
    shared: Arc<Mutex<Option<Armed>>>,
}

/// The connection's one tokio sleep and the instant it is armed for.
struct Armed {
    sleep: Pin<Box<tokio::time::Sleep>>,
    at: Instant,
}

impl Armed {
    fn arm_for(&mut self, deadline: Instant) {
        self.sleep.as_mut().reset(deadline.into());
        self.at = deadline;
    }
}

impl HeadDeadline {
    /// A timer with nothing armed: the first sleep that is polled arms it.
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl Timer for HeadDeadline {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(DeadlineSleep {
            deadline,
            shared: self.shared.clone(),
        })
    }

    fn now(&self) -> Instant {
        // tokio's clock, so that a sleep's deadline and the shared tokio sleep
        // agree on what time it is.
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<DeadlineSleep>() {
            Some(mut ours) => ours.deadline = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A sleep until `deadline`, waiting on its connection's shared tokio sleep.
struct DeadlineSleep {
    deadline: Instant,
    shared: Arc<Mutex<Option<Armed>>>,
}

impl Sleep for DeadlineSleep {}

impl Future for DeadlineSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.deadline;
        // Only this connection's task polls its sleeps: the lock is never
        // contended, and a panic while it was held left nothing half-changed.
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let armed = shared.get_or_insert_with(|| Armed {
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
            at: deadline,
        });
        // Never armed later than this sleep's deadline: then a shared sleep
        // that has not fired means this deadline has not passed either.
        if armed.at > deadline {
            armed.arm_for(deadline);
        }
        // Ends: tokio rounds a deadline up to its next millisecond tick, so once
        // the sleep is re-armed for ours, the next time it fires the clock has
        // passed ours.
        loop {
            if armed.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // It fired at or after `armed.at`, which may be an earlier deadline
            // than ours (a previous request's): ours decides.
            if tokio::time::Instant::now().into_std() >= deadline {
                return Poll::Ready(());
            }
            armed.arm_for(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_millis(150);

    /// Polls `sleep` once, as hyper does before the head it waits for arrives.
    fn polled_once(sleep: &mut Pin<Box<dyn Sleep>>) -> Poll<()> {
        sleep
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    /// Polls `sleep` until it completes; returns when it did.
    async fn completes(sleep: Pin<Box<dyn Sleep>>) -> Instant {
        sleep.await;
        Instant::now()
    }

    #[tokio::test]
    async fn a_sleep_ends_at_its_own_deadline_not_at_an_earlier_one() {
        let timer = HeadDeadline::new();
        let start = timer.now();
        // A first request's sleep arms the shared timer, then is dropped when
        // its head arrives, as hyper does.
        let mut first = timer.sleep_until(start + STEP);
        assert!(polled_once(&mut first).is_pending());
        drop(first);
        // The next request's deadline is later: the shared timer fires at the
        // first deadline, and this sleep must not end there.
        let ended = completes(timer.sleep_until(start + 3 * STEP)).await;
        assert!(
            ended >= start + 3 * STEP,
            "ended {:?} after the start, before its deadline",
            ended - start
        );
        assert!(
            ended < start + Duration::from_secs(5),
            "ended {:?} after the start",
            ended - start
        );
    }

    /// The instant the connection's one tokio sleep is armed for.
    fn armed_at(timer: &HeadDeadline) -> Option<Instant> {
        let shared = timer.shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.as_ref().map(|armed| armed.at)
    }

    #[tokio::test]
    async fn requests_in_a_row_move_the_deadline_without_re_arming_the_timer() {
        let timer = HeadDeadline::new();
        let start = timer.now();
        // Ten requests on a keep-alive connection, each head arriving after
        // hyper polled its sleep once.
        for request in 0..10u32 {
            let mut sleep = timer.sleep_until(start + STEP + Duration::from_millis(request.into()));
            assert!(polled_once(&mut sleep).is_pending());
            drop(sleep);
        }
        // Armed once, for the first request's deadline.
        assert_eq!(armed_at(&timer), Some(start + STEP));
        // The last deadline is reached: the timer was re-armed once, for it.
        let last = start + STEP + Duration::from_millis(9);
        let ended = completes(timer.sleep_until(last)).await;
        assert!(ended >= last);
        assert_eq!(armed_at(&timer), Some(last));
    }

    #[tokio::test]
    async fn an_earlier_deadline_is_not_held_back_by_a_later_one() {
        let timer = HeadDeadline::new();
        let start = timer.now();
        let mut late = timer.sleep_until(start + Duration::from_secs(60));
        assert!(polled_once(&mut late).is_pending());
        // The shared timer is armed for a minute; a sleep of one step still
        // ends after one step.
        let ended = tokio::time::timeout(Duration::from_secs(5), completes(timer.sleep(STEP)))
            .await
            .expect("a one-step sleep still waiting after 5 s");
        assert!(ended >= start + STEP);
    }

    #[tokio::test]
    async fn a_reset_sleep_waits_for_its_new_deadline() {
        let timer = HeadDeadline::new();
        let start = timer.now();
        let mut sleep = timer.sleep_until(start + STEP);
        timer.reset(&mut sleep, start + 2 * STEP);
        let ended = completes(sleep).await;
        assert!(ended >= start + 2 * STEP);
        assert!(ended < start + Duration::from_secs(5));
    }
}
