//! What happens to a message after it is sent: edits, deletes (tombstones), reactions and
//! replies. The rules are pure, like `group::plan`: a store loads the message and the roster
//! under its write lock, asks `plan_message`, and writes what it answers.

use super::{
    Change, ConversationId, ConversationKind, MessageContent, MessageId, Plan, Refusal, Role,
    RosterEntry, User, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};

/// At most this many different emoji on one message (Slack allows 50, GitHub 8).
pub const MAX_DISTINCT_REACTIONS: i64 = 20;
/// At most this many reactions by one person on one message.
pub const MAX_REACTIONS_PER_PERSON: i64 = 10;
/// How much of the quoted message a reply shows.
pub const QUOTE_CHARS: usize = 100;

/// A reply's view of the message it answers, as the viewer may see it now: it follows edits,
/// and after a delete (or when the viewer may not read the original) it has no text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    pub id: MessageId,
    pub sender: User,
    /// The first `QUOTE_CHARS` characters; `None` when deleted or not visible to the viewer.
    pub preview: Option<String>,
    pub deleted: bool,
}

impl Quote {
    /// The preview of `content`: at most `QUOTE_CHARS` characters, an ellipsis when cut.
    pub fn preview_of(content: &str) -> String {
        let mut chars = content.chars();
        let mut preview: String = chars.by_ref().take(QUOTE_CHARS).collect();
        if chars.next().is_some() {
            preview.push('…');
        }
        preview
    }
}

/// One emoji's reactions on a message as the viewer sees them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reaction {
    pub emoji: String,
    pub count: i64,
    pub mine: bool,
}

/// Exactly one emoji (one grapheme, skin tones and ZWJ sequences included), as Unicode
/// lists them; text, several emoji or a bare modifier are refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Reaction must be exactly one emoji")]
pub struct EmojiError;

impl Emoji {
    pub fn parse(raw: &str) -> Result<Self, EmojiError> {
        if raw.is_empty() || raw.len() > 64 {
            return Err(EmojiError);
        }
        // Stored in one form: clients differ in sending the U+FE0F presentation selector.
        let known = emojis::get(raw)
            .or_else(|| emojis::get(&raw.replace('\u{fe0f}', "")))
            .ok_or(EmojiError)?;
        let canonical = if known.as_str() == raw || known.skin_tones().is_none() {
            known.as_str()
        } else {
            // A skin-tone variant: `get` found it, keep the variant the person chose.
            raw
        };
        Ok(Self(canonical.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// On whose authority a message op is asked.
///
/// - `Member`: the actor's own standing in the conversation (author, group admin).
/// - `ServerAdmin`: a server admin (`users.is_admin`) who is a member: may also delete anyone's
///   message, in a group or a direct conversation. Not a member: 404 as for anyone.
/// - `Operator`: the person at the machine (`courier admin`): needs no membership and may only
///   delete. The log records the server admin it acts as (`Admin::acting_admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authority {
    #[default]
    Member,
    ServerAdmin,
    Operator,
}

/// A change to one message that someone asks for.
#[derive(Debug, Clone)]
pub enum MessageOp {
    Edit {
        content: MessageContent,
        /// How long after sending the author may edit; `None` for ever.
        window: Option<TimeDelta>,
    },
    Delete,
    React {
        emoji: Emoji,
        on: bool,
    },
}

/// The message an op is about, as the store read it under its write lock.
#[derive(Debug, Clone)]
pub struct Target {
    pub id: MessageId,
    pub sender: UserId,
    pub created_at: DateTime<Utc>,
    pub deleted: bool,
    pub content: String,
    /// Reactions on the message now: distinct emoji, the actor's, this emoji's count, and
    /// whether the actor already reacted with it (only read for `React`).
    pub distinct_emoji: i64,
    pub actor_reactions: i64,
    pub emoji_count: i64,
    pub actor_reacted: bool,
}

/// What a store writes for an accepted message op (with the log entry of `Plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageWrite {
    Edit {
        id: MessageId,
        content: String,
    },
    /// Tombstone it: text gone, reactions gone, earlier edit events scrubbed.
    Delete {
        id: MessageId,
    },
    React {
        id: MessageId,
        user: UserId,
        emoji: String,
        on: bool,
    },
    /// Tombstone every message of a conversation being deleted, as `Delete` does one.
    Scrub {
        conversation: ConversationId,
    },
    /// Move a read marker forward (a receipt, also on the log).
    ReadUpTo {
        conversation: ConversationId,
        user: UserId,
        message: MessageId,
    },
}

/// Decides a message op. `Err(None)`: the actor is not a member or cannot see the message
/// (404 either way); `Ok(None)`: nothing to do (the same reaction twice, a delete repeated,
/// an edit to the same text), so no event is written.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn plan_message(
    kind: ConversationKind,
    history_shared: bool,
    roster: &[RosterEntry],
    actor: &User,
    authority: Authority,
    target: &Target,
    op: &MessageOp,
    now: DateTime<Utc>,
) -> Result<Option<(Plan, MessageWrite)>, Option<Refusal>> {
    let me = roster.iter().find(|m| m.user == actor.id);
    if authority == Authority::Operator {
        if !matches!(op, MessageOp::Delete) {
            return Err(Some(Refusal::NotAllowed(
                "the operator can delete a message, not edit or react to it",
            )));
        }
    } else {
        let me = me.ok_or(None)?;
        if !history_shared && target.id < me.history_from {
            return Err(None);
        }
    }
    // Only those who can read the message hear about it.
    let recipients: Vec<UserId> = roster
        .iter()
        .filter(|m| history_shared || m.history_from <= target.id)
        .map(|m| m.user)
        .collect();
    let plan = |change: Change| Plan {
        change,
        title: None,
        add: Vec::new(),
        remove: Vec::new(),
        set_roles: Vec::new(),
        recipients: recipients.clone(),
        member_count: roster.len(),
    };
    let id = target.id;
    match op {
        MessageOp::Edit { content, window } => {
            if target.sender != actor.id {
                return Err(Some(Refusal::NotAllowed(
                    "only the author can edit a message",
                )));
            }
            if target.deleted {
                return Err(Some(Refusal::MessageDeleted));
            }
            if window.is_some_and(|w| now - target.created_at > w) {
                return Err(Some(Refusal::NotAllowed(
                    "this message can no longer be edited",
                )));
            }
            if content.as_str() == target.content {
                return Ok(None);
            }
            let content = content.as_str().to_owned();
            Ok(Some((
                plan(Change::Edited {
                    message_id: id,
                    content: Some(content.clone()),
                }),
                MessageWrite::Edit { id, content },
            )))
        }
        MessageOp::Delete => {
            let group_admin =
                kind == ConversationKind::Group && me.is_some_and(|me| me.role >= Role::Admin);
            let moderator = group_admin || authority != Authority::Member;
            if target.sender != actor.id && !moderator {
                return Err(Some(Refusal::NotAllowed(
                    "only the author or a group admin can delete a message",
                )));
            }
            if target.deleted {
                return Ok(None);
            }
            Ok(Some((
                plan(Change::Deleted { message_id: id }),
                MessageWrite::Delete { id },
            )))
        }
        MessageOp::React { emoji, on } => {
            if target.deleted {
                return Err(Some(Refusal::MessageDeleted));
            }
            if *on == target.actor_reacted {
                return Ok(None);
            }
            if *on {
                if target.emoji_count == 0 && target.distinct_emoji >= MAX_DISTINCT_REACTIONS {
                    return Err(Some(Refusal::TooManyReactions(
                        "a message has at most 20 different reactions",
                    )));
                }
                if target.actor_reactions >= MAX_REACTIONS_PER_PERSON {
                    return Err(Some(Refusal::TooManyReactions(
                        "you can add at most 10 reactions to one message",
                    )));
                }
            }
            let count = target.emoji_count + if *on { 1 } else { -1 };
            Ok(Some((
                plan(Change::Reaction {
                    message_id: id,
                    emoji: emoji.as_str().to_owned(),
                    added: *on,
                    count,
                }),
                MessageWrite::React {
                    id,
                    user: actor.id,
                    emoji: emoji.as_str().to_owned(),
                    on: *on,
                },
            )))
        }
    }
}

/// Deletes a whole conversation (the operator only, so no rule refuses it): one log entry
/// removes every member, and every member receives it, so their apps drop the conversation
/// live (a removal of yourself means "gone"); its messages are tombstoned as a delete does.
/// `members` are the conversation's members now, as users.
pub fn plan_close(conversation: ConversationId, members: Vec<User>) -> (Plan, MessageWrite) {
    let ids: Vec<UserId> = members.iter().map(|u| u.id).collect();
    (
        Plan {
            change: Change::Removed { users: members },
            title: None,
            add: Vec::new(),
            remove: ids.clone(),
            set_roles: Vec::new(),
            recipients: ids,
            member_count: 0,
        },
        MessageWrite::Scrub { conversation },
    )
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

    fn member(id: i64, role: Role, history_from: i64) -> RosterEntry {
        RosterEntry {
            user: UserId(id),
            role,
            joined: MessageId(history_from),
            history_from: MessageId(history_from),
        }
    }

    fn target(sender: i64) -> Target {
        Target {
            id: MessageId(10),
            sender: UserId(sender),
            created_at: Utc::now() - TimeDelta::minutes(5),
            deleted: false,
            content: "hello".into(),
            distinct_emoji: 0,
            actor_reactions: 0,
            emoji_count: 0,
            actor_reacted: false,
        }
    }

    fn edit(text: &str, window: Option<TimeDelta>) -> MessageOp {
        MessageOp::Edit {
            content: MessageContent::parse(text, 480).unwrap(),
            window,
        }
    }

    fn refusal<T: std::fmt::Debug>(r: Result<T, Option<Refusal>>) -> Refusal {
        r.unwrap_err().expect("a refusal, not a 404")
    }

    #[test]
    fn only_the_author_edits_within_the_window() {
        let roster = [member(1, Role::Owner, 0), member(2, Role::Admin, 0)];
        let g = ConversationKind::Group;
        let now = Utc::now();
        let ok = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &target(1),
            &edit("hi", None),
            now,
        );
        let (plan, write) = ok.unwrap().unwrap();
        assert_eq!(plan.recipients, vec![UserId(1), UserId(2)]);
        assert!(matches!(write, MessageWrite::Edit { ref content, .. } if content == "hi"));
        let theirs = plan_message(
            g,
            true,
            &roster,
            &user(2),
            Authority::Member,
            &target(1),
            &edit("x", None),
            now,
        );
        assert!(matches!(refusal(theirs), Refusal::NotAllowed(_)));
        let late = edit("hi", Some(TimeDelta::minutes(1)));
        let late = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &target(1),
            &late,
            now,
        );
        assert!(matches!(refusal(late), Refusal::NotAllowed(_)));
        let off = edit("hi", Some(TimeDelta::zero()));
        let off = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &target(1),
            &off,
            now,
        );
        assert!(matches!(refusal(off), Refusal::NotAllowed(_)));
        let same = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &target(1),
            &edit("hello", None),
            now,
        );
        assert_eq!(same.unwrap(), None);
    }

    #[test]
    fn admins_delete_any_message_in_a_group_only() {
        let roster = [member(1, Role::Member, 0), member(2, Role::Admin, 0)];
        let now = Utc::now();
        let g = ConversationKind::Group;
        assert!(
            plan_message(
                g,
                true,
                &roster,
                &user(2),
                Authority::Member,
                &target(1),
                &MessageOp::Delete,
                now
            )
            .is_ok()
        );
        let member = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &target(2),
            &MessageOp::Delete,
            now,
        );
        assert!(matches!(refusal(member), Refusal::NotAllowed(_)));
        let d = ConversationKind::Direct;
        let direct = plan_message(
            d,
            true,
            &roster,
            &user(2),
            Authority::Member,
            &target(1),
            &MessageOp::Delete,
            now,
        );
        assert!(matches!(refusal(direct), Refusal::NotAllowed(_)));
        let mut gone = target(1);
        gone.deleted = true;
        assert_eq!(
            plan_message(
                g,
                true,
                &roster,
                &user(1),
                Authority::Member,
                &gone,
                &MessageOp::Delete,
                now
            )
            .unwrap(),
            None
        );
        let edit_gone = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &gone,
            &edit("x", None),
            now,
        );
        assert_eq!(refusal(edit_gone), Refusal::MessageDeleted);
    }

    #[test]
    fn joined_history_hides_older_messages_from_later_members() {
        let roster = [member(1, Role::Owner, 0), member(2, Role::Member, 20)];
        let now = Utc::now();
        let react = MessageOp::React {
            emoji: Emoji::parse("👍").unwrap(),
            on: true,
        };
        let g = ConversationKind::Group;
        let (plan, _) = plan_message(
            g,
            false,
            &roster,
            &user(1),
            Authority::Member,
            &target(1),
            &react,
            now,
        )
        .unwrap()
        .unwrap();
        assert_eq!(plan.recipients, vec![UserId(1)]);
        let later = plan_message(
            g,
            false,
            &roster,
            &user(2),
            Authority::Member,
            &target(1),
            &react,
            now,
        );
        assert!(matches!(later, Err(None)));
        let stranger = plan_message(
            g,
            true,
            &roster,
            &user(3),
            Authority::Member,
            &target(1),
            &react,
            now,
        );
        assert!(matches!(stranger, Err(None)));
    }

    #[test]
    fn reactions_are_idempotent_and_limited() {
        let roster = [member(1, Role::Owner, 0)];
        let now = Utc::now();
        let g = ConversationKind::Group;
        let on = |e: &str| MessageOp::React {
            emoji: Emoji::parse(e).unwrap(),
            on: true,
        };
        let mut t = target(1);
        t.actor_reacted = true;
        assert_eq!(
            plan_message(
                g,
                true,
                &roster,
                &user(1),
                Authority::Member,
                &t,
                &on("👍"),
                now
            )
            .unwrap(),
            None
        );
        let mut full = target(1);
        full.distinct_emoji = MAX_DISTINCT_REACTIONS;
        let refused = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &full,
            &on("👍"),
            now,
        );
        assert!(matches!(refusal(refused), Refusal::TooManyReactions(_)));
        // An emoji already on the message is not a new distinct one.
        full.emoji_count = 3;
        let (plan, _) = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &full,
            &on("👍"),
            now,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(
            plan.change,
            Change::Reaction {
                count: 4,
                added: true,
                ..
            }
        ));
        let mut mine = target(1);
        mine.actor_reactions = MAX_REACTIONS_PER_PERSON;
        let refused = plan_message(
            g,
            true,
            &roster,
            &user(1),
            Authority::Member,
            &mine,
            &on("🎉"),
            now,
        );
        assert!(matches!(refusal(refused), Refusal::TooManyReactions(_)));
    }

    #[test]
    fn a_server_admin_member_deletes_any_message_and_the_operator_needs_no_membership() {
        let roster = [member(1, Role::Member, 0), member(2, Role::Member, 20)];
        let now = Utc::now();
        let delete = MessageOp::Delete;
        for kind in [ConversationKind::Group, ConversationKind::Direct] {
            let admin = plan_message(
                kind,
                true,
                &roster,
                &user(2),
                Authority::ServerAdmin,
                &target(1),
                &delete,
                now,
            );
            let (plan, write) = admin.unwrap().unwrap();
            assert_eq!(
                plan.change,
                Change::Deleted {
                    message_id: MessageId(10)
                }
            );
            assert_eq!(write, MessageWrite::Delete { id: MessageId(10) });
            // The operator is in no roster, and still every member hears of it.
            let operator = plan_message(
                kind,
                true,
                &roster,
                &user(9),
                Authority::Operator,
                &target(1),
                &delete,
                now,
            );
            let (plan, _) = operator.unwrap().unwrap();
            assert_eq!(plan.recipients, vec![UserId(1), UserId(2)]);
        }
        let g = ConversationKind::Group;
        // A server admin who is not a member gets the stranger's 404.
        let stranger = plan_message(
            g,
            true,
            &roster,
            &user(9),
            Authority::ServerAdmin,
            &target(1),
            &delete,
            now,
        );
        assert!(matches!(stranger, Err(None)));
        // Under joined history, neither a member's nor a server admin's reach goes back.
        let hidden = plan_message(
            g,
            false,
            &roster,
            &user(2),
            Authority::ServerAdmin,
            &target(1),
            &delete,
            now,
        );
        assert!(matches!(hidden, Err(None)));
        // The operator only deletes.
        let edit = plan_message(
            g,
            true,
            &roster,
            &user(9),
            Authority::Operator,
            &target(1),
            &edit("x", None),
            now,
        );
        assert!(matches!(refusal(edit), Refusal::NotAllowed(_)));
    }

    #[test]
    fn closing_a_conversation_removes_every_member_and_tells_them_all() {
        let members = vec![user(1), user(2)];
        let (plan, write) = plan_close(ConversationId(7), members.clone());
        assert_eq!(plan.change, Change::Removed { users: members });
        assert_eq!(plan.remove, vec![UserId(1), UserId(2)]);
        assert_eq!(plan.recipients, vec![UserId(1), UserId(2)]);
        assert_eq!(plan.member_count, 0);
        assert_eq!(
            write,
            MessageWrite::Scrub {
                conversation: ConversationId(7)
            }
        );
    }

    #[test]
    fn an_emoji_is_exactly_one_known_emoji() {
        for ok in ["👍", "❤️", "❤", "👍🏽", "👩‍💻", "🇫🇷", "🏳️‍🌈"]
        {
            assert!(Emoji::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Emoji::parse("❤").unwrap(), Emoji::parse("❤️").unwrap());
        for bad in ["", "a", "👍👍", "👍 ", ":+1:", "🏽", "\u{200d}", "1"] {
            assert!(Emoji::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_quote_keeps_the_first_hundred_characters() {
        assert_eq!(Quote::preview_of("short"), "short");
        let long = "x".repeat(150);
        let preview = Quote::preview_of(&long);
        assert_eq!(preview.chars().count(), QUOTE_CHARS + 1);
        assert!(preview.ends_with('…'));
    }
}
