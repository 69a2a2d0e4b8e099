// Accessibility: axe-core on every page and state of the web app, in the light and the dark
// colour scheme, with no serious or critical violation allowed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { describeViolations, seriousViolations } from '../lib/axe.js';
import { launchBrowser, signIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

// Checks the page as it is now, once per colour scheme (contrast differs between them).
async function assertAccessible(page, state) {
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    const violations = await seriousViolations(page);
    assert.deepEqual(violations.map((v) => v.id), [],
      `${state} (${colorScheme}) has serious or critical axe violations:\n${describeViolations(violations)}`);
  }
  await page.emulateMedia({ colorScheme: null });
}

describe('axe-core finds no serious or critical violations', { timeout: 240_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let carol;
  let direct;
  let group;

  const composer = (page) => page.getByRole('textbox', { name: 'Message' });

  before(async () => {
    // Open sign-up and (on loopback) dev login: the access page shows every form it has.
    server = await new CourierServer({ args: ['--signup', 'open'] }).start();
    browser = await launchBrowser();
    bob = await apiLogin(server.url, 'bob');
    carol = await apiLogin(server.url, 'carol');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('the access page: password sign-in, its errors, sign-up, dev sign-in, provider links', async () => {
    const context = await browser.newContext({ baseURL: server.url });
    const page = trackProblems(await context.newPage());
    await page.goto('/');
    const signin = page.getByRole('form', { name: 'Sign in with a password' });
    await signin.waitFor();
    await page.getByRole('form', { name: 'Development sign-in' }).waitFor();
    await assertAccessible(page, 'access page');

    await signin.getByRole('button', { name: 'Sign in' }).click();
    await signin.locator('#signin-username-error', { hasText: 'Enter your username.' }).waitFor();
    await assertAccessible(page, 'access page with field errors');

    await page.getByRole('button', { name: 'Create an account' }).click();
    await page.getByRole('form', { name: 'Create an account' }).waitFor();
    await assertAccessible(page, 'sign-up form');

    await page.route('**/api/auth/providers', (route) => route.fulfill({
      json: {
        devLogin: true, password: true, signup: 'closed', passwordMinLength: 10,
        providers: [{ id: 'github', name: 'GitHub', url: '/api/oauth/github' }],
      },
    }));
    await page.goto('/?error=oauth_denied');
    await page.getByRole('link', { name: 'Continue with GitHub' }).waitFor();
    await page.getByRole('alert').filter({ hasText: 'cancelled' }).waitFor();
    await assertAccessible(page, 'access page with a provider and a sign-in error');
    assert.deepEqual(page.problems.filter((t) => /Content Security Policy/i.test(t)), [], 'axe ran without loosening the CSP');
    await context.close();
  });

  it('home: empty, with the "New group" form open, and with conversations and unread badges', async () => {
    alice = await signIn(browser, server.url, 'alice');
    const { page } = alice;
    await page.getByText('No conversations yet').waitFor();
    await assertAccessible(page, 'empty home');

    await page.getByText('New group').click();
    await page.getByLabel('Group title').waitFor();
    await assertAccessible(page, 'home with the New group form open');

    direct = await bob.startConversation('alice');
    for (let i = 1; i <= 30; i++) await bob.send(direct.id, `Message ${i} from bob, see https://example.com/${i}`);
    group = await carol.call('POST', '/api/conversations', { title: 'Book club', usernames: ['alice', 'bob'] }, [201]);
    await carol.send(group.id, 'First book: Middlemarch?');
    await page.locator('.conversation-row').nth(1).waitFor();
    await page.locator('.unread-count', { hasText: '30' }).waitFor();
    // The count reaches screen readers through the link's name, not only as a coloured badge.
    await page.getByRole('link', { name: /bob.*30 unread messages/ }).waitFor();
    await assertAccessible(page, 'home with conversations');
  });

  it('a direct conversation: history, links, "load older", the new-messages pill, a composer error', async () => {
    const { page } = alice;
    await page.goto(`/c/${direct.id}`);
    await waitForMessage(page, 'Message 30 from bob, see https://example.com/30');
    await composer(page).fill('Hello bob');
    await composer(page).press('Enter');
    await waitForMessage(page, 'Hello bob');
    await page.getByRole('button', { name: 'Load older messages' }).waitFor();
    await assertAccessible(page, 'direct conversation');

    await page.locator('.messages').evaluate((el) => { el.scrollTop = 0; });
    await bob.send(direct.id, 'Are you there?');
    await page.getByRole('button', { name: /1 new message/ }).waitFor();
    await composer(page).press('Enter'); // empty: "Write something before sending."
    await page.locator('#composer-error', { hasText: 'Write something' }).waitFor();
    await assertAccessible(page, 'direct conversation with the pill and a composer error');
  });

  it('a group conversation with its Members panel open, sender names and system lines', async () => {
    const { page } = alice;
    await page.goto(`/c/${group.id}`);
    await waitForMessage(page, 'First book: Middlemarch?');
    await page.getByRole('button', { name: 'Members' }).click();
    const panel = page.getByRole('region', { name: 'Group members and settings' });
    await panel.locator('.member-row', { hasText: 'carol' }).waitFor();
    await assertAccessible(page, 'group with Members panel (member)');

    // Carol makes alice an admin and renames the group: the admin controls and system lines show.
    await carol.call('PATCH', `/api/conversations/${group.id}/members/${await idOf('alice')}`, { role: 'admin' }, [200, 204]);
    await carol.call('PATCH', `/api/conversations/${group.id}`, { title: 'Book club 2027' }, [200]);
    await page.locator('.system-line', { hasText: 'renamed the group' }).waitFor();
    await panel.getByRole('textbox', { name: 'Add people' }).waitFor();
    await eventually(async () => (await panel.getByRole('button', { name: 'Remove bob' }).count()) === 1, { message: 'admin controls' });
    await assertAccessible(page, 'group with Members panel (admin) and system lines');
  });

  it('the sessions page, and its "sign out everywhere" dialog', async () => {
    const { page } = alice;
    await apiLogin(server.url, 'alice'); // a second session to list
    await page.goto('/sessions');
    await page.locator('.session-row').nth(1).waitFor();
    await assertAccessible(page, 'sessions page');
    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await page.getByRole('dialog').waitFor();
    await assertAccessible(page, 'sign out everywhere dialog');
    await page.getByRole('button', { name: 'Cancel' }).click();
  });

  it('the not-found pages', async () => {
    const { page } = alice;
    await page.goto('/no/such/page');
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
    await assertAccessible(page, 'page not found');
    await page.goto('/c/999999999');
    await page.getByRole('heading', { name: 'Conversation not found' }).waitFor();
    await assertAccessible(page, 'conversation not found');
  });

  it('the reconnecting and offline banners, and the offline page', async () => {
    const { page, context } = alice;
    await page.goto(`/c/${direct.id}`);
    await waitForMessage(page, 'Are you there?');
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    await server.stop();
    try {
      await page.locator('#connection-status', { hasText: /can't reach the server, retrying/i }).waitFor({ timeout: 15_000 });
      await assertAccessible(page, 'conversation with the reconnecting banner');
      const offline = await context.newPage();
      await offline.goto('/');
      // The browser is online: it is the server that can't be reached.
      await offline.locator('#connection-status', { hasText: /can't reach the server/i }).waitFor();
      await offline.getByRole('heading', { name: "Can't reach the server" }).waitFor();
      await assertAccessible(offline, 'offline page with its banner');
      await offline.close();
    } finally {
      await server.start();
    }
    await eventually(async () => !(await page.locator('#connection-status').isVisible()), { message: 'banner gone', timeout: 20_000 });
  });

  async function idOf(username) {
    return (await apiLogin(server.url, username)).user.id;
  }
});
