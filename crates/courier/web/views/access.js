import { api } from '../api.js';
import { h } from '../dom.js';
import { charCount } from '../format.js';
import { setPageTitle } from '../title.js';

const FALLBACK = { devLogin: true, password: false, signup: 'closed', providers: [] };
const DEFAULT_MIN_LENGTH = 10;

// The server's rule (model/username.rs): 1–32 ASCII letters, digits, _ or -.
export const USERNAME_MAX = 32;
const USERNAME_RULE = /^[A-Za-z0-9_-]+$/;
export const USERNAME_HINT = `Up to ${USERNAME_MAX} characters: letters A–Z without accents, digits, _ and -.`;

// What is wrong with a username before the server is asked ('' when nothing).
export function usernameProblem(raw, { empty = 'Choose a username.' } = {}) {
  const name = raw.trim();
  if (!name) return empty;
  if ([...name].length > USERNAME_MAX) return `Use at most ${USERNAME_MAX} characters.`;
  if (!USERNAME_RULE.test(name)) return 'Use only letters A–Z without accents, digits, _ and -.';
  return '';
}

// Provider links start a full-page OAuth redirect; only same-origin paths are trusted.
function providerHref(url) {
  return typeof url === 'string' && url.startsWith('/') && !url.startsWith('//') ? url : null;
}

// The access page: provider buttons, the password sign-in / sign-up forms and, on development
// servers, the dev login, each shown as the server's /api/auth/providers says.
// `notice` explains why someone is here (their session ended elsewhere).
// What the server's OAuth callback means by `/?error=…` (it never carries a secret).
const SIGN_IN_ERRORS = {
  oauth_state: 'That sign-in attempt expired or was already used. Please try again.',
  oauth_denied: 'Sign-in was cancelled at the provider.',
  oauth_failed: 'The sign-in provider could not confirm who you are. Please try again.',
  oauth_unavailable: 'The sign-in provider cannot be reached right now. Please try again later.',
  oauth_unknown_provider: 'That sign-in option is not configured on this server.',
  oauth_account: 'Your account could not be opened. Please contact the administrator.',
};

// Reads and removes `?error=` from the address, so a reload doesn't repeat the message.
function takeSignInError() {
  const params = new URLSearchParams(location.search);
  const code = params.get('error');
  if (!code) return '';
  params.delete('error');
  const query = params.toString();
  history.replaceState(history.state, '', location.pathname + (query ? `?${query}` : '') + location.hash);
  return SIGN_IN_ERRORS[code] || 'Sign-in did not complete. Please try again.';
}

export function mountAccess(root, { onSignedIn, notice = '' }) {
  setPageTitle('Sign in');
  let alive = true;
  const signInError = takeSignInError();

  const heading = h('h1', { id: 'access-title', tabindex: '-1', text: 'Sign in to Courier' });
  const options = h('div', { class: 'access-options', 'aria-busy': 'true' }, h('p', { class: 'muted', text: 'Loading sign-in options…' }));
  const card = h('section', { class: 'card access', 'aria-labelledby': 'access-title' },
    h('div', { class: 'access-brand' }, h('img', { src: '/icon.svg', alt: '', width: '48', height: '48' })),
    heading,
    h('p', { class: 'muted', text: 'Realtime conversations, one person at a time.' }),
    notice ? h('p', { class: 'notice', role: 'status', text: notice }) : null,
    signInError ? h('p', { class: 'form-error', role: 'alert', text: signInError }) : null,
    options,
  );
  root.replaceChildren(h('div', { class: 'page page-narrow' }, card));

  api.providers()
    .catch(() => FALLBACK) // older servers have no providers endpoint; dev login is the default
    .then((config) => {
      if (alive) renderOptions(options, { heading, config: config || FALLBACK, onSignedIn });
    });

  return () => {
    alive = false;
  };
}

function renderOptions(container, { heading, config, onSignedIn }) {
  container.removeAttribute('aria-busy');
  const parts = [];
  const providers = (config.providers || [])
    .map((p) => ({ ...p, href: providerHref(p.url) }))
    .filter((p) => p.href);
  if (providers.length) {
    parts.push(h('div', { class: 'providers' }, providers.map((p) =>
      h('a', { class: 'button button-secondary button-block', href: p.href, text: `Continue with ${p.name || p.id}` }))));
  }
  let firstField = null;
  if (config.password) {
    if (parts.length) parts.push(h('p', { class: 'divider' }, h('span', { text: 'or' })));
    const panel = passwordPanel({ heading, config, onSignedIn });
    parts.push(panel.element);
    firstField = panel.firstField;
  }
  if (config.devLogin) {
    const alone = !parts.length;
    const dev = devLoginForm(onSignedIn, { alone });
    parts.push(dev.element);
    firstField ||= dev.input;
  }
  if (!parts.length) {
    parts.push(h('p', { role: 'alert', text: 'No sign-in method is enabled on this server. Ask its administrator.' }));
  }
  container.replaceChildren(...parts);
  if (firstField) queueMicrotask(() => firstField.focus());
}

// ---- fields and forms ------------------------------------------------------------------

// A labelled input with an optional hint and an inline error, tied together for assistive tech.
function field({ id, label, hint, ...attrs }) {
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const input = h('input', {
    id, name: id.split('-').pop(), type: 'text',
    'aria-describedby': [hintId, errorId].filter(Boolean).join(' '),
    ...attrs,
  });
  const error = h('p', { id: errorId, class: 'field-error', role: 'alert' });
  const element = h('div', { class: 'field' },
    h('label', { for: id, text: label }),
    input,
    hint ? h('p', { id: hintId, class: 'hint', text: hint }) : null,
    error);
  const self = {
    element, input,
    setError(message) {
      error.textContent = message || '';
      if (message) input.setAttribute('aria-invalid', 'true');
      else input.removeAttribute('aria-invalid');
    },
  };
  input.addEventListener('input', () => self.setError(''));
  return self;
}

// Runs a password form's submit: client-side checks, the request, then the server's verdict
// shown next to the right field (422) or for the whole form (403, 404, 429, offline).
function wireForm(form, { fields, button, busyText, formError, validate, submit, describeError, onSignedIn }) {
  const idleText = button.textContent;
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    formError.textContent = '';
    for (const f of Object.values(fields)) f.setError('');
    const problems = validate();
    if (showFieldErrors(fields, problems)) return;
    button.disabled = true;
    button.textContent = busyText;
    try {
      const { authUser } = await submit();
      onSignedIn(authUser);
    } catch (err) {
      button.disabled = false;
      button.textContent = idleText;
      if (err.status === 422 && err.body && err.body.errors && showFieldErrors(fields, err.body.errors)) return;
      formError.textContent = describeError(err); // an alert, so it's announced
      button.focus(); // disabling it dropped focus; give it back so the person can retry
    }
  });
}

// Shows each known field's message; focuses the first invalid field. False when there were none.
function showFieldErrors(fields, errors) {
  let first = null;
  for (const [name, f] of Object.entries(fields)) {
    const message = errors && typeof errors[name] === 'string' ? errors[name] : '';
    f.setError(message);
    if (message && !first) first = f;
  }
  if (!first) return false;
  first.input.focus();
  if (first.input.type === 'password') first.input.select();
  return true;
}

function commonErrors(err) {
  if (err.offline) return "Can't reach the server. Check your connection and try again.";
  if (err.status === 404) return 'Password accounts are turned off on this server.';
  return err.message;
}

function passwordPanel({ heading, config, onSignedIn }) {
  const minLength = Number(config.passwordMinLength) || DEFAULT_MIN_LENGTH;
  const signupMode = config.signup === 'open' || config.signup === 'invite' ? config.signup : 'closed';
  const element = h('div', { class: 'password-panel' });

  const signIn = signInForm(onSignedIn);
  // An invite link carries its code in the fragment (`/#invite=…`), which never reaches the server.
  const invited = new URLSearchParams(location.hash.slice(1)).get('invite') || '';
  const signUp = signupMode === 'closed' ? null : signUpForm(onSignedIn, { minLength, invite: signupMode === 'invite', code: invited });

  function show(mode, { focus = true } = {}) {
    const form = mode === 'signup' && signUp ? signUp : signIn;
    heading.textContent = form === signUp ? 'Create your Courier account' : 'Sign in to Courier';
    setPageTitle(form === signUp ? 'Create account' : 'Sign in');
    const switcher = !signUp ? null : form === signUp
      ? h('p', { class: 'switch' }, 'Already have an account? ',
        h('button', { type: 'button', class: 'link-button', text: 'Sign in', onclick: () => show('signin') }))
      : h('p', { class: 'switch' }, 'New to Courier? ',
        h('button', { type: 'button', class: 'link-button', text: 'Create an account', onclick: () => show('signup') }));
    const closed = signUp ? null
      : h('p', { class: 'hint signup-closed', text: 'New accounts are by invitation only here. Ask the server’s admin for an invite link, or for an account.' });
    element.replaceChildren(...[form.element, switcher, closed].filter(Boolean));
    if (focus) form.firstField.focus();
  }
  show(invited && signUp ? 'signup' : 'signin', { focus: false });
  return { element, firstField: signIn.firstField };
}

function signInForm(onSignedIn) {
  const fields = {
    username: field({
      id: 'signin-username', label: 'Username', required: true, maxlength: String(USERNAME_MAX),
      autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false',
    }),
    password: field({ id: 'signin-password', label: 'Password', type: 'password', required: true, autocomplete: 'current-password' }),
  };
  const formError = h('p', { class: 'form-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'button button-block', text: 'Sign in' });
  const element = h('form', { class: 'stack', novalidate: true, 'aria-label': 'Sign in with a password' },
    fields.username.element, fields.password.element, formError, button);
  wireForm(element, {
    fields, button, busyText: 'Signing in…', formError, onSignedIn,
    validate: () => ({
      username: fields.username.input.value.trim() ? '' : 'Enter your username.',
      password: fields.password.input.value ? '' : 'Enter your password.',
    }),
    submit: () => api.signIn(fields.username.input.value.trim(), fields.password.input.value),
    describeError: commonErrors,
  });
  return { element, firstField: fields.username.input };
}

function signUpForm(onSignedIn, { minLength, invite, code = '' }) {
  const fields = {
    username: field({
      id: 'signup-username', label: 'Username', required: true, maxlength: String(USERNAME_MAX),
      autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false', pattern: '[A-Za-z0-9_\\-]+',
      hint: `${USERNAME_HINT} This is how people find you; you can’t change it later.`,
    }),
    password: field({
      id: 'signup-password', label: 'Password', type: 'password', required: true,
      autocomplete: 'new-password', minlength: String(minLength),
      hint: `At least ${minLength} characters. Avoid common passwords.`,
    }),
  };
  if (invite) {
    fields.invite = field({
      id: 'signup-invite', label: 'Invite code', required: true, autocomplete: 'off',
      autocapitalize: 'none', spellcheck: 'false', hint: 'Sign-up here is by invitation. Ask a member for a code.',
    });
    if (code) {
      fields.invite.input.value = code;
      checkInvite(code, fields.invite);
    }
  }
  const formError = h('p', { class: 'form-error', role: 'alert' });
  const button = h('button', { type: 'submit', class: 'button button-block', text: 'Create account' });
  const element = h('form', { class: 'stack', novalidate: true, 'aria-label': 'Create an account' },
    ...Object.values(fields).map((f) => f.element), formError, button);
  wireForm(element, {
    fields, button, busyText: 'Creating account…', formError, onSignedIn,
    validate: () => {
      const password = fields.password.input.value;
      return {
        username: usernameProblem(fields.username.input.value),
        password: !password ? 'Choose a password.'
          : charCount(password) < minLength ? `Use at least ${minLength} characters.` : '',
        invite: fields.invite && !fields.invite.input.value.trim() ? 'Enter your invite code.' : '',
      };
    },
    submit: () => api.signUp(
      fields.username.input.value.trim(),
      fields.password.input.value,
      fields.invite ? fields.invite.input.value.trim() : undefined),
    describeError: (err) => (err.status === 403 ? 'Sign-up is closed on this server.' : commonErrors(err)),
  });
  return { element, firstField: fields.username.input };
}

// A spent, expired or revoked invite link says so before anyone fills in the form.
async function checkInvite(code, inviteField) {
  try {
    const result = await api.checkInvite(code);
    if (!result.valid) inviteField.setError(result.message);
  } catch {
    // the sign-up itself will explain
  }
}

// Development sign-in: any username, no password. On its own when it's the only method, else
// a separate, compact "Development sign-in" section (one row) below the real ones.
function devLoginForm(onSignedIn, { alone }) {
  const input = h('input', {
    id: 'login-username', name: 'username', type: 'text', required: true,
    autocomplete: 'username', autocapitalize: 'none', spellcheck: 'false',
    'aria-describedby': 'login-hint login-error', maxlength: String(USERNAME_MAX),
  });
  const error = h('p', { id: 'login-error', class: 'field-error', role: 'alert' });
  const button = h('button', {
    type: 'submit', class: alone ? 'button button-block' : 'button button-secondary', text: alone ? 'Sign in' : 'Sign in (dev)',
  });
  const title = h('h2', { id: 'dev-login-title', class: alone ? 'visually-hidden' : 'dev-title', text: 'Development sign-in' });
  const hint = alone
    ? `Development sign-in: any username, no password. ${USERNAME_HINT}`
    : 'For development only: any username, no password.';
  const form = alone
    ? h('form', { class: 'stack', novalidate: true, 'aria-labelledby': 'dev-login-title' },
      title,
      h('label', { for: 'login-username', text: 'Username' }),
      input,
      h('p', { id: 'login-hint', class: 'hint', text: hint }),
      error,
      button)
    : h('form', { class: 'stack dev-login', novalidate: true, 'aria-labelledby': 'dev-login-title' },
      title,
      h('p', { id: 'login-hint', class: 'hint', text: hint }),
      h('label', { for: 'login-username', class: 'visually-hidden', text: 'Username' }),
      h('div', { class: 'inline-field' }, input, button),
      error);
  const idleText = button.textContent;
  input.addEventListener('input', () => {
    error.textContent = '';
    input.removeAttribute('aria-invalid');
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const username = input.value.trim();
    const problem = usernameProblem(username, { empty: 'Enter a username.' });
    if (problem) {
      error.textContent = problem;
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
      button.textContent = idleText;
      input.focus();
    }
  });
  return { element: form, input };
}
