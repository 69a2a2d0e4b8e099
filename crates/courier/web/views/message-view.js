// One message bubble and what can be done to it: the quote it answers, its text or tombstone,
// "(edited)", reaction chips, and an actions menu (react, reply, edit, delete). The bubble is
// rebuilt from the message object whenever it changes; the conversation view owns the data.

import { api } from '../api.js';
import { displayName } from '../avatar.js';
import { h } from '../dom.js';
import { clockTime, fullTime, linkParts } from '../format.js';
import { attachmentsNode } from './attachments.js';

// Offered first in the picker: the ones people use most (Slack's and WhatsApp's defaults).
export const FREQUENT = ['👍', '❤️', '😂', '😮', '😢', '🙏', '🎉', '👀'];
const MORE = ['🔥', '✅', '👏', '🤔', '😍', '😅', '💯', '🚀', '👎', '😡', '🙌', '🤝'];
const LONG_PRESS_MS = 500;

// What the conversation view hands each bubble: names, who may do what, and the actions.
// ctx = { who(msg), canDelete(msg), onReact(msg, emoji, on), onReply(msg), onEdit(msg, text),
//         onDelete(msg), onJump(id) }
export function messageNode(msg, ctx) {
  const li = h('li', { class: msg.mine ? 'message mine' : 'message theirs', dataset: { id: msg.id } });
  fill(li, msg, ctx);
  return li;
}

export function refill(li, msg, ctx) {
  li.replaceChildren();
  fill(li, msg, ctx);
}

function fill(li, msg, ctx) {
  const who = ctx.who(msg);
  const deleted = Boolean(msg.deletedAt);
  li.classList.toggle('deleted', deleted);
  const sender = !msg.mine && ctx.isGroup()
    ? h('span', { class: 'sender', 'aria-hidden': 'true', dir: 'auto', dataset: { userId: msg.senderId }, text: who })
    : null;
  const body = deleted
    ? h('p', { class: 'content tombstone', text: msg.mine ? 'You deleted this message' : 'This message was deleted' })
    : (msg.content || !msg.attachments?.length ? content(msg.content) : null);
  const edited = msg.editedAt && !deleted
    ? h('span', { class: 'edited', title: `Edited ${fullTime(msg.editedAt)}`, text: '(edited)' })
    : null;
  const bubble = h('div', { class: 'bubble' },
    sender,
    h('span', { class: 'visually-hidden', text: `${who}: ` }),
    msg.replyTo ? quote(msg.replyTo, ctx) : null,
    body,
    deleted ? null : attachmentsNode(msg),
    h('span', { class: 'meta' },
      edited,
      h('time', { datetime: msg.createdAt, title: fullTime(msg.createdAt), text: clockTime(msg.createdAt) }),
      msg.mine && !deleted ? ticks(ctx.receipt(msg)) : null));
  const row = h('div', { class: 'message-row' }, bubble);
  if (!deleted) row.append(actionsButton(li, msg, ctx));
  li.append(row);
  if (!deleted && msg.reactions?.length) li.append(reactions(msg, ctx));
  if (!deleted) longPress(bubble, () => openActions(li, msg, ctx));
}

// A message still in the outbox: its text, where it stands, and (unless on the wire) Retry and
// Delete. actions = { retry(entry), discard(entry) }
const PENDING_STATE = {
  sending: 'Sending…',
  queued: 'Not sent yet. Waiting for the server…',
  failed: 'Not sent.',
};
export function pendingNode(entry, actions) {
  const state = entry.state === 'failed' && entry.error ? `Not sent: ${entry.error}` : PENDING_STATE[entry.state] || PENDING_STATE.queued;
  const buttons = entry.state === 'sending' ? null : h('span', { class: 'pending-actions' },
    h('button', { type: 'button', class: 'link-button', text: 'Retry', onclick: () => actions.retry(entry) }),
    h('button', { type: 'button', class: 'link-button', text: 'Delete', onclick: () => actions.discard(entry) }));
  return h('li', { class: 'message mine pending', dataset: { key: entry.key, state: entry.state } },
    h('div', { class: 'message-row' },
      h('div', { class: 'bubble' },
        entry.replyTo ? h('span', { class: 'quote' },
          h('span', { class: 'quote-author', text: entry.replyTo.sender ? displayName(entry.replyTo.sender) : '' }),
          h('span', { class: 'quote-text', dir: 'auto', text: entry.replyTo.preview })) : null,
        content(entry.content),
        h('span', { class: 'meta pending-state', role: 'status' }, h('span', { text: state })))),
    buttons);
}

// Sent ✓, delivered ✓✓, read ✓✓ (in the accent colour): state and words from the view.
const TICKS = { sent: '✓', delivered: '✓✓', read: '✓✓' };
export function ticks({ state, label }) {
  return h('span', { class: 'ticks', dataset: { state }, role: 'img', 'aria-label': label, title: label, text: TICKS[state] });
}

function content(text) {
  const p = h('p', { class: 'content', dir: 'auto' });
  for (const part of linkParts(text)) {
    if (part.href) p.append(h('a', { href: part.href, target: '_blank', rel: 'noopener noreferrer nofollow', text: part.text }));
    else p.append(part.text);
  }
  return p;
}

function quote(q, ctx) {
  const text = q.deleted ? 'Deleted message' : (q.preview ?? 'Earlier message');
  return h('button', {
    type: 'button',
    class: q.deleted ? 'quote deleted' : 'quote',
    dataset: { quoteId: q.id },
    'aria-label': `Reply to ${q.sender ? displayName(q.sender) : 'a message'}: ${text}. Show the original.`,
    onclick: (event) => {
      event.stopPropagation();
      ctx.onJump(q.id);
    },
  },
  h('span', { class: 'quote-author', text: q.sender ? displayName(q.sender) : '' }),
  h('span', { class: 'quote-text', dir: 'auto', text }));
}

function reactions(msg, ctx) {
  const row = h('div', { class: 'reactions', role: 'group', 'aria-label': 'Reactions' });
  for (const r of msg.reactions) {
    row.append(h('button', {
      type: 'button',
      class: 'reaction',
      'aria-pressed': String(Boolean(r.mine)),
      'aria-label': `${r.emoji} ${r.count}${r.mine ? ', including you' : ''}. ${r.mine ? 'Remove your reaction' : 'React'}`,
      dataset: { emoji: r.emoji },
      onclick: () => ctx.onReact(msg, r.emoji, !r.mine),
    }, h('span', { 'aria-hidden': 'true', text: r.emoji }), h('span', { class: 'count', 'aria-hidden': 'true', text: String(r.count) })));
  }
  return row;
}

function actionsButton(li, msg, ctx) {
  return h('button', {
    type: 'button',
    class: 'message-actions-toggle',
    'aria-label': 'Message actions',
    'aria-haspopup': 'menu',
    onclick: (event) => {
      event.stopPropagation();
      openActions(li, msg, ctx);
    },
  }, '⋯');
}

// Touch: holding a bubble opens its actions, as in every phone messenger.
function longPress(el, fn) {
  let timer = 0;
  const cancel = () => clearTimeout(timer);
  el.addEventListener('touchstart', () => {
    cancel();
    timer = setTimeout(fn, LONG_PRESS_MS);
  }, { passive: true });
  el.addEventListener('touchend', cancel);
  el.addEventListener('touchmove', cancel, { passive: true });
  el.addEventListener('contextmenu', (event) => {
    if (matchMedia('(pointer: coarse)').matches) event.preventDefault();
  });
}

// The open menu floats over the page (fixed, on <body>): inside the list it would be clipped
// by the bubble's paint containment and hidden under the composer for the newest messages.
let openMenu = null;
let menuOwner = null;
export function closeMenus() {
  openMenu?.remove();
  openMenu = null;
  menuOwner = null;
}
document.addEventListener('click', (event) => {
  if (openMenu && !openMenu.contains(event.target)) closeMenus();
});
document.addEventListener('scroll', () => closeMenus(), { capture: true, passive: true });
window.addEventListener('resize', () => closeMenus());
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape' && openMenu) {
    const owner = menuOwner;
    closeMenus();
    owner?.focus();
  }
});

// Below the anchor if it fits, else above; never off screen.
function place(menu, anchor, alignEnd) {
  const r = anchor.getBoundingClientRect();
  const m = menu.getBoundingClientRect();
  let top = r.bottom + 4;
  if (top + m.height > window.innerHeight - 8) top = Math.max(8, r.top - m.height - 4);
  let left = alignEnd ? r.right - m.width : r.left;
  left = Math.min(Math.max(8, left), window.innerWidth - m.width - 8);
  menu.style.top = `${top}px`;
  menu.style.left = `${left}px`;
  menu.style.visibility = '';
}

function openActions(li, msg, ctx) {
  closeMenus();
  const item = (text, fn, extra = {}) => h('button', {
    type: 'button', role: 'menuitem', class: 'menu-item', text,
    onclick: (event) => {
      event.stopPropagation();
      closeMenus();
      fn();
    },
    ...extra,
  });
  const picker = h('div', { class: 'emoji-picker', role: 'group', 'aria-label': 'React' });
  const mine = new Set((msg.reactions || []).filter((r) => r.mine).map((r) => r.emoji));
  const addEmoji = (emoji) => picker.append(h('button', {
    type: 'button', role: 'menuitem', class: 'emoji', text: emoji, 'aria-label': `React ${emoji}`,
    'aria-pressed': String(mine.has(emoji)),
    onclick: (event) => {
      event.stopPropagation();
      closeMenus();
      ctx.onReact(msg, emoji, !mine.has(emoji));
    },
  }));
  FREQUENT.forEach(addEmoji);
  const more = h('button', {
    type: 'button', role: 'menuitem', class: 'emoji more', text: '+', 'aria-label': 'More reactions',
    onclick: (event) => {
      event.stopPropagation();
      more.remove();
      MORE.forEach(addEmoji);
    },
  });
  picker.append(more);
  const menu = h('div', { class: 'message-menu', role: 'menu', 'aria-label': 'Message actions' },
    picker,
    item('Reply', () => ctx.onReply(msg)),
    msg.mine ? item('Edit', () => editInPlace(li, msg, ctx)) : null,
    msg.mine ? null : item('Report', () => reportMessage(msg)),
    ctx.canDelete(msg) ? item('Delete', () => {
      // A confirmation, since it cannot be undone.
      if (window.confirm('Delete this message for everyone? This cannot be undone.')) ctx.onDelete(msg);
    }, { class: 'menu-item danger' }) : null,
  );
  menu.style.visibility = 'hidden';
  document.body.append(menu);
  const toggle = li.querySelector('.message-actions-toggle');
  place(menu, toggle && toggle.getBoundingClientRect().width ? toggle : li.querySelector('.bubble'), msg.mine);
  openMenu = menu;
  menuOwner = toggle;
  menu.querySelector('button')?.focus();
}

// Sends the message to the server's admins, with an optional reason.
function reportMessage(msg) {
  const reason = window.prompt('Report this message to the server’s admins. Why? (optional)', '');
  if (reason === null) return;
  api.reportMessage(msg.conversationId, msg.id, reason.trim())
    .then(() => window.alert('Reported. The server’s admins will look at it.'))
    .catch((e) => window.alert(e.status === 409 ? 'You have already reported this message.'
      : e.status === 429 ? 'Too many reports; try again later.' : 'Could not report the message; try again.'));
}

function editInPlace(li, msg, ctx) {
  const bubble = li.querySelector('.bubble');
  const old = bubble.querySelector('.content');
  const field = h('textarea', { class: 'edit-field', rows: '2', 'aria-label': 'Edit message', dir: 'auto' });
  field.value = msg.content;
  const error = h('p', { class: 'field-error', role: 'alert' });
  const save = async () => {
    const text = field.value;
    if (text.trim() === msg.content) return cancel();
    try {
      await ctx.onEdit(msg, text);
    } catch (err) {
      error.textContent = err.body?.errors?.content || err.message;
    }
  };
  const cancel = () => ctx.rerender(msg);
  const form = h('form', { class: 'edit-form', onsubmit: (event) => { event.preventDefault(); save(); } },
    field,
    error,
    h('div', { class: 'edit-buttons' },
      h('button', { type: 'button', class: 'button button-small button-secondary', text: 'Cancel', onclick: cancel }),
      h('button', { type: 'submit', class: 'button button-small', text: 'Save' })));
  field.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') {
      event.preventDefault();
      event.stopPropagation();
      cancel();
    } else if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      save();
    }
  });
  old.replaceWith(form);
  field.focus();
  field.setSelectionRange(field.value.length, field.value.length);
}
