//! `LocalBus`: in-process fan-out for a single node.
//!
//! Publishing snapshots nothing and awaits nothing: under a short lock it `try_send`s into
//! each subscriber's bounded buffer. A full buffer removes that subscriber, which ends its
//! stream; the client resumes from its cursor. Other subscribers never wait.
//!
//! Signals are queued quietly: their streams take them with whatever wakes them next, or
//! `SIGNAL_HOLD` later (see `late`).

use super::late::LateWakes;
use super::queue::{self, SendError};
use super::{Bus, BusError, Published, RevocationHook, Subscription};
use crate::model::{Event, EventKind, UserId};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

type Subscribers = HashMap<UserId, Vec<(u64, queue::Sender<Arc<Published>>)>>;

#[derive(Default)]
pub struct LocalBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscribers: Mutex<Subscribers>,
    /// Run on every `SessionsRevoked` event before its streams get it (the session cache).
    revocation_hooks: Mutex<Vec<RevocationHook>>,
    /// Every `PresenceSync` event goes here (the node's presence directory listens).
    presence_watchers: Mutex<Vec<queue::Sender<Arc<Published>>>>,
    next_id: AtomicU64,
    /// Wakes owed to streams that were sent signals quietly.
    late: Arc<LateWakes>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.late.close();
    }
}

impl LocalBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Delivers to local subscribers only; `NatsBus` uses this for events arriving from NATS.
    /// Every subscriber gets the same `Published`.
    pub fn deliver(&self, event: &Arc<Event>) {
        let event = Published::new(event.clone());
        match event.kind {
            EventKind::SessionsRevoked(ref sessions) => {
                for hook in self
                    .inner
                    .revocation_hooks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                {
                    hook(sessions);
                }
            }
            EventKind::PresenceSync(_) => notify(&self.inner.presence_watchers, &event),
            _ => {}
        }
        let quietly = event.is_signal();
        let mut owed = Vec::new();
        let mut subscribers = self
            .inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for recipient in &event.recipients {
            let Some(subs) = subscribers.get_mut(&recipient.user) else {
                continue;
            };
            // Closed (dropped) or full buffers leave; dropping the sender ends that stream.
            subs.retain(|(_, tx)| {
                if quietly {
                    let sent = tx.try_send_quietly(event.clone());
                    sent.map(|later| owed.extend(later)).is_ok()
                } else {
                    tx.try_send(event.clone()).is_ok()
                }
            });
            if subs.is_empty() {
                subscribers.remove(&recipient.user);
            }
        }
        drop(subscribers);
        if !owed.is_empty() {
            self.inner.late.owe(owed);
        }
    }

    pub fn subscribe_local(&self, user: UserId, capacity: usize) -> Subscription {
        let (tx, rx) = queue::bounded(capacity);
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user)
            .or_default()
            .push((id, tx));
        Subscription::new(
            rx,
            Unsubscribe {
                bus: Arc::downgrade(&self.inner),
                user,
                id,
            },
        )
    }

    /// Runs `hook` on every revocation delivered on this node, whoever it is for.
    pub fn on_revocation_local(&self, hook: RevocationHook) {
        self.inner
            .revocation_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Every presence sync delivered on this node, this node's own included.
    pub fn watch_presence_local(&self, capacity: usize) -> Subscription {
        let (tx, rx) = queue::bounded(capacity);
        self.inner
            .presence_watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx);
        Subscription::new(rx, ())
    }

    /// Number of live subscriptions (for metrics and tests).
    pub fn subscriber_count(&self) -> usize {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(Vec::len)
            .sum()
    }
}

/// A full watcher misses this event (the next presence heartbeat repeats it); a closed one
/// leaves.
fn notify(watchers: &Mutex<Vec<queue::Sender<Arc<Published>>>>, event: &Arc<Published>) {
    let mut watchers = watchers.lock().unwrap_or_else(|e| e.into_inner());
    watchers.retain(|tx| !matches!(tx.try_send(event.clone()), Err(SendError::Closed)));
}

struct Unsubscribe {
    bus: Weak<Inner>,
    user: UserId,
    id: u64,
}

impl Drop for Unsubscribe {
    fn drop(&mut self) {
        let Some(bus) = self.bus.upgrade() else {
            return;
        };
        let mut subscribers = bus.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(subs) = subscribers.get_mut(&self.user) {
            subs.retain(|(id, _)| *id != self.id);
            if subs.is_empty() {
                subscribers.remove(&self.user);
            }
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        let started = std::time::Instant::now();
        self.deliver(&event);
        metrics::histogram!("courier_bus_publish_duration_seconds", "bus" => "local")
            .record(started.elapsed());
        Ok(())
    }

    async fn subscribe(&self, user: UserId, capacity: usize) -> Result<Subscription, BusError> {
        Ok(self.subscribe_local(user, capacity))
    }

    fn on_revocation(&self, hook: RevocationHook) -> bool {
        self.on_revocation_local(hook);
        true
    }

    fn watch_presence(&self, capacity: usize) -> Option<Subscription> {
        Some(self.watch_presence_local(capacity))
    }

    fn deliver_local(&self, event: &Arc<Event>) {
        self.deliver(event);
    }
}
