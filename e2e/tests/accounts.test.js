// End-to-end: password accounts and revocable sessions, through the real `courier` binary
// (started with open sign-up) in headless Chromium.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { apiLogin, apiPassword, statusWithCookie } from '../lib/api.js';
import { launchBrowser, passwordSignIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually } from '../lib/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.resolve(here, '../../docs/screenshots');

// Realistic user agents, so the sessions page has distinct, readable devices to show.
const CHROME_LINUX = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';
const FIREFOX_WINDOWS = 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0';
const SAFARI_IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1';

describe('Accounts and sessions in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  const contexts = [];

  const accessHeading = (page) => page.getByRole('heading', { name: 'Sign in to Courier' });
  const homeHeading = (page) => page.getByRole('heading', { name: 'Conversations' });
  const topbarSignOut = (page) => page.locator('#topbar').getByRole('button', { name: 'Sign out' });
  const sessionRow = (page, device) => page.locator('.session-row').filter({ has: page.locator('.name', { hasText: device }) });

  async function newPage({ userAgent } = {}) {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1024, height: 768 }, userAgent });
    contexts.push(context);
    const page = trackProblems(await context.newPage());
    return { context, page };
  }

  // Signs in with the password form and waits until the browser's event stream is connected
  // (it lives in a SharedWorker, so the page itself never sees the request).
  async function signInWithPassword(page, username, password) {
    await page.goto('/');
    await passwordSignIn(page, username, password);
    await homeHeading(page).waitFor();
    await page.waitForFunction(() => document.documentElement.dataset.streamState === 'open');
  }

  async function sessionCookie(context) {
    const cookie = (await context.cookies()).find((c) => c.name === 'courier_session');
    return cookie ? cookie.value : '';
  }

  function cspProblems(page) {
    return page.problems.filter((t) => /Content Security Policy/i.test(t));
  }

  before(async () => {
    server = await new CourierServer({ args: ['--signup', 'open'] }).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('signs up with a password, signs out, signs in again and sees their conversations; a wrong password shows inline', async () => {
    await apiLogin(server.url, 'nikolai'); // an existing name, to see the sign-up clash
    const { page } = await newPage();
    await page.goto('/');
    await accessHeading(page).waitFor();
    await page.getByRole('button', { name: 'Create an account' }).click();
    const signup = page.getByRole('form', { name: 'Create an account' });
    await page.getByRole('heading', { name: 'Create your Courier account' }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'signup-username', 'focus moves into the sign-up form');
    assert.match(await signup.locator('#signup-password-hint').textContent(), /At least 10 characters/);

    // Client-side: too short, before anything is sent.
    await signup.getByLabel('Username').fill('maria');
    await signup.getByLabel('Password').fill('short');
    await signup.getByRole('button', { name: 'Create account' }).click();
    await signup.locator('#signup-password-error', { hasText: 'Use at least 10 characters.' }).waitFor();
    assert.equal(await signup.getByLabel('Password').getAttribute('aria-invalid'), 'true');

    // Server-side 422 shows next to the field it names: the username is taken.
    await signup.getByLabel('Username').fill('nikolai');
    await signup.getByLabel('Password').fill('plum-orbit-Kestrel-42');
    await signup.getByRole('button', { name: 'Create account' }).click();
    const usernameError = signup.locator('#signup-username-error');
    await eventually(async () => (await usernameError.textContent()).trim() !== '', { message: 'the username error' });
    assert.equal(await signup.getByLabel('Username').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'signup-username', 'focus on the field to fix');
    assert.equal((await signup.locator('#signup-password-error').textContent()).trim(), '', 'no error on the password');

    await signup.getByLabel('Username').fill('maria');
    await signup.getByRole('button', { name: 'Create account' }).click();
    await homeHeading(page).waitFor();
    await page.locator('#topbar .me-name', { hasText: 'maria' }).waitFor();

    // Someone writes to her while she's away.
    const nikolai = await apiLogin(server.url, 'nikolai');
    const conv = await nikolai.startConversation('maria');
    await nikolai.send(conv.id, 'Welcome to Courier, Maria!');

    await topbarSignOut(page).click();
    await page.getByRole('dialog', { name: 'Sign out?' }).getByRole('button', { name: 'Sign out' }).click(); // it asks first
    await accessHeading(page).waitFor();
    assert.equal(new URL(page.url()).pathname, '/');
    assert.equal(await page.locator('.notice').count(), 0, 'no "you were signed out" notice for a deliberate sign-out');

    // Wrong password: the server's 422 shows inline next to the password, which gets focus.
    await passwordSignIn(page, 'maria', 'not-my-password-1');
    const signin = page.getByRole('form', { name: 'Sign in with a password' });
    await signin.locator('#signin-password-error', { hasText: 'Wrong username or password' }).waitFor();
    assert.equal(await signin.getByLabel('Password').getAttribute('aria-invalid'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'signin-password');

    // Typing clears the error; the right password signs her in to her conversations.
    await signin.getByLabel('Password').fill('plum-orbit-Kestrel-42');
    assert.equal((await signin.locator('#signin-password-error').textContent()).trim(), '');
    await signin.getByRole('button', { name: 'Sign in' }).click();
    await homeHeading(page).waitFor();
    const row = page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: 'nikolai' }) });
    await row.locator('.preview', { hasText: 'Welcome to Courier, Maria!' }).waitFor();
    assert.deepEqual(cspProblems(page), []);
  });

  it('on the sessions page one device signs out another: its tab shows the access page live and its cookie is dead', async () => {
    const password = 'violet-Harbour-1887';
    await apiPassword(server.url, 'signup', 'olga', password, { userAgent: SAFARI_IPHONE });
    const a = await newPage({ userAgent: CHROME_LINUX });
    const b = await newPage({ userAgent: FIREFOX_WINDOWS });
    await signInWithPassword(a.page, 'olga', password);
    await signInWithPassword(b.page, 'olga', password);
    const bCookie = await sessionCookie(b.context);
    assert.ok(bCookie, 'b has a session cookie');
    await b.page.evaluate(() => { window.stillTheSamePage = true; });

    await a.page.locator('#topbar').getByRole('link', { name: 'Sessions' }).click();
    await a.page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
    assert.equal(new URL(a.page.url()).pathname, '/sessions');
    await eventually(async () => (await a.page.locator('.session-row').count()) === 3, { message: 'three sessions listed' });
    const mine = sessionRow(a.page, 'Chrome on Linux');
    assert.equal(await mine.locator('.badge').textContent(), 'This device');
    assert.equal(await mine.getByRole('button').count(), 0, 'no per-row sign-out for this device (it is in the header)');
    assert.equal(await a.page.locator('.session-row').first().getAttribute('data-current'), 'true', 'this device first');
    await sessionRow(a.page, 'Safari on iPhone').waitFor();
    const other = sessionRow(a.page, 'Firefox on Windows');
    assert.match(await other.locator('time').first().textContent(), /^Active /);

    mkdirSync(SCREENSHOTS, { recursive: true });
    await a.page.mouse.move(600, 700); // no hover highlight on the header link just clicked
    await a.page.screenshot({ path: path.join(SCREENSHOTS, 'sessions.png') });

    await other.getByRole('button', { name: 'Sign out Firefox on Windows' }).click();
    await a.page.getByRole('status').filter({ hasText: 'Signed out Firefox on Windows.' }).waitFor();
    await eventually(async () => (await a.page.locator('.session-row').count()) === 2, { message: 'the row is gone' });

    // The other tab hears `signed-out` on its stream and shows the access page, without a reload.
    await accessHeading(b.page).waitFor({ timeout: 10_000 });
    await b.page.locator('.notice', { hasText: 'signed out' }).waitFor();
    assert.equal(await b.page.evaluate(() => window.stillTheSamePage), true, 'no reload happened');
    assert.equal(await statusWithCookie(server.url, '/api/auth_user', `courier_session=${bCookie}`), 401, 'its old cookie is refused');

    // This device is still signed in.
    await a.page.reload();
    await a.page.getByRole('heading', { name: 'Sessions', level: 1 }).waitFor();
    await eventually(async () => (await a.page.locator('.session-row').count()) === 2, { message: 'two sessions after a reload' });
    assert.deepEqual(cspProblems(a.page), []);
    assert.deepEqual(cspProblems(b.page), []);
  });

  it('"sign out everywhere" asks first, then ends every session: this tab, another tab and an API token', async () => {
    const password = 'violet-Harbour-1887';
    const a = await newPage({ userAgent: CHROME_LINUX });
    const b = await newPage({ userAgent: FIREFOX_WINDOWS });
    await signInWithPassword(a.page, 'olga', password);
    await signInWithPassword(b.page, 'olga', password);
    const token = await apiPassword(server.url, 'signin', 'olga', password); // an API session of the same user
    assert.equal(await token.status('/api/auth_user'), 200);

    await a.page.goto('/sessions');
    await eventually(async () => (await a.page.locator('.session-row').count()) >= 4, { message: 'the sessions listed' });
    const everywhere = a.page.getByRole('button', { name: 'Sign out everywhere' });

    // Escape cancels, and focus returns to the button.
    await everywhere.click();
    const dialog = a.page.getByRole('dialog', { name: 'Sign out everywhere?' });
    await dialog.waitFor();
    assert.equal(await a.page.evaluate(() => document.activeElement?.textContent), 'Cancel', 'the safe choice has focus');
    await a.page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await a.page.evaluate(() => document.activeElement?.textContent), 'Sign out everywhere');
    assert.equal(await token.status('/api/auth_user'), 200, 'nothing was signed out');

    await everywhere.click();
    await dialog.getByRole('button', { name: 'Sign out everywhere' }).click();
    await accessHeading(a.page).waitFor();
    assert.equal(new URL(a.page.url()).pathname, '/');
    assert.equal(await sessionCookie(a.context), '', "this browser's cookie is cleared");
    await accessHeading(b.page).waitFor({ timeout: 10_000 });
    assert.equal(await token.status('/api/auth_user'), 401, 'the API token is revoked too');
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => {});
  });
});

describe('The access page follows the server’s sign-in settings', { timeout: 120_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await new CourierServer({
      args: ['--signup', 'invite', '--invite-codes', 'welcome-7', '--login-attempts-per-account', '2', '--password-min-length', '12'],
    }).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('invite sign-up asks for the code and shows a wrong one inline; the rate limit is a form-level alert', async () => {
    const context = await browser.newContext({ baseURL: server.url });
    const page = trackProblems(await context.newPage());
    await page.goto('/');
    await page.getByRole('button', { name: 'Create an account' }).click();
    const signup = page.getByRole('form', { name: 'Create an account' });
    assert.match(await signup.locator('#signup-password-hint').textContent(), /At least 12 characters/, 'the server’s minimum');

    await signup.getByLabel('Username').fill('petra');
    await signup.getByLabel('Password').fill('granite-Lantern-509');
    await signup.getByLabel('Invite code').fill('guessed-code');
    await signup.getByRole('button', { name: 'Create account' }).click();
    await signup.locator('#signup-invite-error', { hasText: /invite/i }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'signup-invite');

    await signup.getByLabel('Invite code').fill('welcome-7');
    await signup.getByRole('button', { name: 'Create account' }).click();
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.locator('#topbar').getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('dialog', { name: 'Sign out?' }).getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Courier' }).waitFor();

    // Two attempts a minute for this account: the third is refused with 429, shown for the form.
    const signin = page.getByRole('form', { name: 'Sign in with a password' });
    for (let i = 0; i < 2; i++) {
      await passwordSignIn(page, 'petra', `wrong-password-${i}`);
      await signin.locator('#signin-password-error', { hasText: 'Wrong username or password' }).waitFor();
    }
    await passwordSignIn(page, 'petra', 'granite-Lantern-509');
    const alert = signin.locator('.form-error[role="alert"]');
    await alert.filter({ hasText: /too many attempts/i }).waitFor();
    assert.equal((await signin.locator('#signin-password-error').textContent()).trim(), '', 'not blamed on the password');
    await context.close();
  });

  it('shows the configured providers as links (same-origin only) and hides what is turned off', async () => {
    const context = await browser.newContext({ baseURL: server.url });
    const page = trackProblems(await context.newPage());
    await page.route('**/api/auth/providers', (route) => route.fulfill({
      json: {
        devLogin: false, password: true, signup: 'closed', passwordMinLength: 10,
        providers: [
          { id: 'github', name: 'GitHub', url: '/api/oauth/github' },
          { id: 'keycloak', name: 'Community SSO', url: '/api/oauth/keycloak' },
          { id: 'evil', name: 'Elsewhere', url: 'https://evil.example/oauth' },
        ],
      },
    }));
    await page.goto('/');
    await page.getByRole('link', { name: 'Continue with GitHub' }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Continue with GitHub' }).getAttribute('href'), '/api/oauth/github');
    assert.equal(await page.getByRole('link', { name: 'Continue with Community SSO' }).getAttribute('href'), '/api/oauth/keycloak');
    assert.equal(await page.getByRole('link', { name: 'Continue with Elsewhere' }).count(), 0, 'no off-site provider link');
    await page.getByRole('form', { name: 'Sign in with a password' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Create an account' }).count(), 0, 'sign-up is closed');
    assert.equal(await page.getByRole('form', { name: 'Development sign-in' }).count(), 0, 'dev login is off');
    await context.close();
  });
});
