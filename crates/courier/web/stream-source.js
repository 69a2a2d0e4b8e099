// The browser's one EventSource, wherever it lives: in the SharedWorker (stream-worker.js) or,
// without SharedWorker, in the tab that won the leader lock (stream.js). It only reports what
// it sees through `post`, as plain structured-clonable objects:
//   {type: 'event', kind: 'message' | 'reset' | 'change', id, data}
//   {type: 'event', kind: 'typing' | 'presence' | 'delivered' | 'report', id: '', data}   ephemeral: never replayed
//   {type: 'state', state}        idle | connecting | open | reconnecting
//   {type: 'signedOut'}           the server ended this session; the stream is closed
//   {type: 'unauthorized'}        the stream was refused and /api/auth_user says 401
//
// EventSource resumes by itself with Last-Event-ID after a dropped connection. When the
// browser gives up (an HTTP error) a new EventSource is built, resuming from the last event
// id seen (`?lastEventId=`, a cursor, not a credential). A stream that has no cursor to
// resume from reports a `reset` once it is open, so views refetch instead of missing what
// happened meanwhile: on a first page load, what was sent between the view's fetch being
// answered and the stream opening.

export function createSource(post) {
  let source = null;
  let state = 'idle';
  let retryTimer = 0;
  let retryDelay = 1000;
  let cursor = '';

  function setState(next) {
    if (state === next) return;
    state = next;
    post({ type: 'state', state });
  }

  function open(resumeFrom, fresh) {
    setState(fresh ? 'reconnecting' : 'connecting');
    const url = resumeFrom ? `/api/messages?lastEventId=${encodeURIComponent(resumeFrom)}` : '/api/messages';
    const es = new EventSource(url);
    source = es;
    let opened = false;
    es.onopen = () => {
      retryDelay = 1000;
      setState('open');
      // Without a cursor the server starts this stream at "now": what happened before (while
      // the tabs' views were loading, or while no stream was open) reaches them only if they
      // refetch. The browser's own reconnects resume from the cursor the stream's opening frame
      // carries, so this is said once per stream.
      if (!opened && !resumeFrom) post({ type: 'event', kind: 'reset', id: '', data: { reason: fresh ? 'reopened' : 'opened' } });
      opened = true;
    };
    es.onmessage = (event) => relay('message', event);
    es.addEventListener('reset', (event) => relay('reset', event));
    // Conversation changes (created, renamed, members, roles) are entries of the log too.
    es.addEventListener('conversation', (event) => relay('change', event));
    es.addEventListener('member', (event) => relay('change', event));
    // So are a message's edits, deletes and reactions, and read receipts.
    // And a person's new display name or picture (or their account's deletion).
    for (const name of ['message-edited', 'message-deleted', 'reaction', 'read', 'profile']) {
      es.addEventListener(name, (event) => relay('change', event));
    }
    // Typing, presence and delivered receipts carry no id: EventSource keeps the previous
    // event's id in `lastEventId`, so these must not be taken for a cursor.
    es.addEventListener('typing', (event) => relaySignal('typing', event));
    es.addEventListener('presence', (event) => relaySignal('presence', event));
    es.addEventListener('delivered', (event) => relaySignal('delivered', event));
    // A new report, for server admins only (the list at /api/admin/reports is the record).
    es.addEventListener('report', (event) => relaySignal('report', event));
    // This session was signed out (here, in another tab, on another device, or everywhere):
    // the server closes the stream right after this event. Don't reconnect.
    es.addEventListener('signed-out', () => {
      if (source !== es) return;
      stop();
      post({ type: 'signedOut' });
    });
    es.onerror = () => {
      if (source !== es) return;
      setState('reconnecting');
      if (es.readyState === EventSource.CLOSED) {
        source = null;
        afterClosed();
      }
    };
  }

  function relay(kind, event) {
    if (event.lastEventId) cursor = event.lastEventId;
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (kind === 'message' && !(data && data.id)) return;
    post({ type: 'event', kind, id: event.lastEventId || '', data });
  }

  function relaySignal(kind, event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    post({ type: 'event', kind, id: '', data });
  }

  // The browser gave up for good (an HTTP error such as 401 or 429, or a bad content type).
  async function afterClosed() {
    let signedIn = true;
    try {
      const res = await fetch('/api/auth_user', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      signedIn = res.status !== 401;
    } catch {
      signedIn = true; // unreachable: keep retrying
    }
    if (state === 'idle') return; // stopped meanwhile
    if (!signedIn) {
      stop();
      post({ type: 'unauthorized' });
      return;
    }
    retryTimer = setTimeout(() => {
      retryTimer = 0;
      open(cursor, true);
    }, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 15000);
  }

  function stop() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (source) source.close();
    source = null;
    cursor = '';
    setState('idle');
  }

  return {
    // Opens the stream unless it is open. `from` is the newest cursor any tab processed;
    // `takeover` says a stream held elsewhere went away, so without `from` there may be a gap.
    start(from = '', takeover = false) {
      if (source || retryTimer) return false;
      cursor = from;
      open(from, takeover);
      return true;
    },
    stop,
    get state() {
      return state;
    },
    get cursor() {
      return cursor;
    },
  };
}
