// Groups in the browser: three people create and use a group live; a rename and a removal
// reach everyone at once; unread counts show as badges.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });
const composer = (page) => page.getByRole('textbox', { name: 'Message' });

describe('groups in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let carol;
  let groupId;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await signIn(browser, server.url, 'bob');
    carol = await signIn(browser, server.url, 'carol');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('alice creates a group; bob and carol see it and its messages live, with unread badges', async () => {
    const { page } = alice;
    await page.getByText('New group').click();
    await page.getByLabel('Group title').fill('Book club');
    // Suggestions complete the name being typed and keep the ones already chosen.
    const people = page.getByLabel('People (usernames, separated by commas)');
    await people.fill('bob, ca');
    await eventually(async () => (await page.locator('#group-people-options option').evaluateAll((os) => os.map((o) => o.value))).includes('bob, carol, '), { message: 'carol suggested after bob' });
    await people.fill('bob, carol');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.waitForURL(/\/c\/[^/]+$/);
    await page.getByRole('heading', { name: 'Book club' }).waitFor();
    groupId = new URL(page.url()).pathname.split('/').pop();

    // Bob and carol are on their lists: the group appears without a reload.
    await rowFor(bob.page, 'Book club').waitFor();
    await rowFor(carol.page, 'Book club').waitFor();

    await composer(page).fill('First book: Middlemarch?');
    await composer(page).press('Enter');
    await waitForMessage(page, 'First book: Middlemarch?');
    const badge = rowFor(carol.page, 'Book club').locator('.unread-count');
    await eventually(async () => (await badge.textContent()) === '1', { message: 'carol sees 1 unread' });

    await rowFor(bob.page, 'Book club').getByRole('link').click();
    await bob.page.getByRole('heading', { name: 'Book club' }).waitFor();
    await waitForMessage(bob.page, 'First book: Middlemarch?');
    // Bob's screen reader label names the sender.
    const label = await bob.page.locator('.message-list .message.theirs .visually-hidden').first().textContent();
    assert.equal(label, 'alice: ');
    await composer(bob.page).fill('Yes!');
    await composer(bob.page).press('Enter');
    await waitForMessage(page, 'Yes!');
    await eventually(async () => (await badge.textContent()) === '2', { message: 'carol sees 2 unread' });
  });

  it('a rename shows at once; a removed member drops out and receives nothing more', async () => {
    const owner = await apiLogin(server.url, 'alice');
    await carol.page.goto(`/c/${groupId}`);
    await waitForMessage(carol.page, 'Yes!');

    await owner.call('PATCH', `/api/conversations/${groupId}`, { title: 'Book club 2027' }, [200]);
    await bob.page.getByRole('heading', { name: 'Book club 2027' }).waitFor();
    await bob.page.locator('.system-line', { hasText: 'alice renamed the group to “Book club 2027”' }).waitFor();

    await owner.call('DELETE', `/api/conversations/${groupId}/members/${carol.userId ?? (await idOf('carol'))}`, undefined, [204]);
    // Carol's open conversation goes back to her list, where the group is gone.
    await carol.page.waitForURL((url) => url.pathname === '/');
    await carol.page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await eventually(async () => (await rowFor(carol.page, 'Book club').count()) === 0, { message: 'group gone from carol\'s list' });
    await bob.page.locator('.system-line', { hasText: 'alice removed carol' }).waitFor();

    await owner.send(groupId, 'Just the two of us now');
    await waitForMessage(bob.page, 'Just the two of us now');
    assert.equal(await rowFor(carol.page, 'Book club').count(), 0, 'nothing reaches carol');
  });

  it('the members panel: the owner adds carol back and makes bob admin; bob leaves and the group goes on', async () => {
    const { page } = alice;
    await page.goto(`/c/${groupId}`);
    await page.getByRole('button', { name: 'Members' }).click();
    const panel = page.getByRole('region', { name: 'Group members and settings' });
    await panel.locator('.member-row', { hasText: 'bob' }).waitFor();
    await panel.getByRole('textbox', { name: 'Add people' }).fill('carol');
    await panel.getByRole('button', { name: 'Add' }).click();
    await panel.locator('.member-row', { hasText: 'carol' }).waitFor();
    await rowFor(carol.page, 'Book club 2027').waitFor();

    await panel.locator('.member-row', { hasText: 'bob' }).getByRole('button', { name: 'Make admin' }).click();
    await eventually(async () => (await panel.locator('.member-row[data-role="admin"]').count()) === 1, { message: 'bob is admin' });
    await page.locator('.system-line', { hasText: 'alice made bob admin' }).waitFor();

    // Bob leaves from his own panel (two clicks: it asks first).
    await bob.page.goto(`/c/${groupId}`);
    await bob.page.getByRole('button', { name: 'Members' }).click();
    const leave = bob.page.getByRole('button', { name: 'Leave group' });
    await leave.click();
    await bob.page.getByRole('button', { name: /Leave for good/ }).click();
    await bob.page.waitForURL((url) => url.pathname === '/');
    await eventually(async () => (await rowFor(bob.page, 'Book club 2027').count()) === 0, { message: 'gone from bob\'s list' });
    await page.locator('.system-line', { hasText: 'bob left' }).waitFor();
    await eventually(async () => (await panel.locator('.member-row').count()) === 2, { message: 'two members left' });
  });

  async function idOf(username) {
    const client = await apiLogin(server.url, username);
    return client.user.id;
  }
});
