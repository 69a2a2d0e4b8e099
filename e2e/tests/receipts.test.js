// Receipts between two people in two browsers: the tick on alice's message moves from sent
// (bob is away) to delivered (bob's browser got it) to read (bob opened the conversation);
// in a group, "Seen by" names who read the newest message.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });
const composer = (page) => page.getByRole('textbox', { name: 'Message' });
const bubble = (page, text) => page.locator('.message-list .message').filter({ has: page.locator('.content', { hasText: text }) });
const tickOf = async (page, text) => bubble(page, text).locator('.ticks').getAttribute('aria-label');

async function say(page, text) {
  await composer(page).fill(text);
  await composer(page).press('Enter');
  await waitForMessage(page, text);
}

describe('receipts in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await signIn(browser, server.url, 'bob');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('ticks move from sent to delivered to read', async () => {
    // Bob has no tab open: the message can only be sent.
    await bob.page.close();
    await alice.page.getByLabel('New conversation with').fill('bob');
    await alice.page.getByRole('button', { name: 'Start' }).click();
    await alice.page.getByRole('heading', { name: 'bob' }).waitFor();
    await say(alice.page, 'Are you there?');
    assert.equal(await tickOf(alice.page, 'Are you there?'), 'Sent');

    // Bob opens Courier on his home page: his browser receives it, not reads it.
    bob.page = await bob.context.newPage();
    await bob.page.goto('/');
    await rowFor(bob.page, 'alice').waitFor();
    await eventually(async () => (await tickOf(alice.page, 'Are you there?')) === 'Delivered', { message: 'delivered' });

    // He opens the conversation: read.
    await rowFor(bob.page, 'alice').getByRole('link').click();
    await waitForMessage(bob.page, 'Are you there?');
    await eventually(async () => (await tickOf(alice.page, 'Are you there?')) === 'Read', { message: 'read' });
    assert.equal(await bubble(alice.page, 'Are you there?').locator('.ticks').getAttribute('data-state'), 'read');
  });

  it('a group names who has seen its newest message', async () => {
    const carol = await signIn(browser, server.url, 'carol');
    try {
      const { page } = alice;
      await page.getByRole('link', { name: 'Back to conversations' }).click();
      await page.getByText('New group').click();
      await page.getByLabel('Group title').fill('Standup');
      await page.getByLabel('People (usernames, separated by commas)').fill('bob, carol');
      await page.getByRole('button', { name: 'Create group' }).click();
      await page.getByRole('heading', { name: 'Standup' }).waitFor();
      await say(page, 'Standup in 5');
      await bob.page.getByRole('link', { name: 'Back to conversations' }).click();
      await rowFor(bob.page, 'Standup').getByRole('link').click();
      await waitForMessage(bob.page, 'Standup in 5');
      const seen = page.locator('.seen-by');
      await eventually(async () => (await seen.textContent()) === 'Seen by bob', { message: 'seen by bob' });
      await rowFor(carol.page, 'Standup').getByRole('link').click();
      await waitForMessage(carol.page, 'Standup in 5');
      await eventually(async () => /^Seen by (bob, carol|carol, bob)$/.test(await seen.textContent()), { message: 'seen by both' });
      await eventually(async () => (await tickOf(page, 'Standup in 5')) === 'Read by everyone', { message: 'read by everyone' });
    } finally {
      await carol.context.close();
    }
  });
});
