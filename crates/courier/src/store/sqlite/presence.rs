//! `PresenceStore` for `SqliteStore`; twin of `postgres/presence.rs`. Id lists are bound as
//! one JSON array and read back with `json_each`.

use super::{SqliteStore, classify};
use crate::model::{ConversationId, User, UserId};
use crate::store::presence::{LastSeen, SET_SHOW_LAST_SEEN, last_seen_from, user_from};
use crate::store::{PresenceStore, StoreError, StoreResult};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What presence and typing ask about again and again, so that asking costs no read:
/// - the members of conversations that `member_users` was asked about (typing calls ask once
///   a second per typist);
/// - the contacts of people whose presence changed (each change is announced to them, and
///   under churn the same people come and go every few seconds);
/// - who shows their last-seen time (asked for each departure announced).
///
/// Every write that changes who is in a conversation, what `member_users` shows of them, or
/// the last-seen setting goes through this process (the database lock keeps other processes
/// out) and calls `invalidate` or `invalidate_showing` once it has committed. A read that
/// raced such a commit may have seen the old rows: `fill_*` keeps its result only if no
/// invalidation happened since the read began.
#[derive(Default)]
pub(super) struct MemberCache {
    state: Mutex<MemberCacheState>,
}

#[derive(Default)]
struct MemberCacheState {
    generation: u64,
    conversations: HashMap<ConversationId, Arc<[User]>>,
    contacts: HashMap<UserId, Arc<[UserId]>>,
    showing: HashMap<UserId, bool>,
}

/// Above this many conversations (or people, for contacts and settings) a map starts again
/// empty.
const MEMBER_CACHE_MAX: usize = 20_000;
const PEOPLE_CACHE_MAX: usize = 100_000;

impl MemberCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemberCacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached members, or the generation to pass to `fill` after reading them.
    fn get(&self, conversation: ConversationId) -> Result<Arc<[User]>, u64> {
        let state = self.lock();
        match state.conversations.get(&conversation) {
            Some(users) => Ok(users.clone()),
            None => Err(state.generation),
        }
    }

    fn fill(&self, conversation: ConversationId, users: Arc<[User]>, generation: u64) {
        let mut state = self.lock();
        if state.generation != generation || users.is_empty() {
            return;
        }
        if state.conversations.len() >= MEMBER_CACHE_MAX {
            state.conversations.clear();
        }
        state.conversations.insert(conversation, users);
    }

    /// The cached `(user, contact)` pairs of `users`, those not cached, and the generation
    /// to pass to `fill_contacts` after reading them.
    fn contacts(&self, users: &[UserId]) -> (Vec<(UserId, UserId)>, Vec<UserId>, u64) {
        let state = self.lock();
        let (mut pairs, mut missing) = (Vec::new(), Vec::new());
        for &user in users {
            match state.contacts.get(&user) {
                Some(contacts) => pairs.extend(contacts.iter().map(|&c| (user, c))),
                None => missing.push(user),
            }
        }
        (pairs, missing, state.generation)
    }

    /// Keeps what was read of `users`' contacts; someone with none is kept too.
    fn fill_contacts(&self, users: &[UserId], pairs: &[(UserId, UserId)], generation: u64) {
        let mut by_user: HashMap<UserId, Vec<UserId>> =
            users.iter().map(|&u| (u, Vec::new())).collect();
        for &(user, contact) in pairs {
            by_user.entry(user).or_default().push(contact);
        }
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.contacts.len() + by_user.len() > PEOPLE_CACHE_MAX {
            state.contacts.clear();
        }
        for (user, contacts) in by_user {
            state.contacts.insert(user, contacts.into());
        }
    }

    /// Of `users`, those cached as showing last-seen, those not cached, and the generation.
    fn showing(&self, users: &[UserId]) -> (HashSet<UserId>, Vec<UserId>, u64) {
        let state = self.lock();
        let (mut shown, mut missing) = (HashSet::new(), Vec::new());
        for &user in users {
            match state.showing.get(&user) {
                Some(true) => {
                    shown.insert(user);
                }
                Some(false) => {}
                None => missing.push(user),
            }
        }
        (shown, missing, state.generation)
    }

    fn fill_showing(&self, rows: &[LastSeen], generation: u64) {
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        if state.showing.len() + rows.len() > PEOPLE_CACHE_MAX {
            state.showing.clear();
        }
        state.showing.extend(rows.iter().map(|r| (r.user, r.shown)));
    }

    /// After a commit that changed `conversation`'s members, or (`None`) what any member
    /// looks like. Contacts are dropped whole: the cache does not know whom a change
    /// concerned beyond its members, and membership changes are rare next to presence.
    pub(super) fn invalidate(&self, conversation: Option<ConversationId>) {
        let mut state = self.lock();
        state.generation += 1;
        state.contacts.clear();
        match conversation {
            Some(conversation) => {
                state.conversations.remove(&conversation);
            }
            None => {
                state.conversations.clear();
                state.showing.clear();
            }
        }
    }

    /// After a commit that changed `user`'s last-seen setting.
    fn invalidate_showing(&self, user: UserId) {
        let mut state = self.lock();
        state.generation += 1;
        state.showing.remove(&user);
    }
}

/// `member_users` as `viewer` may see it: `NotFound` unless they are a member.
fn member_view(users: &[User], viewer: UserId) -> StoreResult<Vec<User>> {
    if users.iter().any(|u| u.id == viewer) {
        Ok(users.to_vec())
    } else {
        Err(StoreError::NotFound)
    }
}

fn id_list(users: &[UserId]) -> String {
    serde_json::to_string(&users.iter().map(|u| u.0).collect::<Vec<_>>()).unwrap_or_default()
}

#[async_trait]
impl PresenceStore for SqliteStore {
    async fn member_users(
        &self,
        viewer: UserId,
        conversation: ConversationId,
    ) -> StoreResult<Vec<User>> {
        let generation = match self.members.get(conversation) {
            Ok(users) => return member_view(&users, viewer),
            Err(generation) => generation,
        };
        let rows: Vec<crate::store::log::UserRow> = sqlx::query_as(
            "SELECT u.id, u.username, COALESCE(u.picture, u.avatar_url), u.display_name, u.deleted_at FROM participants p
             JOIN users u ON u.id = p.user_id WHERE p.conversation_id = ?",
        )
        .bind(conversation.0)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let users: Arc<[User]> = rows.into_iter().map(user_from).collect();
        self.members.fill(conversation, users.clone(), generation);
        member_view(&users, viewer)
    }

    async fn contacts(&self, users: &[UserId]) -> StoreResult<Vec<(UserId, UserId)>> {
        let (mut pairs, missing, generation) = self.members.contacts(users);
        if missing.is_empty() {
            return Ok(pairs);
        }
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT a.user_id, b.user_id FROM participants a
             JOIN participants b ON b.conversation_id = a.conversation_id AND b.user_id <> a.user_id
             WHERE a.user_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(id_list(&missing))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let read: Vec<(UserId, UserId)> = rows
            .into_iter()
            .map(|(a, b)| (UserId(a), UserId(b)))
            .collect();
        self.members.fill_contacts(&missing, &read, generation);
        pairs.extend(read);
        Ok(pairs)
    }

    async fn touch_last_seen(&self, seen: &[(UserId, DateTime<Utc>)]) -> StoreResult<()> {
        let pairs: Vec<(i64, i64)> = seen
            .iter()
            .map(|(u, at)| (u.0, at.timestamp_millis()))
            .collect();
        let args = vec![serde_json::to_string(&pairs).unwrap_or_default().into()];
        // On the writer's connection, like every write that can happen under load.
        self.write(
            "UPDATE users SET last_seen_at = MAX(COALESCE(users.last_seen_at, 0), s.at)
             FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS at
                   FROM json_each(?1)) AS s
             WHERE users.id = s.id",
            args,
        )
        .await
    }

    async fn last_seen(&self, users: &[UserId]) -> StoreResult<Vec<LastSeen>> {
        let rows: Vec<(i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT id, last_seen_at, show_last_seen FROM users
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(id_list(users))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows.into_iter().map(last_seen_from).collect())
    }

    async fn showing_last_seen(&self, users: &[UserId]) -> StoreResult<HashSet<UserId>> {
        let (mut shown, missing, generation) = self.members.showing(users);
        if !missing.is_empty() {
            let rows = self.last_seen(&missing).await?;
            self.members.fill_showing(&rows, generation);
            shown.extend(rows.iter().filter(|r| r.shown).map(|r| r.user));
        }
        Ok(shown)
    }

    async fn set_show_last_seen(&self, user: UserId, show: bool) -> StoreResult<()> {
        let done = sqlx::query(SET_SHOW_LAST_SEEN)
            .bind(user.0)
            .bind(i64::from(show))
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        self.members.invalidate_showing(user);
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_read_across_a_membership_change_are_not_kept() {
        let cache = MemberCache::default();
        let (alice, bob) = (UserId(1), UserId(2));
        let (_, missing, generation) = cache.contacts(&[alice]);
        assert_eq!(missing, vec![alice]);
        // A conversation changed between the read and its filling: the read may be stale.
        cache.invalidate(Some(ConversationId(7)));
        cache.fill_contacts(&[alice], &[(alice, bob)], generation);
        assert_eq!(cache.contacts(&[alice]).1, vec![alice]);

        let (_, _, generation) = cache.contacts(&[alice, bob]);
        cache.fill_contacts(&[alice, bob], &[(alice, bob)], generation);
        let (pairs, missing, _) = cache.contacts(&[alice, bob]);
        assert_eq!(pairs, vec![(alice, bob)]);
        assert!(
            missing.is_empty(),
            "having no contacts is kept too: {missing:?}"
        );

        cache.invalidate(Some(ConversationId(8)));
        assert_eq!(
            cache.contacts(&[alice, bob]).1.len(),
            2,
            "every contact is dropped"
        );
    }

    #[test]
    fn a_last_seen_setting_is_read_again_once_it_changed() {
        let cache = MemberCache::default();
        let (alice, bob) = (UserId(1), UserId(2));
        let row = |user, shown| LastSeen {
            user,
            at: None,
            shown,
        };
        let (_, missing, generation) = cache.showing(&[alice, bob]);
        assert_eq!(missing.len(), 2);
        cache.fill_showing(&[row(alice, true), row(bob, false)], generation);
        let (shown, missing, _) = cache.showing(&[alice, bob]);
        assert_eq!(shown, HashSet::from([alice]));
        assert!(missing.is_empty());

        cache.invalidate_showing(alice);
        let (shown, missing, generation) = cache.showing(&[alice, bob]);
        assert!(shown.is_empty());
        assert_eq!(missing, vec![alice], "bob's setting is still known");
        cache.invalidate_showing(bob);
        cache.fill_showing(&[row(alice, false)], generation);
        assert_eq!(
            cache.showing(&[alice]).1,
            vec![alice],
            "a read across a change is not kept"
        );
    }
}
