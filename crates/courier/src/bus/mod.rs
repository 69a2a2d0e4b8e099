//! The doorbell: `trait Bus` carries committed events to the streams that want them.
//!
//! A bus may lose or reorder events (a reconnecting NATS, a full buffer); streams repair
//! that from the store, so a bus never decides whether a message is delivered, only how soon.

mod late;
pub mod local;
#[cfg(feature = "nats")]
pub mod nats;
pub mod queue;

use crate::model::{Event, UserId};
use async_trait::async_trait;
use futures::{Stream, StreamExt};
use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

pub use late::SIGNAL_HOLD;
pub use local::LocalBus;
#[cfg(feature = "nats")]
pub use nats::NatsBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("bus unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Called synchronously, inside delivery, with the revoked session ids; must not block.
pub type RevocationHook = Box<dyn Fn(&[String]) + Send + Sync>;

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Delivers `event` to the subscriptions of each of its recipients. Never waits on a subscriber.
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError>;
    /// Events for `user`, buffered up to `capacity`. The subscription ends when the buffer
    /// overflows (the reader is too slow) or the bus shuts down; dropping it unsubscribes.
    async fn subscribe(&self, user: UserId, capacity: usize) -> Result<Subscription, BusError>;
    /// Calls `hook` with the sessions of every revocation this node hears of, for any user,
    /// before any stream hears of it (the session cache evicts here, so a client that saw
    /// `signed-out` is refused on its next request). `false` when the bus cannot offer it.
    fn on_revocation(&self, _hook: RevocationHook) -> bool {
        false
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
    /// Returns once everything published so far has reached the other nodes' server, for a
    /// process about to exit (the admin CLI): a queued publish dies with the process.
    async fn settle(&self) -> Result<(), BusError> {
        Ok(())
    }
    /// What this node has exchanged with the other nodes so far, for `/metrics`. `None` for
    /// a bus that never leaves the process.
    fn traffic(&self) -> Option<Traffic> {
        None
    }
}

/// Totals since the bus connected (they only grow, across reconnects), and the current number
/// of users whose events this node asked the other nodes for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub received_bytes: u64,
    pub received_messages: u64,
    pub sent_bytes: u64,
    pub sent_messages: u64,
    pub users_listened: usize,
}

/// An event as its subscribers receive it: one allocation per event per node, shared by every
/// subscription it reaches. Besides the event it holds one slot that the receiving side may
/// fill once, for what it derives from the event and would otherwise derive once per stream
/// (the API keeps its encoded SSE frames there). The bus never looks inside the slot.
pub struct Published {
    event: Arc<Event>,
    derived: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Published {
    pub fn new(event: Arc<Event>) -> Arc<Self> {
        Arc::new(Self {
            event,
            derived: OnceLock::new(),
        })
    }

    /// The slot's value, made by `init` on first use. `None` if the slot already holds
    /// another type (one receiving layer owns it; another would only fall back to deriving
    /// per stream).
    pub fn derived<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Option<&T> {
        self.derived.get_or_init(|| Box::new(init())).downcast_ref()
    }
}

impl Deref for Published {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.event
    }
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.event.fmt(f)
    }
}

/// A stream of events for one user. Holds a guard whose drop unsubscribes.
pub struct Subscription {
    events: queue::Receiver<Arc<Published>>,
    _guard: Box<dyn Send + Sync>,
}

impl Subscription {
    pub fn new(events: queue::Receiver<Arc<Published>>, guard: impl Send + Sync + 'static) -> Self {
        Self {
            events,
            _guard: Box::new(guard),
        }
    }

    /// The same subscription, also holding `guard` until it is dropped.
    pub fn holding(self, guard: impl Send + Sync + 'static) -> Self {
        Self {
            events: self.events,
            _guard: Box::new((self._guard, guard)),
        }
    }
}

impl Stream for Subscription {
    type Item = Arc<Published>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx)
    }
}
