// Search in the browser: the top bar's box lists hits with highlighted snippets (a message's
// own markup stays text), and a hit opens its conversation around that message, loading
// history far older than the first page, with the message highlighted.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, messageTexts } from '../lib/wait.js';

describe('search in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;

  before(async () => {
    server = await new CourierServer().start();
    await apiLogin(server.url, 'alice');
    const bob = await apiLogin(server.url, 'bob');
    const conv = await bob.startConversation('alice');
    // The hit is old: 80 messages come after it, so it is not on the first page.
    await bob.send(conv.id, 'The <b>invoice</b> for Ærø is attached');
    for (let i = 0; i < 80; i++) await bob.send(conv.id, `filler ${i}`);
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('finds a message with a highlighted snippet and opens the conversation around it', async () => {
    const page = alice.page;
    const box = page.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('INVOICE');
    await box.press('Enter');
    await page.getByRole('heading', { name: 'Results for “INVOICE”' }).waitFor();
    const result = page.locator('.search-result');
    await eventually(async () => (await result.count()) === 1, { message: 'one result' });
    assert.equal(await result.locator('mark').textContent(), 'invoice');
    // The message's "<b>" is text, not markup.
    assert.match(await result.locator('.search-snippet').textContent(), /<b>invoice<\/b>/);
    assert.equal(await result.locator('.search-snippet b').count(), 0);

    await result.getByRole('link').click();
    const hit = page.locator('.message-list .message.highlight');
    await hit.waitFor();
    assert.match(await hit.textContent(), /invoice/);
    const texts = await messageTexts(page);
    assert.ok(texts.includes('filler 5'), 'later messages around it are loaded');
    assert.ok(!texts.includes('filler 79'), 'the newest page is not');
    // Back to the newest messages.
    await page.getByRole('button', { name: 'Jump to latest messages' }).click();
    await eventually(async () => (await messageTexts(page)).includes('filler 79'), { message: 'latest loaded' });
  });

  it('a search with no hits says so, and hostile input is just text', async () => {
    const page = alice.page;
    const box = page.getByRole('searchbox', { name: 'Search messages' });
    await box.fill('"NEAR( -');
    await box.press('Enter');
    await page.getByRole('status').filter({ hasText: /No messages found|search/ }).first().waitFor();
  });
});
