// End-to-end: signing in through a real OpenID Connect provider (oidc-provider, from e2e/oidc)
// in headless Chromium, against the real `courier` binary.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchBrowser, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const OIDC_DIR = path.resolve(here, '../oidc');
const CLIENT_ID = 'courier-e2e';
const CLIENT_SECRET = 'e2e-client-secret-5b7d';

// The provider prints its issuer, takes Courier's redirect URI on stdin, then says `ready`.
class IdentityProvider {
  async start() {
    this.child = spawn(process.execPath, [path.join(OIDC_DIR, 'provider.js')], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.lines = createInterface({ input: this.child.stdout })[Symbol.asyncIterator]();
    const { value } = await this.lines.next();
    assert.match(value, /^issuer http:\/\/127\.0\.0\.1:\d+$/);
    this.issuer = value.slice('issuer '.length);
    return this;
  }

  async configure(redirectUris) {
    const clients = [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: redirectUris }];
    this.child.stdin.write(`${JSON.stringify({ clients })}\n`);
    const { value } = await this.lines.next();
    assert.equal(value, 'ready');
  }

  stop() {
    if (this.child && this.child.exitCode === null) this.child.kill('SIGTERM');
  }
}

// Skipped only on a developer machine without `npm ci` in e2e/oidc; under CI a missing
// provider fails the suite.
const installed = existsSync(path.join(OIDC_DIR, 'node_modules/oidc-provider'));
const skip = !installed && !process.env.CI && 'the OpenID provider is not installed: run `npm ci` in e2e/oidc';

describe('Sign-in through an OpenID Connect provider', { timeout: 120_000, skip }, () => {
  let idp;
  let server;
  let browser;

  before(async () => {
    idp = await new IdentityProvider().start();
    const oidc = `id=local,name=Local ID,issuer=${idp.issuer},client-id=${CLIENT_ID},client-secret=${CLIENT_SECRET}`;
    server = await new CourierServer({ args: ['--dev-login=false', '--oidc', oidc] }).start();
    await idp.configure([`${server.url}/api/oauth/local/callback`]);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
    idp?.stop();
  });

  async function newPage() {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1024, height: 768 } });
    return trackProblems(await context.newPage());
  }

  it('the access page offers the provider, whose real login page signs the person in and brings them home', async () => {
    const page = await newPage();
    await page.goto('/');
    const button = page.getByRole('link', { name: 'Continue with Local ID' });
    await button.waitFor();
    assert.equal(await button.getAttribute('href'), '/api/oauth/local');
    await button.click();

    // oidc-provider's own pages: the login form, then the consent form.
    await page.waitForURL(`${idp.issuer}/interaction/**`);
    await page.locator('input[name="login"]').fill('ada@lovelace');
    await page.locator('input[name="password"]').fill('anything');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();

    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    const landed = new URL(page.url());
    assert.equal(landed.origin, server.url);
    assert.equal(landed.pathname, '/');
    assert.equal(landed.search, '', 'no code, state or token left in the address');

    const me = await page.evaluate(async () => (await fetch('/api/auth_user')).json());
    assert.equal(me.username, 'ada');
    const cookies = await page.context().cookies(server.url);
    const session = cookies.find((c) => c.name === 'courier_session');
    assert.ok(session && session.httpOnly, 'an HttpOnly session cookie');
    assert.ok(!cookies.some((c) => c.name === 'courier_oauth'), 'the flow cookie is spent');
    assert.deepEqual(page.problems.filter((p) => /Content Security Policy/i.test(p)), []);
    await page.context().close();
  });

  it('cancelling at the provider comes back to the access page, signed out', async () => {
    const page = await newPage();
    await page.goto('/');
    await page.getByRole('link', { name: 'Continue with Local ID' }).click();
    await page.waitForURL(`${idp.issuer}/interaction/**`);
    await page.getByRole('link', { name: '[ Cancel ]' }).click();

    await page.waitForURL((url) => url.origin === server.url);
    await page.getByRole('heading', { name: 'Sign in to Courier' }).waitFor();
    // The app says why, then drops ?error= so a reload doesn't repeat it.
    await page.getByRole('alert').filter({ hasText: 'Sign-in was cancelled at the provider.' }).waitFor();
    assert.equal(new URL(page.url()).search, '');
    const status = await page.evaluate(async () => (await fetch('/api/auth_user')).status);
    assert.equal(status, 401);
    await page.context().close();
  });
});
