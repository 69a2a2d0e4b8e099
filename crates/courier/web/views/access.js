import { api } from '../api.js';
import { h } from '../dom.js';
import { setPageTitle } from '../title.js';

const FALLBACK = { devLogin: true, password: false, providers: [] };

// Provider links start a full-page OAuth redirect; only same-origin paths are trusted.
function providerHref(url) {
  return typeof url === 'string' && url.startsWith('/') && !url.startsWith('//') ? url : null;
}

export function mountAccess(root, { onSignedIn }) {
  setPageTitle('Sign in');
  let alive = true;

  const heading = h('h1', { tabindex: '-1', text: 'Sign in to Courier' });
  const options = h('div', { class: 'access-options', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading sign-in options…' }));
  const card = h('section', { class: 'card access', 'aria-labelledby': 'access-title' },
    h('div', { class: 'access-brand' }, h('img', { src: '/icon.svg', alt: '', width: '48', height: '48' })),
    heading,
    h('p', { class: 'muted', text: 'Realtime conversations, one person at a time.' }),
    options,
  );
  heading.id = 'access-title';
  root.replaceChildren(h('div', { class: 'page page-narrow' }, card));

  api.providers()
    .catch(() => FALLBACK) // older servers have no providers endpoint; dev login is the default
    .then((config) => {
      if (alive) renderOptions(options, config || FALLBACK, onSignedIn);
    });

  return () => {
    alive = false;
  };
}

function renderOptions(container, config, onSignedIn) {
  container.removeAttribute('aria-busy');
  const parts = [];
  if (config.devLogin) parts.push(devLoginForm(onSignedIn));
  const providers = (config.providers || [])
    .map((p) => ({ ...p, href: providerHref(p.url) }))
    .filter((p) => p.href);
  if (providers.length) {
    if (parts.length) parts.push(h('p', { class: 'divider' }, h('span', { text: 'or' })));
    parts.push(h('div', { class: 'providers' }, providers.map((p) =>
      h('a', { class: 'button button-secondary button-block', href: p.href, text: `Continue with ${p.name || p.id}` }))));
  }
  if (!parts.length) {
    parts.push(h('p', { role: 'alert', text: 'No sign-in method is enabled on this server. Ask its administrator.' }));
  }
  container.replaceChildren(...parts);
}

function devLoginForm(onSignedIn) {
  const input = h('input', {
    id: 'login-username', name: 'username', type: 'text', required: true,
    autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false',
    'aria-describedby': 'login-hint login-error', maxlength: '64',
  });
  const error = h('p', { id: 'login-error', class: 'field-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'button button-block', text: 'Sign in' });
  const form = h('form', { class: 'stack', novalidate: true },
    h('label', { for: 'login-username', text: 'Username' }),
    input,
    h('p', { id: 'login-hint', class: 'hint', text: 'Development sign-in: any username, no password.' }),
    error,
    button,
  );
  input.addEventListener('input', () => {
    error.textContent = '';
    input.removeAttribute('aria-invalid');
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = input.value.trim();
    if (!username) {
      error.textContent = 'Enter a username.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Signing in…';
    try {
      const { authUser } = await api.login(username);
      onSignedIn(authUser);
    } catch (err) {
      error.textContent = err.status === 404 ? 'Development sign-in is turned off on this server.' : err.message;
      input.setAttribute('aria-invalid', 'true');
      button.disabled = false;
      button.textContent = 'Sign in';
      input.focus();
    }
  });
  queueMicrotask(() => input.focus());
  return form;
}
