// Many tabs of one person in one browser profile. Over HTTP/1.1 a browser opens at most six
// connections to a host; with a stream per tab the seventh tab stalled. The app now holds one
// stream per browser (a SharedWorker, or a leader tab relaying over BroadcastChannel).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { assertShownOnce, eventually, messageTexts, waitForMessage } from '../lib/wait.js';

const composer = (page) => page.getByRole('textbox', { name: 'Message' });
const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });
const transportOf = (page) => page.evaluate(() => document.documentElement.dataset.streamTransport);
const roleOf = (page) => page.evaluate(() => document.documentElement.dataset.streamRole);

// Opens `count` more tabs in `context`, alternating between the conversation and the list.
async function openTabs(context, count, conversationPath) {
  const pages = [];
  for (let i = 0; i < count; i += 1) {
    const page = trackProblems(await context.newPage());
    const onConversation = i % 2 === 0;
    await page.goto(onConversation ? conversationPath : '/');
    await page.getByRole('heading', { name: onConversation ? 'bob' : 'Conversations' }).waitFor();
    pages.push(page);
  }
  return pages;
}

const onConversation = (page) => /\/c\//.test(new URL(page.url()).pathname);

describe('many tabs of one person', { timeout: 240_000 }, () => {
  let server;
  let browser;
  let bob;
  let conversationId;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
    bob = await apiLogin(server.url, 'bob');
    await apiLogin(server.url, 'alice');
    conversationId = (await bob.startConversation('alice')).id;
    await bob.send(conversationId, 'Morning, Alice.');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('with 12 tabs open, every tab shows a new message live and any tab can send', async () => {
    const alice = await signIn(browser, server.url, 'alice');
    const tabs = [alice.page, ...(await openTabs(alice.context, 11, `/c/${conversationId}`))];
    assert.equal(tabs.length, 12);
    for (const tab of tabs) assert.equal(await transportOf(tab), 'shared-worker');

    await bob.send(conversationId, 'Can every tab see this?');
    for (const tab of tabs) {
      if (onConversation(tab)) await waitForMessage(tab, 'Can every tab see this?');
      else await rowFor(tab, 'bob').locator('.preview', { hasText: 'Can every tab see this?' }).waitFor();
    }

    // The last tab opened sends; its request is not starved of a connection.
    const sender = tabs.findLast(onConversation);
    await composer(sender).fill('Yes, all twelve.');
    await composer(sender).press('Enter');
    for (const tab of tabs.filter(onConversation)) {
      await waitForMessage(tab, 'Yes, all twelve.');
      await assertShownOnce(tab, 'Yes, all twelve.');
    }
    const history = await bob.call('GET', `/api/conversations/${conversationId}/messages`, undefined, [200]);
    assert.equal(history[0].content, 'Yes, all twelve.');

    // Closing the tab that started the shared stream loses nothing for the others.
    await tabs[0].close();
    await bob.send(conversationId, 'Still there after the first tab closed?');
    for (const tab of tabs.slice(1).filter(onConversation)) {
      await waitForMessage(tab, 'Still there after the first tab closed?');
      await assertShownOnce(tab, 'Still there after the first tab closed?');
    }
    for (const tab of tabs.slice(1)) assert.deepEqual(tab.problems, [], 'no console errors');
    await alice.context.close();
  });

  it('without SharedWorker, closing the leader tab loses nothing and shows nothing twice', async () => {
    const alice = await signIn(browser, server.url, 'alice');
    await alice.context.addInitScript(() => {
      delete window.SharedWorker;
    });
    await alice.page.reload();
    await alice.page.getByRole('heading', { name: 'Conversations' }).waitFor();
    const tabs = [alice.page, ...(await openTabs(alice.context, 4, `/c/${conversationId}`))];
    for (const tab of tabs) assert.equal(await transportOf(tab), 'leader');
    const roles = await Promise.all(tabs.map(roleOf));
    assert.deepEqual(roles.filter((r) => r === 'leader').length, 1, `one leader among ${roles}`);

    await bob.send(conversationId, 'before the leader goes');
    const conversations = tabs.filter(onConversation);
    for (const tab of conversations) await waitForMessage(tab, 'before the leader goes');

    // Close the leader while messages keep arriving.
    const leader = tabs[roles.indexOf('leader')];
    const sent = ['during the handover 1', 'during the handover 2', 'during the handover 3'];
    await Promise.all([leader.close(), (async () => {
      for (const text of sent) await bob.send(conversationId, text);
    })()]);
    sent.push('after the handover');
    await bob.send(conversationId, 'after the handover');

    const rest = tabs.filter((t) => t !== leader);
    await eventually(async () => (await Promise.all(rest.map(roleOf))).includes('leader'), { message: 'a new leader' });
    for (const tab of rest.filter(onConversation)) {
      for (const text of sent) await waitForMessage(tab, text);
      for (const text of ['before the leader goes', ...sent]) await assertShownOnce(tab, text);
      const texts = await messageTexts(tab);
      assert.deepEqual(texts.slice(-4), sent, 'in order');
    }
    for (const tab of rest.filter((t) => !onConversation(t))) {
      await rowFor(tab, 'bob').locator('.preview', { hasText: 'after the handover' }).waitFor();
    }
    await alice.context.close();
  });

  for (const transport of ['shared-worker', 'leader']) {
    it(`signing out in one tab signs out all of them (${transport})`, async () => {
      const alice = await signIn(browser, server.url, 'alice');
      if (transport === 'leader') {
        await alice.context.addInitScript(() => {
          delete window.SharedWorker;
        });
        await alice.page.reload();
        await alice.page.getByRole('heading', { name: 'Conversations' }).waitFor();
      }
      const tabs = [alice.page, ...(await openTabs(alice.context, 3, `/c/${conversationId}`))];
      for (const tab of tabs) assert.equal(await transportOf(tab), transport);

      await tabs[2].locator('#topbar').getByRole('button', { name: 'Sign out' }).click();
      await tabs[2].getByRole('dialog', { name: 'Sign out?' }).getByRole('button', { name: 'Sign out' }).click();
      for (const tab of tabs) {
        await tab.getByRole('heading', { name: 'Sign in to Courier' }).waitFor({ timeout: 5000 });
      }

      // Signing in again in one tab brings the others back too.
      const form = tabs[0].getByRole('form', { name: 'Development sign-in' });
      await form.getByLabel('Username').fill('alice');
      await form.getByRole('button', { name: 'Sign in' }).click();
      for (const tab of tabs) {
        await tab.locator('#topbar').getByRole('button', { name: 'Sign out' }).waitFor({ timeout: 5000 });
      }
      await bob.send(conversationId, `back in (${transport})`);
      for (const tab of tabs.filter(onConversation)) await waitForMessage(tab, `back in (${transport})`);
      await alice.context.close();
    });
  }
});
