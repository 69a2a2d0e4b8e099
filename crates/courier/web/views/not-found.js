import { h } from '../dom.js';
import { setPageTitle } from '../title.js';

export function mountNotFound(root, { what = 'page' } = {}) {
  setPageTitle('Not found');
  root.replaceChildren(h('div', { class: 'page page-narrow' },
    h('section', { class: 'card center' },
      h('p', { class: 'big-code', 'aria-hidden': 'true', text: '404' }),
      h('h1', { tabindex: '-1', text: what === 'conversation' ? 'Conversation not found' : 'Page not found' }),
      h('p', { class: 'muted', text: what === 'conversation'
        ? "It doesn't exist, or you're not part of it."
        : "There's nothing at this address." }),
      h('a', { class: 'button', href: '/', text: 'Back to conversations' }),
    )));
  return () => {};
}
