//! `queue`: the bounded, single-sender buffer between the bus and one stream.
//!
//! Why not `tokio::sync::mpsc`: a tokio channel allocates its first block of 32 slots and its
//! shared state up front, about 780 bytes per idle stream (heaptrack, docs/benchmarks.md),
//! which was a sixth of what an idle HTTP/2 stream costs. flume and async-channel allocate
//! less up front but a waiter node per wait. Here a stream has exactly one sender (the bus
//! entry that `try_send`s into it and is dropped to end the stream) and one receiver, so a
//! `VecDeque` under a mutex and one `AtomicWaker` do: about 100 bytes while idle, nothing
//! allocated per event, and the deque only grows while events are actually waiting.
//!
//! An item can also be sent *quietly*: queued without waking the receiver, which then takes it
//! with whatever wakes it next. The sender is told when it must arrange a wake of its own
//! ([`Later`]) so the item does not wait for ever; the bus uses this for signals.

use futures::Stream;
use futures::task::AtomicWaker;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};

struct Shared<T> {
    items: Mutex<Items<T>>,
    capacity: usize,
    /// The sender was dropped: once the buffer is drained the stream ends.
    sender_gone: AtomicBool,
    /// The receiver was dropped: sending fails, so the bus forgets this entry.
    receiver_gone: AtomicBool,
    waker: AtomicWaker,
}

struct Items<T> {
    queued: VecDeque<T>,
    /// Some queued items were sent quietly and the receiver has not been woken since.
    unwoken: bool,
}

/// Why `try_send` did not queue the item.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    Full,
    Closed,
}

pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(Items {
            queued: VecDeque::new(),
            unwoken: false,
        }),
        capacity: capacity.max(1),
        sender_gone: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        waker: AtomicWaker::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` without waiting and wakes the receiver, or says why not.
    pub fn try_send(&self, item: T) -> Result<(), SendError> {
        self.push(item, false)?;
        self.shared.waker.wake();
        Ok(())
    }

    /// Queues `item` without waking the receiver. `Ok(Some(later))`: nothing else will wake
    /// it for this item, so the caller must `later.wake()` when the item may wait no longer;
    /// `Ok(None)`: an earlier quiet send's wake covers this one too.
    pub fn try_send_quietly(&self, item: T) -> Result<Option<Later<T>>, SendError> {
        let newly_unwoken = self.push(item, true)?;
        Ok(newly_unwoken.then(|| Later(Arc::downgrade(&self.shared))))
    }

    /// Pushes `item`; true if the queue has just become unwoken (only ever for a quiet push).
    fn push(&self, item: T, quietly: bool) -> Result<bool, SendError> {
        if self.shared.receiver_gone.load(Ordering::Acquire) {
            return Err(SendError::Closed);
        }
        let mut items = self.shared.items.lock().unwrap_or_else(|e| e.into_inner());
        if items.queued.len() >= self.shared.capacity {
            return Err(SendError::Full);
        }
        items.queued.push_back(item);
        let newly_unwoken = quietly && !items.unwoken;
        // A loud send's wake takes everything queued, quiet items included.
        items.unwoken = quietly;
        Ok(newly_unwoken)
    }
}

/// The wake a quiet send still owes its receiver. Holds the queue weakly: a receiver gone by
/// then needs no waking.
pub struct Later<T>(Weak<Shared<T>>);

impl<T> Later<T> {
    /// Wakes the receiver if it has not been woken, nor taken everything, since.
    pub fn wake(&self) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        let owed = std::mem::take(
            &mut shared
                .items
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwoken,
        );
        if owed {
            shared.waker.wake();
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.sender_gone.store(true, Ordering::Release);
        self.shared.waker.wake();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.shared.receiver_gone.store(true, Ordering::Release);
    }
}

impl<T> Receiver<T> {
    fn take(&self) -> Option<T> {
        let mut items = self.shared.items.lock().unwrap_or_else(|e| e.into_inner());
        let item = items.queued.pop_front();
        if items.queued.is_empty() {
            items.unwoken = false;
        }
        item
    }
}

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(item) = self.take() {
            return Poll::Ready(Some(item));
        }
        // Register, then look again: an item or a drop between the two looks is not missed.
        self.shared.waker.register(cx.waker());
        if let Some(item) = self.take() {
            return Poll::Ready(Some(item));
        }
        if self.shared.sender_gone.load(Ordering::Acquire) {
            // The sender's last push happened before its drop flag: drain that, then end.
            return Poll::Ready(self.take());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn items_arrive_in_order_and_the_stream_ends_after_the_senders_drop() {
        let (tx, mut rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(SendError::Full));
        assert_eq!(rx.next().await, Some(1));
        tx.try_send(3).unwrap();
        drop(tx);
        assert_eq!(rx.next().await, Some(2));
        assert_eq!(rx.next().await, Some(3));
        assert_eq!(rx.next().await, None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_for_an_item_sent_from_another_task() {
        let (tx, mut rx) = bounded(8);
        let sender = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            tx.try_send("late").unwrap();
            tx
        });
        assert_eq!(rx.next().await, Some("late"));
        drop(sender.await.unwrap());
        assert_eq!(rx.next().await, None);
    }

    #[tokio::test]
    async fn a_quiet_item_waits_for_the_next_wake_or_its_own() {
        let (tx, mut rx) = bounded(8);
        let (got, mut taken) = tokio::sync::mpsc::unbounded_channel();
        let receiver = tokio::spawn(async move {
            while let Some(item) = rx.next().await {
                got.send(item).unwrap();
            }
        });
        tokio::task::yield_now().await; // the receiver now waits, its waker registered
        let later = tx
            .try_send_quietly(1)
            .unwrap()
            .expect("the first quiet item owes a wake");
        assert!(
            tx.try_send_quietly(2).unwrap().is_none(),
            "covered by the first"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(taken.try_recv().is_err(), "nothing woke the receiver");

        tx.try_send(3).unwrap();
        for expected in [1, 2, 3] {
            assert_eq!(
                taken.recv().await,
                Some(expected),
                "loud brings the quiet along"
            );
        }
        // Drained, so the owed wake is void; a new quiet item owes one again.
        later.wake();
        let later = tx.try_send_quietly(4).unwrap().expect("owed again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(taken.try_recv().is_err(), "still waiting for its own wake");
        later.wake();
        assert_eq!(taken.recv().await, Some(4));
        drop(tx);
        receiver.await.unwrap();
    }

    #[test]
    fn sending_to_a_dropped_receiver_fails_as_closed() {
        let (tx, rx) = bounded(1);
        drop(rx);
        assert_eq!(tx.try_send(()), Err(SendError::Closed));
    }
}
