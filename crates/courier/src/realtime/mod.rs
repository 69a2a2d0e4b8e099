//! The event stream of one user: subscribe → replay → live, with gap repair and limits.
//!
//! Why nothing is lost or repeated:
//! 1. The stream subscribes to the bus *before* it reads the store, so a message committed
//!    after the read is also in the subscription.
//! 2. Positions follow commit order among the entries this user can see, for every kind of
//!    entry, messages and conversation changes alike (see `store::log`; PostgreSQL orders only
//!    appends whose audiences meet), so "everything after my cursor" read from the store is
//!    complete once read; the store decides visibility by membership at each position. So a
//!    fresh stream starts at the user's own inbox head, never at the store-wide head.
//! 3. `last` is the newest position this stream has sent. Live events at or below it are
//!    skipped (dedupe). An event whose recipient link `prev` is above `last` proves an entry
//!    in between has not arrived. Usually it was only reordered (requests that committed
//!    together publish from their own tasks), so the event waits in a small stash for up to
//!    `REORDER_WAIT` while the missing ones arrive; only then is the gap read from the store.
//!    (Reading at once made every stream of a large group query the store on every burst.)
//! 4. When the bus admits it may have lost events (`Bus::generation` moved: a NATS
//!    reconnect, a slow-consumer drop), the next heartbeat compares the user's inbox head
//!    with `last`, so even a lost *last* event is repaired within one heartbeat.
//! 5. A full buffer ends the stream; the client resumes from its `Last-Event-ID`.
//!
//! Frames carry the bus's `Published`, one per event per node, so whatever the API derives
//! from an event (its encoded frame) is derived once and shared by every stream it reaches;
//! an entry replayed from the store gets a `Published` of its own.
//!
//! Ephemeral signals (typing, presence, delivered) have no position: they are passed through
//! as they arrive, never deduped, stashed or replayed, and carry no cursor. The bus queues
//! them without waking the stream (`bus::late`), so they usually go out in the same write as
//! the next entry or heartbeat, and otherwise up to `SIGNAL_HOLD` late.

use crate::bus::{Bus, Subscription};

pub use crate::bus::Published;
use crate::model::{Cursor, CursorError, Event, EventKind, MessageId, UserId};
use crate::service::ServiceError;
use crate::service::presence::Presence;
use crate::store::{Store, StoreError};
use futures::{Stream, StreamExt};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Heartbeats between store checks when the bus reports nothing lost (≈1 min at 15 s).
const CHECK_EVERY_BEATS: u32 = 4;
/// How many stored messages one catch-up read fetches.
const REPLAY_BATCH: u32 = 500;
/// How long an event that arrived ahead of its predecessor waits for it before the store is asked.
const REORDER_WAIT: Duration = Duration::from_millis(250);
/// Events held back waiting for a predecessor, at most; beyond, the store is asked at once.
const STASH_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct StreamLimits {
    pub heartbeat: Duration,
    pub buffer: usize,
    pub max_streams_per_user: usize,
    pub retry: Duration,
}

/// One item of a user's stream, before wire framing.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Sent at once so the client knows it is subscribed, with its reconnect delay and the
    /// position it starts from.
    Open {
        retry: Duration,
        position: MessageId,
    },
    Message {
        position: MessageId,
        event: Arc<Published>,
        mine: bool,
        /// Whether other streams get this `Published` too (a live event), so its encoding is
        /// worth keeping on it; a replayed entry is this stream's alone.
        shared: bool,
    },
    /// A conversation change (created, renamed, members, roles): a named event.
    Change {
        position: MessageId,
        event: Arc<Published>,
        shared: bool,
    },
    /// An ephemeral signal (typing, presence, delivered): a named event without an id.
    Signal {
        event: Arc<Published>,
    },
    /// The client's cursor could not be used; the stream continues live from now.
    Reset {
        reason: String,
    },
    /// The stream's session was revoked; the stream ends after this.
    SignedOut,
    Heartbeat,
}

pub struct Realtime {
    store: Arc<dyn Store>,
    /// The store's instance id, the first part of every cursor, shared by every stream.
    instance: Arc<str>,
    bus: Arc<dyn Bus>,
    limits: StreamLimits,
    shutdown: CancellationToken,
    /// Open streams per user on this node; Web Push skips users who have one.
    presence: Arc<Presence>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("too many open streams for this user (limit {0})")]
    TooManyStreams(usize),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Realtime {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        limits: StreamLimits,
        shutdown: CancellationToken,
        presence: Arc<Presence>,
    ) -> Self {
        Self {
            instance: store.instance_id().into(),
            store,
            bus,
            limits,
            shutdown,
            presence,
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// The instance id, for a stream's encoder to keep.
    pub fn instance(&self) -> Arc<str> {
        self.instance.clone()
    }

    /// Opens the stream of `user`'s `session`, resuming after `last_event_id` when it is a
    /// usable cursor.
    #[tracing::instrument(skip_all, fields(user = %user))]
    pub async fn open(
        &self,
        user: UserId,
        session: String,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Frame> + Send + use<>, OpenError> {
        let slot = StreamSlot::take(
            &self.presence,
            user,
            &session,
            self.limits.max_streams_per_user,
        )?;
        let unavailable = ServiceError::Unavailable;
        // Register before reading: see the module docs.
        let bus_generation = self.bus.generation();
        let subscription = self
            .bus
            .subscribe(user, self.limits.buffer)
            .await
            .map_err(|e| ServiceError::Internal(Box::new(e)))?;

        let mut reset = None;
        let mut resume = match last_event_id.map(|raw| self.resumable(raw)) {
            Some(Ok(position)) => Some(position),
            Some(Err(reason)) => {
                reset = Some(reason);
                None
            }
            None => None,
        };
        // A cursor ahead of history (e.g. after restoring a backup) cannot be resumed either.
        if let Some(position) = resume
            && position > self.store.head().await.map_err(unavailable)?
        {
            reset = Some(CursorError::Ahead);
            resume = None;
        }
        let last = match resume {
            Some(position) => position,
            None => self.store.inbox_head(user).await.map_err(unavailable)?,
        };
        // The opening frame already carries a cursor, so even a stream that drops before its
        // first message resumes from here.
        let mut pending = VecDeque::from([Frame::Open {
            retry: self.limits.retry,
            position: last,
        }]);
        if let Some(reason) = reset {
            pending.push_back(Frame::Reset {
                reason: reason.to_string(),
            });
        }

        let mut heartbeat = tokio::time::interval_at(
            Instant::now() + self.limits.heartbeat,
            self.limits.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let state = UserStream {
            user,
            session,
            store: self.store.clone(),
            bus: self.bus.clone(),
            bus_generation,
            beats: 0,
            subscription,
            last,
            stash: BTreeMap::new(),
            gap_deadline: None,
            catch_up: resume.is_some(),
            pending,
            heartbeat,
            shutdown: self.shutdown.clone(),
            done: false,
            ended: End::ClientGone,
            _slot: slot,
        };
        Ok(futures::stream::unfold(state, |mut s| async move {
            let frame = s.next_frame().await?;
            if matches!(
                frame,
                Frame::Message { .. } | Frame::Change { .. } | Frame::Signal { .. }
            ) {
                metrics::counter!("courier_stream_events_delivered_total").increment(1);
            }
            Some((frame, s))
        }))
    }

    fn resumable(&self, raw: &str) -> Result<MessageId, CursorError> {
        let cursor = Cursor::parse(raw)?;
        if cursor.instance != self.store.instance_id() {
            return Err(CursorError::OtherServer);
        }
        Ok(cursor.position)
    }
}

struct UserStream {
    user: UserId,
    session: String,
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    /// The bus generation this stream has checked the store against (see `Bus::generation`).
    bus_generation: u64,
    beats: u32,
    subscription: Subscription,
    /// The newest position this stream has sent (or the point it started from).
    last: MessageId,
    /// Live events that arrived before a predecessor, by position, with their `prev`.
    stash: BTreeMap<MessageId, (Arc<Published>, MessageId)>,
    /// When the stash gives up waiting and the store is read instead.
    gap_deadline: Option<Instant>,
    /// Set when the store may hold messages after `last` that this stream has not sent.
    catch_up: bool,
    pending: VecDeque<Frame>,
    heartbeat: Interval,
    shutdown: CancellationToken,
    done: bool,
    /// Why the stream ended, for the `courier_streams_closed_total` metric.
    ended: End,
    _slot: StreamSlot,
}

/// Why a stream ended; a stream dropped while still running was closed by its client.
#[derive(Clone, Copy)]
enum End {
    ClientGone,
    SlowReader,
    SignedOut,
    Shutdown,
    Error,
}

impl UserStream {
    fn end(&mut self, why: End) {
        self.done = true;
        self.ended = why;
    }
}

impl Drop for UserStream {
    fn drop(&mut self) {
        let reason = match self.ended {
            End::ClientGone => "client_gone",
            End::SlowReader => "slow_reader",
            End::SignedOut => "signed_out",
            End::Shutdown => "shutdown",
            End::Error => "error",
        };
        metrics::counter!("courier_streams_closed_total", "reason" => reason).increment(1);
    }
}

impl UserStream {
    async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            if self.done {
                return None;
            }
            if self.catch_up {
                self.read_gap().await;
                continue;
            }
            let gap_deadline = self.gap_deadline;
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => self.end(End::Shutdown),
                _ = tokio::time::sleep_until(gap_deadline.unwrap_or_else(Instant::now)), if gap_deadline.is_some() => {
                    self.read_store_instead();
                }
                event = self.subscription.next() => match event {
                    // The bus dropped us (buffer full) or is gone: end; the client resumes.
                    None => self.end(End::SlowReader),
                    Some(event) => self.on_event(event),
                },
                _ = self.heartbeat.tick() => {
                    self.check_missed().await;
                    return Some(Frame::Heartbeat);
                }
            }
        }
    }

    fn on_event(&mut self, event: Arc<Published>) {
        let Some(recipient) = event.recipient(self.user).copied() else {
            return;
        };
        if let EventKind::SessionsRevoked(sessions) = &event.kind {
            if sessions.contains(&self.session) {
                self.pending.push_back(Frame::SignedOut);
                self.end(End::SignedOut);
            }
            return;
        }
        let Some(position) = event.position() else {
            if event.is_signal() {
                self.pending.push_back(Frame::Signal { event });
            }
            return;
        };
        if position <= self.last {
            return; // already sent, from the store or an earlier event
        }
        if recipient.prev > self.last {
            // Something in between has not arrived: wait a little for it (see the module docs).
            self.stash.insert(position, (event, recipient.prev));
            self.gap_deadline
                .get_or_insert_with(|| Instant::now() + REORDER_WAIT);
            if self.stash.len() > STASH_MAX {
                self.read_store_instead();
            }
            return;
        }
        self.push(event, true);
        self.drain_stash();
    }

    /// Sends stashed events whose predecessor has now been sent, in position order.
    fn drain_stash(&mut self) {
        while let Some(entry) = self.stash.first_entry() {
            let (position, prev) = (*entry.key(), entry.get().1);
            if position <= self.last {
                entry.remove();
            } else if prev <= self.last {
                let (event, _) = entry.remove();
                self.push(event, true);
            } else {
                break;
            }
        }
        if self.stash.is_empty() {
            self.gap_deadline = None;
        }
    }

    /// The gap did not fill from the bus: the store has everything after `last`.
    fn read_store_instead(&mut self) {
        self.stash.clear();
        self.gap_deadline = None;
        self.catch_up = true;
    }

    /// When the bus says it may have lost events since this stream last looked (a NATS
    /// reconnect, a dropped subscriber), ask the store what the bus would have said: is there
    /// a newer message, and is this session still signed in?
    async fn check_missed(&mut self) {
        let generation = self.bus.generation();
        self.beats = self.beats.wrapping_add(1);
        // Also every few beats regardless: a publisher's own lost link moves no counter here.
        if generation == self.bus_generation && !self.beats.is_multiple_of(CHECK_EVERY_BEATS) {
            return;
        }
        match self.store.inbox_head(self.user).await {
            Ok(head) if head > self.last => self.read_store_instead(),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "head check failed; will retry");
                return;
            }
        }
        match self
            .store
            .active_session(&self.session, chrono::Utc::now())
            .await
        {
            Err(StoreError::NotFound) => {
                self.pending.push_back(Frame::SignedOut);
                self.end(End::SignedOut);
            }
            Err(e) => {
                tracing::warn!(error = %e, "session check failed; will retry");
                return;
            }
            Ok(_) => {}
        }
        self.bus_generation = generation;
    }

    async fn read_gap(&mut self) {
        match self
            .store
            .inbox_after(self.user, self.last, REPLAY_BATCH)
            .await
        {
            Ok(batch) => {
                self.catch_up = batch.len() as u32 == REPLAY_BATCH;
                for entry in batch {
                    self.push(Published::new(Arc::new(Event::from_entry(entry))), false);
                }
            }
            Err(e) => {
                // End the stream rather than skip: the client resumes from its cursor.
                tracing::warn!(error = %e, "replay failed; closing stream");
                self.end(End::Error);
            }
        }
    }

    /// Queues an entry of the log (a message or a change); anything else is ignored.
    /// `shared`: the event came from the bus, so other streams may send it too.
    fn push(&mut self, event: Arc<Published>, shared: bool) {
        let Some(position) = event.position() else {
            return;
        };
        self.last = position;
        let frame = match &event.kind {
            EventKind::Message(message) => Frame::Message {
                position,
                mine: message.sender_id == self.user,
                event,
                shared,
            },
            _ => Frame::Change {
                position,
                event,
                shared,
            },
        };
        self.pending.push_back(frame);
    }
}

/// Counts a user's open streams (per session, for presence); the count drops when the stream does.
struct StreamSlot {
    presence: Arc<Presence>,
    user: UserId,
    session: String,
}

impl StreamSlot {
    fn take(
        presence: &Arc<Presence>,
        user: UserId,
        session: &str,
        max: usize,
    ) -> Result<Self, OpenError> {
        presence
            .enter(user, session, max)
            .ok_or(OpenError::TooManyStreams(max))?;
        metrics::gauge!("courier_streams_open").increment(1.0);
        Ok(Self {
            presence: presence.clone(),
            user,
            session: session.to_owned(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.presence.leave(self.user, &self.session);
        metrics::gauge!("courier_streams_open").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::LocalBus;
    use crate::model::{Message, PresenceChange, PresenceState, Recipient};
    use crate::service::presence::PresenceSettings;
    use crate::store::{SqliteOptions, SqliteStore};

    const ALICE: UserId = UserId(1);

    /// A stream of alice's on an empty store, past its opening frame, read by a task of its
    /// own (so it is polled only when woken, as under hyper): frames and when they came.
    async fn alice_stream(
        dir: &std::path::Path,
    ) -> (
        Arc<LocalBus>,
        tokio::sync::mpsc::UnboundedReceiver<(Instant, Frame)>,
    ) {
        let url = format!("sqlite://{}", dir.join("courier.db").display());
        let store = SqliteStore::open(&url, &SqliteOptions::default())
            .await
            .unwrap();
        let bus = Arc::new(LocalBus::new());
        let limits = StreamLimits {
            heartbeat: Duration::from_secs(60),
            buffer: 16,
            max_streams_per_user: 4,
            retry: Duration::from_secs(1),
        };
        let realtime = Realtime::new(
            Arc::new(store),
            bus.clone(),
            limits,
            CancellationToken::new(),
            Arc::new(Presence::new(PresenceSettings::default())),
        );
        let mut stream = Box::pin(realtime.open(ALICE, "s".into(), None).await.unwrap());
        assert!(matches!(stream.next().await, Some(Frame::Open { .. })));
        let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                let _ = tx.send((Instant::now(), frame));
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await; // it now waits for the bus
        (bus, frames)
    }

    fn presence_of(user: i64) -> Arc<Event> {
        let change = PresenceChange {
            user: UserId(user),
            state: PresenceState::Offline,
            last_seen_at: None,
        };
        Arc::new(Event::signal(EventKind::Presence(change), [ALICE]))
    }

    fn message(id: i64) -> Arc<Event> {
        let message: Message = serde_json::from_value(serde_json::json!({
            "id": id, "conversation_id": 1, "sender_id": 2, "content": "hi",
            "created_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        let to_alice = Recipient {
            user: ALICE,
            prev: MessageId(id - 1),
        };
        Arc::new(Event::new(message, vec![to_alice]))
    }

    fn presence_user(frame: Option<(Instant, Frame)>) -> Option<UserId> {
        let (_, Frame::Signal { event }) = frame? else {
            return None;
        };
        match &event.kind {
            EventKind::Presence(p) => Some(p.user),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_signal_waits_for_the_next_frame_and_goes_out_ahead_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, mut frames) = alice_stream(dir.path()).await;
        bus.publish(presence_of(2)).await.unwrap();
        bus.publish(presence_of(3)).await.unwrap();
        tokio::time::sleep(crate::bus::SIGNAL_HOLD / 5).await;
        let early = frames.try_recv();
        assert!(early.is_err(), "a signal went out alone: {early:?}");

        bus.publish(message(1)).await.unwrap();
        assert_eq!(presence_user(frames.recv().await), Some(UserId(2)));
        assert_eq!(presence_user(frames.recv().await), Some(UserId(3)));
        assert!(
            matches!(frames.recv().await, Some((_, Frame::Message { position, .. })) if position == MessageId(1)),
            "the message follows the signals that waited for it"
        );
    }

    #[tokio::test]
    async fn a_signal_on_a_quiet_stream_goes_out_once_the_hold_is_over() {
        let dir = tempfile::tempdir().unwrap();
        let (bus, mut frames) = alice_stream(dir.path()).await;
        let published = Instant::now();
        bus.publish(presence_of(2)).await.unwrap();
        let frame = tokio::time::timeout(crate::bus::SIGNAL_HOLD * 10, frames.recv())
            .await
            .expect("a waiting signal never went out");
        let went = frame.as_ref().map(|(at, _)| *at);
        assert_eq!(presence_user(frame), Some(UserId(2)));
        assert!(went.unwrap() - published >= crate::bus::SIGNAL_HOLD);
    }
}
