//! `late`: the wakes that quiet sends owe their streams, made when they fall due.
//!
//! Signals (typing, presence, delivered) are not urgent: nobody can tell a typing line or a
//! presence dot half a second late. So the bus queues them without waking the stream; a
//! stream takes them with the next thing that wakes it (a message, a change, a heartbeat) and
//! writes them in the same write, and one that nothing woke is woken `SIGNAL_HOLD` after its
//! first waiting signal. Under typing and presence churn the signals outnumbered the messages,
//! and each cost a wake, a socket write and a client's read (docs/benchmarks.md, issue 12).
//!
//! Every signal waits the same time, so the owed wakes fall due in the order they are owed,
//! and a queue with one task sleeping until the oldest is all the timer needed.

use super::Published;
use super::queue::Later;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a signal may wait for something else to wake its stream.
pub const SIGNAL_HOLD: Duration = Duration::from_millis(500);

type Owed = Later<Arc<Published>>;

#[derive(Default)]
pub(super) struct LateWakes {
    due: Mutex<VecDeque<(Instant, Owed)>>,
    /// Rung when `due` stops being empty, and on `close`.
    added: Notify,
    started: AtomicBool,
    closed: AtomicBool,
}

impl LateWakes {
    /// Records wakes owed from now; each is made `SIGNAL_HOLD` later unless it is void by then.
    pub fn owe(self: &Arc<Self>, owed: Vec<Owed>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to wait on: wake at once rather than never.
            owed.iter().for_each(Later::wake);
            return;
        };
        if !self.started.swap(true, Ordering::AcqRel) {
            runtime.spawn(self.clone().run());
        }
        let at = Instant::now() + SIGNAL_HOLD;
        let was_empty = {
            let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
            let was_empty = due.is_empty();
            due.extend(owed.into_iter().map(|later| (at, later)));
            was_empty
        };
        if was_empty {
            self.added.notify_one();
        }
    }

    /// Ends the task; the bus is gone, and so are its streams.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.added.notify_one();
    }

    async fn run(self: Arc<Self>) {
        loop {
            let (fallen_due, next) = {
                let mut due = self.due.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let ripe = due.iter().take_while(|(at, _)| *at <= now).count();
                let fallen_due: Vec<Owed> = due.drain(..ripe).map(|(_, later)| later).collect();
                (fallen_due, due.front().map(|(at, _)| *at))
            };
            fallen_due.iter().for_each(Later::wake);
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => self.added.notified().await,
            }
        }
    }
}
