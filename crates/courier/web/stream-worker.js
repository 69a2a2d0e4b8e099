// SharedWorker: the one event stream of this browser, shared by every tab of the app. Over
// HTTP/1.1 a browser allows six connections to a host; a stream per tab used them all up from
// the sixth tab on. Tabs connect with a MessagePort: they ask to start the stream (with the
// newest cursor they processed, for a worker that restarted under them), announce sign-in and
// sign-out to the other tabs, and say goodbye when their page goes away.

import { createSource } from './stream-source.js';

const ports = new Set();
const source = createSource((msg) => {
  for (const port of ports) port.postMessage(msg);
});

function toOthers(from, msg) {
  for (const port of ports) if (port !== from) port.postMessage(msg);
}

self.addEventListener('connect', (event) => {
  const port = event.ports[0];
  ports.add(port);
  port.onmessage = ({ data }) => handle(port, data);
  port.postMessage({ type: 'state', state: source.state });
});

function handle(port, msg) {
  switch (msg.op) {
    case 'start':
      ports.add(port); // back from the back/forward cache
      if (msg.announce) toOthers(port, { type: 'signedIn' });
      source.start(msg.cursor || '');
      break;
    case 'stop': // this tab signed out on purpose; the cookie is gone for every tab
      source.stop();
      toOthers(port, { type: 'signedOut' });
      break;
    case 'bye':
      ports.delete(port);
      break;
    default:
      break;
  }
}
