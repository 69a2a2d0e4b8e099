// The tab's one realtime stream. EventSource resumes by itself with Last-Event-ID after a
// dropped connection; the server replays what was missed, so views only append. The server's
// opening frame carries a cursor, so even a stream that has seen no message yet resumes exactly.

const listeners = {
  message: new Set(), reset: new Set(), state: new Set(), unauthorized: new Set(), signedOut: new Set(),
};

let source = null;
let state = 'idle'; // idle | connecting | open | reconnecting
let retryTimer = 0;
let lastEventId = ''; // the browser's Last-Event-ID, kept for when we must build a new EventSource
let retryDelay = 1000;
let checkAuth = async () => true;

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

function setState(next) {
  if (state === next) return;
  state = next;
  emit('state', next);
}

export function streamState() {
  return state;
}

// `isSignedIn` resolves true/false, or rejects when the server can't be reached.
export function startStream(isSignedIn) {
  checkAuth = isSignedIn;
  if (source || retryTimer) return;
  open(false);
}

export function stopStream() {
  lastEventId = '';
  clearTimeout(retryTimer);
  retryTimer = 0;
  if (source) source.close();
  source = null;
  setState('idle');
}

function open(fresh) {
  setState(fresh ? 'reconnecting' : 'connecting');
  // A new EventSource starts without Last-Event-ID; the server takes the cursor as a query
  // parameter instead (a cursor, not a credential).
  const resumeFrom = fresh ? lastEventId : '';
  const es = new EventSource(resumeFrom ? `/api/messages?lastEventId=${encodeURIComponent(resumeFrom)}` : '/api/messages');
  source = es;
  es.onopen = () => {
    retryDelay = 1000;
    setState('open');
    // The browser's own reconnect always resumes from the opening cursor at least. A new
    // EventSource (after the browser gave up) only can when a message told us a cursor;
    // without one the server can't replay the gap, so views refetch instead.
    if (fresh && !lastEventId) emit('reset', { reason: 'reopened' });
    fresh = false;
  };
  es.onmessage = (event) => {
    if (event.lastEventId) lastEventId = event.lastEventId;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    if (message && message.id) emit('message', message);
  };
  es.addEventListener('reset', (event) => {
    if (event.lastEventId) lastEventId = event.lastEventId;
    let data = {};
    try {
      data = JSON.parse(event.data);
    } catch {
      // the reason is informational only
    }
    emit('reset', data);
  });
  // This session was signed out (here, on another device, or everywhere): the server closes
  // the stream right after this event. Don't reconnect.
  es.addEventListener('signed-out', () => {
    if (source !== es) return;
    stopStream();
    emit('signedOut');
  });
  es.onerror = () => {
    if (source !== es) return;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up for good (an HTTP error such as 401, or a bad content type).
      source = null;
      setState('reconnecting');
      handleClosed();
    } else {
      setState('reconnecting');
    }
  };
}

async function handleClosed() {
  let signedIn = true;
  try {
    signedIn = await checkAuth();
  } catch {
    signedIn = true; // unreachable: keep retrying
  }
  if (!signedIn) {
    stopStream();
    emit('unauthorized');
    return;
  }
  retryTimer = setTimeout(() => {
    retryTimer = 0;
    open(true);
  }, retryDelay);
  retryDelay = Math.min(retryDelay * 2, 15000);
}
