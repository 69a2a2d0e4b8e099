import { api } from '../api.js';
import { avatar, displayName } from '../avatar.js';
import { h } from '../dom.js';
import { setPageTitle } from '../title.js';

// People and their accounts: the first-run setup page, the password-reset page a one-time link
// opens, and the settings page (password, sessions link, invites and reset links for the
// admin, deleting one's account). One-time tokens arrive in the URL fragment, which browsers
// never send to the server, and are removed from the address once read.

function errorText(err) {
  if (err.offline) return "Can't reach the server. Check your connection and try again.";
  const errors = err.body && err.body.errors;
  if (errors) return Object.values(errors).join(' ');
  return err.message;
}

function labelled(id, label, attrs) {
  const input = h('input', { id, name: id, ...attrs });
  return { input, element: h('div', { class: 'field' }, h('label', { for: id, text: label }), input) };
}

function form(label, fields, buttonText, onSubmit) {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const done = h('p', { class: 'notice', role: 'status' });
  const button = h('button', { type: 'submit', class: 'button', text: buttonText });
  const element = h('form', { class: 'stack', novalidate: true, 'aria-label': label },
    ...fields.map((f) => f.element || f), error, done, button);
  element.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.textContent = '';
    done.textContent = '';
    button.disabled = true;
    try {
      done.textContent = (await onSubmit()) || '';
    } catch (err) {
      error.textContent = errorText(err);
    } finally {
      button.disabled = false;
    }
  });
  return element;
}

// A fragment value (`#reset=…`), removed from the address so it is not kept in history.
export function takeFragment(name) {
  const params = new URLSearchParams(location.hash.slice(1));
  const value = params.get(name);
  if (value) history.replaceState(history.state, '', location.pathname + location.search);
  return value || '';
}

// First run: no account exists yet; the first person becomes the server's admin.
export function mountSetup(root, { onSignedIn }) {
  setPageTitle('Set up Courier');
  const username = labelled('setup-username', 'Username', { type: 'text', autocomplete: 'username', autocapitalize: 'none', required: true });
  const password = labelled('setup-password', 'Password', { type: 'password', autocomplete: 'new-password', required: true });
  const providersPart = h('div', { class: 'stack' });
  root.replaceChildren(h('div', { class: 'page page-narrow' },
    h('section', { class: 'card access', 'aria-labelledby': 'setup-title' },
      h('h1', { id: 'setup-title', tabindex: '-1', text: 'Set up Courier' }),
      h('p', { class: 'muted', text: 'This server has no accounts yet. The account you create now is its administrator: you can then invite people from Settings.' }),
      form('Create the admin account', [username, password], 'Create admin account', async () => {
        try {
          const { authUser } = await api.setup(username.input.value.trim(), password.input.value);
          onSignedIn(authUser);
        } catch (err) {
          if (err.status === 409) {
            onSignedIn(null);
            return '';
          }
          throw err;
        }
        return '';
      }),
      providersPart)));
  // A server that signs people in through a provider can be set up that way too: the first
  // account to sign in, whichever way, becomes the admin.
  api.providers().then((config) => {
    // Only same-site paths, as on the access page.
    const providers = (config.providers || []).filter((p) => typeof p.url === 'string' && p.url.startsWith('/') && !p.url.startsWith('//'));
    if (!providers.length) return;
    providersPart.replaceChildren(
      h('p', { class: 'muted', text: 'Or make the admin account by signing in with:' }),
      h('div', { class: 'providers' }, providers.map((p) =>
        h('a', { class: 'button button-secondary button-block', href: p.url, text: `Continue with ${p.name || p.id}` }))));
  }).catch(() => {});
  queueMicrotask(() => username.input.focus());
  return () => {};
}

// A one-time reset link: choose a new password, then sign in with it.
export function mountReset(root, { token, onDone }) {
  setPageTitle('Choose a new password');
  const password = labelled('reset-password', 'New password', { type: 'password', autocomplete: 'new-password', required: true });
  root.replaceChildren(h('div', { class: 'page page-narrow' },
    h('section', { class: 'card access', 'aria-labelledby': 'reset-title' },
      h('h1', { id: 'reset-title', tabindex: '-1', text: 'Choose a new password' }),
      h('p', { class: 'muted', text: 'This link works once. Every device signed in to your account will be signed out.' }),
      form('Choose a new password', [password], 'Set password', async () => {
        await api.resetPassword(token, password.input.value);
        setTimeout(onDone, 1200);
        return 'Your password is set. Sign in with it now.';
      }))));
  return () => {};
}

export function mountSettings(root, { me, onDeleted, onProfile = () => {} }) {
  setPageTitle('Settings');
  let alive = true;
  const adminArea = h('div', { class: 'stack' });
  root.replaceChildren(h('div', { class: 'page' },
    h('h1', { class: 'page-title', tabindex: '-1', text: 'Settings' }),
    h('p', { class: 'muted lead' }, 'Signed in as ', h('strong', { text: me.username }), '. ',
      h('a', { href: '/sessions', text: 'Your sessions' })),
    profileSection(me, onProfile),
    passwordSection(),
    adminArea,
    deleteSection(onDeleted),
  ));
  api.account().then((account) => {
    if (!alive) return;
    const parts = [];
    parts.push(providersSection(account.providers || []));
    if (account.passwordMail) parts.push(emailSection(account.email));
    if (account.mayInvite) parts.push(invitesSection(account.isAdmin));
    if (account.isAdmin) parts.push(resetLinkSection());
    adminArea.replaceChildren(...parts);
  }).catch(() => {});
  return () => {
    alive = false;
  };
}

// Display name and picture. What the server answers (the user as others now see them) is
// shown at once; other people's apps get it through `event: profile`.
function profileSection(me, onProfile) {
  const name = labelled('display-name', 'Display name (empty: show your username)', {
    type: 'text', autocomplete: 'nickname', maxlength: '64', value: me.displayName || '', placeholder: me.username, dir: 'auto',
  });
  const preview = h('span', { class: 'profile-preview' });
  const previewName = h('span', { class: 'profile-preview-name', dir: 'auto' });
  const file = h('input', { id: 'avatar-file', type: 'file', accept: 'image/jpeg,image/png,image/gif,image/webp', class: 'visually-hidden' });
  const status = h('p', { class: 'notice', role: 'status' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const remove = h('button', { type: 'button', class: 'button button-secondary', text: 'Remove picture' });

  function show(user) {
    Object.assign(me, { displayName: user.displayName ?? null, avatarURL: user.avatarURL ?? null });
    preview.replaceChildren(avatar(me, 'lg'));
    previewName.textContent = displayName(me);
    remove.hidden = !(me.avatarURL || '').startsWith('/api/avatars/');
    onProfile(me);
  }
  show(me);

  file.addEventListener('change', async () => {
    const chosen = file.files?.[0];
    if (!chosen) return;
    status.textContent = '';
    error.textContent = '';
    // A local preview while it uploads (a data: URL: the CSP allows no blob: images); the
    // server's square crop replaces it.
    const reader = new FileReader();
    reader.onload = () => {
      if (typeof reader.result === 'string' && status.textContent === '') {
        preview.replaceChildren(h('span', { class: 'avatar avatar-lg' }, h('img', { src: reader.result, alt: '' })));
      }
    };
    if (chosen.size < 8 * 1024 * 1024) reader.readAsDataURL(chosen);
    try {
      show(await api.setAvatar(chosen));
      status.textContent = 'Picture saved.';
    } catch (err) {
      show(me);
      error.textContent = errorText(err);
    } finally {
      reader.abort();
      file.value = '';
    }
  });
  remove.addEventListener('click', async () => {
    status.textContent = '';
    error.textContent = '';
    try {
      show(await api.removeAvatar());
      status.textContent = 'Picture removed.';
    } catch (err) {
      error.textContent = errorText(err);
    }
  });

  return h('section', { class: 'card stack', 'aria-labelledby': 'profile-title' },
    h('h2', { id: 'profile-title', text: 'Profile' }),
    h('div', { class: 'profile-row' }, preview, previewName),
    h('div', { class: 'profile-actions' },
      h('label', { for: 'avatar-file', class: 'button button-secondary', text: 'Upload picture' }), file, remove),
    h('p', { class: 'muted small', text: 'A JPEG, PNG, GIF or WebP. It is cropped to a square and its metadata (such as location) removed.' }),
    status, error,
    form('Display name', [name], 'Save name', async () => {
      const value = name.input.value.trim();
      show(await api.setDisplayName(value === '' ? null : value));
      return 'Saved.';
    }));
}

function passwordSection() {
  const current = labelled('current-password', 'Current password (leave empty if you sign in with a provider)', { type: 'password', autocomplete: 'current-password' });
  const next = labelled('new-password', 'New password', { type: 'password', autocomplete: 'new-password', required: true });
  const others = h('input', { id: 'sign-out-others', type: 'checkbox', checked: true });
  return h('section', { class: 'card stack', 'aria-labelledby': 'password-title' },
    h('h2', { id: 'password-title', text: 'Password' }),
    form('Change password', [current, next,
      h('label', { class: 'check' }, others, ' Sign out my other devices')], 'Change password', async () => {
      const result = await api.changePassword(current.input.value, next.input.value, others.checked);
      current.input.value = '';
      next.input.value = '';
      return result.signedOut ? `Password changed. ${result.signedOut} other session(s) signed out.` : 'Password changed.';
    }));
}

// Sign-in providers: the ones linked to this account, and a link for each other one the
// server offers (the flow comes back here, still signed in).
function providersSection(linked) {
  const list = h('ul', { class: 'provider-list', 'aria-label': 'Linked sign-in providers' });
  const offers = h('div', { class: 'profile-actions' });
  const section = h('section', { class: 'card stack', 'aria-labelledby': 'providers-title', hidden: true },
    h('h2', { id: 'providers-title', text: 'Sign-in providers' }),
    list, offers);
  api.providers().then((config) => {
    const all = config.providers || [];
    if (!all.length && !linked.length) return;
    section.hidden = false;
    const named = (id) => all.find((p) => p.id === id)?.name || id;
    list.replaceChildren(...(linked.length
      ? linked.map((id) => h('li', { text: `${named(id)}: linked, you can sign in with it` }))
      : [h('li', { class: 'muted', text: 'No provider linked yet.' })]));
    offers.replaceChildren(...all.filter((p) => !linked.includes(p.id)).map((p) =>
      h('a', {
        class: 'button button-secondary',
        href: `/api/oauth/${encodeURIComponent(p.id)}?link=true&next=${encodeURIComponent('/settings')}`,
        text: `Link ${p.name || p.id}`,
      })));
  }).catch(() => {});
  return section;
}

function emailSection(current) {
  const email = labelled('account-email', 'Email for password resets', { type: 'email', autocomplete: 'email', value: current || '' });
  return h('section', { class: 'card stack', 'aria-labelledby': 'email-title' },
    h('h2', { id: 'email-title', text: 'Email' }),
    h('p', { class: 'muted', text: 'Only used to send you a link if you forget your password.' }),
    form('Email address', [email], 'Save', async () => {
      await api.setEmail(email.input.value.trim());
      return 'Saved.';
    }));
}

// "Forgot your password?" on the access page, when the server can send mail.
export function forgotPasswordLink() {
  const holder = h('div', { class: 'forgot' });
  api.setupStatus().then((status) => {
    if (!status.passwordMail) return;
    const email = labelled('forgot-email', 'Your email address', { type: 'email', autocomplete: 'email' });
    const details = h('details', {},
      h('summary', { text: 'Forgot your password?' }),
      form('Reset my password by email', [email], 'Send me a link', async () => (await api.forgotPassword(email.input.value.trim())).message));
    holder.replaceChildren(details);
  }).catch(() => {});
  return holder;
}

function invitesSection(isAdmin) {
  const list = h('ul', { class: 'invite-list', 'aria-label': 'Invite links' });
  const hours = labelled('invite-hours', 'Expires after (hours)', { type: 'number', min: '1', value: '168' });
  const uses = labelled('invite-uses', 'Number of uses', { type: 'number', min: '1', value: '1' });
  const fresh = h('p', { class: 'invite-new', role: 'status' });

  async function refresh() {
    const invites = await api.invites();
    list.replaceChildren(...invites.map((invite) => {
      const url = `${location.origin}${invite.link}`;
      return h('li', { class: 'invite-row', dataset: { state: invite.state } },
        h('code', { class: 'invite-link', text: url }),
        h('span', { class: 'muted small', text: ` ${invite.uses}/${invite.maxUses} used · ${invite.state} · expires ${new Date(invite.expiresAt).toLocaleString()}` }),
        invite.state === 'valid'
          ? h('button', {
            type: 'button', class: 'button button-secondary button-small', text: 'Revoke',
            onclick: async () => {
              await api.revokeInvite(invite.id);
              refresh();
            },
          })
          : null);
    }));
  }
  refresh().catch(() => {});
  return h('section', { class: 'card stack', 'aria-labelledby': 'invites-title' },
    h('h2', { id: 'invites-title', text: 'Invite links' }),
    h('p', { class: 'muted', text: isAdmin ? 'Links that let people create an account here.' : 'Links that let people you know create an account here.' }),
    form('Create an invite link', [hours, uses], 'Create invite link', async () => {
      const invite = await api.createInvite(Number(hours.input.value), Number(uses.input.value));
      fresh.textContent = `${location.origin}${invite.link}`;
      await refresh();
      return 'Invite link created: copy it from the list.';
    }),
    fresh,
    list);
}

function resetLinkSection() {
  const username = labelled('reset-username', 'Username', { type: 'text', autocapitalize: 'none' });
  return h('section', { class: 'card stack', 'aria-labelledby': 'reset-link-title' },
    h('h2', { id: 'reset-link-title', text: 'Password reset link' }),
    h('p', { class: 'muted', text: 'Make a one-time link that lets someone choose a new password. It is shown once.' }),
    form('Make a password reset link', [username], 'Make link', async () => {
      const link = await api.passwordLink(username.input.value.trim());
      return `${location.origin}${link.link} (until ${new Date(link.expiresAt).toLocaleString()})`;
    }));
}

function deleteSection(onDeleted) {
  const password = labelled('delete-password', 'Your password', { type: 'password', autocomplete: 'current-password' });
  const remove = h('input', { id: 'delete-remove-messages', type: 'checkbox' });
  return h('section', { class: 'card stack danger-zone', 'aria-labelledby': 'delete-title' },
    h('h2', { id: 'delete-title', text: 'Delete my account' }),
    h('p', { class: 'muted', text: 'Your sessions end at once. Your messages stay in other people’s conversations, shown as from a deleted account, unless you remove them below. Nobody else can take your username for a while.' }),
    form('Delete my account', [password,
      h('label', { class: 'check' }, remove, ' Also remove everything I wrote')], 'Delete my account', async () => {
      if (!window.confirm('Delete your account for good?')) return '';
      await api.deleteAccount(password.input.value || undefined, remove.checked);
      onDeleted();
      return '';
    }));
}
