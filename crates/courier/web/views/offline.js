import { h, icon } from '../dom.js';
import { setPageTitle } from '../title.js';

// Shown when the app shell loaded from the service worker but the server can't be reached:
// "You're offline" only when the browser says it has no network.
export function mountOffline(root) {
  setPageTitle('Offline');
  root.replaceChildren(h('div', { class: 'page page-narrow' },
    h('section', { class: 'card center' },
      h('span', { class: 'big-icon' }, icon('offline')),
      navigator.onLine === false
        ? h('h1', { tabindex: '-1', text: "You're offline" })
        : h('h1', { tabindex: '-1', text: "Can't reach the server" }),
      h('p', {
        class: 'muted',
        text: navigator.onLine === false
          ? 'This device has no network connection. Courier will pick up again by itself once it has.'
          : "Courier's server isn't answering right now. This page will pick up again by itself once it's back.",
      }),
    )));
  return () => {};
}
