//! Ephemeral signals: typing indicators, reported away state, and presence as others see it.
//!
//! **Typing.** `typing` checks membership (a stranger gets the conversation's 404), then
//! publishes `Typing` for the other members' streams on every node; nothing is stored. It
//! lapses `TYPING_LAPSE` after the last call, which clients renew about every 3 s. A message
//! from the typist ends it: the node that took their typing call sends `typing: false` when it
//! also takes the send, and clients clear a sender's indicator on any message from them (the
//! send may land on another node). Calls are limited per user (`TYPING_BURST`, then one per
//! `TYPING_REFILL`); beyond that, 429.

use super::presence::Presence;
use super::{ServiceError, ServiceResult};
use crate::bus::Bus;
use crate::model::{
    ConversationId, Event, EventKind, PresenceState, PresenceSync, Recipient, Typing, UserId,
};
use crate::store::Store;
use chrono::{DateTime, Utc};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A typing indicator lapses this long after its last renewal.
pub const TYPING_LAPSE: Duration = Duration::from_secs(6);
/// Typing calls a user may make at once…
const TYPING_BURST: u32 = 5;
/// …and then one per this interval.
const TYPING_REFILL: Duration = Duration::from_millis(500);

/// A person's presence as a viewer may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceView {
    pub state: PresenceState,
    /// Only for `offline`, and only when they show it.
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// A person's own presence settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceSettingsView {
    pub show_last_seen: bool,
}

pub struct Signals {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    presence: Arc<Presence>,
    typing_limit: DefaultKeyedRateLimiter<UserId>,
    /// Who typed where through this node, until when, and under what name.
    typing: Mutex<HashMap<(UserId, ConversationId), (Instant, String)>>,
}

impl Signals {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, presence: Arc<Presence>) -> Self {
        let burst = NonZeroU32::new(TYPING_BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(TYPING_REFILL)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            store,
            bus,
            presence,
            typing_limit: DefaultKeyedRateLimiter::keyed(quota),
            typing: Mutex::default(),
        }
    }

    /// `me` is typing in `conversation`: the other members' streams hear it.
    #[tracing::instrument(skip_all, fields(me = %me, conversation = %conversation))]
    pub async fn typing(&self, me: UserId, conversation: ConversationId) -> ServiceResult<()> {
        if self.typing_limit.check_key(&me).is_err() {
            return Err(ServiceError::TooManyRequests("typing too often"));
        }
        let members = self
            .store
            .member_users(me, conversation)
            .await
            .map_err(ServiceError::from_store("conversation"))?;
        let username = members
            .iter()
            .find(|u| u.id == me)
            .map(|u| u.username.clone())
            .unwrap_or_default();
        {
            let now = Instant::now();
            let mut typing = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            if typing.len() > 10_000 {
                typing.retain(|_, (until, _)| *until > now);
            }
            typing.insert((me, conversation), (now + TYPING_LAPSE, username.clone()));
        }
        let others = members.iter().map(|u| u.id).filter(|id| *id != me);
        self.publish_typing(me, username, conversation, true, others)
            .await;
        Ok(())
    }

    /// `me` sent a message to `recipients`: a typing indicator this node announced ends now.
    pub async fn message_sent(
        &self,
        me: UserId,
        conversation: ConversationId,
        recipients: &[Recipient],
    ) {
        let typed = {
            let mut typing = self.typing.lock().unwrap_or_else(|e| e.into_inner());
            typing.remove(&(me, conversation))
        };
        let Some((until, username)) = typed else {
            return;
        };
        if until <= Instant::now() {
            return; // it has lapsed by itself
        }
        let others = recipients.iter().map(|r| r.user).filter(|id| *id != me);
        self.publish_typing(me, username, conversation, false, others)
            .await;
    }

    async fn publish_typing(
        &self,
        me: UserId,
        username: String,
        conversation: ConversationId,
        typing: bool,
        to: impl Iterator<Item = UserId>,
    ) {
        let signal = Typing {
            conversation_id: conversation,
            user: me,
            username,
            typing,
            expires_in_ms: if typing {
                TYPING_LAPSE.as_millis() as u64
            } else {
                0
            },
        };
        let event = Arc::new(Event::signal(EventKind::Typing(signal), to));
        if event.recipients.is_empty() {
            return;
        }
        if let Err(e) = self.bus.publish(event).await {
            tracing::debug!(error = %e, "typing not published");
        }
    }

    /// The caller's client says this session is `away` (tab hidden, idle) or `online` again.
    pub async fn report(&self, me: UserId, session: &str, state: &str) -> ServiceResult<()> {
        let away = match PresenceState::parse_reported(state) {
            Some(PresenceState::Away) => true,
            Some(_) => false,
            None => {
                return Err(ServiceError::invalid(
                    "state",
                    "State must be \"online\" or \"away\"",
                ));
            }
        };
        // The session's streams may be on another node: every node hears it and the one
        // holding them applies it.
        let sync = PresenceSync::Away {
            user: me,
            session: session.to_owned(),
            away,
        };
        let event = Arc::new(Event::signal(EventKind::PresenceSync(sync), []));
        self.bus
            .publish(event)
            .await
            .map_err(|e| ServiceError::Internal(Box::new(e)))
    }

    /// How `users` look to others now: state, and last seen for those offline who show it.
    pub async fn presence_of(
        &self,
        users: &[UserId],
    ) -> ServiceResult<HashMap<UserId, PresenceView>> {
        let states = self.presence.states(users);
        let offline: Vec<UserId> = users
            .iter()
            .zip(&states)
            .filter(|(_, (s, _))| *s == PresenceState::Offline)
            .map(|(u, _)| *u)
            .collect();
        let mut last_seen = HashMap::new();
        if !offline.is_empty() {
            let rows = self
                .store
                .last_seen(&offline)
                .await
                .map_err(ServiceError::from_store("user"))?;
            for row in rows {
                if row.shown {
                    last_seen.insert(row.user, row.at);
                }
            }
        }
        Ok(users
            .iter()
            .zip(states)
            .map(|(user, (state, recent))| {
                // Hidden unless shown; the newer of what this node saw and what is stored.
                let last_seen_at = match (state, last_seen.get(user)) {
                    (PresenceState::Offline, Some(stored)) => (*stored).max(recent),
                    _ => None,
                };
                (
                    *user,
                    PresenceView {
                        state,
                        last_seen_at,
                    },
                )
            })
            .collect())
    }

    pub async fn settings(&self, me: UserId) -> ServiceResult<PresenceSettingsView> {
        let rows = self
            .store
            .last_seen(&[me])
            .await
            .map_err(ServiceError::from_store("user"))?;
        let row = rows.first().ok_or(ServiceError::NotFound("user"))?;
        Ok(PresenceSettingsView {
            show_last_seen: row.shown,
        })
    }

    pub async fn set_show_last_seen(
        &self,
        me: UserId,
        show: bool,
    ) -> ServiceResult<PresenceSettingsView> {
        self.store
            .set_show_last_seen(me, show)
            .await
            .map_err(ServiceError::from_store("user"))?;
        self.settings(me).await
    }
}
