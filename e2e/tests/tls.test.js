// Courier serving HTTPS itself: Chromium loads the app over TLS and speaks HTTP/2 to it, and
// the app works there (sign-in, the shared event stream, a live message).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { waitForMessage } from '../lib/wait.js';

describe('direct TLS', { timeout: 120_000 }, () => {
  let server;
  let browser;
  let certDir;

  before(async () => {
    certDir = mkdtempSync(path.join(tmpdir(), 'courier-tls-'));
    const cert = path.join(certDir, 'cert.pem');
    const key = path.join(certDir, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-addext', 'basicConstraints=critical,CA:FALSE', '-keyout', key, '-out', cert,
    ], { stdio: 'ignore' });
    server = await new CourierServer({ args: ['--tls-cert', cert, '--tls-key', key, '--dev-login', 'true'] }).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  it('Chromium loads the app over TLS with HTTP/2, and messages arrive live', async () => {
    assert.match(server.url, /^https:/);
    const context = await browser.newContext({ baseURL: server.url, ignoreHTTPSErrors: true });
    const page = await context.newPage();
    await page.goto('/');
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');

    const form = page.getByRole('form', { name: 'Development sign-in' });
    await form.getByLabel('Username').fill('alice');
    await form.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.waitForFunction(() => document.documentElement.dataset.streamState === 'open');

    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0'; // the node-side client trusts the test certificate
    const bob = await apiLogin(server.url, 'bob');
    const conv = await bob.startConversation('alice');
    await bob.send(conv.id, 'Hello over HTTP/2');
    await page.locator('.conversation-row .preview', { hasText: 'Hello over HTTP/2' }).waitFor();
    await page.goto(`/c/${conv.id}`);
    await waitForMessage(page, 'Hello over HTTP/2');
    const cookies = await context.cookies();
    assert.ok(cookies.find((c) => c.name.endsWith('courier_session'))?.secure, 'the session cookie is Secure');
    await context.close();
  });
});
