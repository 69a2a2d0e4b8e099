// End-to-end, issue 15 part 3: one person reports a message from its actions menu, the server's
// admin sees the report on the moderation page, resolves it and disables the sender, whose
// open session ends at once; through the real `courier` binary in headless Chromium.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiPassword } from '../lib/api.js';
import { launchBrowser, passwordSignIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { waitForMessage } from '../lib/wait.js';

const PASSWORD = 'violet-harbor-tractor-91';
const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });
const bubble = (page, text) => page.locator('.message-list .message').filter({ has: page.locator('.content', { hasText: text }) });

describe('moderation in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;

  async function signedIn(username) {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1024, height: 768 } });
    const page = trackProblems(await context.newPage());
    await page.goto('/');
    await passwordSignIn(page, username, PASSWORD);
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    return page;
  }

  before(async () => {
    server = await new CourierServer({ args: ['--dev-login=false', '--signup', 'open'] }).start();
    browser = await launchBrowser();
    const setup = await fetch(`${server.url}/api/setup`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: 'admin', password: PASSWORD }),
    });
    assert.equal(setup.status, 201);
    const carol = await apiPassword(server.url, 'signup', 'carol', PASSWORD);
    await apiPassword(server.url, 'signup', 'bob', PASSWORD);
    const conversation = await carol.call('POST', '/api/conversations', { username: 'bob' }, [201, 302, 200]);
    await carol.call('POST', `/api/conversations/${conversation.id}/messages`, { content: 'cheap pills here' }, [201]);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('bob reports a message; the admin sees it live, resolves it and disables its sender, who is signed out', async () => {
    // The admin has the moderation page open before the report: it must arrive live.
    const admin = await signedIn('admin');
    await admin.getByRole('link', { name: 'Moderation' }).click();
    await admin.getByRole('heading', { name: 'Moderation' }).waitFor();
    await admin.getByText('No open reports.').waitFor();
    assert.equal(await admin.locator('.report-count').count(), 0, 'no count while nothing is open');
    const bob = await signedIn('bob');
    assert.equal(await bob.getByRole('link', { name: 'Moderation' }).count(), 0, 'no moderation link for non-admins');
    await rowFor(bob, 'carol').first().click();
    await waitForMessage(bob, 'cheap pills here');
    const dialogs = [];
    bob.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.accept(dialog.type() === 'prompt' ? 'spam' : undefined).catch(() => {});
    });
    const message = bubble(bob, 'cheap pills here');
    await message.locator('.bubble').hover();
    await message.getByRole('button', { name: 'Message actions' }).click();
    await bob.getByRole('menu', { name: 'Message actions' }).getByRole('menuitem', { name: 'Report' }).click();
    for (let i = 0; i < 50 && dialogs.length < 2; i++) await bob.waitForTimeout(100);
    assert.match(dialogs[1] ?? '', /Reported/, `dialogs: ${dialogs}`);

    const carol = await signedIn('carol');
    const report = admin.locator('.report-row').filter({ hasText: 'cheap pills here' });
    await report.waitFor();
    assert.match(await report.textContent(), /bob reported carol/);
    assert.match(await report.textContent(), /Reason: spam/);
    assert.match(await report.getByRole('link', { name: 'Open message' }).getAttribute('href'), /^\/c\/\d+\?message=\d+$/);
    await admin.locator('.report-count').filter({ hasText: '1' }).waitFor();

    admin.on('dialog', (dialog) => dialog.accept().catch(() => {}));
    await admin.getByRole('button', { name: 'Disable carol' }).click();
    await admin.locator('.person-row[data-username="carol"]').getByText('Disabled').waitFor();
    await carol.getByText('You’ve been signed out').waitFor();
    await passwordSignIn(carol, 'carol', PASSWORD);
    await carol.getByRole('alert').filter({ hasText: 'disabled' }).waitFor();

    await report.getByRole('button', { name: 'Resolve' }).click();
    await admin.getByText('No open reports.').waitFor();
    await admin.locator('.report-count').waitFor({ state: 'detached' });
    await admin.getByRole('button', { name: 'Enable carol' }).click();
    await admin.locator('.person-row[data-username="carol"]').getByRole('button', { name: 'Disable carol' }).waitFor();
  });
});
