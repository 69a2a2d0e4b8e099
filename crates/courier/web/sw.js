// Service worker: keeps the app shell available so a reload while the server is down still
// shows Courier (with its offline banner) instead of a browser error page, and shows Web Push
// notifications (messages that arrive while no Courier tab is open).
// Network first, so a deploy is picked up at once; the cache is only the fallback.
// /api is never touched: no respondWith, so those requests go straight to the network.

const CACHE = 'courier-shell-v13';

// Every file in web/ except this one; e2e/tests/shell.test.js keeps this list in step.
const SHELL = [
  '/',
  '/index.html',
  '/app.css',
  '/attachments.css',
  '/app.js',
  '/api.js',
  '/avatar.js',
  '/dom.js',
  '/format.js',
  '/notify.js',
  '/outbox.js',
  '/prefs.js',
  '/presence.js',
  '/router.js',
  '/stream.js',
  '/stream-source.js',
  '/stream-worker.js',
  '/title.js',
  '/views/access.js',
  '/views/account.js',
  '/views/attachments.js',
  '/views/conversation.js',
  '/views/group-panel.js',
  '/views/message-view.js',
  '/views/moderation.js',
  '/views/home.js',
  '/views/not-found.js',
  '/views/offline.js',
  '/views/search-view.js',
  '/views/sessions.js',
  '/icon.svg',
  '/icon-192.png',
  '/icon-512.png',
  '/icon-maskable-512.png',
  '/manifest.webmanifest',
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: 'no-cache' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname === '/api' || url.pathname.startsWith('/api/')) return;
  event.respondWith(networkFirst(request, url));
});

async function networkFirst(request, url) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === 'basic') {
      // Every page route is the same index.html, so store navigations under one key.
      const key = request.mode === 'navigate' ? '/index.html' : url.pathname;
      cache.put(key, response.clone());
    }
    return response;
  } catch (err) {
    const cached = request.mode === 'navigate'
      ? await cache.match('/index.html')
      : await cache.match(url.pathname);
    if (cached) return cached;
    throw err;
  }
}

// A pushed message: {title, body, conversationId, messageId, url}. One notification per
// message (its tag), replacing none of the others.
self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = {};
  }
  event.waitUntil(self.registration.showNotification(data.title || 'Courier', {
    body: data.body || 'New message',
    tag: data.messageId ? `courier-${data.messageId}` : 'courier',
    icon: '/icon.svg',
    data: { url: typeof data.url === 'string' && data.url.startsWith('/') ? data.url : '/' },
  }));
});

// Opens the conversation: in a Courier tab if there is one, else a new one.
self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = event.notification.data?.url || '/';
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const tab = windows.find((client) => new URL(client.url).origin === self.location.origin);
    if (tab) {
      await tab.focus();
      return tab.navigate(url);
    }
    return self.clients.openWindow(url);
  })());
});
