import { api } from '../api.js';
import { avatar, displayName } from '../avatar.js';
import { h, icon } from '../dom.js';
import { compareIds, fullTime, relativeTime } from '../format.js';
import * as notify from '../notify.js';
import { presenceIndicator, seed } from '../presence.js';
import { navigate } from '../router.js';
import * as stream from '../stream.js';
import { preferencesPanel } from '../prefs.js';
import { setPageTitle, viewingConversation } from '../title.js';

const PAGE = 25;

export function mountHome(root, { me } = {}) {
  setPageTitle('');
  let alive = true;
  const rows = new Map(); // conversation id -> { conv, li, parts }
  const fetching = new Set();

  const list = h('ul', { class: 'conversation-list', 'aria-label': 'Conversations' });
  const empty = h('p', { class: 'empty', hidden: true, text: 'No conversations yet. Start one above.' });
  const status = h('p', { class: 'muted list-status', role: 'status', text: 'Loading conversations…' });
  const more = h('button', { type: 'button', class: 'button button-secondary load-more', hidden: true, text: 'Load more conversations' });

  root.replaceChildren(h('div', { class: 'page' },
    h('h1', { class: 'page-title', tabindex: '-1', text: 'Conversations' }),
    notificationOffer(),
    newConversationForm(() => alive),
    newGroupForm(() => alive),
    status,
    list,
    empty,
    more,
    preferencesPanel(),
  ));

  function renderRow(entry) {
    const { conv, parts } = entry;
    const last = conv.lastMessage;
    parts.preview.replaceChildren();
    // "You:" sits outside the preview, which takes its own text's direction: a right-to-left
    // message is cut at its end, so its start shows.
    parts.you.hidden = !last?.mine;
    if (last) {
      // Newlines collapse in the one-line preview.
      if (last.deletedAt) parts.preview.append(h('em', { text: 'Message deleted' }));
      else parts.preview.append(last.content.replace(/\s+/g, ' '));
      parts.time.dateTime = last.createdAt;
      parts.time.title = fullTime(last.createdAt);
      parts.time.textContent = relativeTime(last.createdAt);
    } else {
      parts.preview.append(h('em', { text: 'No messages yet' }));
    }
    const unread = Boolean(conv.hasUnreadMessages);
    entry.li.classList.toggle('unread', unread);
    entry.li.dataset.unread = String(unread);
    parts.marker.hidden = !unread;
    parts.badge.hidden = !(conv.unreadCount > 0);
    parts.badge.textContent = conv.unreadCount > 99 ? '99+' : String(conv.unreadCount || '');
    // The badge is for the eye; the marker's hidden text says the same to a screen reader
    // (an aria-label on a plain <span> is not announced).
    parts.markerText.textContent = conv.unreadCount > 0
      ? `${conv.unreadCount} unread ${conv.unreadCount === 1 ? 'message' : 'messages'}`
      : 'Unread messages';
  }

  function makeRow(conv) {
    const other = displayPeer(conv);
    // A direct conversation shows the other person's presence beside the name: a dot and
    // "online" / "away" / "last seen …".
    const person = conv.kind !== 'group' && conv.otherParticipant?.id ? conv.otherParticipant : null;
    if (person) seed(person);
    const indicator = person ? presenceIndicator(person.id) : null;
    const parts = {
      preview: h('span', { class: 'preview', dir: 'auto' }),
      you: h('span', { class: 'preview-you', hidden: true, text: 'You:' }),
      time: h('time', { class: 'time' }),
      badge: h('span', { class: 'unread-count', 'aria-hidden': 'true', hidden: true }),
      markerText: h('span', { class: 'visually-hidden', text: 'Unread messages' }),
    };
    parts.marker = h('span', { class: 'unread-marker' }, parts.markerText);
    const href = `/c/${encodeURIComponent(conv.id)}`;
    const li = h('li', { class: 'conversation-row', dataset: { id: conv.id } },
      h('a', { href, class: 'conversation-link', 'aria-current': location.pathname === href ? 'page' : null },
        avatar(other),
        h('span', { class: 'row-body' },
          h('span', { class: 'row-top' },
            h('span', { class: 'name-line' }, h('span', { class: 'name', dir: 'auto', text: displayName(other) }), indicator?.el),
            parts.time),
          h('span', { class: 'row-bottom' }, parts.you, parts.preview, parts.badge, parts.marker),
        )));
    const entry = { conv, li, parts, dispose: () => indicator?.dispose() };
    renderRow(entry);
    return entry;
  }

  function showList(conversations, { replace }) {
    if (replace) {
      for (const entry of rows.values()) entry.dispose();
      rows.clear();
      list.replaceChildren();
    }
    const frag = document.createDocumentFragment();
    for (const conv of conversations) {
      if (rows.has(conv.id)) continue;
      const entry = makeRow(conv);
      rows.set(conv.id, entry);
      frag.append(entry.li);
    }
    list.append(frag);
    empty.hidden = rows.size > 0;
    more.hidden = conversations.length < PAGE;
  }

  // A full refresh answered after a newer one began (a stream reset during the first load)
  // must not put its older list back.
  let refreshes = 0;
  async function load({ replace }) {
    const before = replace ? undefined : lastListedId();
    const refresh = replace ? ++refreshes : refreshes;
    try {
      const conversations = await api.conversations(before);
      if (!alive || refresh !== refreshes) return;
      status.textContent = '';
      showList(conversations || [], { replace });
      // This device now has every conversation's newest message: delivered receipts.
      if (replace) api.ackNow().catch(() => {});
    } catch (err) {
      if (alive) status.textContent = `Couldn't load conversations. ${err.message}`;
    }
  }

  function lastListedId() {
    const last = list.lastElementChild;
    return last ? last.dataset.id : undefined;
  }

  more.addEventListener('click', () => load({ replace: false }));

  async function onMessage(msg) {
    const entry = rows.get(msg.conversationId);
    if (entry) {
      const prev = entry.conv.lastMessage;
      if (prev && compareIds(msg.id, prev.id) <= 0) return; // replayed or out of order
      entry.conv.lastMessage = msg;
      // The conversation open beside the list (and visible) is being read: no badge for it.
      if (!msg.mine && viewingConversation() !== msg.conversationId) {
        entry.conv.hasUnreadMessages = true;
        entry.conv.unreadCount = (entry.conv.unreadCount || 0) + 1;
      } else if (msg.mine) {
        entry.conv.unreadCount = 0;
        entry.conv.hasUnreadMessages = false;
      }
      renderRow(entry);
      if (list.firstElementChild !== entry.li) list.prepend(entry.li);
      return;
    }
    // A conversation we haven't listed yet: fetch it once and put it on top.
    if (fetching.has(msg.conversationId)) return;
    fetching.add(msg.conversationId);
    try {
      const conv = await api.conversation(msg.conversationId);
      if (!alive || rows.has(conv.id)) return;
      const created = makeRow(conv);
      rows.set(conv.id, created);
      list.prepend(created.li);
      empty.hidden = true;
    } catch {
      // it will show up on the next full refresh
    } finally {
      fetching.delete(msg.conversationId);
    }
  }

  const offMessage = stream.on('message', onMessage);
  const offReset = stream.on('reset', () => load({ replace: true }));
  // Added to a group, removed, a rename, an edited or deleted last message, my own read on
  // another device: the list is refetched (these are rare). Reactions and other people's
  // receipts change nothing here.
  const offChange = stream.on('change', (change) => {
    if (change.change === 'reaction') return;
    if (change.change === 'read') {
      if (change.userId === me?.id) markRead(change.conversationId);
      return;
    }
    load({ replace: true });
  });

  // My own read, here or on another device: that row's badge goes, nothing else moves.
  function markRead(conversationId) {
    const entry = rows.get(conversationId);
    if (!entry) return;
    entry.conv.hasUnreadMessages = false;
    entry.conv.unreadCount = 0;
    renderRow(entry);
  }
  const ticker = setInterval(() => {
    for (const { conv, parts } of rows.values()) {
      if (conv.lastMessage) parts.time.textContent = relativeTime(conv.lastMessage.createdAt);
    }
  }, 30_000);

  load({ replace: true });

  return () => {
    alive = false;
    for (const entry of rows.values()) entry.dispose();
    offMessage();
    offReset();
    offChange();
    clearInterval(ticker);
  };
}

// Offered, never imposed: the browser's permission prompt appears only on this button.
function notificationOffer() {
  if (notify.permission() !== 'default') return null;
  const offer = h('div', { class: 'notification-offer', role: 'region', 'aria-label': 'Notifications' },
    h('p', { text: 'Get a desktop notification when a message arrives while Courier is in the background.' }));
  const button = h('button', { type: 'button', class: 'button button-secondary', text: 'Turn on notifications' });
  button.addEventListener('click', async () => {
    const answer = await notify.askPermission();
    if (answer !== 'default') offer.remove();
  });
  offer.append(button);
  return offer;
}

// A group shows its title where a direct conversation shows the other person.
export function displayPeer(conv) {
  if (conv.kind === 'group') return { username: conv.title || 'Group', displayName: conv.title || 'Group', avatarURL: null };
  return conv.otherParticipant || { username: '?' };
}

function newGroupForm(isAlive) {
  const title = h('input', { id: 'group-title', name: 'title', type: 'text', maxlength: '100', required: true, autocomplete: 'off' });
  const people = h('input', {
    id: 'group-people', name: 'people', type: 'text', required: true, autocomplete: 'off',
    autocapitalize: 'none', spellcheck: 'false', placeholder: 'alice, bob', 'aria-describedby': 'group-error',
    list: 'group-people-options',
  });
  // Suggestions complete the name being typed (after the last comma), keeping the others.
  const suggestions = h('datalist', { id: 'group-people-options' });
  let suggestTimer = 0;
  people.addEventListener('input', () => {
    clearTimeout(suggestTimer);
    const typed = people.value;
    const cut = Math.max(typed.lastIndexOf(','), typed.lastIndexOf(' ')) + 1;
    const partial = typed.slice(cut).trim();
    if (!partial) {
      suggestions.replaceChildren();
      return;
    }
    suggestTimer = setTimeout(async () => {
      try {
        const names = await api.usernames(partial);
        if (!isAlive() || people.value !== typed) return;
        const kept = typed.slice(0, cut);
        const chosen = new Set(kept.split(/[\s,]+/).filter(Boolean));
        suggestions.replaceChildren(...(names || []).filter((n) => !chosen.has(n))
          .map((name) => h('option', { value: `${kept}${kept && !kept.endsWith(' ') ? ' ' : ''}${name}, ` })));
      } catch {
        // suggestions are optional
      }
    }, 150);
  });
  const error = h('p', { id: 'group-error', class: 'field-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'button' }, icon('plus'), h('span', { text: 'Create group' }));
  const form = h('form', { class: 'new-conversation new-group', novalidate: true, 'aria-label': 'New group' },
    h('label', { for: 'group-title', text: 'Group title' }), title,
    h('label', { for: 'group-people', text: 'People (usernames, separated by commas)' }),
    h('div', { class: 'inline-field' }, people, button),
    suggestions,
    error);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const usernames = people.value.split(/[\s,]+/).filter(Boolean);
    error.textContent = '';
    button.disabled = true;
    try {
      const conv = await api.createGroup(usernames, title.value);
      if (isAlive()) navigate(`/c/${encodeURIComponent(conv.id)}`);
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
  return h('details', { class: 'group-create' }, h('summary', { text: 'New group' }), form);
}

function newConversationForm(isAlive) {
  const input = h('input', {
    id: 'new-username', name: 'username', type: 'text', list: 'username-options', required: true,
    autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', placeholder: 'Username',
    'aria-describedby': 'new-username-error',
  });
  const options = h('datalist', { id: 'username-options' });
  const error = h('p', { id: 'new-username-error', class: 'field-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'button' }, icon('plus'), h('span', { text: 'Start' }));
  const form = h('form', { class: 'new-conversation', novalidate: true, 'aria-label': 'New conversation' },
    h('label', { for: 'new-username', text: 'New conversation with' }),
    h('div', { class: 'inline-field' }, input, button),
    options,
    error,
  );

  let timer = 0;
  let latest = '';
  input.addEventListener('input', () => {
    error.textContent = '';
    input.removeAttribute('aria-invalid');
    clearTimeout(timer);
    const search = input.value.trim();
    if (!search) {
      options.replaceChildren();
      return;
    }
    timer = setTimeout(async () => {
      latest = search;
      try {
        const names = await api.usernames(search);
        if (!isAlive() || latest !== search) return; // a newer keystroke won
        options.replaceChildren(...(names || []).map((name) => h('option', { value: name })));
      } catch {
        // suggestions are optional
      }
    }, 150);
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = input.value.trim();
    if (!username) {
      error.textContent = 'Enter the username of the person to talk to.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      const conv = await api.startConversation(username);
      if (isAlive()) navigate(`/c/${encodeURIComponent(conv.id)}`);
    } catch (err) {
      const messages = {
        403: "You can't start a conversation with yourself.",
        404: `There's no one called “${username}”.`,
      };
      error.textContent = messages[err.status] || err.message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  return form;
}
