// Desktop notifications while Courier is hidden: asked for only on a button, shown for a new
// message, opening its conversation on click, and never for a muted conversation (the mute
// holds on every tab and device). Headless Chromium cannot show notifications, so the page's
// Notification is a recorder, and "hidden" is set by the test.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually } from '../lib/wait.js';

function fakeNotifications() {
  window.__notes = [];
  window.__asked = 0;
  window.__hidden = false;
  class RecordedNotification {
    static permission = localStorage.getItem('test-permission') || 'default';
    static async requestPermission() {
      window.__asked += 1;
      RecordedNotification.permission = 'granted';
      localStorage.setItem('test-permission', 'granted');
      return 'granted';
    }
    constructor(title, options) {
      this.title = title;
      this.options = options;
      window.__notes.push(this);
    }
    close() {}
  }
  window.Notification = RecordedNotification;
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => window.__hidden });
}

const notes = (page) => page.evaluate(() => window.__notes.map((n) => ({ title: n.title, body: n.options.body, tag: n.options.tag })));
const hide = (page, hidden) => page.evaluate((h) => { window.__hidden = h; }, hidden);

describe('notifications', { timeout: 120_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let conv;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    bob = await apiLogin(server.url, 'bob');
    await apiLogin(server.url, 'alice');
    conv = await bob.startConversation('alice');
    await bob.send(conv.id, 'hello');
    alice = await signIn(browser, server.url, 'alice');
    await alice.context.addInitScript(fakeNotifications);
    await alice.page.reload();
    await alice.page.getByRole('heading', { name: 'Conversations' }).waitFor();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('asks only when the button is pressed, then notifies while hidden and opens the conversation on click', async () => {
    const { page } = alice;
    assert.equal(await page.evaluate(() => window.__asked), 0, 'never asked at page load');
    await page.getByRole('button', { name: 'Turn on notifications' }).click();
    await page.getByRole('button', { name: 'Turn on notifications' }).waitFor({ state: 'detached' });
    assert.equal(await page.evaluate(() => window.__asked), 1);

    await bob.send(conv.id, 'are you there?');
    await page.locator('.conversation-row .preview', { hasText: 'are you there?' }).waitFor();
    assert.deepEqual(await notes(page), [], 'no notification while Courier is in front');

    await hide(page, true);
    const sent = await bob.send(conv.id, 'ping while hidden');
    await eventually(async () => (await notes(page)).length === 1, { message: 'one notification' });
    assert.deepEqual(await notes(page), [{ title: 'bob', body: 'ping while hidden', tag: `courier-${sent.id}` }]);

    await hide(page, false);
    await page.evaluate(() => window.__notes[0].onclick());
    await page.waitForURL((url) => url.pathname === `/c/${conv.id}`);
  });

  it('a muted conversation never notifies, in any tab, and the mute holds on another device', async () => {
    const { page } = alice;
    await page.getByRole('button', { name: 'Mute' }).click();
    await page.getByRole('button', { name: 'Muted' }).waitFor();
    const second = await alice.context.newPage();
    await second.goto('/');
    await second.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.evaluate(() => { window.__notes = []; });

    await hide(page, true);
    await hide(second, true);
    await bob.send(conv.id, 'muted message');
    await second.locator('.conversation-row .preview', { hasText: 'muted message' }).waitFor();
    await page.waitForTimeout(500);
    assert.deepEqual(await notes(page), []);
    assert.deepEqual(await notes(second), []);

    const phone = await signIn(browser, server.url, 'alice');
    await phone.page.goto(`/c/${conv.id}`);
    await phone.page.getByRole('button', { name: 'Muted' }).waitFor();
    await phone.context.close();
  });
});
