// Typing and presence in the browser: two people in two contexts. Bob's typing shows on
// alice's screen and clears when he sends; bob's presence dot goes offline when he closes
// his tab.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

const composer = (page) => page.getByRole('textbox', { name: 'Message' });
const rowFor = (page, name) => page.locator('.conversation-row').filter({ has: page.locator('.name', { hasText: name }) });
const rowState = (page, name) => rowFor(page, name).locator('.presence-dot').getAttribute('data-state');
const headerState = (page) => page.locator('.conv-header .presence-dot').getAttribute('data-state');

describe('typing and presence in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let conversationId;

  before(async () => {
    // A short grace period, so a closed tab shows offline promptly.
    server = await new CourierServer({ args: ['--presence-grace', '300ms'] }).start();
    const seed = await apiLogin(server.url, 'alice');
    await apiLogin(server.url, 'bob');
    const conv = await seed.call('POST', '/api/conversations', { username: 'bob' }, [201]);
    conversationId = conv.id;
    await seed.call('POST', `/api/conversations/${conversationId}/messages`, { content: 'hi bob' }, [201]);
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await signIn(browser, server.url, 'bob');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('shows bob online in alice’s list and header', async () => {
    await eventually(async () => (await rowState(alice.page, 'bob')) === 'online', { message: 'bob online in alice’s list' });
    const text = await rowFor(alice.page, 'bob').locator('.presence-text').textContent();
    assert.equal(text, 'online');
    await rowFor(alice.page, 'bob').getByRole('link').click();
    await waitForMessage(alice.page, 'hi bob');
    await eventually(async () => (await headerState(alice.page)) === 'online', { message: 'bob online in the header' });
  });

  it('shows "bob is typing…" while bob types and clears it when he sends', async () => {
    await bob.page.goto(`/c/${conversationId}`);
    await waitForMessage(bob.page, 'hi bob');
    const line = alice.page.locator('.typing-line');
    assert.equal(await line.textContent(), '');
    await composer(bob.page).pressSequentially('hello al', { delay: 20 });
    await eventually(async () => (await line.textContent()) === 'bob is typing…', { message: 'the typing line' });
    await composer(bob.page).press('Enter');
    await waitForMessage(alice.page, 'hello al');
    await eventually(async () => (await line.textContent()) === '', { message: 'the typing line to clear' });
  });

  it('shows bob offline, with when he was last seen, once he closes his tab', async () => {
    await bob.context.close();
    await eventually(async () => (await headerState(alice.page)) === 'offline', { message: 'bob offline in the header' });
    const text = await alice.page.locator('.conv-header .presence-text').textContent();
    assert.equal(text, 'last seen just now');
    await alice.page.getByRole('link', { name: 'Back to conversations' }).click();
    await eventually(async () => (await rowState(alice.page, 'bob')) === 'offline', { message: 'bob offline in the list' });
  });
});
