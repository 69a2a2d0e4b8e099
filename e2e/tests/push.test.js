// Web Push end to end: a local push service (this test) receives what Courier sends for a
// message to someone with no open stream, and decrypts it with the subscription's own keys
// using http_ece (an independent RFC 8188/8291 implementation). Then the service worker's
// push handler shows it in Chromium.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import ece from 'http_ece';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually } from '../lib/wait.js';

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function pushService() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      res.statusCode = req.url.startsWith('/gone/') ? 410 : 201;
      res.end();
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, received, port: server.address().port })));
}

function subscriptionKeys() {
  const ecdh = crypto.createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = crypto.randomBytes(16);
  return { ecdh, auth, keys: { p256dh: b64url(ecdh.getPublicKey()), auth: b64url(auth) } };
}

function decrypt(push, sub) {
  const plain = ece.decrypt(push.body, { version: 'aes128gcm', privateKey: sub.ecdh, authSecret: b64url(sub.auth) });
  return JSON.parse(plain.toString('utf8'));
}

// The VAPID JWT must verify with the key Courier publishes, for the push service's origin.
function verifyVapid(header, publicKey, origin) {
  const match = header.match(/^vapid t=([^,]+), k=(.+)$/);
  assert.ok(match, `vapid authorization: ${header}`);
  const [, token, k] = match;
  assert.equal(k, publicKey);
  const [head, claims, signature] = token.split('.');
  const point = Buffer.from(publicKey, 'base64url');
  const key = crypto.createPublicKey({
    key: { kty: 'EC', crv: 'P-256', x: b64url(point.subarray(1, 33)), y: b64url(point.subarray(33, 65)) },
    format: 'jwk',
  });
  const ok = crypto.verify('sha256', Buffer.from(`${head}.${claims}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(signature, 'base64url'));
  assert.ok(ok, 'the VAPID signature verifies');
  const body = JSON.parse(Buffer.from(claims, 'base64url').toString());
  assert.equal(body.aud, origin);
  assert.ok(body.exp > Date.now() / 1000);
}

describe('Web Push', { timeout: 120_000 }, () => {
  let server;
  let service;
  let browser;

  before(async () => {
    server = await new CourierServer({ args: ['--push-allow-insecure-endpoints'] }).start();
    service = await pushService();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
    service?.server.close();
  });

  it('pushes an encrypted, VAPID-signed message to someone with no open stream; hides text on request; drops gone subscriptions', async () => {
    const alice = await apiLogin(server.url, 'alice');
    const bob = await apiLogin(server.url, 'bob');
    const conv = await bob.startConversation('alice');
    const base = `http://127.0.0.1:${service.port}`;
    const plain = subscriptionKeys();
    const hidden = subscriptionKeys();
    const gone = subscriptionKeys();
    await alice.call('POST', '/api/push/subscriptions', { endpoint: `${base}/ok/plain`, keys: plain.keys }, [201]);
    await alice.call('POST', '/api/push/subscriptions', { endpoint: `${base}/ok/hidden`, keys: hidden.keys, hideContent: true }, [201]);
    await alice.call('POST', '/api/push/subscriptions', { endpoint: `${base}/gone/1`, keys: gone.keys }, [201]);
    // Bad keys and non-URLs are refused when subscribing, not at the first message.
    await alice.call('POST', '/api/push/subscriptions', { endpoint: `${base}/ok/x`, keys: { p256dh: 'nope', auth: 'nope' } }, [422]);
    await alice.call('POST', '/api/push/subscriptions', { endpoint: 'ftp://example.org/x', keys: plain.keys }, [422]);
    const { publicKey } = await alice.call('GET', '/api/push/vapid-public-key', undefined, [200]);

    const sent = await bob.send(conv.id, 'Dinner at eight?');
    await eventually(() => service.received.length === 3, { message: 'three pushes' });
    const byPath = Object.fromEntries(service.received.map((p) => [p.path, p]));
    for (const push of service.received) {
      assert.equal(push.headers['content-encoding'], 'aes128gcm');
      assert.equal(push.headers.ttl, '86400');
      assert.equal(push.headers.urgency, 'high');
      verifyVapid(push.headers.authorization, publicKey, base);
    }
    assert.deepEqual(decrypt(byPath['/ok/plain'], plain), {
      title: 'bob', body: 'Dinner at eight?', conversationId: conv.id, messageId: sent.id, url: `/c/${conv.id}`,
    });
    assert.equal(decrypt(byPath['/ok/hidden'], hidden).body, 'New message', 'hide content');

    // The 410 removed that subscription: the next message goes to the two others only.
    service.received.length = 0;
    await bob.send(conv.id, 'Or nine?');
    await eventually(() => service.received.length === 2, { message: 'two pushes' });
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(service.received.map((p) => p.path).sort(), ['/ok/hidden', '/ok/plain']);

    // With a stream open, no push; muted, no push either.
    service.received.length = 0;
    const controller = new AbortController();
    const stream = await fetch(`${server.url}/api/messages`, {
      headers: { Authorization: `Bearer ${alice.token}`, Accept: 'text/event-stream' }, signal: controller.signal,
    });
    assert.equal(stream.status, 200);
    await bob.send(conv.id, 'You are online');
    controller.abort();
    await new Promise((r) => setTimeout(r, 300));
    await alice.call('PUT', `/api/conversations/${conv.id}/mute`, undefined, [204]);
    await bob.send(conv.id, 'Muted now');
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(service.received.map((p) => [p.path, decrypt(p, p.path === '/ok/plain' ? plain : hidden).body]), [], 'no push while online or muted');
  });

  it("the service worker's push handler shows the notification", async () => {
    browser = await launchBrowser();
    const { context, page } = await signIn(browser, server.url, 'carol');
    await context.grantPermissions(['notifications'], { origin: server.url });
    await page.evaluate(() => navigator.serviceWorker.ready);
    const [worker] = context.serviceWorkers().length ? context.serviceWorkers() : [await context.waitForEvent('serviceworker')];
    const shown = await worker.evaluate(async () => {
      self.dispatchEvent(new PushEvent('push', {
        data: JSON.stringify({ title: 'bob', body: 'Pushed while closed', messageId: '42', url: '/c/7' }),
      }));
      for (let i = 0; i < 50; i += 1) {
        const list = await self.registration.getNotifications();
        if (list.length) return list.map((n) => ({ title: n.title, body: n.body, tag: n.tag, url: n.data.url }));
        await new Promise((r) => setTimeout(r, 100));
      }
      return [];
    });
    assert.deepEqual(shown, [{ title: 'bob', body: 'Pushed while closed', tag: 'courier-42', url: '/c/7' }]);
    await context.close();
  });
});
