// A message's lifecycle between two people in two browsers: react, edit in place, reply with
// a quote, delete with confirmation; everything live on the other side, a tombstone after a
// reload, and a quote that jumps to an original several pages back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, messageTexts, waitForMessage } from '../lib/wait.js';

const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });
const composer = (page) => page.getByRole('textbox', { name: 'Message' });
const bubble = (page, text) => page.locator('.message-list .message').filter({ has: page.locator('.content', { hasText: text }) });

async function say(page, text) {
  await composer(page).fill(text);
  await composer(page).press('Enter');
  await waitForMessage(page, text);
}

async function openActions(page, message) {
  await message.locator('.bubble').hover();
  await message.getByRole('button', { name: 'Message actions' }).click();
  return page.getByRole('menu', { name: 'Message actions' });
}

describe('message lifecycle in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await signIn(browser, server.url, 'bob');
    // Both open the same conversation.
    await alice.page.getByLabel('New conversation with').fill('bob');
    await alice.page.getByRole('button', { name: 'Start' }).click();
    await alice.page.getByRole('heading', { name: 'bob' }).waitFor();
    await say(alice.page, 'Lunch at 1?');
    await rowFor(bob.page, 'alice').getByRole('link').click();
    await waitForMessage(bob.page, 'Lunch at 1?');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('a reaction appears live for the other person, and taking it back removes it', async () => {
    const menu = await openActions(bob.page, bubble(bob.page, 'Lunch at 1?'));
    await menu.getByRole('menuitem', { name: 'React 👍' }).click();
    const chip = bubble(alice.page, 'Lunch at 1?').locator('.reaction', { hasText: '👍' });
    await eventually(async () => (await chip.textContent()) === '👍1', { message: 'alice sees 👍 1' });
    assert.equal(await chip.getAttribute('aria-pressed'), 'false', 'not alice’s own reaction');
    const bobsChip = bubble(bob.page, 'Lunch at 1?').locator('.reaction', { hasText: '👍' });
    assert.equal(await bobsChip.getAttribute('aria-pressed'), 'true');
    // Alice adds hers by clicking the chip: two.
    await chip.click();
    await eventually(async () => (await bobsChip.textContent()) === '👍2', { message: 'bob sees 👍 2' });
    await bobsChip.click();
    await eventually(async () => (await chip.textContent()) === '👍1', { message: 'back to 1' });
  });

  it('alice edits in place; bob sees the new text marked (edited)', async () => {
    const menu = await openActions(alice.page, bubble(alice.page, 'Lunch at 1?'));
    await menu.getByRole('menuitem', { name: 'Edit' }).click();
    const field = alice.page.getByRole('textbox', { name: 'Edit message' });
    await field.fill('Lunch at 1:30?');
    await field.press('Enter');
    await waitForMessage(bob.page, 'Lunch at 1:30?');
    assert.ok(!(await messageTexts(bob.page)).includes('Lunch at 1?'), 'the old text is gone');
    await bubble(bob.page, 'Lunch at 1:30?').locator('.edited', { hasText: '(edited)' }).waitFor();
    await bubble(alice.page, 'Lunch at 1:30?').locator('.edited').waitFor();
  });

  it('bob replies with a quote; alice sees it live', async () => {
    const menu = await openActions(bob.page, bubble(bob.page, 'Lunch at 1:30?'));
    await menu.getByRole('menuitem', { name: 'Reply' }).click();
    await bob.page.locator('.reply-bar', { hasText: 'Replying to alice' }).waitFor();
    await say(bob.page, 'Works for me');
    assert.ok(await bob.page.locator('.reply-bar').isHidden(), 'the reply bar closes after sending');
    const reply = bubble(alice.page, 'Works for me');
    await reply.waitFor();
    assert.equal(await reply.locator('.quote .quote-text').textContent(), 'Lunch at 1:30?');
    assert.equal(await reply.locator('.quote .quote-author').textContent(), 'alice');
  });

  it('alice deletes after confirming; bob sees a tombstone live and after a reload', async () => {
    const menu = await openActions(alice.page, bubble(alice.page, 'Lunch at 1:30?'));
    alice.page.once('dialog', (dialog) => dialog.accept());
    await menu.getByRole('menuitem', { name: 'Delete' }).click();
    await waitForMessage(bob.page, 'This message was deleted');
    assert.ok(!(await messageTexts(bob.page)).includes('Lunch at 1:30?'));
    const quote = bubble(bob.page, 'Works for me').locator('.quote');
    await eventually(async () => (await quote.locator('.quote-text').textContent()) === 'Deleted message', { message: 'the quote follows the delete' });
    await waitForMessage(alice.page, 'You deleted this message');

    await bob.page.reload();
    await waitForMessage(bob.page, 'This message was deleted');
    assert.equal(await bubble(bob.page, 'Works for me').locator('.quote-text').textContent(), 'Deleted message');
    // A tombstone offers no actions.
    assert.equal(await bubble(bob.page, 'This message was deleted').getByRole('button', { name: 'Message actions' }).count(), 0);
  });

  it('clicking a quote of a message several pages back loads older pages and shows it', async () => {
    const ivy = await signIn(browser, server.url, 'ivy');
    try {
      const hank = await apiLogin(server.url, 'hank');
      const conv = await hank.startConversation('ivy');
      const first = await hank.send(conv.id, 'The very first message');
      for (let i = 1; i <= 60; i++) await hank.send(conv.id, `Filler ${i}`);
      await hank.call('POST', `/api/conversations/${conv.id}/messages`, { content: 'About that first one', replyTo: first.id }, [201]);

      const { page } = ivy;
      await rowFor(page, 'hank').getByRole('link').click();
      await waitForMessage(page, 'About that first one');
      assert.ok(!(await messageTexts(page)).includes('The very first message'), 'not loaded yet');
      await bubble(page, 'About that first one').locator('.quote').click();
      const original = bubble(page, 'The very first message');
      await original.waitFor();
      await eventually(async () => (await original.getAttribute('class')).includes('highlight'), { message: 'the original is highlighted' });
      await eventually(async () => original.evaluate((el) => {
        const box = el.getBoundingClientRect();
        const list = el.closest('.messages').getBoundingClientRect();
        return box.top >= list.top && box.bottom <= list.bottom;
      }), { message: 'the original is scrolled into view' });
    } finally {
      await ivy.context.close();
    }
  });
});
