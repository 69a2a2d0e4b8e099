// The outbox: messages written but not yet accepted by the server. They are kept in
// localStorage per account, so neither an outage nor a reload loses a word, and sent one at a
// time in the order they were written. Each carries an Idempotency-Key made when it was written
// and reused on every try, so a resend after a lost answer never makes a second message.
// - queued: waiting its turn, or for the server to come back (retried with backoff, on
//   reconnect and when the browser goes online);
// - sending: on the wire;
// - failed: the server refused it (4xx); it stays until the person retries or deletes it.

import { api } from './api.js';
import * as stream from './stream.js';

const RETRY_FIRST = 1000;
const RETRY_MAX = 15_000;

let owner = null; // the signed-in user's id
let entries = [];
let flushing = false;
let retryTimer = 0;
let backoff = RETRY_FIRST;
const listeners = new Set();

const storageKey = () => `courier.outbox.${owner}`;

function load() {
  try {
    const saved = JSON.parse(localStorage.getItem(storageKey()) || '[]');
    return Array.isArray(saved) ? saved : [];
  } catch {
    return [];
  }
}

function save() {
  if (!owner) return;
  try {
    if (entries.length) localStorage.setItem(storageKey(), JSON.stringify(entries));
    else localStorage.removeItem(storageKey());
  } catch {
    // storage full or refused: the queue still lives in this tab
  }
}

// `fn({ type: 'changed' | 'sent' | 'removed', entry, message })`; returns the unsubscribe.
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(event) {
  for (const fn of [...listeners]) {
    try {
      fn(event);
    } catch (err) {
      console.error(err);
    }
  }
}

function change(entry, fields) {
  Object.assign(entry, fields);
  save();
  emit({ type: 'changed', entry });
}

// Signed in as `userId`: this account's queue is loaded and sent.
export function start(userId) {
  if (owner === userId) return;
  owner = userId;
  // A reload mid-send: the key makes a second try safe.
  entries = load().map((e) => (e.state === 'sending' ? { ...e, state: 'queued' } : e));
  save();
  flush();
}

export function stop() {
  owner = null;
  entries = [];
  clearTimeout(retryTimer);
}

// What is still waiting in one conversation, oldest first.
export function pending(conversationId) {
  return entries.filter((e) => e.conversationId === conversationId);
}

export function enqueue(conversationId, content, replyTo = null) {
  const entry = {
    key: crypto.randomUUID(),
    conversationId,
    content,
    replyTo: replyTo ? { id: replyTo.id, preview: replyTo.preview ?? '', sender: replyTo.sender ?? null } : null,
    createdAt: new Date().toISOString(),
    state: 'queued',
    error: '',
  };
  entries.push(entry);
  save();
  emit({ type: 'changed', entry });
  flush();
  return entry;
}

export function retry(key) {
  const entry = entries.find((e) => e.key === key);
  if (!entry || entry.state === 'sending') return;
  change(entry, { state: 'queued', error: '' });
  backoff = RETRY_FIRST;
  clearTimeout(retryTimer);
  flush();
}

export function discard(key) {
  const entry = entries.find((e) => e.key === key);
  if (!entry || entry.state === 'sending') return false;
  entries = entries.filter((e) => e !== entry);
  save();
  emit({ type: 'removed', entry });
  return true;
}

function describe(err) {
  return err.body?.errors?.content || err.body?.errors?.replyTo || err.message;
}

export async function flush() {
  if (flushing || !owner) return;
  flushing = true;
  clearTimeout(retryTimer);
  const account = owner;
  try {
    for (;;) {
      const next = entries.find((e) => e.state === 'queued');
      if (!next) break;
      change(next, { state: 'sending' });
      let message;
      try {
        message = await api.sendMessage(next.conversationId, next.content, next.replyTo?.id, next.key);
      } catch (err) {
        if (owner !== account) return;
        if (err.unavailable || err.status === 429 || err.status === 401) {
          // Not the message's fault: it keeps its place and goes out when the server answers.
          change(next, { state: 'queued' });
          retryTimer = setTimeout(flush, backoff);
          backoff = Math.min(backoff * 2, RETRY_MAX);
          break;
        }
        change(next, { state: 'failed', error: describe(err) });
        continue;
      }
      if (owner !== account) return;
      backoff = RETRY_FIRST;
      entries = entries.filter((e) => e !== next);
      save();
      emit({ type: 'sent', entry: next, message });
    }
  } finally {
    flushing = false;
  }
}

function resume() {
  backoff = RETRY_FIRST;
  flush();
}

stream.on('state', (state) => {
  if (state === 'open') resume();
});
window.addEventListener('online', resume);
// Another tab wrote to this account's queue: take its copy (keys keep any overlap harmless).
window.addEventListener('storage', (event) => {
  if (!owner || event.key !== storageKey()) return;
  const sending = new Set(entries.filter((e) => e.state === 'sending').map((e) => e.key));
  entries = load().map((e) => (sending.has(e.key) ? { ...e, state: 'sending' } : e));
  emit({ type: 'changed', entry: null });
  flush();
});
