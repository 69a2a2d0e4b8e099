// End-to-end: two people chat through the real `courier` binary in headless Chromium.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { assertShownOnce, eventually, messageTexts, waitForMessage } from '../lib/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.resolve(here, '../../docs/screenshots');

describe('Courier in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let conversationPath; // alice <-> bob
  const dialogs = [];

  const composer = (page) => page.getByRole('textbox', { name: 'Message' });
  const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });

  async function say(page, text) {
    await composer(page).fill(text);
    await composer(page).press('Enter');
    await waitForMessage(page, text);
  }

  function watchDialogs(page) {
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.dismiss().catch(() => {});
    });
  }

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await signIn(browser, server.url, 'bob');
    watchDialogs(alice.page);
    watchDialogs(bob.page);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('alice starts a conversation with bob; both see each other live, without a reload', async () => {
    const { page } = alice;
    await page.getByLabel('New conversation with').fill('bo');
    // Autocomplete offers bob from /api/usernames.
    await eventually(async () => (await page.locator('#username-options option').evaluateAll((os) => os.map((o) => o.value))).includes('bob'), { message: 'bob in the autocomplete' });
    await page.getByLabel('New conversation with').fill('bob');
    await page.getByRole('button', { name: 'Start' }).click();
    await page.waitForURL(/\/c\/[^/]+$/);
    await page.getByRole('heading', { name: 'bob' }).waitFor();
    conversationPath = new URL(page.url()).pathname;

    await say(page, 'Hi Bob! Are we still on for lunch tomorrow?');

    // Bob is on his home page: the new conversation shows up there live.
    const row = rowFor(bob.page, 'alice');
    await row.waitFor();
    await row.locator('.preview', { hasText: 'Are we still on for lunch tomorrow?' }).waitFor();
    await row.getByRole('link').click();
    await bob.page.getByRole('heading', { name: 'alice' }).waitFor();
    await waitForMessage(bob.page, 'Hi Bob! Are we still on for lunch tomorrow?');

    await say(bob.page, 'Yes! 12:30 at the noodle place on 5th?');
    await waitForMessage(page, 'Yes! 12:30 at the noodle place on 5th?');

    // Both have the conversation open: a message appends live on the other side.
    await say(page, "Perfect. I'll book a table.");
    await waitForMessage(bob.page, "Perfect. I'll book a table.");
    for (const p of [page, bob.page]) {
      assert.deepEqual(await messageTexts(p), [
        'Hi Bob! Are we still on for lunch tomorrow?',
        'Yes! 12:30 at the noodle place on 5th?',
        "Perfect. I'll book a table.",
      ]);
    }
  });

  it("bob's unread marker appears on his home page and clears when he opens the conversation", async () => {
    await bob.page.getByRole('link', { name: 'Back to conversations' }).click();
    const row = rowFor(bob.page, 'alice');
    await row.waitFor();
    assert.equal(await row.getAttribute('data-unread'), 'false', 'read while the conversation was open');

    const link = 'Booked: https://example.com/booking/4821 (table for two)';
    await say(alice.page, link);

    await eventually(async () => (await row.getAttribute('data-unread')) === 'true', { message: 'unread marker' });
    assert.ok(await row.locator('.unread-marker').isVisible(), 'the marker is visible');
    await row.locator('.preview', { hasText: 'Booked:' }).waitFor();

    await row.getByRole('link').click();
    await waitForMessage(bob.page, link);
    // Links are clickable, open in a new tab and carry no referrer or opener.
    const anchor = bob.page.locator('.message-list a', { hasText: 'https://example.com/booking/4821' });
    assert.equal(await anchor.getAttribute('href'), 'https://example.com/booking/4821');
    assert.equal(await anchor.getAttribute('target'), '_blank');
    assert.equal(await anchor.getAttribute('rel'), 'noopener noreferrer nofollow');

    await bob.page.getByRole('link', { name: 'Back to conversations' }).click();
    await eventually(async () => (await rowFor(bob.page, 'alice').getAttribute('data-unread')) === 'false', { message: 'marker cleared' });
    await bob.page.reload();
    await rowFor(bob.page, 'alice').waitFor();
    assert.equal(await rowFor(bob.page, 'alice').getAttribute('data-unread'), 'false', 'still read after a reload');

    // Starting a conversation that already exists opens it.
    await bob.page.getByLabel('New conversation with').fill('alice');
    await bob.page.getByRole('button', { name: 'Start' }).click();
    await bob.page.waitForURL((url) => url.pathname === conversationPath);
    await waitForMessage(bob.page, link);
  });

  it('a reload keeps the history, and scrolling up loads older pages past 25 messages', async () => {
    const ivy = await signIn(browser, server.url, 'ivy');
    try {
      const hank = await apiLogin(server.url, 'hank');
      const conv = await hank.startConversation('ivy');
      for (let i = 1; i <= 30; i++) await hank.send(conv.id, `History message ${i}`);

      const { page } = ivy;
      await rowFor(page, 'hank').getByRole('link').click();
      await waitForMessage(page, 'History message 30');
      let texts = await messageTexts(page);
      assert.equal(texts.length, 25, 'the first page holds 25 messages');
      assert.equal(texts[0], 'History message 6');
      assert.equal(texts.at(-1), 'History message 30', 'newest at the bottom');

      await say(page, 'Got all of them, thanks');
      await page.reload();
      await waitForMessage(page, 'Got all of them, thanks');
      texts = await messageTexts(page);
      assert.equal(texts.length, 25);
      assert.equal(texts[0], 'History message 7');

      await page.locator('.messages').evaluate((el) => { el.scrollTop = 0; });
      await waitForMessage(page, 'History message 1');
      texts = await messageTexts(page);
      assert.equal(texts.length, 31);
      assert.deepEqual(texts, [...Array.from({ length: 30 }, (_, i) => `History message ${i + 1}`), 'Got all of them, thanks']);
      await page.getByText('This is the beginning of the conversation.').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Load older messages' }).count(), 0, 'no more older pages');
    } finally {
      await ivy.context.close();
    }
  });

  it('a message sent while the page is still opening its stream shows up, once', async () => {
    // The page's history is answered before its stream opens; a stream without a cursor
    // starts at "now", so what is sent in between must come from a refetch. Without
    // SharedWorker the stream's EventSource belongs to the page, so the test can hold it.
    const frank = await apiLogin(server.url, 'frank');
    const erin = await signIn(browser, server.url, 'erin', { init: () => { delete window.SharedWorker; } });
    try {
      const conv = await frank.startConversation('erin');
      await frank.send(conv.id, 'Before you opened it');
      const { page } = erin;
      let release;
      const held = new Promise((resolve) => { release = resolve; });
      let streams = 0;
      await page.route((url) => url.pathname === '/api/messages', async (route) => {
        streams += 1;
        await held;
        await route.continue();
      });
      await page.goto(`/c/${encodeURIComponent(conv.id)}`);
      await waitForMessage(page, 'Before you opened it');
      await eventually(() => streams > 0, { message: 'the stream requested' });
      await frank.send(conv.id, 'Sent while your stream was opening');
      release();
      await waitForMessage(page, 'Sent while your stream was opening');
      await frank.send(conv.id, 'And live after it');
      await waitForMessage(page, 'And live after it');
      assert.deepEqual(await messageTexts(page), ['Before you opened it', 'Sent while your stream was opening', 'And live after it']);
    } finally {
      await erin.context.close();
    }
  });

  it('two tabs of the same person both show a message sent from one of them', async () => {
    await alice.page.goto(conversationPath);
    await waitForMessage(alice.page, "Perfect. I'll book a table.");
    const second = trackProblems(await alice.context.newPage());
    watchDialogs(second);
    try {
      await second.goto(conversationPath);
      await waitForMessage(second, "Perfect. I'll book a table.");
      await bob.page.goto(conversationPath);

      await say(second, 'Running 5 minutes late, sorry!');
      await waitForMessage(alice.page, 'Running 5 minutes late, sorry!');
      await waitForMessage(bob.page, 'Running 5 minutes late, sorry!');
      await say(bob.page, 'No worries, I just got here.');
      await waitForMessage(second, 'No worries, I just got here.');
      await waitForMessage(alice.page, 'No worries, I just got here.');
      for (const p of [alice.page, second, bob.page]) {
        await assertShownOnce(p, 'Running 5 minutes late, sorry!');
        await assertShownOnce(p, 'No worries, I just got here.');
      }
    } finally {
      await second.close();
    }
  });

  it('saves screenshots of the home and conversation pages', async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    const carol = await apiLogin(server.url, 'carol');
    const withCarol = await carol.startConversation('alice');
    await carol.send(withCarol.id, 'Sent you the slides for Thursday, see https://example.com/slides');
    const dave = await apiLogin(server.url, 'dave');
    const withDave = await dave.startConversation('alice');
    await dave.send(withDave.id, 'Are you coming to the climbing gym tonight?');
    await dave.send(withDave.id, 'We could take the 6:15 bus together.');

    const { page } = alice;
    await page.goto('/');
    await rowFor(page, 'dave').waitFor();
    await rowFor(page, 'carol').waitFor();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'home.png') });

    await page.goto(conversationPath);
    await waitForMessage(page, 'No worries, I just got here.');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'conversation.png') });
  });

  it('a message <img src=x onerror=alert(1)> shows as those characters and runs nothing', async () => {
    const payload = '<img src=x onerror=alert(1)>';
    await alice.page.goto(conversationPath);
    await bob.page.goto(conversationPath);
    await waitForMessage(bob.page, 'No worries, I just got here.');
    await say(bob.page, payload);
    await waitForMessage(alice.page, payload);
    await alice.page.reload();
    await waitForMessage(alice.page, payload);
    await alice.page.goto('/');
    await rowFor(alice.page, 'bob').locator('.preview', { hasText: payload }).waitFor();
    await alice.page.waitForTimeout(300);

    for (const p of [alice.page, bob.page]) {
      assert.equal(await p.locator('img[src="x"]').count(), 0, 'no <img> element was created');
    }
    assert.deepEqual(dialogs, [], 'no dialog fired');
    for (const p of [alice.page, bob.page]) {
      assert.deepEqual(p.problems.filter((t) => /Content Security Policy/i.test(t)), [], 'no CSP violations');
    }
  });

  it('the server restarts mid-conversation: "reconnecting", then the gap messages arrive once each', async () => {
    const { page } = alice;
    await page.goto(conversationPath);
    await waitForMessage(page, '<img src=x onerror=alert(1)>');
    // The service worker must be in charge for the offline reload below.
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    const status = page.locator('#connection-status');
    assert.equal(await status.isVisible(), false, 'no banner while connected');
    // One message over this page's stream first, so the browser holds a Last-Event-ID to resume from.
    const id = conversationPath.split('/').pop();
    await (await apiLogin(server.url, 'bob')).send(id, 'Still there?');
    await waitForMessage(page, 'Still there?');

    // The gap must come through the resumed stream (Last-Event-ID), not a refetch of the history.
    const refetches = [];
    const onRequest = (req) => {
      if (req.method() === 'GET' && /\/api\/conversations\/[^/]+\/messages/.test(req.url())) refetches.push(req.url());
    };
    page.on('request', onRequest);

    await server.stop();
    await status.filter({ hasText: /can't reach the server, retrying/i }).waitFor({ timeout: 15_000 });
    assert.equal(await status.getAttribute('role'), 'status');

    // A reload while the server is down still shows the app, with a banner saying the server,
    // not the network, is the problem.
    const offline = await alice.context.newPage();
    await offline.goto(conversationPath);
    await offline.locator('#connection-status', { hasText: /can't reach the server/i }).waitFor();
    await offline.getByRole('link', { name: 'Courier, home' }).waitFor();
    await offline.close();

    await server.start(); // same port, same data directory
    const bobApi = await apiLogin(server.url, 'bob');
    const gap = ['Sent while you were away (1)', 'Sent while you were away (2)', 'Sent while you were away (3)'];
    for (const text of gap) await bobApi.send(id, text);

    for (const text of gap) await waitForMessage(page, text, 20_000);
    page.off('request', onRequest);
    assert.deepEqual(refetches, [], 'the gap arrived over the stream, without refetching');
    await eventually(async () => !(await status.isVisible()), { message: 'banner hidden after reconnect' });
    await say(page, 'Back online!'); // live again after the gap
    await page.waitForTimeout(500); // room for any duplicate to show up
    for (const text of [...gap, 'Back online!']) await assertShownOnce(page, text);
    const texts = await messageTexts(page);
    assert.deepEqual(texts.slice(-4), [...gap, 'Back online!'], 'in order, at the bottom');
  });
});
