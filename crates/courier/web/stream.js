// The tab's view of the browser's one realtime stream. Views subscribe with `on`; where the
// EventSource lives is this module's business (see stream-source.js for what it reports):
// - SharedWorker (stream-worker.js): one stream for every tab, whatever their number;
// - else Web Locks + BroadcastChannel: the tab holding the `courier-stream` lock runs the
//   stream and relays it to the others. When it goes away the lock passes to the oldest
//   waiting tab (locks are granted in request order), which resumes from the newest cursor it
//   processed; without one it reports a reset and views refetch. Nothing is lost.
// - else a stream of the tab's own.
// Each tab drops events at or below the newest cursor it processed, so a takeover's replay
// never shows anything twice.

import { request } from './api.js';
import { createSource } from './stream-source.js';

const listeners = {
  message: new Set(),
  reset: new Set(),
  change: new Set(),
  typing: new Set(),
  presence: new Set(),
  delivered: new Set(),
  report: new Set(),
  state: new Set(),
  unauthorized: new Set(),
  signedOut: new Set(),
  signedIn: new Set(),
};

let state = 'idle'; // idle | connecting | open | reconnecting
let cursor = ''; // the newest event id this tab processed
let wanted = false;

export function on(kind, fn) {
  listeners[kind].add(fn);
  return () => listeners[kind].delete(fn);
}

function emit(kind, value) {
  for (const fn of [...listeners[kind]]) {
    try {
      fn(value);
    } catch (err) {
      console.error(err);
    }
  }
}

export function streamState() {
  return state;
}

// `<instance>-<position>`: positions of one instance are in commit order.
function alreadyProcessed(id) {
  if (!id || !cursor) return false;
  const at = id.lastIndexOf('-');
  const mine = cursor.lastIndexOf('-');
  if (id.slice(0, at) !== cursor.slice(0, mine)) return false;
  try {
    return BigInt(id.slice(at + 1)) <= BigInt(cursor.slice(mine + 1));
  } catch {
    return false;
  }
}

// Delivered receipts: this tab has received the stream up to `cursor`. Told once a second at
// most; the server ignores an acknowledgement that moves nothing (other tabs send the same).
const ACK_EVERY = 1000;
let ackTimer = 0;
let acked = '';
function scheduleAck() {
  if (ackTimer) return;
  ackTimer = setTimeout(() => {
    ackTimer = 0;
    const at = cursor;
    if (!at || at === acked) return;
    request('POST', '/api/ack', { cursor: at }, { quiet401: true })
      .then(() => {
        acked = at;
      })
      .catch(() => {
        // the next message acknowledges this one too
      });
  }, ACK_EVERY);
}

function deliver(msg) {
  switch (msg.type) {
    case 'event':
      // Signals (typing, presence, delivered) have no position: never deduped, never move
      // the cursor.
      if (msg.kind === 'typing' || msg.kind === 'presence' || msg.kind === 'delivered' || msg.kind === 'report') {
        emit(msg.kind, msg.data);
        return;
      }
      if (alreadyProcessed(msg.id)) return;
      if (msg.id) cursor = msg.id;
      // A change's position orders it among messages (whose ids are positions).
      if (msg.kind === 'change') emit('change', { ...msg.data, position: msg.id.slice(msg.id.lastIndexOf('-') + 1) });
      else emit(msg.kind, msg.data);
      if (msg.kind === 'message' && msg.id) scheduleAck();
      break;
    case 'state':
      if (state !== msg.state) {
        state = msg.state;
        document.documentElement.dataset.streamState = state; // for tests and styling
        emit('state', state);
      }
      break;
    case 'signedOut':
    case 'unauthorized':
    case 'signedIn':
      emit(msg.type);
      break;
    default:
      break;
  }
}

function sharedWorkerTransport() {
  const worker = new SharedWorker('/stream-worker.js', { type: 'module', name: 'courier-stream' });
  const { port } = worker;
  port.onmessage = ({ data }) => deliver(data);
  window.addEventListener('pagehide', () => port.postMessage({ op: 'bye' }));
  window.addEventListener('pageshow', (event) => {
    if (event.persisted && wanted) port.postMessage({ op: 'start', cursor });
  });
  return {
    name: 'shared-worker',
    start(announce) {
      port.postMessage({ op: 'start', cursor, announce });
    },
    stop(signOut) {
      if (signOut) port.postMessage({ op: 'stop' });
    },
  };
}

function leaderTransport() {
  const channel = new BroadcastChannel('courier-stream');
  let source = null; // set while this tab is the leader
  let resign = null;
  let pending = null; // AbortController of a lock request still waiting

  const relay = (msg) => {
    deliver(msg);
    channel.postMessage(msg);
  };
  const setRole = (role) => {
    document.documentElement.dataset.streamRole = role;
  };

  channel.onmessage = ({ data }) => {
    if (!data.op) {
      deliver(data);
    } else if (source && data.op === 'hello') {
      channel.postMessage({ type: 'state', state: source.state });
    }
  };

  function lead(release) {
    pending = null;
    resign = release;
    setRole('leader');
    // Someone held the stream before us (we saw its state): resume where this tab got to.
    const takeover = state !== 'idle';
    source = createSource(relay);
    source.start(cursor, takeover);
  }

  function stepDown() {
    pending?.abort();
    pending = null;
    source?.stop();
    source = null;
    resign?.();
    resign = null;
    setRole('none');
  }

  return {
    name: 'leader',
    start(announce) {
      if (announce) channel.postMessage({ type: 'signedIn' });
      if (source || pending) return;
      setRole('follower');
      pending = new AbortController();
      navigator.locks
        .request('courier-stream', { signal: pending.signal }, () => new Promise((release) => lead(release)))
        .catch(() => {}); // aborted: this tab stopped wanting the stream
      channel.postMessage({ op: 'hello' });
    },
    stop(signOut) {
      if (signOut) channel.postMessage({ type: 'signedOut' });
      stepDown();
    },
  };
}

function ownTransport() {
  const source = createSource(deliver);
  return {
    name: 'tab',
    start() {
      source.start(cursor, state !== 'idle');
    },
    stop() {
      source.stop();
    },
  };
}

function pickTransport() {
  if (typeof SharedWorker === 'function') {
    try {
      return sharedWorkerTransport();
    } catch (err) {
      console.warn('shared stream unavailable', err);
    }
  }
  if (typeof BroadcastChannel === 'function' && navigator.locks) return leaderTransport();
  return ownTransport();
}

const transport = pickTransport();
document.documentElement.dataset.streamTransport = transport.name;

// The tab is signed in and wants events. `announce`: it just signed in, so signed-out tabs
// should find out who they are again.
export function startStream({ announce = false } = {}) {
  wanted = true;
  transport.start(announce);
}

// The tab no longer wants events. `signOut`: this tab signed the browser out on purpose, so
// the stream closes and every other tab is told.
export function stopStream({ signOut = false } = {}) {
  wanted = false;
  transport.stop(signOut);
  if (transport.name !== 'shared-worker') deliver({ type: 'state', state: 'idle' });
}
