//! Presence: who is online, away or offline, across every node of a cluster.
//!
//! **What each node knows.** A node counts the streams open on it per user and session (the
//! realtime room calls `enter`/`leave`), and whether each session's client said it is away.
//! Its users' states are shared with the other nodes over the bus (`PresenceSync`): a delta
//! within one tick (`TICK`) of a change, and the full list every `heartbeat`. Each node keeps
//! the others' lists, so it works out everyone's cluster-wide state by itself: `online` if any
//! node has a stream of theirs whose client is not away, `away` if every such stream is, else
//! `offline`. Nothing of it is stored; only `last_seen_at` reaches the database.
//!
//! **No flicker.** A user whose last stream on a node closes stays on that node's list for
//! `grace` (a reconnect, to this node or another, keeps them online); only then do the others
//! hear that they are gone, with the time their last stream closed (their `lastSeenAt`).
//!
//! **Dead nodes.** A node that has not been heard from for `3 × heartbeat` is dropped with
//! everyone on its list (unless they are connected elsewhere); their `lastSeenAt` is the
//! last time the node was heard. So a SIGKILLed node's users go offline everywhere within
//! `3 × heartbeat + TICK` of its death (15.1 s with the defaults). A node that starts says
//! `hello` and the others answer with their full lists at once; a lost delta is repaired by
//! the next full list.
//!
//! **Who hears it.** Every node announces each change of someone's cluster-wide state to its
//! *own* streams of people who share a conversation with them (one store read per batch of
//! changes, which the SQLite store answers from memory for people it has looked up before;
//! none when nobody is connected here). Each node decides for its streams from
//! the same replicated lists, so no single node has to be alive to announce a death, and no
//! change is announced twice to one stream.

use crate::bus::Bus;
use crate::model::{Event, EventKind, PresenceChange, PresenceState, PresenceSync, UserId};
use crate::store::Store;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often local changes are shared and announced, and deadlines checked.
pub const TICK: Duration = Duration::from_millis(100);
/// Connected users' `last_seen_at` is refreshed this often, so even after every node died it
/// is at most this old.
const REFRESH_LAST_SEEN: Duration = Duration::from_secs(60);
/// Last-seen times are written at most this often, in one statement: under churn a write per
/// change would compete with sends for the database (SQLite has one writer).
const WRITE_LAST_SEEN: Duration = Duration::from_secs(1);
/// A departure's last-seen time is written once its user has stayed away this long. Someone
/// whose connection flaps (a phone between cells, a tab reconnecting) is back sooner, and
/// writing each of their departures took the one writer from the sends queued behind it;
/// until it is written, `recent_offline` answers for it.
const LAST_SEEN_SETTLE: Duration = Duration::from_secs(10);
/// How long `recent_offline` keeps an offline time: past its write, with room to spare.
const RECENT_OFFLINE_KEEP: Duration = Duration::from_secs(20);
/// Sync messages buffered for the directory; beyond, some are dropped until the next beat.
const SYNC_BUFFER: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct PresenceSettings {
    /// Full lists are sent this often; a node silent for three of these is dropped.
    pub heartbeat: Duration,
    /// How long a user stays online after their last stream on a node closes.
    pub grace: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            grace: Duration::from_secs(5),
        }
    }
}

/// Open streams per user on this node, and everyone's presence as this node works it out.
#[derive(Debug)]
pub struct Presence {
    node: u64,
    settings: PresenceSettings,
    state: Mutex<State>,
}

impl Default for Presence {
    fn default() -> Self {
        Self::new(PresenceSettings::default())
    }
}

#[derive(Debug, Default)]
struct State {
    local: HashMap<UserId, LocalUser>,
    remote: HashMap<u64, RemoteNode>,
    /// Everyone's cluster-wide state as last worked out here (offline users are absent).
    shown: HashMap<UserId, PresenceState>,
    /// Local users whose state here may have changed since the others were told.
    dirty: HashSet<UserId>,
    /// Changes to announce to this node's streams, with the offline time for `offline`.
    pending: HashMap<UserId, Option<DateTime<Utc>>>,
    /// Users gone (grace over here, or their node died) whose `last_seen_at` is still to be
    /// written (once settled, see `LAST_SEEN_SETTLE`): each one's latest departure.
    gone: LatestTimes,
    /// Offline times worked out here but perhaps not written yet (`RECENT_OFFLINE_KEEP`).
    recent_offline: LatestTimes,
    /// Nodes first heard of since the last tick, and whether one asked for our full list.
    answer: bool,
    ask: bool,
}

#[derive(Debug, Default)]
struct LocalUser {
    streams: usize,
    /// Open streams and the reported away flag, per session.
    sessions: HashMap<String, (usize, bool)>,
    /// The state the last time it was worked out (kept through the grace period).
    last: Option<PresenceState>,
    /// What the other nodes were last told.
    told: Option<PresenceState>,
    /// When the last stream closed (monotonic, wall clock).
    left: Option<(Instant, DateTime<Utc>)>,
}

impl LocalUser {
    fn live_state(&self) -> Option<PresenceState> {
        if self.streams == 0 {
            return self.last; // within the grace period
        }
        let active = self
            .sessions
            .values()
            .any(|(streams, away)| *streams > 0 && !away);
        Some(if active {
            PresenceState::Online
        } else {
            PresenceState::Away
        })
    }
}

#[derive(Debug)]
struct RemoteNode {
    users: HashMap<UserId, PresenceState>,
    heard: Instant,
    heard_at: DateTime<Utc>,
}

impl Presence {
    pub fn new(settings: PresenceSettings) -> Self {
        Self {
            node: rand::random(),
            settings,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A node silent for this long is dropped with its users.
    pub fn node_ttl(&self) -> Duration {
        self.settings.heartbeat * 3
    }

    /// Counts one more stream of `session`; `None` when the user already has `max` here.
    pub fn enter(&self, user: UserId, session: &str, max: usize) -> Option<()> {
        let mut state = self.lock();
        let entry = state.local.entry(user).or_default();
        if entry.streams >= max {
            return None;
        }
        entry.streams += 1;
        entry.left = None;
        entry.sessions.entry(session.to_owned()).or_default().0 += 1;
        entry.last = entry.live_state();
        state.dirty.insert(user);
        Some(())
    }

    pub fn leave(&self, user: UserId, session: &str) {
        let mut state = self.lock();
        let Some(entry) = state.local.get_mut(&user) else {
            return;
        };
        entry.streams = entry.streams.saturating_sub(1);
        if let Some(count) = entry.sessions.get_mut(session) {
            count.0 = count.0.saturating_sub(1);
            if count.0 == 0 {
                entry.sessions.remove(session);
            }
        }
        if entry.streams == 0 {
            entry.left = Some((Instant::now(), Utc::now()));
        } else {
            entry.last = entry.live_state();
        }
        state.dirty.insert(user);
    }

    /// Those of `users` with no open stream here, under one lock (a group can be large).
    pub fn offline_among(&self, users: impl Iterator<Item = UserId>) -> HashSet<UserId> {
        let state = self.lock();
        users
            .filter(|user| state.local.get(user).is_none_or(|u| u.streams == 0))
            .collect()
    }

    /// Everyone's cluster-wide state as this node knows it, with the offline time when this
    /// node saw them go (the store may not have it yet).
    pub fn states(&self, users: &[UserId]) -> Vec<(PresenceState, Option<DateTime<Utc>>)> {
        let state = self.lock();
        users
            .iter()
            .map(|user| {
                let local = state.local.get(user).and_then(LocalUser::live_state);
                let shown = state.shown.get(user).copied();
                match local.max(shown) {
                    Some(now) => (now, None),
                    None => (PresenceState::Offline, state.recent_offline.get(user)),
                }
            })
            .collect()
    }

    /// Shares, announces and expires presence until `shutdown`.
    pub fn spawn(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) {
        let me = self.clone();
        tasks.spawn(async move { me.run(store, bus, shutdown).await });
    }

    async fn run(&self, store: Arc<dyn Store>, bus: Arc<dyn Bus>, shutdown: CancellationToken) {
        let mut sync = bus.watch_presence(SYNC_BUFFER);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(self.settings.heartbeat);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut refresh =
            tokio::time::interval_at(Instant::now() + REFRESH_LAST_SEEN, REFRESH_LAST_SEEN);
        let mut write = tokio::time::interval(WRITE_LAST_SEEN);
        write.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let unwritten = self.settled_departures(Utc::now(), true);
                    write_last_seen(&store, &unwritten).await;
                    return;
                }
                event = async {
                    match sync.as_mut() {
                        Some(s) => s.next().await,
                        None => std::future::pending().await,
                    }
                } => match event {
                    Some(event) => {
                        if let EventKind::PresenceSync(message) = &event.kind {
                            self.apply(message);
                        }
                    }
                    None => {
                        tracing::warn!("presence sync ended; other nodes' users will expire");
                        sync = None;
                    }
                },
                _ = beat.tick() => {
                    self.publish(&bus, self.full_list(first)).await;
                    first = false;
                }
                _ = tick.tick() => self.step(&store, &bus).await,
                _ = write.tick() => {
                    let settled = self.settled_departures(Utc::now(), false);
                    write_last_seen(&store, &settled).await;
                }
                _ = refresh.tick() => {
                    let now = Utc::now();
                    let online: Vec<(UserId, DateTime<Utc>)> = self.lock().local.iter()
                        .filter(|(_, u)| u.streams > 0).map(|(id, _)| (*id, now)).collect();
                    write_last_seen(&store, &online).await;
                }
            }
        }
    }

    /// The departures to write now: each user's latest, once it is older than
    /// `LAST_SEEN_SETTLE` (or all, at shutdown), unless they are back: while they are
    /// connected `REFRESH_LAST_SEEN` keeps the store near, and their next departure is
    /// written instead. Under the lock it touches only what falls due (under churn the
    /// whole list was ~10,000 departures, gone through every second).
    fn settled_departures(&self, now: DateTime<Utc>, all: bool) -> Vec<(UserId, DateTime<Utc>)> {
        let settle = chrono::TimeDelta::from_std(LAST_SEEN_SETTLE).unwrap_or_default();
        let keep = chrono::TimeDelta::from_std(RECENT_OFFLINE_KEEP).unwrap_or_default();
        let mut state = self.lock();
        state.recent_offline.take_until(Some(now - keep));
        let due = state.gone.take_until((!all).then(|| now - settle));
        due.into_iter()
            .filter(|(user, _)| !state.shown.contains_key(user))
            .collect()
    }

    /// This node's users as a full list (also the heartbeat).
    fn full_list(&self, hello: bool) -> PresenceSync {
        let state = self.lock();
        let (mut online, mut away) = (Vec::new(), Vec::new());
        for (user, local) in &state.local {
            match local.live_state() {
                Some(PresenceState::Online) => online.push(*user),
                Some(PresenceState::Away) => away.push(*user),
                _ => {}
            }
        }
        PresenceSync::Users {
            node: self.node,
            full: true,
            hello,
            online,
            away,
            gone: Vec::new(),
        }
    }

    async fn publish(&self, bus: &Arc<dyn Bus>, message: PresenceSync) {
        let event = Arc::new(Event::signal(EventKind::PresenceSync(message), []));
        if let Err(e) = bus.publish(event).await {
            tracing::debug!(error = %e, "presence sync not sent; the next heartbeat repeats it");
        }
    }

    /// Another node's list, or a session's away report.
    fn apply(&self, message: &PresenceSync) {
        let mut state = self.lock();
        match message {
            PresenceSync::Away {
                user,
                session,
                away,
            } => {
                if let Some(local) = state.local.get_mut(user)
                    && let Some(entry) = local.sessions.get_mut(session)
                {
                    entry.1 = *away;
                    local.last = local.live_state();
                    state.dirty.insert(*user);
                }
            }
            PresenceSync::Users {
                node,
                full,
                hello,
                online,
                away,
                gone,
            } => {
                if *node == self.node {
                    return;
                }
                let now = Utc::now();
                let known = state.remote.contains_key(node);
                let remote = state.remote.entry(*node).or_insert_with(|| RemoteNode {
                    users: HashMap::new(),
                    heard: Instant::now(),
                    heard_at: now,
                });
                remote.heard = Instant::now();
                remote.heard_at = now;
                let mut affected: Vec<(UserId, DateTime<Utc>)> = Vec::new();
                if *full {
                    let old = std::mem::take(&mut remote.users);
                    affected.extend(old.into_keys().map(|u| (u, now)));
                }
                for user in online {
                    remote.users.insert(*user, PresenceState::Online);
                    affected.push((*user, now));
                }
                for user in away {
                    remote.users.insert(*user, PresenceState::Away);
                    affected.push((*user, now));
                }
                for (user, at) in gone {
                    remote.users.remove(user);
                    let at = DateTime::from_timestamp_millis(*at).unwrap_or(now);
                    affected.push((*user, at));
                }
                if *hello || !known {
                    state.answer = true;
                    // A delta from a node we never heard: ask for its full list too.
                    state.ask |= !known && !*full;
                }
                for (user, at) in affected {
                    state.recompute(user, at);
                }
            }
        }
    }

    /// One tick: grace and node deadlines, then share and announce what changed.
    async fn step(&self, store: &Arc<dyn Store>, bus: &Arc<dyn Bus>) {
        let (delta, answer, ask, announce) = {
            let mut state = self.lock();
            let now = Instant::now();
            let grace = self.settings.grace;
            let expired: Vec<(UserId, DateTime<Utc>)> = state
                .local
                .iter()
                .filter_map(|(user, local)| match local.left {
                    Some((at, wall)) if local.streams == 0 && now >= at + grace => {
                        Some((*user, wall))
                    }
                    _ => None,
                })
                .collect();
            let mut gone_now = Vec::new();
            for (user, wall) in expired {
                let told = state.local.remove(&user).and_then(|u| u.told);
                state.dirty.remove(&user);
                if told.is_some() {
                    gone_now.push((user, wall.timestamp_millis()));
                }
                state.gone.record(user, wall);
                state.recompute(user, wall);
            }
            let ttl = self.node_ttl();
            let dead: Vec<u64> = state
                .remote
                .iter()
                .filter(|(_, node)| now >= node.heard + ttl)
                .map(|(id, _)| *id)
                .collect();
            for id in dead {
                if let Some(node) = state.remote.remove(&id) {
                    tracing::info!(
                        node = id,
                        users = node.users.len(),
                        "presence: a node went silent; its users are offline unless connected elsewhere"
                    );
                    for user in node.users.into_keys() {
                        state.gone.record(user, node.heard_at);
                        state.recompute(user, node.heard_at);
                    }
                }
            }
            let (mut online, mut away) = (Vec::new(), Vec::new());
            for user in std::mem::take(&mut state.dirty) {
                let Some(local) = state.local.get_mut(&user) else {
                    continue;
                };
                let live = local.live_state();
                if live != local.told {
                    local.told = live;
                    match live {
                        Some(PresenceState::Online) => online.push(user),
                        Some(PresenceState::Away) => away.push(user),
                        _ => {}
                    }
                }
                state.recompute(user, Utc::now());
            }
            let delta = (!online.is_empty() || !away.is_empty() || !gone_now.is_empty()).then_some(
                PresenceSync::Users {
                    node: self.node,
                    full: false,
                    hello: false,
                    online,
                    away,
                    gone: gone_now,
                },
            );
            let announce: Vec<(UserId, PresenceState, Option<DateTime<Utc>>)> =
                std::mem::take(&mut state.pending)
                    .into_iter()
                    .map(|(user, at)| {
                        let now = state.shown.get(&user).copied();
                        (user, now.unwrap_or(PresenceState::Offline), at)
                    })
                    .collect();
            let announce = if state.local.values().any(|u| u.streams > 0) {
                announce
            } else {
                Vec::new() // nobody here to tell
            };
            (
                delta,
                std::mem::take(&mut state.answer),
                std::mem::take(&mut state.ask),
                announce,
            )
        };
        if let Some(delta) = delta {
            self.publish(bus, delta).await;
        }
        if answer {
            self.publish(bus, self.full_list(ask)).await;
        }
        if !announce.is_empty() {
            self.announce(store, bus, announce).await;
        }
    }

    /// Tells this node's streams of their contacts' changes.
    async fn announce(
        &self,
        store: &Arc<dyn Store>,
        bus: &Arc<dyn Bus>,
        changes: Vec<(UserId, PresenceState, Option<DateTime<Utc>>)>,
    ) {
        let users: Vec<UserId> = changes.iter().map(|(u, _, _)| *u).collect();
        let contacts = match store.contacts(&users).await {
            Ok(contacts) => contacts,
            Err(e) => {
                tracing::warn!(error = %e, "presence: contacts unavailable; changes not announced");
                return;
            }
        };
        let offline: Vec<UserId> = changes
            .iter()
            .filter(|(_, s, _)| *s == PresenceState::Offline)
            .map(|(u, _, _)| *u)
            .collect();
        let shown: HashSet<UserId> = if offline.is_empty() {
            HashSet::new()
        } else {
            match store.showing_last_seen(&offline).await {
                Ok(shown) => shown,
                Err(e) => {
                    tracing::warn!(error = %e, "presence: settings unavailable; last seen hidden");
                    HashSet::new()
                }
            }
        };
        let mut hearers: HashMap<UserId, Vec<UserId>> = HashMap::new();
        {
            let state = self.lock();
            for (user, contact) in contacts {
                if state.local.get(&contact).is_some_and(|u| u.streams > 0) {
                    hearers.entry(user).or_default().push(contact);
                }
            }
        }
        for (user, state, at) in changes {
            let Some(to) = hearers.remove(&user) else {
                continue;
            };
            let last_seen_at = match state {
                PresenceState::Offline if shown.contains(&user) => at,
                _ => None,
            };
            let change = PresenceChange {
                user,
                state,
                last_seen_at,
            };
            bus.deliver_local(&Arc::new(Event::signal(EventKind::Presence(change), to)));
        }
    }
}

/// Writes last-seen times in chunks, so the sends queued behind each statement wait ~1 ms at
/// most.
async fn write_last_seen(store: &Arc<dyn Store>, seen: &[(UserId, DateTime<Utc>)]) {
    for chunk in seen.chunks(crate::store::TOUCH_CHUNK) {
        if let Err(e) = store.touch_last_seen(chunk).await {
            tracing::warn!(error = %e, "recording last seen failed");
        }
    }
}

/// A time per user, the latest recorded, kept in time order too, so that taking those up to
/// a cutoff touches only them.
#[derive(Debug, Default)]
struct LatestTimes {
    latest: HashMap<UserId, DateTime<Utc>>,
    in_order: BTreeSet<(DateTime<Utc>, UserId)>,
}

impl LatestTimes {
    /// An earlier time than the one kept changes nothing.
    fn record(&mut self, user: UserId, at: DateTime<Utc>) {
        if let Some(kept) = self.latest.insert(user, at) {
            if kept >= at {
                self.latest.insert(user, kept);
                return;
            }
            self.in_order.remove(&(kept, user));
        }
        self.in_order.insert((at, user));
    }

    fn get(&self, user: &UserId) -> Option<DateTime<Utc>> {
        self.latest.get(user).copied()
    }

    /// Removes and returns the users whose time is at or before `cutoff` (all if `None`),
    /// oldest first.
    fn take_until(&mut self, cutoff: Option<DateTime<Utc>>) -> Vec<(UserId, DateTime<Utc>)> {
        let mut taken = Vec::new();
        while let Some(&(at, user)) = self.in_order.first() {
            if cutoff.is_some_and(|cutoff| at > cutoff) {
                break;
            }
            self.in_order.pop_first();
            self.latest.remove(&user);
            taken.push((user, at));
        }
        taken
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.latest.len()
    }
}

impl State {
    /// Works out `user`'s cluster-wide state again; a change is queued for announcing, with
    /// `at` as the offline time.
    fn recompute(&mut self, user: UserId, at: DateTime<Utc>) {
        let local = self.local.get(&user).and_then(LocalUser::live_state);
        let remote = self
            .remote
            .values()
            .filter_map(|node| node.users.get(&user).copied())
            .max();
        let now = local.max(remote);
        if now == self.shown.get(&user).copied() {
            return;
        }
        match now {
            Some(state) => {
                self.shown.insert(user, state);
                self.pending.insert(user, None);
            }
            None => {
                self.shown.remove(&user);
                self.pending.insert(user, Some(at));
                self.recent_offline.record(user, at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_departure_is_written_once_settled_and_not_for_someone_back_by_then() {
        let presence = Presence::default();
        let (flapping, back, recent, again) = (UserId(1), UserId(2), UserId(3), UserId(4));
        let t0 = Utc::now() - chrono::TimeDelta::seconds(60);
        let second = chrono::TimeDelta::seconds(1);
        {
            let mut state = presence.lock();
            state.gone.record(flapping, t0);
            state.gone.record(back, t0);
            state.gone.record(again, t0);
            state.gone.record(flapping, t0 + second);
            state.gone.record(recent, t0 + second * 9);
            state.gone.record(again, t0 + second * 9);
            state.gone.record(flapping, t0 - second);
            state.shown.insert(back, PresenceState::Online);
        }
        let settle = chrono::TimeDelta::from_std(LAST_SEEN_SETTLE).unwrap();
        let due = presence.settled_departures(t0 + settle + second * 2, false);
        assert_eq!(
            due,
            [(flapping, t0 + second)],
            "the latest departure of whoever is still away; none for who is back or left again"
        );
        assert_eq!(
            presence.lock().gone.take_until(Some(t0 + second * 9)),
            [(recent, t0 + second * 9), (again, t0 + second * 9)],
            "a departure younger than the settling time waits"
        );
        {
            let mut state = presence.lock();
            state.gone.record(recent, t0 + second * 9);
            state.gone.record(again, t0 + second * 9);
        }
        let mut at_shutdown = presence.settled_departures(t0 + settle + second * 2, true);
        at_shutdown.sort_by_key(|(user, _)| user.0);
        assert_eq!(
            at_shutdown,
            [(recent, t0 + second * 9), (again, t0 + second * 9)],
            "shutdown writes what is left"
        );
        assert_eq!(presence.lock().gone.len(), 0);
    }

    #[test]
    fn presence_counts_streams_and_caps_them() {
        let presence = Presence::default();
        let user = UserId(7);
        assert!(presence.offline_among([user].into_iter()).contains(&user));
        assert!(presence.enter(user, "s", 2).is_some());
        assert!(presence.enter(user, "s", 2).is_some());
        assert!(presence.enter(user, "s", 2).is_none());
        assert!(presence.offline_among([user].into_iter()).is_empty());
        presence.leave(user, "s");
        presence.leave(user, "s");
        assert!(presence.offline_among([user].into_iter()).contains(&user));
    }

    #[test]
    fn a_user_is_away_only_when_every_connected_session_says_so() {
        let presence = Presence::default();
        let user = UserId(1);
        presence.enter(user, "laptop", 8);
        presence.enter(user, "phone", 8);
        let away = |session: &str, away: bool| PresenceSync::Away {
            user,
            session: session.into(),
            away,
        };
        presence.apply(&away("laptop", true));
        assert_eq!(presence.states(&[user])[0].0, PresenceState::Online);
        presence.apply(&away("phone", true));
        assert_eq!(presence.states(&[user])[0].0, PresenceState::Away);
        presence.leave(user, "phone");
        presence.leave(user, "laptop");
        // Within the grace period the last state holds.
        assert_eq!(presence.states(&[user])[0].0, PresenceState::Away);
    }

    #[test]
    fn a_user_on_another_node_is_online_until_that_node_says_they_are_gone() {
        let presence = Presence::default();
        let user = UserId(3);
        let list = |online: Vec<UserId>, gone: Vec<(UserId, i64)>| PresenceSync::Users {
            node: 99,
            full: false,
            hello: false,
            online,
            away: Vec::new(),
            gone,
        };
        presence.apply(&list(vec![user], vec![]));
        assert_eq!(presence.states(&[user])[0].0, PresenceState::Online);
        presence.apply(&list(vec![], vec![(user, 1_000)]));
        let offline_at = DateTime::from_timestamp_millis(1_000);
        assert_eq!(
            presence.states(&[user]),
            [(PresenceState::Offline, offline_at)]
        );
        let state = presence.lock();
        let at = state.pending.get(&user).copied().flatten();
        assert_eq!(at, DateTime::from_timestamp_millis(1_000));
    }

    #[test]
    fn its_own_lists_coming_back_change_nothing() {
        let presence = Presence::default();
        let user = UserId(4);
        presence.apply(&PresenceSync::Users {
            node: presence.node,
            full: true,
            hello: false,
            online: vec![user],
            away: Vec::new(),
            gone: Vec::new(),
        });
        assert_eq!(presence.states(&[user])[0].0, PresenceState::Offline);
    }
}
