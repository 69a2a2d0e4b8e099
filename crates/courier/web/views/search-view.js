// Search: the box in the top bar, the results page (/search?q=…) and the jump into a
// conversation around a hit (/c/{id}?m={messageId}). Snippets arrive as {text, hit} segments
// and are built as text nodes, hits inside <mark>: nothing a person wrote becomes HTML.

import { api } from '../api.js';
import { displayName } from '../avatar.js';
import { h, icon } from '../dom.js';
import { fullTime, relativeTime } from '../format.js';
import { navigate } from '../router.js';
import { setPageTitle } from '../title.js';

const HELP = 'Words, "exact phrases", -leave-out, from:username';

// The top bar's search box; submitting opens the results page.
export function searchBox() {
  const input = h('input', {
    type: 'search', name: 'q', class: 'search-input', placeholder: 'Search messages',
    'aria-label': 'Search messages', title: HELP, enterkeyhint: 'search', autocomplete: 'off',
    value: location.pathname === '/search' ? currentQuery() : null,
  });
  return h('form', {
    class: 'search-box', role: 'search',
    onsubmit: (event) => {
      event.preventDefault();
      const q = input.value.trim();
      if (q) navigate(`/search?q=${encodeURIComponent(q)}`);
    },
  }, input);
}

function currentQuery() {
  return new URLSearchParams(location.search).get('q') || '';
}

// The message a conversation should open around (`?m=` in the address), or null.
export function aroundTarget() {
  return new URLSearchParams(location.search).get('m');
}

export function mountSearch(root) {
  const q = currentQuery();
  let alive = true;
  setPageTitle(q ? `Search: ${q}` : 'Search');
  const list = h('ol', { class: 'search-results', 'aria-label': 'Search results' });
  const status = h('p', { class: 'muted list-status', role: 'status' });
  const more = h('button', { type: 'button', class: 'button button-secondary load-more', hidden: true, text: 'More results' });
  let next = null;

  root.replaceChildren(h('div', { class: 'page' },
    h('h1', { class: 'page-title', tabindex: '-1', text: q ? `Results for “${q}”` : 'Search' }),
    h('p', { class: 'muted small', text: HELP }),
    status,
    list,
    more,
  ));

  async function load() {
    if (!q) {
      status.textContent = 'Type what to look for in the search box above.';
      return;
    }
    status.textContent = 'Searching…';
    more.disabled = true;
    try {
      const page = await api.search(q, next);
      if (!alive) return;
      for (const hit of page.results) list.append(resultRow(hit));
      next = page.nextBefore;
      more.hidden = !next;
      status.textContent = list.childElementCount
        ? `${list.childElementCount}${next ? '+' : ''} ${list.childElementCount === 1 ? 'message' : 'messages'} found`
        : 'No messages found.';
    } catch (err) {
      if (alive) status.textContent = err.status === 400 ? err.message : `Couldn't search. ${err.message}`;
    } finally {
      more.disabled = false;
    }
  }
  more.addEventListener('click', load);
  load();
  return () => { alive = false; };
}

function resultRow(hit) {
  const where = hit.conversationKind === 'group' ? (hit.conversationTitle || 'Group') : 'Direct message';
  const snippet = h('p', { class: 'search-snippet', dir: 'auto' },
    hit.snippet.map((s) => (s.hit ? h('mark', { text: s.text }) : s.text)));
  const href = `/c/${encodeURIComponent(hit.conversationId)}?m=${encodeURIComponent(hit.messageId)}`;
  return h('li', { class: 'search-result', dataset: { id: hit.messageId } },
    h('a', { href, class: 'search-link' },
      h('span', { class: 'search-meta' },
        h('strong', { text: hit.mine ? 'You' : displayName(hit.sender) }),
        h('span', { class: 'muted', text: ` in ${where} · ` }),
        h('time', { class: 'muted', dateTime: hit.createdAt, title: fullTime(hit.createdAt), text: relativeTime(hit.createdAt) })),
      snippet));
}

// Shown at the bottom of a conversation opened around an older message: the newest messages
// are not loaded, so live ones are not appended; this goes to them.
export function latestOffer(conversationId) {
  return h('button', {
    type: 'button', class: 'button button-secondary button-small jump-latest',
    onclick: () => navigate(`/c/${encodeURIComponent(conversationId)}`),
  }, icon('down'), h('span', { text: 'Jump to latest messages' }));
}
