import { h, icon } from '../dom.js';
import { setPageTitle } from '../title.js';

// Shown when the app shell loaded from the service worker but the server can't be reached.
export function mountOffline(root) {
  setPageTitle('Offline');
  root.replaceChildren(h('div', { class: 'page page-narrow' },
    h('section', { class: 'card center' },
      h('span', { class: 'big-icon' }, icon('offline')),
      h('h1', { tabindex: '-1', text: "You're offline" }),
      h('p', { class: 'muted', text: "Courier can't reach its server right now. This page will pick up again by itself once it's back." }),
    )));
  return () => {};
}
