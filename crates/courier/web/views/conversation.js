// One conversation: its history (pages loaded as the reader scrolls up, day dividers, messages
// grouped by sender), live updates, receipts, typing, and the composer. Sending goes through
// the outbox (outbox.js): the text leaves the composer at once as a pending bubble, so nothing
// typed afterwards is touched, and a failed or queued send keeps its bubble until it is sent,
// retried or deleted.
// Hooks for other features: `renderMessage` (one bubble), `composerSend` (the send path) and
// `jumpTo` (open around a message id; also `?message=<id>` in the address).

import { api } from '../api.js';
import { applyProfile, avatar, displayName, fullName } from '../avatar.js';
import { h, icon } from '../dom.js';
import { MESSAGE_LIMIT, charCount, compareIds, dayLabel, normaliseContent } from '../format.js';
import * as notify from '../notify.js';
import * as outbox from '../outbox.js';
import { enterSends, touchScreen } from '../prefs.js';
import { presenceIndicator, seed } from '../presence.js';
import { navigate } from '../router.js';
import * as stream from '../stream.js';
import { setPageTitle, setViewing } from '../title.js';
import { composerAttachments } from './attachments.js';
import { groupPanel } from './group-panel.js';
import { closeMenus, messageNode as bubbleNode, pendingNode, refill, ticks } from './message-view.js';
import { displayPeer } from './home.js';
import { mountNotFound } from './not-found.js';
import { aroundTarget, latestOffer } from './search-view.js';

const PAGE = 25;
const GROUP_WITHIN = 5 * 60_000; // one sender's messages this close together form one group
const LOAD_OLDER_WITHIN = 600; // px from the top at which the next older page is fetched
const SKELETONS = 6;
const COUNTER_FROM = MESSAGE_LIMIT - 80;
const NEAR_BOTTOM = 48; // px of slack that still counts as "at the bottom"
const TYPING_EVERY = 3000; // ms between "I'm typing" calls while the composer has input

export function mountConversation(root, { params, me }) {
  const id = params.id;
  let alive = true;
  // Opened from a search hit: the history around that message, without the newest messages.
  const target = aroundTarget();
  let detached = false;
  let other = null;
  let isGroup = false;
  let myRole = 'member';
  const names = new Map(); // user id -> username, for a group's senders
  const shown = new Map(); // message id -> <li>; the dedupe set for POST responses and stream echoes
  const data = new Map(); // message id -> the message as last seen (edits, deletes, reactions)
  let replyingTo = null; // the message the composer answers
  // Receipts: where each other member has read to, and (groups past 20) only how many have
  // read the newest message. Delivered positions arrive the same way.
  const readBy = new Map(); // user id -> message id
  const deliveredTo = new Map(); // user id -> message id (on one of their devices)
  let memberCount = 2;
  let lastReadByCount = 0;
  let unseenBelow = 0;
  let readPending = false;

  setPageTitle('Conversation');
  setViewing(id);
  let hasMore = false; // older pages exist
  let loadingOlder = null; // the promise of the page being fetched

  const heading = h('h1', { class: 'conv-title', tabindex: '-1', dir: 'auto', text: '…' });
  const headerAvatar = h('span', { class: 'conv-avatar' });
  const headerStatus = h('p', { class: 'conv-status' });
  let headerPresence = null;
  const typers = new Map(); // user id -> { name, timer }
  const typingLine = h('p', { class: 'typing-line', role: 'status', 'aria-live': 'polite' });
  const group = groupPanel(id, {
    onRenamed: (title) => {
      heading.textContent = title;
      setPageTitle(title);
    },
  });
  group.toggle.hidden = true;
  const muteButton = h('button', {
    type: 'button', class: 'button button-small button-secondary', hidden: true, 'aria-pressed': 'false', text: 'Mute',
  });
  muteButton.addEventListener('click', async () => {
    const muted = muteButton.getAttribute('aria-pressed') !== 'true';
    try {
      await api.mute(id, muted);
      showMuted(muted);
      notify.setMuted(id, muted);
    } catch (err) {
      showError(err.message);
    }
  });
  function showMuted(muted) {
    muteButton.hidden = false;
    muteButton.setAttribute('aria-pressed', String(muted));
    muteButton.textContent = muted ? 'Muted' : 'Mute';
    muteButton.title = muted ? 'No notifications for this conversation. Click to unmute.' : 'Stop notifications for this conversation';
  }
  // Older pages load on scroll; the button is for keyboards and screen readers.
  const olderButton = h('button', { type: 'button', class: 'button button-secondary button-small older-button', hidden: true, text: 'Load older messages' });
  const olderStatus = h('p', { class: 'muted small', role: 'status' });
  const list = h('ol', { class: 'message-list' });
  const pendingList = h('ol', { class: 'outbox-list', 'aria-label': 'Not sent yet' });
  const seenBy = h('p', { class: 'seen-by muted small', hidden: true, 'aria-live': 'polite' });
  const empty = h('p', { class: 'empty', hidden: true, text: 'No messages yet. Say hello!' });
  const scroller = h('div', { class: 'messages', tabindex: '0', role: 'log', 'aria-label': 'Messages', 'aria-busy': 'true' },
    h('div', { class: 'older' }, olderButton, olderStatus),
    list,
    pendingList,
    seenBy,
    empty,
  );
  const pill = h('button', { type: 'button', class: 'new-pill', hidden: true }, icon('down'), h('span', { class: 'pill-text' }));

  const textarea = h('textarea', {
    id: 'message-input', name: 'content', rows: '1', placeholder: 'Write a message…', dir: 'auto',
    'aria-describedby': 'composer-hint composer-error composer-counter', enterkeyhint: enterSends() ? 'send' : 'enter',
  });
  const sendButton = h('button', { type: 'submit', class: 'send-button', 'aria-label': 'Send message' }, icon('send'));
  const error = h('p', { id: 'composer-error', class: 'field-error', role: 'alert' });
  const replyText = h('span', { class: 'reply-text', dir: 'auto' });
  const replyBar = h('div', { class: 'reply-bar', hidden: true },
    replyText,
    h('button', { type: 'button', class: 'icon-button reply-cancel', 'aria-label': 'Cancel reply', text: '×', onclick: () => setReply(null) }));
  const counter = h('p', { id: 'composer-counter', class: 'counter', hidden: true });
  const form = h('form', { class: 'composer', novalidate: true },
    replyBar,
    h('label', { for: 'message-input', class: 'visually-hidden', text: 'Message' }),
    h('div', { class: 'composer-row' }, textarea, sendButton),
    h('div', { class: 'composer-meta' },
      error,
      counter,
      h('p', {
        id: 'composer-hint', class: 'visually-hidden',
        text: enterSends() ? 'Enter sends. Shift+Enter starts a new line.' : 'Enter starts a new line. The send button sends.',
      })),
  );
  const files = composerAttachments({ dropTarget: form, textarea, onError: (text) => showError(text) });
  form.querySelector('.composer-row').prepend(files.button, files.input);
  form.prepend(files.tray);

  root.replaceChildren(h('div', { class: 'conversation' },
    h('header', { class: 'conv-header' },
      h('a', { href: '/', class: 'icon-button', 'aria-label': 'Back to conversations' }, icon('back')),
      headerAvatar,
      h('div', { class: 'conv-heading' }, heading, headerStatus),
      muteButton,
      group.toggle),
    group.panel,
    h('div', { class: 'messages-wrap' }, scroller, pill),
    typingLine,
    form,
  ));

  // ---- rendering -------------------------------------------------------------------------

  const ctx = {
    who: (msg) => (msg.mine ? 'You' : (names.get(msg.senderId) ?? (other ? displayName(other) : 'Them'))),
    isGroup: () => isGroup,
    canDelete: (msg) => msg.mine || (isGroup && (myRole === 'admin' || myRole === 'owner')),
    rerender: (msg) => rerender(msg),
    onReact: (msg, emoji, on) => react(msg, emoji, on),
    onReply: (msg) => setReply(msg),
    onEdit: async (msg, text) => {
      const updated = await api.editMessage(id, msg.id, text);
      if (alive) remember(updated);
    },
    onDelete: (msg) => api.deleteMessage(id, msg.id)
      .then(() => applyChange({ change: 'deleted', messageId: msg.id, createdAt: new Date().toISOString() }))
      .catch((err) => showError(err.message)),
    onJump: (messageId) => jumpTo(messageId),
    receipt: (msg) => receiptOf(msg),
  };

  // ---- receipts ---------------------------------------------------------------------------

  const idNum = (id) => {
    try {
      return BigInt(id);
    } catch {
      return 0n;
    }
  };

  // Read by everyone else (a direct conversation: the other person) beats sent.
  function receiptOf(msg) {
    const at = idNum(msg.id);
    const others = Math.max(memberCount - 1, 1);
    let read = 0;
    for (const pos of readBy.values()) if (idNum(pos) >= at) read += 1;
    let delivered = 0;
    for (const [user, pos] of deliveredTo) {
      if (idNum(pos) >= at || idNum(readBy.get(user) ?? '0') >= at) delivered += 1;
    }
    if (!isGroup) {
      if (read > 0) return { state: 'read', label: 'Read' };
      return delivered > 0 ? { state: 'delivered', label: 'Delivered' } : { state: 'sent', label: 'Sent' };
    }
    if (read >= others) return { state: 'read', label: 'Read by everyone' };
    const readText = read > 0 ? `, read by ${read}` : '';
    if (delivered > 0) {
      return { state: 'delivered', label: `Delivered to ${delivered} of ${others}${readText}` };
    }
    return { state: 'sent', label: `Sent${readText}` };
  }

  function updateReceipts() {
    for (const [msgId, li] of shown) {
      const msg = data.get(msgId);
      if (!msg?.mine || msg.deletedAt) continue;
      li.querySelector('.ticks')?.replaceWith(ticks(receiptOf(msg)));
    }
    updateSeenBy();
  }

  // Groups: who has read the newest message (names up to 20 members, else a count).
  function updateSeenBy() {
    const last = list.querySelector('.message:last-of-type')?.dataset.id;
    if (!isGroup || !last) {
      seenBy.hidden = true;
      return;
    }
    const newest = data.get(last);
    let names = [];
    for (const [user, pos] of readBy) {
      if (idNum(pos) >= idNum(last) && user !== newest?.senderId) names.push(names.length < 5 ? (ctx.who({ senderId: user }) ?? '') : null);
    }
    const count = readBy.size ? names.length : lastReadByCount;
    names = names.filter(Boolean);
    if (!count) {
      seenBy.hidden = true;
      return;
    }
    seenBy.hidden = false;
    seenBy.textContent = names.length
      ? `Seen by ${names.join(', ')}${count > names.length ? ` and ${count - names.length} more` : ''}`
      : `Seen by ${count}`;
  }

  function onDelivered(d) {
    if (d.conversationId !== id) return;
    const before = deliveredTo.get(d.userId);
    if (!before || idNum(d.messageId) > idNum(before)) deliveredTo.set(d.userId, d.messageId);
    updateReceipts();
  }

  function onRead(change) {
    if (change.userId === me?.id) return;
    const before = readBy.get(change.userId);
    if (!before || idNum(change.messageId) > idNum(before)) readBy.set(change.userId, change.messageId);
    if (!readBy.size || memberCount > 21) lastReadByCount += 1;
    updateReceipts();
  }

  // Render a message: the one place a bubble is made for this view.
  function renderMessage(msg) {
    data.set(msg.id, msg);
    return bubbleNode(msg, ctx);
  }

  function rerender(msg) {
    const li = shown.get(msg.id);
    if (!li) return;
    refill(li, msg, ctx);
    arrange(li);
  }

  // ---- dividers and grouping ---------------------------------------------------------------

  const dayOf = (msg) => new Date(msg.createdAt).toDateString();

  // Does `li` continue the group of the message just above it?
  function continues(above, li) {
    if (!above || !li || !above.classList.contains('message') || !li.classList.contains('message')) return false;
    const a = data.get(above.dataset.id);
    const b = data.get(li.dataset.id);
    if (!a || !b || a.mine !== b.mine || a.senderId !== b.senderId) return false;
    const gap = new Date(b.createdAt) - new Date(a.createdAt);
    return gap >= 0 && gap < GROUP_WITHIN && dayOf(a) === dayOf(b);
  }

  function previousMessage(li) {
    let el = li.previousElementSibling;
    while (el && !el.classList.contains('message')) el = el.previousElementSibling;
    return el;
  }

  // A message's day divider (the first of each day) and its place in its sender's group.
  function arrange(li) {
    if (!li?.classList.contains('message')) return;
    const msg = data.get(li.dataset.id);
    if (!msg) return;
    li.classList.toggle('grouped', continues(li.previousElementSibling, li));
    li.classList.toggle('group-last', !continues(li, li.nextElementSibling));
    const above = previousMessage(li);
    const newDay = !above || dayOf(data.get(above.dataset.id) ?? msg) !== dayOf(msg);
    const divider = li.querySelector(':scope > .day-divider');
    if (newDay && !divider) {
      li.prepend(h('div', { class: 'day-divider', role: 'separator' }, h('span', { text: dayLabel(msg.createdAt) })));
    } else if (!newDay && divider) {
      divider.remove();
    } else if (divider) {
      divider.firstChild.textContent = dayLabel(msg.createdAt);
    }
  }

  function arrangeAll() {
    for (const li of list.children) arrange(li);
  }

  function arrangeAround(li) {
    arrange(previousMessage(li));
    arrange(li);
    arrange(li.nextElementSibling);
  }

  // A newer copy of a shown message (an edit's answer, a refetch): keep it and redraw.
  function remember(msg) {
    const old = data.get(msg.id);
    data.set(msg.id, msg);
    if (!old || JSON.stringify(old) !== JSON.stringify(msg)) rerender(msg);
  }

  function atBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight <= NEAR_BOTTOM;
  }

  function scrollToBottom() {
    scroller.scrollTop = scroller.scrollHeight;
    unseenBelow = 0;
    pill.hidden = true;
  }

  // Inserts in id order. Live messages land at the end, so this is O(1) in the common case.
  function insert(msg) {
    if (shown.has(msg.id)) return false;
    const li = renderMessage(msg);
    shown.set(msg.id, li);
    let after = list.lastElementChild;
    while (after && (!after.dataset.id || compareIds(after.dataset.id, msg.id) > 0)) after = after.previousElementSibling;
    if (after) after.after(li);
    else list.prepend(li);
    arrangeAround(li);
    empty.hidden = true;
    return true;
  }

  function addLive(msg, { own = false } = {}) {
    // Newer messages are not loaded around a search hit: "Jump to latest" shows them (and one's
    // own send goes there at once).
    if (detached) {
      if (own) navigate(`/c/${encodeURIComponent(id)}`);
      return;
    }
    const wasAtBottom = atBottom();
    if (!insert(msg)) return;
    if (own || wasAtBottom) {
      scrollToBottom();
    } else {
      unseenBelow += 1;
      pill.querySelector('.pill-text').textContent =
        unseenBelow === 1 ? '1 new message' : `${unseenBelow} new messages`;
      pill.hidden = false;
    }
    if (!msg.mine) {
      markReadSoon();
      stopTyping(msg.senderId); // their message ends their typing
    }
    updateSeenBy();
  }

  // ---- typing -----------------------------------------------------------------------------

  function renderTyping() {
    const names = [...typers.values()].map((t) => t.name);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names.length} people are typing…`;
    typingLine.textContent = text;
    typingLine.classList.toggle('active', Boolean(text));
  }

  function stopTyping(userId) {
    const typer = typers.get(userId);
    if (!typer) return;
    clearTimeout(typer.timer);
    typers.delete(userId);
    renderTyping();
  }

  function onTyping(t) {
    if (t.conversationId !== id) return;
    if (!t.typing) {
      stopTyping(t.userId);
      return;
    }
    clearTimeout(typers.get(t.userId)?.timer);
    const name = names.get(t.userId) || t.username || (other && displayName(other)) || 'Someone';
    // It lapses unless renewed: the sender repeats the call while typing.
    const timer = setTimeout(() => stopTyping(t.userId), t.expiresInMs || 6000);
    typers.set(t.userId, { name, timer });
    renderTyping();
  }

  let typingSentAt = 0;
  function noteTyping() {
    if (!textarea.value.trim()) return;
    const now = Date.now();
    if (now - typingSentAt < TYPING_EVERY) return;
    typingSentAt = now;
    api.typing(id).catch(() => {
      // best effort: a 429 or a blip only costs the indicator
    });
  }

  // ---- loading ----------------------------------------------------------------------------

  async function loadInitial() {
    try {
      const conv = await api.conversation(id);
      if (!alive) return;
      other = displayPeer(conv);
      notify.remember(conv);
      showMuted(Boolean(conv.muted));
      myRole = conv.role || 'member';
      memberCount = conv.memberCount || 2;
      lastReadByCount = conv.lastMessageReadBy || 0;
      readBy.clear();
      for (const r of conv.readPositions || []) readBy.set(r.userId, r.messageId);
      deliveredTo.clear();
      for (const d of conv.deliveredPositions || []) deliveredTo.set(d.userId, d.messageId);
      if (conv.kind === 'group') {
        isGroup = true;
        group.toggle.hidden = false;
        const members = await api.members(id);
        for (const m of members || []) names.set(m.user.id, displayName(m.user));
        if (!alive) return;
      }
      showOther();
      if (conv.kind !== 'group' && conv.otherParticipant?.id) {
        seed(conv.otherParticipant);
        headerPresence?.dispose();
        headerPresence = presenceIndicator(conv.otherParticipant.id);
        headerStatus.replaceChildren(headerPresence.el);
      }
      scroller.setAttribute('aria-label', `Messages with ${displayName(other)}`);
      // The newest page also marks the conversation read; a page around a hit does not.
      const page = target ? await api.messagesAround(id, target) : await api.messages(id);
      if (!alive) return;
      detached = Boolean(target) && page.filter((m) => compareIds(m.id, target) > 0).length >= PAGE / 2 - 1;
      if (detached) scroller.append(latestOffer(id));
      api.ackNow().catch(() => {}); // and has reached this device
      for (const placeholder of list.querySelectorAll('.skeleton')) placeholder.remove();
      hasMore = page.length >= PAGE;
      prependPage(page);
      empty.hidden = shown.size > 0 || pendingList.childElementCount > 0;
      scroller.setAttribute('aria-busy', 'false');
      updateReceipts();
      if (target && shown.has(target)) jumpTo(target);
      else scrollToBottom();
      // A touch screen would raise its keyboard over the history: there the person taps the box.
      if (!touchScreen()) textarea.focus({ preventScroll: true });
      if (!detached) await fillViewport();
      const wanted = new URLSearchParams(location.search).get('message');
      if (wanted && alive) jumpTo(wanted);
    } catch (err) {
      if (!alive) return;
      if (err.status === 404 || err.status === 422) {
        cleanup();
        mountNotFound(root, { what: 'conversation' });
        return;
      }
      heading.textContent = 'Conversation';
      for (const placeholder of list.querySelectorAll('.skeleton')) placeholder.remove();
      olderStatus.textContent = `Couldn't load this conversation. ${err.message}`;
    }
  }

  function skeletons(count) {
    return Array.from({ length: count }, (_, i) => h('li', {
      class: `skeleton ${i % 3 === 1 ? 'mine' : 'theirs'}`, 'aria-hidden': 'true',
    }, h('span', { class: 'skeleton-bubble' })));
  }

  // Puts a page (newest first, as the API sends it) above what is shown.
  function prependPage(page) {
    const frag = document.createDocumentFragment();
    for (const msg of [...page].reverse()) {
      if (shown.has(msg.id)) continue;
      const li = renderMessage(msg);
      shown.set(msg.id, li);
      frag.append(li);
    }
    list.prepend(frag);
    arrangeAll();
    olderButton.hidden = !hasMore;
    olderStatus.textContent = !hasMore && shown.size ? 'This is the beginning of the conversation.' : '';
  }

  function loadOlder() {
    loadingOlder ||= fetchOlder().finally(() => {
      loadingOlder = null;
    });
    return loadingOlder;
  }

  async function fetchOlder() {
    const oldest = list.querySelector('.message')?.dataset.id;
    if (!oldest || !hasMore) return;
    olderButton.disabled = true;
    scroller.setAttribute('aria-busy', 'true');
    const placeholders = skeletons(2);
    const fromBottom = () => scroller.scrollHeight - scroller.scrollTop;
    let keep = fromBottom();
    list.prepend(...placeholders);
    scroller.scrollTop = scroller.scrollHeight - keep;
    try {
      const page = await api.messages(id, oldest);
      if (!alive) return;
      hasMore = page.length >= PAGE;
      // Keep the reader's place: grow the content above without moving what they see.
      keep = fromBottom();
      for (const p of placeholders) p.remove();
      prependPage(page);
      scroller.scrollTop = scroller.scrollHeight - keep;
    } catch (err) {
      for (const p of placeholders) p.remove();
      olderStatus.textContent = `Couldn't load older messages. ${err.message}`;
    } finally {
      olderButton.disabled = false;
      scroller.setAttribute('aria-busy', 'false');
    }
  }

  function nearTop() {
    return scroller.scrollTop < LOAD_OLDER_WITHIN;
  }

  // Pages too short to scroll: fetch until the history fills the view or ends.
  async function fillViewport() {
    for (let pages = 0; pages < 20 && alive && hasMore && scroller.scrollHeight <= scroller.clientHeight; pages++) {
      await loadOlder();
    }
  }

  let initialLoad = null;

  // After a stream reset: fetch newest pages until they overlap what's shown, then fill the gap.
  async function catchUp() {
    // The first load may still be in flight (the stream opened meanwhile): catch up over what
    // it shows, not beside it.
    await initialLoad;
    if (!alive) return;
    if (!other) return loadInitial();
    const missing = [];
    let before;
    for (let pages = 0; pages < 20; pages++) {
      let page;
      try {
        page = await api.messages(id, before);
      } catch {
        return;
      }
      if (!alive) return;
      let overlapped = false;
      for (const msg of page) {
        if (shown.has(msg.id)) {
          overlapped = true;
          remember(msg); // edits, deletes and reactions made while the stream was away
        } else missing.push(msg);
      }
      if (overlapped || page.length < PAGE) break;
      before = page[page.length - 1].id;
    }
    missing.sort((a, b) => compareIds(a.id, b.id));
    for (const msg of missing) addLive(msg);
  }

  // ---- reading ----------------------------------------------------------------------------

  // One request in flight at a time; a burst of arrivals collapses into one follow-up request.
  let reading = false;
  function markReadSoon() {
    readPending = true;
    if (document.hidden || reading) return;
    readPending = false;
    reading = true;
    api.markRead(id)
      .catch(() => {
        readPending = true;
      })
      .finally(() => {
        reading = false;
        if (readPending && alive) markReadSoon();
      });
  }

  function onVisibility() {
    if (!document.hidden && readPending) markReadSoon();
  }

  // ---- composing --------------------------------------------------------------------------

  function updateCounter() {
    const count = charCount(normaliseContent(textarea.value));
    if (count < COUNTER_FROM) {
      counter.hidden = true;
      return;
    }
    counter.hidden = false;
    const left = MESSAGE_LIMIT - count;
    counter.textContent = left >= 0 ? `${left} characters left` : `${-left} characters over the limit`;
    counter.classList.toggle('over', left < 0);
  }

  function autosize() {
    textarea.style.height = 'auto';
    textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
  }

  function showError(text) {
    error.textContent = text;
    if (text) textarea.setAttribute('aria-invalid', 'true');
    else textarea.removeAttribute('aria-invalid');
  }

  // The composer's send: exactly the text there now moves into a pending bubble and the
  // outbox; whatever is typed from here on stays in the composer.
  function composerSend() {
    const content = normaliseContent(textarea.value);
    if (files.busy()) {
      showError('Wait for the files to finish uploading, or remove them.');
      return null;
    }
    const attachments = files.ids();
    if (!content && !attachments.length) {
      showError('Write something before sending.');
      return null;
    }
    if (charCount(content) > MESSAGE_LIMIT) {
      showError(`Messages can be at most ${MESSAGE_LIMIT} characters.`);
      return null;
    }
    const replyTo = replyingTo
      ? { id: replyingTo.id, preview: replyingTo.content.slice(0, 100), sender: { username: ctx.who(replyingTo) } }
      : null;
    textarea.value = '';
    setReply(null);
    typingSentAt = 0; // the message ended it; the next keystroke starts anew
    autosize();
    updateCounter();
    showError('');
    // The files are on the server already: the queued send carries their upload ids.
    const entry = outbox.enqueue(id, content, replyTo, attachments); // its bubble appears through onChange
    files.clear();
    scrollToBottom();
    return entry;
  }

  // ---- the outbox's bubbles -------------------------------------------------------------------

  const pendingShown = new Map(); // outbox key -> <li>

  const pendingActions = {
    retry: (entry) => outbox.retry(entry.key),
    discard: (entry) => {
      if (outbox.discard(entry.key)) dropPending(entry.key);
    },
  };

  function showPending(entry) {
    if (entry.conversationId !== id) return;
    const li = pendingNode(entry, pendingActions);
    const old = pendingShown.get(entry.key);
    if (old) old.replaceWith(li);
    else pendingList.append(li);
    pendingShown.set(entry.key, li);
    empty.hidden = true;
  }

  function dropPending(key) {
    pendingShown.get(key)?.remove();
    pendingShown.delete(key);
  }

  function syncPending() {
    const keys = new Set();
    for (const entry of outbox.pending(id)) {
      keys.add(entry.key);
      showPending(entry);
    }
    for (const key of [...pendingShown.keys()]) if (!keys.has(key)) dropPending(key);
  }

  const offOutbox = outbox.onChange(({ type, entry, message }) => {
    if (!entry) {
      syncPending();
      return;
    }
    if (entry.conversationId !== id) return;
    if (type === 'changed') showPending(entry);
    else dropPending(entry.key);
    if (type === 'sent' && message && alive) addLive(message, { own: true });
  });

  textarea.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || event.isComposing) return;
    // Shift+Enter is a new line everywhere; plain Enter sends unless this device says otherwise.
    if (!event.shiftKey && enterSends()) {
      event.preventDefault();
      composerSend();
    }
  });
  textarea.addEventListener('input', () => {
    if (error.textContent) showError('');
    autosize();
    updateCounter();
    noteTyping();
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    composerSend();
  });
  olderButton.addEventListener('click', () => loadOlder());
  pill.addEventListener('click', () => {
    scrollToBottom();
    textarea.focus();
  });
  let lastScrollTop = 0;
  scroller.addEventListener('scroll', () => {
    if (!pill.hidden && atBottom()) {
      unseenBelow = 0;
      pill.hidden = true;
    }
    // Only a scroll upwards fetches: jumping to the newest message never does.
    const upwards = scroller.scrollTop < lastScrollTop;
    lastScrollTop = scroller.scrollTop;
    if (upwards && hasMore && !loadingOlder && nearTop() && other) loadOlder().then(() => alive && nearTop() && hasMore && loadOlder());
  }, { passive: true });

  // Membership and title changes of this conversation: a system line; leaving ends the view.
  const offChange = stream.on('change', (change) => {
    if (change.conversationId !== id || !other) return;
    if (change.change === 'read') {
      onRead(change);
      return;
    }
    if (change.messageId) {
      applyChange(change);
      return;
    }
    if (change.change === 'profile') {
      applyProfileHere(change);
      return;
    }
    const users = (change.users || []).map((u) => displayName(u));
    for (const u of change.users || []) names.set(u.id, displayName(u));
    const actor = change.actor ? displayName(change.actor) : 'Someone';
    const lines = {
      renamed: `${actor} renamed the group to “${change.title}”`,
      added: `${actor} added ${users.join(', ')}`,
      removed: `${actor} removed ${users.join(', ')}`,
      left: `${users.join(', ')} left`,
      role: `${actor} made ${users.join(', ')} ${change.role}`,
    };
    if (change.change === 'renamed') {
      heading.textContent = change.title;
      setPageTitle(change.title);
    }
    group.refresh().catch(() => {});
    if (lines[change.change]) {
      list.append(h('li', { class: 'system-line', dataset: { id: change.position }, text: lines[change.change] }));
      if (atBottom()) scrollToBottom();
    }
    // Was it me? Then the conversation is gone for me (404): back to the list.
    if (change.change === 'removed' || change.change === 'left') {
      api.conversation(id).catch((err) => {
        if (alive && err.status === 404) navigate('/');
      });
    }
  });
  // Someone here has a new name or picture (or deleted their account): the header, the
  // senders' names on the bubbles and the group panel follow, without a reload.
  function applyProfileHere(change) {
    const user = { id: change.userId, displayName: change.displayName, avatarURL: change.avatarURL, deleted: change.deleted, username: change.actor?.username };
    if (applyProfile(other, change)) showOther();
    if (names.has(change.userId) || isGroup) {
      names.set(change.userId, displayName(user));
      for (const el of list.querySelectorAll(`.sender[data-user-id="${CSS.escape(change.userId)}"]`)) el.textContent = displayName(user);
      group.refresh().catch(() => {});
    }
  }

  function showOther() {
    const shown = isGroup ? other.username : fullName(other);
    heading.textContent = shown;
    headerAvatar.replaceChildren(avatar(other, 'sm'));
    setPageTitle(isGroup ? other.username : displayName(other));
  }

  const offMessage = stream.on('message', (msg) => {
    if (msg.conversationId !== id) return;
    if (msg.mine) hideEchoed(msg);
    addLive(msg);
  });

  // The stream can bring my own message before the send's answer does: the stored copy shows,
  // its pending bubble steps aside (it comes back if the send still fails).
  function hideEchoed(msg) {
    for (const entry of outbox.pending(id)) {
      const li = pendingShown.get(entry.key);
      if (entry.state === 'sending' && entry.content === msg.content && li && !li.hidden) {
        li.hidden = true;
        return;
      }
    }
  }
  const offReset = stream.on('reset', catchUp);
  const offDelivered = stream.on('delivered', onDelivered);
  const offTyping = stream.on('typing', onTyping);
  document.addEventListener('visibilitychange', onVisibility);

  // ---- a message's lifecycle ----------------------------------------------------------------

  // Applies an edit, delete or reaction from the stream (or our own delete, at once).
  function applyChange(change) {
    const msg = data.get(change.messageId);
    if (change.change === 'edited' || change.change === 'deleted') {
      const deleted = change.change === 'deleted';
      if (msg) {
        if (deleted) {
          Object.assign(msg, { content: '', deletedAt: msg.deletedAt || change.createdAt, reactions: [] });
        } else if (typeof change.content === 'string') {
          Object.assign(msg, { content: change.content, editedAt: change.createdAt });
        }
        rerender(msg);
      }
      // Replies quoting it follow it.
      for (const other of data.values()) {
        if (other.replyTo?.id !== change.messageId) continue;
        if (deleted) Object.assign(other.replyTo, { deleted: true, preview: null });
        else if (typeof change.content === 'string' && other.replyTo.preview !== null) {
          other.replyTo.preview = change.content.length > 100 ? `${change.content.slice(0, 100)}…` : change.content;
        }
        rerender(other);
      }
      if (deleted && replyingTo?.id === change.messageId) setReply(null);
      return;
    }
    if (change.change === 'reaction' && msg) {
      const list = msg.reactions || (msg.reactions = []);
      let r = list.find((x) => x.emoji === change.emoji);
      if (!r) {
        r = { emoji: change.emoji, count: 0, mine: false };
        list.push(r);
      }
      r.count = change.count;
      if (change.actor?.id === me?.id) r.mine = change.added;
      if (r.count <= 0) list.splice(list.indexOf(r), 1);
      rerender(msg);
    }
  }

  async function react(msg, emoji, on) {
    try {
      await api.react(id, msg.id, emoji, on);
      // Show it at once; the stream's event sets the exact count when it arrives.
      const current = data.get(msg.id);
      const list = current.reactions || (current.reactions = []);
      let r = list.find((x) => x.emoji === emoji);
      if (on && !r) list.push(r = { emoji, count: 0, mine: false });
      if (r && r.mine !== on) {
        r.mine = on;
        r.count += on ? 1 : -1;
        if (r.count <= 0) list.splice(list.indexOf(r), 1);
        rerender(current);
      }
    } catch (err) {
      showError(err.message);
    }
  }

  function setReply(msg) {
    replyingTo = msg;
    replyBar.hidden = !msg;
    if (msg) {
      const who = ctx.who(msg);
      replyText.replaceChildren(h('strong', { text: `Replying to ${who}` }), ' ', msg.content.slice(0, 100));
      textarea.focus();
    }
  }

  // Shows a message, loading older pages until it is there (or history ends).
  async function jumpTo(messageId) {
    for (let pages = 0; pages < 100 && !shown.has(messageId) && hasMore && alive; pages++) {
      await loadOlder();
    }
    const li = shown.get(messageId);
    if (!li) {
      olderStatus.textContent = 'The original message is not available.';
      return;
    }
    li.scrollIntoView({ block: 'center' });
    li.classList.add('highlight');
    setTimeout(() => li.classList.remove('highlight'), 2000);
  }

  function cleanup() {
    alive = false;
    setViewing(null);
    offOutbox();
    closeMenus();
    offDelivered();
    offTyping();
    for (const t of typers.values()) clearTimeout(t.timer);
    headerPresence?.dispose();
    offMessage();
    offChange();
    offReset();
    document.removeEventListener('visibilitychange', onVisibility);
  }

  list.append(...skeletons(SKELETONS));
  syncPending();
  initialLoad = loadInitial();
  return cleanup;
}
