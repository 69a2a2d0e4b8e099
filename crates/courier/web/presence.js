// Presence as this tab knows it, and this tab's own state as it reports it.
// - Others: seeded from the `presence`/`lastSeenAt` keys of a conversation's otherParticipant,
//   then moved by `presence` events (they carry no id and are never replayed, so a view that
//   (re)loads takes the JSON as the truth again).
// - Self: `away` while the page is hidden or after 5 minutes without input, `online` again on
//   return. The server forgets a session's `away` when its stream reconnects, so it is said
//   again whenever the stream opens.

import { api } from './api.js';
import { h } from './dom.js';
import { relativeTime } from './format.js';
import * as stream from './stream.js';

const IDLE_AFTER = 5 * 60_000;

const known = new Map(); // user id -> { state, lastSeenAt }
const watchers = new Set();

function set(userId, value) {
  known.set(userId, value);
  for (const fn of [...watchers]) {
    try {
      fn(userId, value);
    } catch (err) {
      console.error(err);
    }
  }
}

// Takes a user's presence from API JSON (a User with `presence`), if it has one.
export function seed(user) {
  if (user?.id && user.presence) set(user.id, { state: user.presence, lastSeenAt: user.lastSeenAt ?? null });
}

export function presenceOf(userId) {
  return known.get(userId);
}

// Calls `fn(userId, presence)` on every change; returns the unsubscribe function.
export function watch(fn) {
  watchers.add(fn);
  return () => watchers.delete(fn);
}

stream.on('presence', (p) => set(p.userId, { state: p.state, lastSeenAt: p.lastSeenAt ?? null }));

// "online", "away", "last seen 5m ago", "last seen Mon", "offline".
export function describePresence(p) {
  if (!p) return '';
  if (p.state === 'online') return 'online';
  if (p.state === 'away') return 'away';
  if (!p.lastSeenAt) return 'offline';
  const rel = relativeTime(p.lastSeenAt);
  if (rel === 'just now') return 'last seen just now';
  return /^\d+[mh]$/.test(rel) ? `last seen ${rel} ago` : `last seen ${rel}`;
}

// A dot and a short text for one person, kept up to date until `dispose`.
export function presenceIndicator(userId, { withText = true } = {}) {
  const dot = h('span', { class: 'presence-dot', 'aria-hidden': 'true' });
  const text = h('span', { class: withText ? 'presence-text' : 'visually-hidden' });
  const el = h('span', { class: 'presence', hidden: true }, dot, text);
  function render() {
    const p = known.get(userId);
    el.hidden = !p;
    if (!p) return;
    dot.dataset.state = p.state;
    el.dataset.state = p.state;
    text.textContent = describePresence(p);
  }
  const off = watch((id) => {
    if (id === userId) render();
  });
  // "last seen 5m ago" ages.
  const ticker = setInterval(render, 30_000);
  render();
  return {
    el,
    dispose() {
      off();
      clearInterval(ticker);
    },
  };
}

// ---- reporting this tab's own state ---------------------------------------------------------

let reporting = false;
let idle = false;
let idleTimer = 0;
let reported = 'online'; // what the server was last told for this session
let lastActivity = 0;

function wanted() {
  return document.hidden || idle ? 'away' : 'online';
}

function report(force = false) {
  if (!reporting) return;
  const state = wanted();
  if (state === reported && !force) return;
  reported = state;
  api.reportPresence(state).catch(() => {
    // best effort: the next change or reconnect says it again
  });
}

function armIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    idle = true;
    report();
  }, IDLE_AFTER);
}

function onActivity() {
  const now = Date.now();
  if (now - lastActivity < 1000 && !idle) return; // plenty often
  lastActivity = now;
  idle = false;
  armIdle();
  report();
}

const ACTIVITY = ['pointerdown', 'pointermove', 'keydown', 'wheel', 'touchstart', 'focus'];

export function startReporting() {
  if (reporting) return;
  reporting = true;
  reported = 'online'; // a new stream starts online
  document.addEventListener('visibilitychange', onVisibility);
  for (const type of ACTIVITY) window.addEventListener(type, onActivity, { passive: true, capture: true });
  armIdle();
  report();
}

export function stopReporting() {
  reporting = false;
  clearTimeout(idleTimer);
  document.removeEventListener('visibilitychange', onVisibility);
  for (const type of ACTIVITY) window.removeEventListener(type, onActivity, { capture: true });
}

function onVisibility() {
  if (!document.hidden) {
    idle = false;
    armIdle();
  }
  report();
}

stream.on('state', (state) => {
  // A (re)opened stream is online on the server: say `away` again if that is the truth.
  if (state === 'open') {
    reported = 'online';
    report();
  }
});
