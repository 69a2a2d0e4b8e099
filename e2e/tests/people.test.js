// End-to-end, issue 17: a real deployment's first run (setup page, no dev login), an invite
// link from one person to another, the first message between them, a password change and
// deleting an account (shown to the other as "Deleted account"), through the real `courier` binary in headless Chromium.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, passwordSignIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { waitForMessage } from '../lib/wait.js';

const ADMIN_PASSWORD = 'violet-harbor-tractor-91';
const BOB_PASSWORD = 'copper-meadow-lantern-47';
const BOB_NEW_PASSWORD = 'amber-signal-orchard-62';

describe('People and their accounts in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let admin;
  let bob;
  let inviteUrl;

  const homeHeading = (page) => page.getByRole('heading', { name: 'Conversations' });
  const composer = (page) => page.getByRole('textbox', { name: 'Message' });

  async function newPage() {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1024, height: 768 } });
    const page = trackProblems(await context.newPage());
    page.on('dialog', (dialog) => dialog.accept().catch(() => {}));
    return { context, page };
  }

  before(async () => {
    // Bob signs in many times in a minute here; the attempt limit has its own tests.
    server = await new CourierServer({ args: ['--dev-login=false', '--login-attempts-per-account', '30'] }).start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('first run: the setup page makes the first person the admin, and then locks', async () => {
    admin = await newPage();
    const { page } = admin;
    await page.goto('/');
    const setup = page.getByRole('form', { name: 'Create the admin account' });
    await setup.waitFor();
    await setup.getByLabel('Username').fill('admin');
    await setup.getByLabel('Password').fill(ADMIN_PASSWORD);
    await setup.getByRole('button', { name: 'Create admin account' }).click();
    await homeHeading(page).waitFor();

    const later = await newPage();
    await later.page.goto('/');
    await later.page.getByRole('form', { name: 'Sign in with a password' }).waitFor();
    assert.equal(await later.page.getByRole('form', { name: 'Create the admin account' }).count(), 0);
    await later.context.close();
  });

  it('the admin makes an invite link; bob opens it, signs up, and they exchange a first message', async () => {
    const { page } = admin;
    await page.goto('/settings');
    const create = page.getByRole('form', { name: 'Create an invite link' });
    await create.waitFor();
    await create.getByRole('button', { name: 'Create invite link' }).click();
    const link = page.locator('.invite-new');
    await link.filter({ hasText: '#invite=' }).waitFor();
    inviteUrl = (await link.textContent()).trim();
    assert.match(inviteUrl, /^http:\/\/127\.0\.0\.1:\d+\/#invite=[0-9a-f]{32}$/);

    bob = await newPage();
    await bob.page.goto(inviteUrl);
    const signup = bob.page.getByRole('form', { name: 'Create an account' });
    await signup.waitFor();
    assert.equal(await signup.getByLabel('Invite code').inputValue(), inviteUrl.split('#invite=')[1]);
    await signup.getByLabel('Username').fill('bob');
    await signup.getByLabel('Password').fill(BOB_PASSWORD);
    await signup.getByRole('button', { name: 'Create account' }).click();
    await homeHeading(bob.page).waitFor();

    await page.goto('/');
    await page.getByLabel('New conversation with').fill('bob');
    await page.getByRole('button', { name: 'Start' }).click();
    await page.waitForURL((url) => url.pathname.startsWith('/c/'));
    await composer(page).fill('welcome aboard');
    await composer(page).press('Enter');
    await waitForMessage(page, 'welcome aboard');
    await bob.page.locator('.conversation-row').filter({ hasText: 'admin' }).first().click();
    await waitForMessage(bob.page, 'welcome aboard');

    // The link allowed one use: a second visitor is told so before filling anything in.
    const late = await newPage();
    await late.page.goto(inviteUrl);
    await late.page.getByText('used as many times as it allows').waitFor();
    await late.context.close();
  });

  it('bob changes his password; the new one signs in, the old one does not', async () => {
    const { page } = bob;
    await page.goto('/settings');
    const form = page.getByRole('form', { name: 'Change password' });
    await form.waitFor();
    await form.getByLabel('Current password').fill('not-my-password-123');
    await form.getByLabel('New password').fill(BOB_NEW_PASSWORD);
    await form.getByRole('button', { name: 'Change password' }).click();
    await form.getByRole('alert').filter({ hasText: 'current password is wrong' }).waitFor();
    await form.getByLabel('Current password').fill(BOB_PASSWORD);
    await form.getByRole('button', { name: 'Change password' }).click();
    await form.getByRole('status').filter({ hasText: 'Password changed' }).waitFor();

    const other = await newPage();
    await other.page.goto('/');
    await passwordSignIn(other.page, 'bob', BOB_PASSWORD);
    await other.page.getByRole('alert').filter({ hasText: 'Wrong username or password' }).waitFor();
    await passwordSignIn(other.page, 'bob', BOB_NEW_PASSWORD);
    await homeHeading(other.page).waitFor();
    await other.context.close();
  });

  it('bob deletes his account: he is signed out, and his message stays with the admin', async () => {
    const { page } = bob;
    await page.goto('/');
    await page.locator('.conversation-row').filter({ hasText: 'admin' }).first().click();
    await composer(page).fill('goodbye from bob');
    await composer(page).press('Enter');
    await waitForMessage(page, 'goodbye from bob');

    await page.goto('/settings');
    const form = page.getByRole('form', { name: 'Delete my account' });
    await form.waitFor();
    await form.getByLabel('Your password').fill(BOB_NEW_PASSWORD);
    await form.getByRole('button', { name: 'Delete my account' }).click();
    await page.getByText('Your account was deleted.').waitFor();

    await waitForMessage(admin.page, 'goodbye from bob');
    // The admin's open conversation learns it live: bob is now a deleted account.
    const header = admin.page.locator('h1.conv-title');
    await header.filter({ hasText: 'Deleted account' }).waitFor();
    await admin.page.reload();
    await waitForMessage(admin.page, 'goodbye from bob');
    await header.filter({ hasText: 'Deleted account' }).waitFor();

    const again = await newPage();
    await again.page.goto('/');
    await passwordSignIn(again.page, 'bob', BOB_NEW_PASSWORD);
    await again.page.getByRole('alert').filter({ hasText: 'Wrong username or password' }).waitFor();
    await again.context.close();
  });
});
