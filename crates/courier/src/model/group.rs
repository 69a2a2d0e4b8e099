//! Group conversations: kinds, roles, titles, the change events on the log, and the rules that
//! turn a requested change into a plan. The rules are pure and shared by both stores: each
//! store loads the roster under its write lock, asks `plan` what to do, and writes the plan.

use super::{ConversationId, MessageId, User, UserId};
use chrono::{DateTime, Utc};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
        }
    }

    pub fn from_db(s: &str) -> Self {
        if s == "group" {
            Self::Group
        } else {
            Self::Direct
        }
    }
}

/// Ordered by power: `Member < Admin < Owner`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "member" => Some(Self::Member),
            "admin" => Some(Self::Admin),
            "owner" => Some(Self::Owner),
            _ => None,
        }
    }

    pub fn from_db(s: &str) -> Self {
        Self::parse(s).unwrap_or(Self::Member)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which messages a member sees: `Shared` everything (Slack and Zulip channels), `Joined` only
/// those sent after they joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum History {
    Shared,
    Joined,
}

impl History {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Joined => "joined",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "shared" => Some(Self::Shared),
            "joined" => Some(Self::Joined),
            _ => None,
        }
    }
}

/// A group's title: trimmed, whitespace runs (line breaks and zero-width characters too)
/// collapsed, direction overrides stripped, no control characters, 1 to `Title::MAX_CHARS`
/// characters (see `model::text`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Title(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    #[error("Title required")]
    Empty,
    #[error("Title must be at most {} characters", Title::MAX_CHARS)]
    TooLong,
    #[error("Title may not contain control characters")]
    Control,
}

impl Title {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, TitleError> {
        super::text::check_controls(raw, true).map_err(|_| TitleError::Control)?;
        let title = super::text::words(raw).collect::<Vec<_>>().join(" ");
        if title.is_empty() {
            return Err(TitleError::Empty);
        }
        if title.chars().count() > Self::MAX_CHARS {
            return Err(TitleError::TooLong);
        }
        Ok(Self(title))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a durable change on the log did. `users` are as they were at the change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "change", rename_all = "camelCase")]
pub enum Change {
    Created {
        title: Option<String>,
        kind: ConversationKind,
    },
    Renamed {
        title: String,
    },
    Added {
        users: Vec<User>,
    },
    Removed {
        users: Vec<User>,
    },
    Left {
        users: Vec<User>,
        /// Set when the last owner left and someone inherited the group.
        new_owner: Option<UserId>,
    },
    Role {
        users: Vec<User>,
        role: Role,
    },
    /// The author changed a message's text. `content` is `None` once the message is deleted:
    /// a delete scrubs the text out of its earlier edit events too.
    Edited {
        message_id: MessageId,
        content: Option<String>,
    },
    Deleted {
        message_id: MessageId,
    },
    /// The actor read the conversation up to `message_id` (a read receipt).
    Read {
        message_id: MessageId,
    },
    /// The actor added or took back a reaction; `count` is that emoji's count after it.
    Reaction {
        message_id: MessageId,
        emoji: String,
        added: bool,
        count: i64,
    },
    /// The actor's profile as it became (one entry per conversation of theirs, so every
    /// member's stream gets it, and replays it after a reconnect).
    Profile {
        display_name: Option<String>,
        avatar_url: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deleted: bool,
    },
}

impl Change {
    /// The SSE event name of this change.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::Created { .. } | Self::Renamed { .. } => "conversation",
            Self::Edited { .. } => "message-edited",
            Self::Deleted { .. } => "message-deleted",
            Self::Reaction { .. } => "reaction",
            Self::Read { .. } => "read",
            Self::Profile { .. } => "profile",
            _ => "member",
        }
    }

    /// The message this change is about, if any.
    pub fn message_id(&self) -> Option<MessageId> {
        match self {
            Self::Edited { message_id, .. }
            | Self::Deleted { message_id }
            | Self::Reaction { message_id, .. } => Some(*message_id),
            _ => None,
        }
    }
}

/// A change event on the log, at its position (positions are shared with messages).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConversationEvent {
    pub position: MessageId,
    pub conversation_id: ConversationId,
    pub actor: User,
    pub change: Change,
    pub created_at: DateTime<Utc>,
}

/// One member as a store loads it under its write lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterEntry {
    pub user: UserId,
    pub role: Role,
    /// The position of the event that (last) added them: seniority for succession.
    pub joined: MessageId,
    /// The oldest message they may read (0, or `joined` under joined history).
    pub history_from: MessageId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: User,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// A change someone asks for. Users are resolved by the service before this point.
#[derive(Debug, Clone)]
pub enum ChangeRequest {
    Create {
        creator: User,
        members: Vec<User>,
        title: Title,
        history: History,
        max_members: usize,
    },
    Update {
        actor: User,
        conversation: ConversationId,
        op: Op,
    },
    /// Move the actor's read marker to the conversation's newest message.
    Read {
        actor: User,
        conversation: ConversationId,
    },
    /// Edit, delete or react to one message of the conversation.
    Message {
        actor: User,
        conversation: ConversationId,
        message: MessageId,
        op: super::MessageOp,
        authority: super::Authority,
    },
    /// Delete the whole conversation (the operator's, see `plan_close`); `actor` is the server
    /// admin the log records.
    Close {
        actor: User,
        conversation: ConversationId,
    },
    /// Tell the members that the actor's profile is now `actor`'s (they need not be a member
    /// any more: a deleted account tells the groups it left).
    Profile {
        actor: User,
        conversation: ConversationId,
    },
}

#[derive(Debug, Clone)]
pub enum Op {
    Rename(Title),
    Add {
        users: Vec<User>,
        max_members: usize,
    },
    Remove(User),
    Leave,
    SetRole(User, Role),
}

/// Why a change was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("already members: {}", .0.join(", "))]
    AlreadyMembers(Vec<String>),
    #[error("member not found")]
    NotAMember,
    #[error("a group needs an owner: make someone else owner first")]
    LastOwner,
    #[error("a group has at most {0} members")]
    TooManyMembers(usize),
    #[error("a direct conversation has fixed members and no title")]
    Direct,
    #[error("this message was deleted")]
    MessageDeleted,
    #[error("{0}")]
    TooManyReactions(&'static str),
    #[error("replyTo must be a message of this conversation")]
    BadReply,
}

/// What a store writes for an accepted change, all at one new position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub change: Change,
    pub title: Option<String>,
    pub add: Vec<(UserId, Role)>,
    pub remove: Vec<UserId>,
    pub set_roles: Vec<(UserId, Role)>,
    /// Who receives the event: the members at its position (the removed and leaving included,
    /// the added included).
    pub recipients: Vec<UserId>,
    pub member_count: usize,
}

fn role_of(roster: &[RosterEntry], user: UserId) -> Option<Role> {
    roster.iter().find(|m| m.user == user).map(|m| m.role)
}

/// Decides an update against the roster loaded under the write lock. `Err(None)` means the
/// actor is not a member (the conversation answers 404 to them).
pub fn plan(
    kind: ConversationKind,
    roster: &[RosterEntry],
    actor: &User,
    op: &Op,
) -> Result<Plan, Option<Refusal>> {
    let actor_role = role_of(roster, actor.id).ok_or(None)?;
    if kind == ConversationKind::Direct {
        return Err(Some(Refusal::Direct));
    }
    let everyone: Vec<UserId> = roster.iter().map(|m| m.user).collect();
    let count = roster.len();
    let need = |role: Role, why: &'static str| {
        if actor_role >= role {
            Ok(())
        } else {
            Err(Some(Refusal::NotAllowed(why)))
        }
    };
    let base = |change: Change| Plan {
        change,
        title: None,
        add: Vec::new(),
        remove: Vec::new(),
        set_roles: Vec::new(),
        recipients: everyone.clone(),
        member_count: count,
    };
    match op {
        Op::Rename(title) => {
            need(Role::Admin, "only admins can rename the group")?;
            let mut plan = base(Change::Renamed {
                title: title.as_str().to_owned(),
            });
            plan.title = Some(title.as_str().to_owned());
            Ok(plan)
        }
        Op::Add { users, max_members } => {
            need(Role::Admin, "only admins can add members")?;
            let already: Vec<String> = users
                .iter()
                .filter(|u| role_of(roster, u.id).is_some())
                .map(|u| u.username.clone())
                .collect();
            if !already.is_empty() {
                return Err(Some(Refusal::AlreadyMembers(already)));
            }
            if count + users.len() > *max_members {
                return Err(Some(Refusal::TooManyMembers(*max_members)));
            }
            let mut plan = base(Change::Added {
                users: users.clone(),
            });
            plan.add = users.iter().map(|u| (u.id, Role::Member)).collect();
            plan.recipients.extend(users.iter().map(|u| u.id));
            plan.member_count = count + users.len();
            Ok(plan)
        }
        Op::Remove(user) => {
            if user.id == actor.id {
                return Err(Some(Refusal::NotAllowed(
                    "to leave a group, use leave instead",
                )));
            }
            need(Role::Admin, "only admins can remove members")?;
            let target = role_of(roster, user.id).ok_or(Some(Refusal::NotAMember))?;
            if target >= actor_role && actor_role != Role::Owner {
                return Err(Some(Refusal::NotAllowed(
                    "admins can remove members, not other admins or owners",
                )));
            }
            if target == Role::Owner && owners(roster) == 1 {
                return Err(Some(Refusal::LastOwner));
            }
            let mut plan = base(Change::Removed {
                users: vec![user.clone()],
            });
            plan.remove = vec![user.id];
            plan.member_count = count - 1;
            Ok(plan)
        }
        Op::Leave => {
            // The last owner leaving hands the group to the longest-standing admin, or else
            // the longest-standing member.
            let heir = (actor_role == Role::Owner && owners(roster) == 1)
                .then(|| {
                    roster
                        .iter()
                        .filter(|m| m.user != actor.id)
                        .max_by_key(|m| (m.role, std::cmp::Reverse((m.joined, m.user))))
                })
                .flatten();
            let mut plan = base(Change::Left {
                users: vec![actor.clone()],
                new_owner: heir.map(|h| h.user),
            });
            if let Some(heir) = heir {
                plan.set_roles = vec![(heir.user, Role::Owner)];
            }
            plan.remove = vec![actor.id];
            plan.member_count = count - 1;
            Ok(plan)
        }
        Op::SetRole(user, role) => {
            need(Role::Owner, "only owners can change roles")?;
            let current = role_of(roster, user.id).ok_or(Some(Refusal::NotAMember))?;
            if current == Role::Owner && *role != Role::Owner && owners(roster) == 1 {
                return Err(Some(Refusal::LastOwner));
            }
            let mut plan = base(Change::Role {
                users: vec![user.clone()],
                role: *role,
            });
            plan.set_roles = vec![(user.id, *role)];
            Ok(plan)
        }
    }
}

fn owners(roster: &[RosterEntry]) -> usize {
    roster.iter().filter(|m| m.role == Role::Owner).count()
}

/// The plan for a new group: the creator owns it, everyone else is a member.
pub fn plan_create(creator: &User, members: &[User], title: &Title) -> Plan {
    let mut add = vec![(creator.id, Role::Owner)];
    add.extend(
        members
            .iter()
            .filter(|u| u.id != creator.id)
            .map(|u| (u.id, Role::Member)),
    );
    Plan {
        change: Change::Created {
            title: Some(title.as_str().to_owned()),
            kind: ConversationKind::Group,
        },
        title: Some(title.as_str().to_owned()),
        recipients: add.iter().map(|(u, _)| *u).collect(),
        member_count: add.len(),
        add,
        remove: Vec::new(),
        set_roles: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        User {
            id: UserId(id),
            username: format!("u{id}"),
            ..User::default()
        }
    }

    fn roster(entries: &[(i64, Role)]) -> Vec<RosterEntry> {
        entries
            .iter()
            .enumerate()
            .map(|(i, &(id, role))| RosterEntry {
                user: UserId(id),
                role,
                joined: MessageId(i as i64 + 1),
                history_from: MessageId(0),
            })
            .collect()
    }

    const GROUP: ConversationKind = ConversationKind::Group;

    #[test]
    fn titles_are_trimmed_collapsed_and_limited() {
        assert_eq!(
            Title::parse("  Book   club ").unwrap().as_str(),
            "Book club"
        );
        assert_eq!(Title::parse("   "), Err(TitleError::Empty));
        assert_eq!(Title::parse(&"x".repeat(101)), Err(TitleError::TooLong));
        assert!(Title::parse(&"é".repeat(100)).is_ok());
        assert_eq!(Title::parse("a\u{0}b"), Err(TitleError::Control));
        assert_eq!(
            Title::parse("\u{200B}\u{FEFF} \u{200D}"),
            Err(TitleError::Empty)
        );
        assert_eq!(
            Title::parse("\u{202E}team\u{2069}").unwrap().as_str(),
            "team"
        );
    }

    #[test]
    fn a_stranger_is_not_told_anything() {
        let r = roster(&[(1, Role::Owner)]);
        assert_eq!(plan(GROUP, &r, &user(9), &Op::Leave), Err(None));
    }

    #[test]
    fn members_cannot_do_admin_things() {
        let r = roster(&[(1, Role::Owner), (2, Role::Member), (3, Role::Member)]);
        let title = Title::parse("x").unwrap();
        for op in [
            Op::Rename(title),
            Op::Remove(user(3)),
            Op::Add {
                users: vec![user(4)],
                max_members: 10,
            },
            Op::SetRole(user(3), Role::Admin),
        ] {
            assert!(
                matches!(
                    plan(GROUP, &r, &user(2), &op),
                    Err(Some(Refusal::NotAllowed(_)))
                ),
                "{op:?}"
            );
        }
    }

    #[test]
    fn adding_checks_existing_members_and_the_limit() {
        let r = roster(&[(1, Role::Owner), (2, Role::Member)]);
        let add = |users: Vec<User>, max_members| Op::Add { users, max_members };
        assert_eq!(
            plan(GROUP, &r, &user(1), &add(vec![user(2), user(3)], 10)),
            Err(Some(Refusal::AlreadyMembers(vec!["u2".into()])))
        );
        assert_eq!(
            plan(GROUP, &r, &user(1), &add(vec![user(3), user(4)], 3)),
            Err(Some(Refusal::TooManyMembers(3)))
        );
        let ok = plan(GROUP, &r, &user(1), &add(vec![user(3)], 3)).unwrap();
        assert_eq!(ok.recipients, vec![UserId(1), UserId(2), UserId(3)]);
        assert_eq!(ok.member_count, 3);
    }

    #[test]
    fn the_removed_member_receives_the_removal() {
        let r = roster(&[(1, Role::Owner), (2, Role::Admin), (3, Role::Member)]);
        let p = plan(GROUP, &r, &user(2), &Op::Remove(user(3))).unwrap();
        assert_eq!(p.recipients, vec![UserId(1), UserId(2), UserId(3)]);
        assert_eq!(p.remove, vec![UserId(3)]);
        assert!(matches!(
            plan(GROUP, &r, &user(2), &Op::Remove(user(1))),
            Err(Some(Refusal::NotAllowed(_)))
        ));
        assert_eq!(
            plan(GROUP, &r, &user(1), &Op::Remove(user(7))),
            Err(Some(Refusal::NotAMember))
        );
    }

    #[test]
    fn the_last_owner_leaving_hands_over_to_the_longest_standing_admin_else_member() {
        let r = roster(&[
            (1, Role::Owner),
            (2, Role::Member),
            (3, Role::Admin),
            (4, Role::Admin),
        ]);
        let p = plan(GROUP, &r, &user(1), &Op::Leave).unwrap();
        assert_eq!(p.set_roles, vec![(UserId(3), Role::Owner)]);
        let r = roster(&[(1, Role::Owner), (5, Role::Member), (2, Role::Member)]);
        let p = plan(GROUP, &r, &user(1), &Op::Leave).unwrap();
        assert_eq!(p.set_roles, vec![(UserId(5), Role::Owner)]);
        let r = roster(&[(1, Role::Owner), (2, Role::Owner)]);
        assert!(
            plan(GROUP, &r, &user(1), &Op::Leave)
                .unwrap()
                .set_roles
                .is_empty()
        );
    }

    #[test]
    fn the_last_owner_cannot_be_demoted_or_removed() {
        let r = roster(&[(1, Role::Owner), (2, Role::Member)]);
        assert_eq!(
            plan(GROUP, &r, &user(1), &Op::SetRole(user(1), Role::Admin)),
            Err(Some(Refusal::LastOwner))
        );
        let p = plan(GROUP, &r, &user(1), &Op::SetRole(user(2), Role::Owner)).unwrap();
        assert_eq!(p.set_roles, vec![(UserId(2), Role::Owner)]);
    }

    #[test]
    fn direct_conversations_refuse_group_changes() {
        let r = roster(&[(1, Role::Member), (2, Role::Member)]);
        assert_eq!(
            plan(ConversationKind::Direct, &r, &user(1), &Op::Leave),
            Err(Some(Refusal::Direct))
        );
    }
}
