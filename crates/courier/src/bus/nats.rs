//! `NatsBus`: events shared between the nodes of a cluster over NATS core pub/sub.
//!
//! **Subjects.** `<instance>` is the store's instance id, so communities (or test databases)
//! sharing one NATS never cross.
//! - `courier.<instance>.user.<id>`: the events of one user. A node listens on it only while
//!   it has a stream of that user, so it receives what its own users need and nothing else.
//! - `courier.<instance>.events`: the community-wide subject, which every node keeps
//!   subscribed from start to end. It carries what every node needs (session revocations for
//!   the session caches, presence syncs) and any event with more than [`TARGETED_MAX`]
//!   recipients: one copy to each node is cheaper than hundreds of per-user copies, most of
//!   which a node would receive anyway.
//!
//! An event with at most [`TARGETED_MAX`] recipients is published once per recipient, each
//! copy naming only that recipient (the other links are no business of that user's streams,
//! and the bytes add up). A node that holds streams of several recipients therefore receives
//! one copy for each and decodes each on its own; the threshold bounds that cost. Every
//! other event is published once, on the community subject, as the whole cluster did before
//! per-user routing (`COURIER_BENCH_BROADCAST_BUS=1` restores that for every event, see
//! [`Routing::Broadcast`]).
//!
//! **Interest tracking and "register before you read".** A stream subscribes to the bus
//! before it reads the store (realtime/mod.rs, point 1), and that is only worth something if
//! the bus already delivers what is published from then on, wherever it is published. So
//! `subscribe` returns only once NATS has *registered* the node's SUB for the user: it
//! subscribes, then makes a request to a subject nobody answers; the server handles one
//! connection's operations in order, so its "no responders" reply means the SUB before it is
//! in place. (`Client::flush` would not do: in async-nats it only empties the socket.) A
//! refcount per user keeps one NATS subscription per user per node: the first local stream
//! of a user subscribes and waits for the round trip, concurrent first streams wait on the
//! same registration (a `OnceCell`), later ones cost nothing, and the last one to leave
//! unsubscribes. A subscription whose registration cannot be confirmed (NATS away or slow)
//! still returns, but moves `generation`, so the stream checks the store at its next
//! heartbeat, as during any outage.
//!
//! Each user's NATS subscription has its own task that hands events to the embedded
//! [`LocalBus`], which `try_send`s into the streams' bounded buffers: a slow user never holds
//! up another, and local delivery works as on a single node. The price is memory per user
//! with a stream on the node: async-nats gives every subscription its own channel, whose
//! first block of 32 message slots (about 6 KB) is allocated up front; idle streams of
//! distinct users measured about 5.8 KB more each than with broadcast (docs/benchmarks.md).
//!
//! **No echo.** The node's own events go straight to its local streams in `publish`, and
//! the connection is opened with `no_echo`, so NATS never sends them back.
//!
//! **Core pub/sub, not JetStream.** The bus only rings the doorbell: an event lost while NATS
//! is down or a node is reconnecting is repaired from the store by the stream (the `prev`
//! link of the next event, or the heartbeat head check), so durable streams would buy
//! nothing but latency.
//!
//! **Lost events.** `generation` moves on every disconnect, reconnect and slow-consumer
//! drop, and on every call while disconnected, so streams re-check the store at their next
//! heartbeat (and at each heartbeat during an outage) instead of waiting for the next event.
//!
//! **Never blocking.** `publish` enqueues into the client's bounded command queue and waits
//! at most [`PUBLISH_WAIT`] for room, for all of an event's copies together. While NATS is
//! away async-nats keeps that queue and reconnects by itself, flushing the queued events (and
//! re-sending every SUB) once it is back, so a short outage delays remote deliveries instead
//! of dropping them; a long one fills the queue, and then publish returns an error quickly
//! (the send itself already succeeded). `ping` reports the connection state for `/readyz`.

use super::{Bus, BusError, LocalBus, RevocationHook, Subscription, Traffic};
use crate::model::{Event, EventKind, Recipient, UserId};
use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;

/// Longest a publish waits for room in the client's queue, for all copies of one event.
pub const PUBLISH_WAIT: Duration = Duration::from_millis(20);
/// Events with at most this many recipients travel as one copy per recipient on the users'
/// subjects; larger ones once on the community subject (see the module docs).
pub const TARGETED_MAX: usize = 32;
/// Longest `subscribe` waits for NATS to confirm a new user subscription.
const REGISTER_WAIT: Duration = Duration::from_secs(5);
/// Outgoing commands queued in the client, also while reconnecting.
const CLIENT_CAPACITY: usize = 64 * 1024;
/// Incoming events buffered per NATS subscription for its fan-out task. The default (2048 in
/// async-nats at the time of writing) silently dropped events in fast bursts. Tokio's bounded
/// channel allocates as it fills, so an idle user's subscription costs little.
const SUBSCRIPTION_CAPACITY: usize = 256 * 1024;
/// Reconnect attempts back off up to this delay.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// Which subjects events travel on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Routing {
    /// Small events to their recipients' subjects, the rest community-wide (module docs).
    #[default]
    Targeted,
    /// Every event on the community subject, received by every node: the behaviour before
    /// per-user subjects, kept as a benchmark's control run (`COURIER_BENCH_BROADCAST_BUS=1`).
    /// Every node of a cluster must use the same routing.
    Broadcast,
}

pub struct NatsBus {
    client: async_nats::Client,
    subject: String,
    instance: String,
    routing: Routing,
    local: Arc<LocalBus>,
    interest: Arc<Interest>,
    fan_out: JoinHandle<()>,
    /// Moves on every connection event; see `Bus::generation`.
    generation: Arc<AtomicU64>,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Unavailable(Box::new(e))
}

impl NatsBus {
    /// Connects to `url` with targeted routing; see [`NatsBus::connect_with`].
    pub async fn connect(url: &str, instance: &str) -> Result<Self, BusError> {
        Self::connect_with(url, instance, Routing::Targeted).await
    }

    /// Connects to `url` and subscribes to the community's subject. Fails when NATS cannot be
    /// reached now; after that, reconnects are automatic and never end.
    pub async fn connect_with(
        url: &str,
        instance: &str,
        routing: Routing,
    ) -> Result<Self, BusError> {
        let generation = Arc::new(AtomicU64::new(0));
        let client = async_nats::ConnectOptions::new()
            .name(format!("courier-{instance}"))
            .no_echo()
            .client_capacity(CLIENT_CAPACITY)
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .connection_timeout(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                let millis = 50u64.saturating_mul(attempts as u64);
                Duration::from_millis(millis).min(MAX_RECONNECT_DELAY)
            })
            .event_callback({
                let generation = generation.clone();
                // The first `Connected` is the initial connection, not a reconnect.
                let connected_before = Arc::new(std::sync::atomic::AtomicBool::new(false));
                move |event| {
                    let generation = generation.clone();
                    let connected_before = connected_before.clone();
                    async move {
                        match event {
                            async_nats::Event::Connected => {
                                if connected_before.swap(true, Ordering::SeqCst) {
                                    metrics::counter!("courier_nats_reconnects_total").increment(1);
                                }
                                tracing::info!("NATS connected");
                            }
                            async_nats::Event::Disconnected => {
                                tracing::warn!("NATS disconnected; streams fall back to the store")
                            }
                            event => tracing::warn!(%event, "NATS event"),
                        }
                        // Any of these may have cost us events (reconnect: what others published
                        // meanwhile; slow consumer: dropped messages): streams re-check the store.
                        generation.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
            .connect(url)
            .await
            .map_err(unavailable)?;
        let subject = format!("courier.{instance}.events");
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(unavailable)?;
        // Nothing published once we report ready may miss this node (see `registered`).
        match registered(&client, instance).await {
            Ok(_) => {}
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {}
            Err(e) => return Err(unavailable(e)),
        }

        let local = Arc::new(LocalBus::new());
        let fan_out = tokio::spawn({
            let local = local.clone();
            async move {
                fan_out(subscriber, &local).await;
                tracing::error!(
                    "NATS subscription ended; remote events now arrive only via the store"
                );
            }
        });
        Ok(Self {
            client,
            subject,
            instance: instance.to_owned(),
            routing,
            local,
            interest: Arc::default(),
            fan_out,
            generation,
        })
    }

    /// The community-wide subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject of `user`'s events.
    fn user_subject(&self, user: UserId) -> String {
        format!("courier.{}.user.{user}", self.instance)
    }

    /// Number of live local subscriptions (for metrics and tests).
    pub fn subscriber_count(&self) -> usize {
        self.local.subscriber_count()
    }

    /// Users whose subject this node is subscribed to (or subscribing to) now.
    pub fn users_listened(&self) -> usize {
        self.interest.users().len()
    }

    /// Subscribes to `user`'s subject and waits until NATS has registered it. Runs once per
    /// user while any of the user's streams is open here.
    async fn listen(&self, user: UserId) -> Result<Listening, BusError> {
        let subscriber = self
            .client
            .subscribe(self.user_subject(user))
            .await
            .map_err(unavailable)?;
        let local = self.local.clone();
        // Held before waiting: if the waiting stream goes away meanwhile, dropping it unsubscribes.
        let listening = Listening(tokio::spawn(async move {
            fan_out(subscriber, &local).await;
        }));
        let confirmed = match self.client.connection_state() {
            State::Connected => {
                let round_trip = registered(&self.client, &self.instance);
                match tokio::time::timeout(REGISTER_WAIT, round_trip).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => e.kind() == RequestErrorKind::NoResponders,
                    Err(_) => false,
                }
            }
            // Nothing to wait for: the SUB goes out with the reconnect.
            _ => false,
        };
        if !confirmed {
            tracing::debug!(%user, "user subscription not confirmed; streams check the store");
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        Ok(listening)
    }

    /// Where `event` goes on NATS.
    fn route(&self, event: &Event) -> Route {
        match event.kind {
            // Every node's session cache and presence directory listen for these.
            EventKind::SessionsRevoked(_) | EventKind::PresenceSync(_) => Route::Community,
            _ if self.routing == Routing::Broadcast => Route::Community,
            _ if event.recipients.len() > TARGETED_MAX => Route::Community,
            _ => Route::Recipients,
        }
    }

    async fn publish_remote(&self, event: &Event) -> Result<(), BusError> {
        match self.route(event) {
            Route::Community => {
                let payload = serde_json::to_vec(event).map_err(unavailable)?;
                self.client
                    .publish(self.subject.clone(), payload.into())
                    .await
                    .map_err(unavailable)
            }
            Route::Recipients => {
                let kind = serde_json::to_vec(&event.kind).map_err(unavailable)?;
                for recipient in &event.recipients {
                    let payload = copy_for(&kind, recipient).map_err(unavailable)?;
                    self.client
                        .publish(self.user_subject(recipient.user), payload)
                        .await
                        .map_err(unavailable)?;
                }
                Ok(())
            }
        }
    }
}

enum Route {
    Community,
    Recipients,
}

/// The JSON of an `Event` of `kind` (already encoded) for `recipient` alone.
fn copy_for(kind: &[u8], recipient: &Recipient) -> serde_json::Result<Bytes> {
    let mut payload = Vec::with_capacity(kind.len() + 64);
    payload.extend_from_slice(b"{\"kind\":");
    payload.extend_from_slice(kind);
    payload.extend_from_slice(b",\"recipients\":[");
    serde_json::to_writer(&mut payload, recipient)?;
    payload.extend_from_slice(b"]}");
    Ok(payload.into())
}

/// A round trip to the server: a request to a subject nobody answers. The server handles one
/// connection's operations in order, so once "no responders" (the expected reply) is back,
/// every SUB this client sent before it is registered.
async fn registered(
    client: &async_nats::Client,
    instance: &str,
) -> Result<async_nats::Message, async_nats::RequestError> {
    client
        .request(format!("courier.{instance}.probe"), Bytes::new())
        .await
}

/// Hands every event of one NATS subscription to this node's streams, until it ends.
async fn fan_out(mut subscriber: async_nats::Subscriber, local: &LocalBus) {
    while let Some(message) = subscriber.next().await {
        match serde_json::from_slice::<Event>(&message.payload) {
            Ok(event) => local.deliver(&Arc::new(event)),
            Err(e) => tracing::warn!(error = %e, "ignoring a malformed bus event"),
        }
    }
}

/// A user's NATS subscription, alive as long as its fan-out task; dropping it aborts the
/// task, whose dropped subscriber sends the UNSUB.
struct Listening(JoinHandle<()>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Per user, the local streams that want the user's subject and the subscription to it.
#[derive(Default)]
struct Interest {
    users: Mutex<HashMap<UserId, Listeners>>,
}

struct Listeners {
    streams: usize,
    /// Set once NATS confirmed the subscription; concurrent first streams wait on it together.
    listening: Arc<OnceCell<Listening>>,
}

impl Interest {
    fn users(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Listeners>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more stream of `user`; the guard counts it out again.
    fn enter(self: &Arc<Self>, user: UserId) -> (Arc<OnceCell<Listening>>, Leave) {
        let mut users = self.users();
        let listeners = users.entry(user).or_insert_with(|| Listeners {
            streams: 0,
            listening: Arc::default(),
        });
        listeners.streams += 1;
        let leave = Leave {
            interest: Arc::downgrade(self),
            user,
        };
        (listeners.listening.clone(), leave)
    }
}

/// Held by each of a user's subscriptions; the last one dropped unsubscribes from NATS.
struct Leave {
    interest: Weak<Interest>,
    user: UserId,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let Some(interest) = self.interest.upgrade() else {
            return;
        };
        let gone = {
            let mut users = interest.users();
            let Some(listeners) = users.get_mut(&self.user) else {
                return;
            };
            listeners.streams -= 1;
            if listeners.streams > 0 {
                return;
            }
            users.remove(&self.user)
        };
        // Outside the lock: this aborts the fan-out task.
        drop(gone);
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.fan_out.abort();
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, event: Arc<Event>) -> Result<(), BusError> {
        // This node's streams first: they never wait on NATS.
        self.local.deliver(&event);
        let started = std::time::Instant::now();
        let published = tokio::time::timeout(PUBLISH_WAIT, self.publish_remote(&event)).await;
        metrics::histogram!("courier_bus_publish_duration_seconds", "bus" => "nats")
            .record(started.elapsed());
        match published {
            Ok(result) => result,
            Err(_) => Err(BusError::Unavailable(
                format!(
                    "NATS publish queue full (connection {})",
                    self.client.connection_state()
                )
                .into(),
            )),
        }
    }

    async fn subscribe(&self, user: UserId, capacity: usize) -> Result<Subscription, BusError> {
        // Local first, so nothing that arrives once NATS has registered the user is dropped.
        let subscription = self.local.subscribe_local(user, capacity);
        if self.routing == Routing::Broadcast {
            return Ok(subscription);
        }
        let (listening, leave) = self.interest.enter(user);
        listening.get_or_try_init(|| self.listen(user)).await?;
        Ok(subscription.holding(leave))
    }

    fn on_revocation(&self, hook: RevocationHook) -> bool {
        self.local.on_revocation_local(hook);
        true
    }

    fn watch_presence(&self, capacity: usize) -> Option<Subscription> {
        Some(self.local.watch_presence_local(capacity))
    }

    fn deliver_local(&self, event: &Arc<Event>) {
        self.local.deliver(event);
    }

    fn generation(&self) -> u64 {
        if self.client.connection_state() != State::Connected {
            // While NATS is away every look is a new generation, so each stream heartbeat
            // reads the store: the node serves from the store until NATS is back.
            return self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        }
        self.generation.load(Ordering::SeqCst)
    }

    async fn ping(&self) -> Result<(), BusError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            state => Err(BusError::Unavailable(
                format!("NATS connection is {state}").into(),
            )),
        }
    }

    async fn settle(&self) -> Result<(), BusError> {
        // The server handles a connection's operations in order: its answer to the probe
        // means every PUB before it was handled (see `registered`).
        match tokio::time::timeout(REGISTER_WAIT, registered(&self.client, &self.instance)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(BusError::Unavailable(
                "NATS did not confirm the published events in time".into(),
            )),
        }
    }

    fn traffic(&self) -> Option<Traffic> {
        let stats = self.client.statistics();
        Some(Traffic {
            received_bytes: stats.in_bytes.load(Ordering::Relaxed),
            received_messages: stats.in_messages.load(Ordering::Relaxed),
            sent_bytes: stats.out_bytes.load(Ordering::Relaxed),
            sent_messages: stats.out_messages.load(Ordering::Relaxed),
            users_listened: self.users_listened(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConversationId, Message, MessageId};

    #[test]
    fn a_recipients_copy_decodes_as_the_event_with_only_that_recipient() {
        let message = Message {
            id: MessageId(7),
            conversation_id: ConversationId(3),
            sender_id: UserId(1),
            content: "hi \"there\"\n".into(),
            ..Default::default()
        };
        let links = [(1, 5), (2, 6), (9, 4)].map(|(user, prev)| Recipient {
            user: UserId(user),
            prev: MessageId(prev),
        });
        let event = Event::new(message, links.to_vec());
        let kind = serde_json::to_vec(&event.kind).unwrap();
        for link in &links {
            let copy: Event = serde_json::from_slice(&copy_for(&kind, link).unwrap()).unwrap();
            assert_eq!(copy.kind, event.kind);
            assert_eq!(copy.recipients, [*link]);
        }
    }
}
