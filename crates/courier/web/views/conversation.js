import { api } from '../api.js';
import { avatar } from '../avatar.js';
import { h, icon } from '../dom.js';
import { MESSAGE_LIMIT, charCount, compareIds, fullTime, linkParts, messageTime, normaliseContent } from '../format.js';
import * as notify from '../notify.js';
import { presenceIndicator, seed } from '../presence.js';
import { navigate } from '../router.js';
import * as stream from '../stream.js';
import { setPageTitle } from '../title.js';
import { groupPanel } from './group-panel.js';
import { displayPeer } from './home.js';
import { mountNotFound } from './not-found.js';

const PAGE = 25;
const COUNTER_FROM = MESSAGE_LIMIT - 80;
const NEAR_BOTTOM = 48; // px of slack that still counts as "at the bottom"
const TYPING_EVERY = 3000; // ms between "I'm typing" calls while the composer has input

export function mountConversation(root, { params }) {
  const id = params.id;
  let alive = true;
  let other = null;
  const names = new Map(); // user id -> username, for a group's senders
  const shown = new Map(); // message id -> <li>; the dedupe set for POST responses and stream echoes
  let unseenBelow = 0;
  let readPending = false;

  setPageTitle('Conversation');

  const heading = h('h1', { class: 'conv-title', tabindex: '-1', text: '…' });
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
  const olderButton = h('button', { type: 'button', class: 'button button-secondary button-small', hidden: true, text: 'Load older messages' });
  const olderStatus = h('p', { class: 'muted small', role: 'status' });
  const list = h('ol', { class: 'message-list' });
  const empty = h('p', { class: 'empty', hidden: true, text: 'No messages yet. Say hello!' });
  const scroller = h('div', { class: 'messages', tabindex: '0', role: 'log', 'aria-label': 'Messages', 'aria-busy': 'true' },
    h('div', { class: 'older' }, olderButton, olderStatus),
    list,
    empty,
  );
  const pill = h('button', { type: 'button', class: 'new-pill', hidden: true }, icon('down'), h('span', { class: 'pill-text' }));

  const textarea = h('textarea', {
    id: 'message-input', name: 'content', rows: '1', placeholder: 'Write a message…',
    'aria-describedby': 'composer-hint composer-error composer-counter', enterkeyhint: 'send',
  });
  const sendButton = h('button', { type: 'submit', class: 'send-button', 'aria-label': 'Send message' }, icon('send'));
  const error = h('p', { id: 'composer-error', class: 'field-error', role: 'alert' });
  const counter = h('p', { id: 'composer-counter', class: 'counter', hidden: true });
  const form = h('form', { class: 'composer', novalidate: true },
    h('label', { for: 'message-input', class: 'visually-hidden', text: 'Message' }),
    h('div', { class: 'composer-row' }, textarea, sendButton),
    h('div', { class: 'composer-meta' },
      error,
      counter,
      h('p', { id: 'composer-hint', class: 'visually-hidden', text: 'Enter sends. Shift+Enter starts a new line.' })),
  );

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

  function messageNode(msg) {
    const content = h('p', { class: 'content' });
    for (const part of linkParts(msg.content)) {
      if (part.href) {
        content.append(h('a', { href: part.href, target: '_blank', rel: 'noopener noreferrer nofollow', text: part.text }));
      } else {
        content.append(part.text);
      }
    }
    const who = msg.mine ? 'You' : (names.get(msg.senderId) ?? other?.username ?? 'Them');
    // In a group, whose message it is matters: the name shows above the text.
    const sender = !msg.mine && names.size > 0
      ? h('span', { class: 'sender', 'aria-hidden': 'true', text: who })
      : null;
    return h('li', { class: msg.mine ? 'message mine' : 'message theirs', dataset: { id: msg.id } },
      h('div', { class: 'bubble' },
        sender,
        h('span', { class: 'visually-hidden', text: `${who}: ` }),
        content,
        h('time', { datetime: msg.createdAt, title: fullTime(msg.createdAt), text: messageTime(msg.createdAt) })));
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
    const li = messageNode(msg);
    shown.set(msg.id, li);
    let after = list.lastElementChild;
    while (after && compareIds(after.dataset.id, msg.id) > 0) after = after.previousElementSibling;
    if (after) after.after(li);
    else list.prepend(li);
    empty.hidden = true;
    return true;
  }

  function addLive(msg, { own = false } = {}) {
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
    const name = t.username || names.get(t.userId) || other?.username || 'Someone';
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
      if (conv.kind === 'group') {
        group.toggle.hidden = false;
        const members = await api.members(id);
        for (const m of members || []) names.set(m.user.id, m.user.username);
        if (!alive) return;
      }
      heading.textContent = other.username;
      headerAvatar.replaceChildren(avatar(other, 'sm'));
      if (conv.kind !== 'group' && conv.otherParticipant?.id) {
        seed(conv.otherParticipant);
        headerPresence?.dispose();
        headerPresence = presenceIndicator(conv.otherParticipant.id);
        headerStatus.replaceChildren(headerPresence.el);
      }
      scroller.setAttribute('aria-label', `Messages with ${other.username}`);
      setPageTitle(other.username);
      const page = await api.messages(id); // also marks the conversation read
      if (!alive) return;
      const frag = document.createDocumentFragment();
      for (const msg of [...page].reverse()) {
        if (shown.has(msg.id)) continue;
        const li = messageNode(msg);
        shown.set(msg.id, li);
        frag.append(li);
      }
      list.prepend(frag);
      empty.hidden = shown.size > 0;
      olderButton.hidden = page.length < PAGE;
      if (page.length && page.length < PAGE) olderStatus.textContent = 'This is the beginning of the conversation.';
      scroller.setAttribute('aria-busy', 'false');
      scrollToBottom();
      textarea.focus();
    } catch (err) {
      if (!alive) return;
      if (err.status === 404 || err.status === 422) {
        cleanup();
        mountNotFound(root, { what: 'conversation' });
        return;
      }
      heading.textContent = 'Conversation';
      olderStatus.textContent = `Couldn't load this conversation. ${err.message}`;
    }
  }

  async function loadOlder() {
    const oldest = list.firstElementChild?.dataset.id;
    if (!oldest) return;
    olderButton.disabled = true;
    scroller.setAttribute('aria-busy', 'true');
    try {
      const page = await api.messages(id, oldest);
      if (!alive) return;
      const frag = document.createDocumentFragment();
      for (const msg of [...page].reverse()) {
        if (shown.has(msg.id)) continue;
        const li = messageNode(msg);
        shown.set(msg.id, li);
        frag.append(li);
      }
      // Keep the reader's place: grow the content above without moving what they see.
      const fromBottom = scroller.scrollHeight - scroller.scrollTop;
      list.prepend(frag);
      scroller.scrollTop = scroller.scrollHeight - fromBottom;
      olderButton.hidden = page.length < PAGE;
      olderStatus.textContent = page.length < PAGE ? 'This is the beginning of the conversation.' : '';
    } catch (err) {
      olderStatus.textContent = `Couldn't load older messages. ${err.message}`;
    } finally {
      olderButton.disabled = false;
      scroller.setAttribute('aria-busy', 'false');
    }
  }

  // After a stream reset: fetch newest pages until they overlap what's shown, then fill the gap.
  async function catchUp() {
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
        if (shown.has(msg.id)) overlapped = true;
        else missing.push(msg);
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

  let sending = false;
  async function send() {
    if (sending) return;
    const content = normaliseContent(textarea.value);
    if (!content) {
      showError('Write something before sending.');
      return;
    }
    if (charCount(content) > MESSAGE_LIMIT) {
      showError(`Messages can be at most ${MESSAGE_LIMIT} characters.`);
      return;
    }
    sending = true;
    sendButton.disabled = true;
    form.setAttribute('aria-busy', 'true');
    try {
      const msg = await api.sendMessage(id, content);
      if (!alive) return;
      typingSentAt = 0; // the message ended it; the next keystroke starts anew
      textarea.value = '';
      autosize();
      updateCounter();
      showError('');
      addLive(msg, { own: true });
    } catch (err) {
      if (!alive) return;
      showError(err.status === 422 ? err.body?.errors?.content || err.message : `Not sent. ${err.message}`);
    } finally {
      sending = false;
      sendButton.disabled = false;
      form.removeAttribute('aria-busy');
      if (alive) textarea.focus();
    }
  }

  textarea.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
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
    send();
  });
  olderButton.addEventListener('click', loadOlder);
  pill.addEventListener('click', () => {
    scrollToBottom();
    textarea.focus();
  });
  scroller.addEventListener('scroll', () => {
    if (!pill.hidden && atBottom()) {
      unseenBelow = 0;
      pill.hidden = true;
    }
  }, { passive: true });

  // Membership and title changes of this conversation: a system line; leaving ends the view.
  const offChange = stream.on('change', (change) => {
    if (change.conversationId !== id || !other) return;
    const users = (change.users || []).map((u) => u.username);
    for (const u of change.users || []) names.set(u.id, u.username);
    const actor = change.actor?.username ?? 'Someone';
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
  const offMessage = stream.on('message', (msg) => {
    if (msg.conversationId === id) addLive(msg);
  });
  const offReset = stream.on('reset', catchUp);
  const offTyping = stream.on('typing', onTyping);
  document.addEventListener('visibilitychange', onVisibility);

  function cleanup() {
    alive = false;
    offTyping();
    for (const t of typers.values()) clearTimeout(t.timer);
    headerPresence?.dispose();
    offMessage();
    offChange();
    offReset();
    document.removeEventListener('visibilitychange', onVisibility);
  }

  loadInitial();
  return cleanup;
}
