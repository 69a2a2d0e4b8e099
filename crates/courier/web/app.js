// Entry point: finds out who is signed in, owns the top bar, the connection banner and the stream,
// and mounts one view per route. The list and a conversation share one shell (two panes from
// 900 px, one at a time below): the list stays mounted, so it keeps its place and stays live.

import { api, setUnauthorizedHandler } from './api.js';
import { applyProfile, avatar, displayName } from './avatar.js';
import { h, icon } from './dom.js';
import { match, navigate, rerender, startRouter } from './router.js';
import * as stream from './stream.js';
import { notifyIncoming } from './notify.js';
import * as presence from './presence.js';
import * as outbox from './outbox.js';
import { clearUnseen, noteIncoming, resetUnseen, setPageTitle } from './title.js';
import { mountAccess } from './views/access.js';
import { mountReset, mountSettings, mountSetup, takeFragment } from './views/account.js';
import { mountConversation } from './views/conversation.js';
import { mountHome } from './views/home.js';
import { mountModeration } from './views/moderation.js';
import { mountNotFound } from './views/not-found.js';
import { mountOffline } from './views/offline.js';
import { mountSessions } from './views/sessions.js';
import { mountSearch, searchBox } from './views/search-view.js';

const main = document.getElementById('main');
const topbar = document.getElementById('topbar');
const banner = document.getElementById('connection-status');

// user: undefined = not known yet (server unreachable), null = signed out, object = signed in.
// offline: false, 'network' (no answer at all) or 'server' (503: the server or its database is
// having a blip; never a reason to show the sign-in page).
// notice: why the access page is showing (the session ended elsewhere), until the next sign-in.
const session = { user: undefined, offline: false, notice: '', setup: false };
// A one-time password link (`/#reset=…`), read once and taken out of the address.
let resetToken = takeFragment('reset');
const ENDED = 'You’ve been signed out. Sign in again to continue.';
let unmount = () => {};
let retryTimer = 0;
let firstRender = true;
// This tab is signing out on purpose: the stream's own signed-out event is expected, not news.
let leaving = false;

// Focus rings on headings and regions moved to by the app only after Tab: a mouse or touch
// user sees no ring, a keyboard user still sees where they are.
document.addEventListener('keydown', (event) => {
  if (event.key === 'Tab') document.documentElement.dataset.keyboard = 'true';
}, { capture: true });
document.addEventListener('pointerdown', () => {
  delete document.documentElement.dataset.keyboard;
}, { capture: true });

function setBanner(kind, text) {
  banner.dataset.kind = kind || '';
  banner.replaceChildren();
  if (kind) banner.append(icon(kind === 'offline' ? 'offline' : 'refresh'), h('span', { text }));
  banner.hidden = !kind;
}

// "You're offline" only when the browser says so; otherwise it is the server we can't reach.
function refreshBanner() {
  const cut = session.offline || stream.streamState() === 'reconnecting';
  if (navigator.onLine === false && (cut || session.user)) {
    setBanner('offline', "You're offline. Messages you send will go out when you're back online.");
  } else if (session.offline === 'server') {
    setBanner('reconnecting', 'The server is temporarily unavailable, retrying…');
  } else if (cut) {
    setBanner('reconnecting', "Can't reach the server, retrying…");
  } else {
    setBanner(null);
  }
}

function renderTopbar(path) {
  const user = session.user;
  topbar.replaceChildren(...[
    h('a', { href: '/', class: 'brand', 'aria-label': 'Courier, home' },
      h('img', { src: '/icon.svg', alt: '', width: '28', height: '28' }),
      h('span', { text: 'Courier' })),
    user ? searchBox() : null,
    user
      ? h('div', { class: 'me' },
        h('a', { href: '/sessions', class: 'topbar-link', title: 'Your signed-in devices', 'aria-current': path === '/sessions' ? 'page' : null },
          icon('devices'), h('span', { class: 'topbar-link-text', text: 'Sessions' })),
        session.isAdmin
          ? h('a', { href: '/moderation', class: 'topbar-link', title: 'Reports and people', 'aria-current': path === '/moderation' ? 'page' : null },
            icon('shield'), h('span', { class: 'topbar-link-text', text: 'Moderation' }),
            session.openReports
              ? h('span', { class: 'badge report-count', 'aria-label': `${session.openReports} open reports`, text: String(session.openReports) })
              : null)
          : null,
        h('a', { href: '/settings', class: 'topbar-link', title: 'Your account', 'aria-current': path === '/settings' ? 'page' : null },
          icon('settings'), h('span', { class: 'topbar-link-text', text: 'Settings' })),
        h('span', { class: 'me-avatar' }, avatar(user, 'sm')),
        h('span', { class: 'me-name', dir: 'auto', text: displayName(user) }),
        h('button', { type: 'button', class: 'topbar-link sign-out', title: 'Sign out of this device', onclick: confirmSignOut },
          icon('logout'), h('span', { class: 'topbar-link-text', text: 'Sign out' })))
      : null,
  ].filter(Boolean));
}

function mountAccessHere() {
  return mountAccess(main, { onSignedIn, notice: session.notice });
}

// ---- the list and conversation shell ---------------------------------------------------------

let shell = null; // { el, listPane, detailPane, unmountHome, unmountDetail, homeScroll }

function openShell() {
  if (shell) return shell;
  const listPane = h('div', { class: 'list-pane' });
  const detailPane = h('div', { class: 'detail-pane' });
  const el = h('div', { class: 'chat-shell' }, listPane, detailPane);
  main.replaceChildren(el);
  shell = { el, listPane, detailPane, unmountHome: () => {}, unmountDetail: () => {}, homeScroll: 0 };
  shell.unmountHome = mountHome(listPane, { me: session.user });
  return shell;
}

function closeShell() {
  if (!shell) return;
  shell.unmountDetail();
  shell.unmountHome();
  shell = null;
}

function showInShell(params) {
  const wasList = shell && shell.el.dataset.open !== 'conversation';
  // One pane at a time: the page scrolls the list, so its place is kept for Back.
  if (wasList) shell.homeScroll = window.scrollY;
  openShell();
  shell.unmountDetail();
  shell.unmountDetail = () => {};
  if (params) {
    shell.el.dataset.open = 'conversation';
    shell.unmountDetail = mountConversation(shell.detailPane, { params, me: session.user });
    clearUnseen(params.id);
  } else {
    shell.el.dataset.open = 'list';
    setPageTitle('');
    shell.detailPane.replaceChildren(h('div', { class: 'detail-empty' },
      h('p', { class: 'muted', text: 'Choose a conversation, or start a new one.' })));
    if (!wasList) {
      const y = shell.homeScroll;
      requestAnimationFrame(() => window.scrollTo(0, y));
    }
  }
  for (const link of shell.listPane.querySelectorAll('.conversation-link')) {
    if (link.getAttribute('href') === location.pathname) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function route(path) {
  unmount();
  unmount = () => {};
  renderTopbar(path);
  const params = match('/c/:id', path);
  if (session.user && !resetToken && (path === '/' || params)) {
    showInShell(params);
  } else {
    closeShell();
    routeElsewhere(path);
  }
  // Move focus to the new page's heading so keyboard and screen reader users land on it.
  if (!firstRender) {
    const pane = shell ? (shell.el.dataset.open === 'conversation' ? shell.detailPane : shell.listPane) : main;
    pane.querySelector('h1')?.focus({ preventScroll: true });
  }
  firstRender = false;
}

function routeElsewhere(path) {
  if (session.user === undefined) {
    unmount = mountOffline(main);
  } else if (resetToken) {
    unmount = mountReset(main, { token: resetToken, onDone: () => { resetToken = ''; signedOut({ goHome: true }); rerender(); } });
  } else if (!session.user && session.setup) {
    unmount = mountSetup(main, { onSignedIn: (user) => { session.setup = false; if (user) onSignedIn(user); else rerender(); } });
  } else if (path === '/settings') {
    unmount = session.user ? mountSettings(main, { me: session.user, onDeleted: signedOutForGood, onProfile: showMe }) : mountAccessHere();
  } else if (path === '/' || match('/c/:id', path)) {
    unmount = mountAccessHere();
  } else if (path === '/search') {
    unmount = session.user ? mountSearch(main) : mountAccessHere();
  } else if (path === '/moderation') {
    unmount = session.user ? mountModeration(main) : mountAccessHere();
  } else if (path === '/sessions') {
    unmount = session.user
      ? mountSessions(main, { signOutEverywhere })
      : mountAccessHere();
  } else {
    unmount = mountNotFound(main);
  }
}

// Only decides whether the top bar offers the moderation page; the server checks each request.
function learnRole(user) {
  session.isAdmin = false;
  session.openReports = 0;
  api.account().then((account) => {
    if (session.user !== user || !account.isAdmin) return;
    session.isAdmin = true;
    renderTopbar(location.pathname);
    countReports();
  }).catch(() => {});
}

// The top bar's count of open reports: read on sign-in, again when one is filed (the stream's
// `report` event), resolved (the moderation page says so) or the stream had a gap.
function countReports() {
  if (!session.isAdmin) return;
  const user = session.user;
  api.reports().then((reports) => {
    // Unchanged: leave the top bar alone (a re-render replaces its controls under the pointer).
    if (session.user !== user || session.openReports === reports.length) return;
    session.openReports = reports.length;
    renderTopbar(location.pathname);
  }).catch(() => {});
}
stream.on('report', countReports);
stream.on('reset', countReports);
window.addEventListener('courier:reports-changed', countReports);

function onSignedIn(user) {
  session.user = user;
  learnRole(user);
  session.notice = '';
  outbox.start(user.id);
  stream.startStream({ announce: true });
  presence.startReporting();
  rerender();
}

// A lost session shows the access page at the same address, so signing in again returns there.
function signedOut({ goHome = false, notice = '' } = {}) {
  if (session.user === null) return;
  session.user = null;
  session.notice = notice;
  outbox.stop();
  resetUnseen();
  closeShell();
  stream.stopStream();
  presence.stopReporting();
  refreshBanner();
  if (goHome) navigate('/');
  else rerender();
}

// Signing out asks first: one stray tap on a phone should not end the session.
const signOutDialog = (() => {
  const cancel = h('button', { type: 'submit', class: 'button button-secondary', value: 'cancel', text: 'Cancel' });
  const dialog = h('dialog', { class: 'card dialog', 'aria-labelledby': 'sign-out-title', 'aria-describedby': 'sign-out-text' },
    h('form', { method: 'dialog', class: 'stack' },
      h('h2', { id: 'sign-out-title', text: 'Sign out?' }),
      h('p', { id: 'sign-out-text', class: 'muted', text: 'You will need to sign in again on this device. Messages not sent yet stay here until you do.' }),
      h('div', { class: 'dialog-actions' }, cancel,
        h('button', { type: 'submit', class: 'button button-danger', value: 'confirm', text: 'Sign out' }))));
  dialog.addEventListener('close', () => {
    if (dialog.returnValue === 'confirm') signOut();
    else topbar.querySelector('.sign-out')?.focus();
  });
  document.body.append(dialog);
  return { dialog, cancel };
})();

function confirmSignOut() {
  signOutDialog.dialog.returnValue = '';
  signOutDialog.dialog.showModal();
  signOutDialog.cancel.focus();
}

// Signing out on purpose. The cookie is shared, so every tab is signed out: the stream closes
// and the other tabs are told at once, without waiting for the server's `signed-out` event.
async function signOut() {
  leaving = true;
  try {
    await api.logout();
  } catch {
    // the cookie may already be gone; sign out locally either way
  } finally {
    leaving = false;
  }
  stream.stopStream({ signOut: true });
  signedOut({ goHome: true });
}

// The account was deleted: its sessions are gone, so this tab simply shows the access page.
// The stream's signed-out event can beat the DELETE's answer and sign the tab out first (as
// "session ended"); the deletion notice replaces that one.
function signedOutForGood() {
  stream.stopStream({ signOut: true });
  const notice = 'Your account was deleted.';
  if (session.user === null) {
    session.notice = notice;
    navigate('/');
    return;
  }
  signedOut({ goHome: true, notice });
}

async function signOutEverywhere() {
  leaving = true;
  try {
    await api.signOutEverywhere();
  } finally {
    leaving = false;
  }
  stream.stopStream({ signOut: true });
  signedOut({ goHome: true });
}

// Who am I? A network failure means the shell came from the service worker: keep retrying.
async function identify() {
  clearTimeout(retryTimer);
  const wasUnknown = session.user === undefined;
  try {
    session.user = await api.authUser();
    session.offline = false;
  } catch (err) {
    if (err.unavailable) {
      session.offline = err.offline ? 'network' : 'server';
      refreshBanner();
      retryTimer = setTimeout(identify, 3000);
      return false;
    }
    session.user = null;
    session.offline = false;
    // Development servers (dev login on) keep their access page; real ones show setup.
    session.setup = await Promise.all([api.setupStatus(), api.providers()])
      .then(([setup, providers]) => setup.needed && !providers.devLogin, () => false);
  }
  refreshBanner();
  if (session.user) {
    learnRole(session.user);
    outbox.start(session.user.id);
    stream.startStream();
    presence.startReporting();
  }
  if (wasUnknown && !firstRender) rerender();
  return true;
}

function registerServiceWorker() {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch((err) => {
    console.warn('service worker not registered', err);
  });
}

// The session ended elsewhere (signed out from another device, everywhere, or expired).
function sessionEnded() {
  if (!session.user || leaving) return;
  signedOut({ notice: ENDED });
  // Drop this browser's stale cookies too; the server answers 204 even for a dead session.
  api.logout().catch(() => {});
}

setUnauthorizedHandler(sessionEnded);
stream.on('state', refreshBanner);
stream.on('unauthorized', sessionEnded);
stream.on('signedOut', sessionEnded);
// Another tab signed in: this one, if it shows the access page, follows.
stream.on('signedIn', async () => {
  if (session.user !== null) return;
  await identify();
  if (session.user) rerender();
});
stream.on('message', (msg) => {
  if (msg.mine) return;
  noteIncoming(msg);
  notifyIncoming(msg);
});
// Read on another device (or here): that conversation no longer counts in the title.
stream.on('change', (change) => {
  if (change.change === 'read' && change.userId === session.user?.id) clearUnseen(change.conversationId);
  // My own profile, changed here or on another device: the top bar follows.
  if (change.change === 'profile' && applyProfile(session.user, change)) showMe(session.user);
});

function showMe(user) {
  const name = document.querySelector('.me-name');
  if (name) name.textContent = displayName(user);
  document.querySelector('.me-avatar')?.replaceChildren(avatar(user, 'sm'));
}
window.addEventListener('online', () => {
  refreshBanner();
  if (session.offline) identify();
});
window.addEventListener('offline', refreshBanner);

registerServiceWorker();
await identify();
startRouter(route);
