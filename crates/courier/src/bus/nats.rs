//! `NatsBus`: events shared between the nodes of a cluster over NATS core pub/sub.
//!
//! **Subjects.** Every event is published once, as JSON, on `courier.<instance>.events`,
//! where `<instance>` is the store's instance id. Every node subscribes to that one subject
//! when it starts and fans events out to its own streams through an embedded [`LocalBus`].
//! The instance prefix keeps communities (or test databases) that share one NATS apart.
//!
//! Why one subject per community rather than one per user: a stream's subscription is then
//! purely local and registered the moment `subscribe` returns, so "register before you read"
//! holds with no round trip to NATS and no race between a SUB reaching the server and the
//! stream's store read. The cost is that every node receives every event of its community
//! (one message per send per node, about 1M/s of headroom on NATS core); per-user subjects
//! with per-node interest tracking are the step to take if that ever matters.
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
//! at most [`PUBLISH_WAIT`] for room. While NATS is away async-nats keeps that queue and
//! reconnects by itself, flushing the queued events once it is back, so a short outage delays
//! remote deliveries instead of dropping them; a long one fills the queue, and then publish
//! returns an error quickly (the send itself already succeeded). `ping` reports the connection
//! state for `/readyz`.

use super::{Bus, BusError, LocalBus, Subscription};
use crate::model::{Event, UserId};
use async_nats::client::RequestErrorKind;
use async_nats::connection::State;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Longest a publish waits for room in the client's queue.
pub const PUBLISH_WAIT: Duration = Duration::from_millis(20);
/// Outgoing commands queued in the client, also while reconnecting.
const CLIENT_CAPACITY: usize = 64 * 1024;
/// Incoming events buffered for the fan-out task. The default (2048 in async-nats at the
/// time of writing) silently dropped events in fast bursts.
const SUBSCRIPTION_CAPACITY: usize = 256 * 1024;
/// Reconnect attempts back off up to this delay.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

pub struct NatsBus {
    client: async_nats::Client,
    subject: String,
    local: Arc<LocalBus>,
    fan_out: JoinHandle<()>,
    /// Moves on every connection event; see `Bus::generation`.
    generation: Arc<AtomicU64>,
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> BusError {
    BusError::Unavailable(Box::new(e))
}

impl NatsBus {
    /// Connects to `url` and subscribes to the community's subject. Fails when NATS cannot be
    /// reached now; after that, reconnects are automatic and never end.
    pub async fn connect(url: &str, instance: &str) -> Result<Self, BusError> {
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
        let mut subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(unavailable)?;
        // `flush` only empties the socket. A request is a real round trip, answered after the
        // server has processed our SUB (one connection's ops run in order), so nothing
        // published once we report ready can miss this node. Nobody answers the probe
        // subject: "no responders" is the expected reply.
        match client
            .request(format!("courier.{instance}.probe"), Bytes::new())
            .await
        {
            Ok(_) => {}
            Err(e) if e.kind() == RequestErrorKind::NoResponders => {}
            Err(e) => return Err(unavailable(e)),
        }

        let local = Arc::new(LocalBus::new());
        let fan_out = tokio::spawn({
            let local = local.clone();
            async move {
                while let Some(message) = subscriber.next().await {
                    match serde_json::from_slice::<Event>(&message.payload) {
                        Ok(event) => local.deliver(&Arc::new(event)),
                        Err(e) => tracing::warn!(error = %e, "ignoring a malformed bus event"),
                    }
                }
                tracing::error!(
                    "NATS subscription ended; remote events now arrive only via the store"
                );
            }
        });
        Ok(Self {
            client,
            subject,
            local,
            fan_out,
            generation,
        })
    }

    /// The subject this community's events travel on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Number of live local subscriptions (for metrics and tests).
    pub fn subscriber_count(&self) -> usize {
        self.local.subscriber_count()
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
        let payload = serde_json::to_vec(&*event).map_err(unavailable)?;
        let started = std::time::Instant::now();
        let published = tokio::time::timeout(
            PUBLISH_WAIT,
            self.client.publish(self.subject.clone(), payload.into()),
        )
        .await;
        metrics::histogram!("courier_bus_publish_duration_seconds", "bus" => "nats")
            .record(started.elapsed());
        match published {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
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
        Ok(self.local.subscribe_local(user, capacity))
    }

    fn watch_revocations(&self, capacity: usize) -> Option<Subscription> {
        Some(self.local.watch_revocations_local(capacity))
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
}
