//! The doorbell: `trait Bus` carries committed events to the streams that want them.
//!
//! A bus may lose or reorder events (a reconnecting NATS, a full buffer); streams repair
//! that from the store, so a bus never decides whether a message is delivered, only how soon.

pub mod local;
#[cfg(feature = "nats")]
pub mod nats;

use crate::model::{Event, UserId};
use async_trait::async_trait;
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

pub use local::LocalBus;
#[cfg(feature = "nats")]
pub use nats::NatsBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Delivers `event` to the subscriptions of each of its recipients. Never waits on a subscriber.
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError>;
    /// Events for `user`, buffered up to `capacity`. The subscription ends when the buffer
    /// overflows (the reader is too slow) or the bus shuts down; dropping it unsubscribes.
    async fn subscribe(&self, user: UserId, capacity: usize) -> Result<Subscription, BusError>;
    /// Every session revocation this node hears of, for any user (caches of active sessions
    /// listen here). `None` when the bus cannot offer it.
    fn watch_revocations(&self, _capacity: usize) -> Option<Subscription> {
        None
    }
    /// Every presence sync this node hears of, its own included (the presence directory
    /// listens here). `None` when the bus cannot offer it.
    fn watch_presence(&self, _capacity: usize) -> Option<Subscription> {
        None
    }
    /// Delivers `event` to this node's subscribers only: an ephemeral signal that every node
    /// works out for its own streams.
    fn deliver_local(&self, event: &Arc<Event>);
    /// A counter that moves whenever this bus may have lost events (a reconnect, a dropped
    /// slow consumer). Streams re-check the store when it moves; a bus that never loses
    /// events silently (LocalBus closes overflowing streams instead) keeps it at 0.
    fn generation(&self) -> u64 {
        0
    }
    /// Cheap reachability check for readiness probes.
    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

/// A stream of events for one user. Holds a guard whose drop unsubscribes.
pub struct Subscription {
    events: mpsc::Receiver<Arc<Event>>,
    _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    pub fn new(events: mpsc::Receiver<Arc<Event>>, guard: impl Send + Sync + 'static) -> Self {
        Self {
            events,
            _guard: Box::new(guard),
        }
    }
}

impl Stream for Subscription {
    type Item = Arc<Event>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_recv(cx)
    }
}
