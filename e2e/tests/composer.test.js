// The composer never loses text: a send moves exactly the sent text into a pending bubble while
// typing goes on; a refused send keeps its bubble with Retry and Delete; a lost answer is
// resent with the same Idempotency-Key and stored once; sends made while the server is down
// wait in the outbox (which survives a reload) and go out once each, in order, when it is back.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, messageTexts, waitForMessage } from '../lib/wait.js';

const POSTS = '**/api/conversations/*/messages';

describe('the composer and its outbox', { timeout: 240_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let conv;
  let path;

  // What the server stored, oldest first (bob reads the conversation over the API).
  async function stored() {
    const page = await bob.call('GET', `/api/conversations/${conv.id}/messages`, undefined, [200]);
    return page.map((m) => m.content).reverse();
  }

  const composer = () => alice.page.locator('#message-input');
  const pending = () => alice.page.locator('.outbox-list .message.pending');

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await apiLogin(server.url, 'bob');
    conv = await bob.startConversation('alice');
    path = `/c/${conv.id}`;
    await bob.send(conv.id, 'Hi alice');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('a slow send shows "Sending…" and keeps what is typed meanwhile', async () => {
    const { page } = alice;
    await page.goto(path);
    await waitForMessage(page, 'Hi alice');
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    const keys = [];
    await page.route(POSTS, async (route) => {
      if (route.request().method() !== 'POST') return route.fallback();
      keys.push(route.request().headers()['idempotency-key']);
      await gate;
      return route.continue();
    });
    await composer().click();
    await page.keyboard.type('The first thought');
    await page.keyboard.press('Enter');
    await pending().filter({ hasText: 'The first thought' }).filter({ hasText: 'Sending…' }).waitFor();
    assert.equal(await composer().inputValue(), '', 'exactly the sent text left the composer');
    await page.keyboard.type('and a second one, still being typed');
    release();
    await waitForMessage(page, 'The first thought');
    await eventually(async () => (await pending().count()) === 0, { message: 'the pending bubble is gone' });
    assert.equal(await composer().inputValue(), 'and a second one, still being typed', 'typing during the send is kept');
    assert.equal(keys.length, 1);
    assert.match(keys[0], /^[0-9a-f-]{36}$/, 'the send carries an Idempotency-Key');
    await page.unroute(POSTS);
    await composer().fill('');
  });

  it('a refused send keeps its bubble with Retry and Delete', async () => {
    const { page } = alice;
    let refuse = true;
    await page.route(POSTS, (route) => {
      if (route.request().method() !== 'POST' || !refuse) return route.fallback();
      return route.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ error: 'Something went wrong.' }) });
    });
    await composer().fill('Retry me');
    await page.keyboard.press('Enter');
    const failed = pending().filter({ hasText: 'Retry me' });
    await failed.filter({ hasText: 'Not sent: Something went wrong.' }).waitFor();
    refuse = false;
    await failed.getByRole('button', { name: 'Retry' }).click();
    await waitForMessage(page, 'Retry me');
    await eventually(async () => (await pending().count()) === 0, { message: 'retried bubble replaced' });

    refuse = true;
    await composer().fill('Delete me');
    await page.keyboard.press('Enter');
    const doomed = pending().filter({ hasText: 'Delete me' });
    await doomed.getByRole('button', { name: 'Retry' }).waitFor();
    await doomed.getByRole('button', { name: 'Delete' }).click();
    await eventually(async () => (await pending().count()) === 0, { message: 'deleted bubble gone' });
    await page.unroute(POSTS);
    const texts = await stored();
    assert.equal(texts.filter((t) => t === 'Retry me').length, 1);
    assert.equal(texts.filter((t) => t === 'Delete me').length, 0, 'a deleted send never reaches the server');
    assert.equal(await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('courier.outbox.')).length), 0,
      'the outbox is empty');
  });

  it('an answer lost on the way back is resent with the same key and stored once', async () => {
    const { page } = alice;
    const keys = [];
    await page.route(POSTS, async (route) => {
      if (route.request().method() !== 'POST') return route.fallback();
      keys.push(route.request().headers()['idempotency-key']);
      if (keys.length > 1) return route.continue();
      await route.fetch(); // the server stores it...
      return route.abort('connectionreset'); // ...and the answer never arrives
    });
    await composer().fill('Only once, please');
    await page.keyboard.press('Enter');
    await waitForMessage(page, 'Only once, please', 15_000);
    await eventually(async () => (await pending().count()) === 0, { message: 'no pending bubble left' });
    await page.unroute(POSTS);
    assert.equal(keys.length, 2, 'sent twice');
    assert.equal(keys[0], keys[1], 'with the same Idempotency-Key');
    assert.equal((await stored()).filter((t) => t === 'Only once, please').length, 1, 'stored once');
    await page.waitForTimeout(300);
    assert.equal((await messageTexts(page)).filter((t) => t === 'Only once, please').length, 1, 'shown once');
  });

  it('sends made while the server is down survive a reload and go out once each, in order', async () => {
    const { page } = alice;
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    await server.stop();
    const queued = ['Queued one', 'Queued two', 'Queued three'];
    for (const text of queued) {
      await composer().fill(text);
      await page.keyboard.press('Enter');
      await pending().filter({ hasText: text }).waitFor();
    }
    await pending().filter({ hasText: 'Queued three' }).filter({ hasText: 'Not sent yet' }).waitFor({ timeout: 10_000 });
    await composer().fill('a draft that was never sent');
    assert.deepEqual(await pending().locator('.content').allTextContents(), queued, 'queued in order');

    await page.reload(); // the shell comes from the service worker; the outbox from localStorage
    await page.locator('#connection-status', { hasText: /can't reach the server/i }).waitFor();
    const saved = await page.evaluate(() => {
      const key = Object.keys(localStorage).find((k) => k.startsWith('courier.outbox.'));
      return JSON.parse(localStorage.getItem(key)).map((e) => e.content);
    });
    assert.deepEqual(saved, queued, 'the queue survived the reload');

    await server.start(); // same port, same data directory
    await eventually(async () => {
      const texts = await messageTexts(page);
      return queued.every((t) => texts.includes(t));
    }, { timeout: 30_000, message: 'the queued messages delivered after the restart' });
    const texts = await stored();
    for (const text of queued) assert.equal(texts.filter((t) => t === text).length, 1, `"${text}" stored once`);
    assert.deepEqual(texts.slice(-3), queued, 'in the order they were written');
    await eventually(async () => (await pending().count()) === 0, { message: 'no pending bubbles' });
    assert.deepEqual((await messageTexts(page)).slice(-3), queued, 'shown in order');
  });
});
