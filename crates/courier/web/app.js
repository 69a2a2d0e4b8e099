// Entry point: finds out who is signed in, owns the top bar, the connection banner and the stream,
// and mounts one view per route.

import { api, setUnauthorizedHandler } from './api.js';
import { avatar } from './avatar.js';
import { h, icon } from './dom.js';
import { match, navigate, rerender, startRouter } from './router.js';
import * as stream from './stream.js';
import { notifyIncoming } from './notify.js';
import * as presence from './presence.js';
import { noteIncoming } from './title.js';
import { mountAccess } from './views/access.js';
import { mountConversation } from './views/conversation.js';
import { mountHome } from './views/home.js';
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
const session = { user: undefined, offline: false, notice: '' };
const ENDED = 'You’ve been signed out. Sign in again to continue.';
let unmount = () => {};
let retryTimer = 0;
let firstRender = true;
// This tab is signing out on purpose: the stream's own signed-out event is expected, not news.
let leaving = false;

function setBanner(kind, text) {
  banner.dataset.kind = kind || '';
  banner.replaceChildren();
  if (kind) banner.append(icon(kind === 'offline' ? 'offline' : 'refresh'), h('span', { text }));
  banner.hidden = !kind;
}

function refreshBanner() {
  if (session.offline === 'server') {
    setBanner('reconnecting', 'Reconnecting… the server is temporarily unavailable.');
  } else if (session.offline) {
    setBanner('offline', "You're offline. Courier can't reach the server; retrying…");
  } else if (stream.streamState() === 'reconnecting') {
    setBanner('reconnecting', 'Reconnecting…');
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
        avatar(user, 'sm'),
        h('span', { class: 'me-name', text: user.username }),
        h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Sign out', title: 'Sign out of this device', onclick: signOut }, icon('logout')))
      : null,
  ].filter(Boolean));
}

function mountAccessHere() {
  return mountAccess(main, { onSignedIn, notice: session.notice });
}

function route(path) {
  unmount();
  unmount = () => {};
  renderTopbar(path);
  let params;
  if (session.user === undefined) {
    unmount = mountOffline(main);
  } else if (path === '/') {
    unmount = session.user ? mountHome(main, { me: session.user }) : mountAccessHere();
  } else if ((params = match('/c/:id', path))) {
    unmount = session.user ? mountConversation(main, { params, me: session.user }) : mountAccessHere();
  } else if (path === '/search') {
    unmount = session.user ? mountSearch(main) : mountAccessHere();
  } else if (path === '/sessions') {
    unmount = session.user
      ? mountSessions(main, { signOutEverywhere })
      : mountAccessHere();
  } else {
    unmount = mountNotFound(main);
  }
  // Move focus to the new page's heading so keyboard and screen reader users land on it.
  if (!firstRender) main.querySelector('h1')?.focus({ preventScroll: true });
  firstRender = false;
}

function onSignedIn(user) {
  session.user = user;
  session.notice = '';
  stream.startStream({ announce: true });
  presence.startReporting();
  rerender();
}

// A lost session shows the access page at the same address, so signing in again returns there.
function signedOut({ goHome = false, notice = '' } = {}) {
  if (session.user === null) return;
  session.user = null;
  session.notice = notice;
  stream.stopStream();
  presence.stopReporting();
  refreshBanner();
  if (goHome) navigate('/');
  else rerender();
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
  }
  refreshBanner();
  if (session.user) {
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
  noteIncoming();
  notifyIncoming(msg);
});
window.addEventListener('online', () => {
  if (session.offline) identify();
});

registerServiceWorker();
await identify();
startRouter(route);
