// Keyboard only: signing in, opening a conversation, sending and signing out with Tab, Enter and
// typing; no clicks. Every stop on the way must show where focus is.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { apiLogin, apiPassword } from '../lib/api.js';
import { launchBrowser, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

// What has focus: a short description, and whether it is visibly marked and on screen.
function focused(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    if (!el || el === document.body) return { name: '(body)', tag: 'body', visible: false };
    const style = getComputedStyle(el);
    const rect = el.getBoundingClientRect();
    const labelled = el.labels?.[0]?.textContent;
    const name = (el.getAttribute('aria-label') || labelled || el.textContent || el.id || '').trim().replace(/\s+/g, ' ');
    return {
      name,
      tag: el.tagName.toLowerCase(),
      id: el.id,
      outlined: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2,
      onScreen: rect.width > 0 && rect.height > 0 && rect.bottom > 0 && rect.right > 0
        && rect.top < innerHeight && rect.left < innerWidth,
    };
  });
}

// Presses `key` until the focused element matches `want` (a string or a RegExp on its name),
// checking on every stop that the focus indicator is visible. Resolves to the stops taken.
async function pressUntil(page, key, want, { max = 15 } = {}) {
  const stops = [];
  for (let i = 0; i < max; i++) {
    await page.keyboard.press(key);
    const now = await focused(page);
    stops.push(now.name);
    assert.ok(now.outlined, `"${now.name}" (${now.tag}) has focus but no visible outline; stops: ${stops.join(' → ')}`);
    assert.ok(now.onScreen, `"${now.name}" (${now.tag}) has focus but is off screen`);
    if (typeof want === 'string' ? now.name === want : want.test(now.name)) return stops;
  }
  throw new Error(`${key} × ${max} never reached ${want}; stops: ${stops.join(' → ')}`);
}

const PASSWORD = 'correct-Horse-battery-7';

describe('keyboard only', { timeout: 120_000 }, () => {
  let server;
  let browser;
  let bob;

  before(async () => {
    server = await new CourierServer({ args: ['--signup', 'open'] }).start();
    browser = await launchBrowser();
    bob = await apiLogin(server.url, 'bob');
    await apiPassword(server.url, 'signup', 'alice', PASSWORD);
    await apiPassword(server.url, 'signup', 'carol', PASSWORD);
    const conv = await bob.startConversation('alice');
    await bob.send(conv.id, 'Lunch at noon?');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('signs in, opens a conversation, sends a message and signs out with Tab, Enter and typing', async () => {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1024, height: 768 } });
    const page = trackProblems(await context.newPage());
    await page.goto('/');
    await page.getByRole('form', { name: 'Sign in with a password' }).waitFor();

    // The access page puts the cursor in its first field.
    await eventually(async () => (await focused(page)).id === 'signin-username', { message: 'username field focused' });
    await page.keyboard.type('alice');
    await pressUntil(page, 'Tab', 'Password', { max: 1 });
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await eventually(async () => (await focused(page)).name === 'Conversations', { message: 'focus on the page heading' });

    // From the heading, Tab reaches bob's conversation after the two "new" forms.
    const toRow = await pressUntil(page, 'Tab', /^B?bob/);
    assert.ok(toRow.length <= 5, `the first conversation is ${toRow.length} Tabs from the heading: ${toRow.join(' → ')}`);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'bob' }).waitFor();
    await waitForMessage(page, 'Lunch at noon?');

    // The conversation opens with the cursor in the composer.
    await eventually(async () => (await focused(page)).id === 'message-input', { message: 'composer focused' });
    await page.keyboard.type('Noon works, see you there');
    await page.keyboard.press('Enter');
    await waitForMessage(page, 'Noon works, see you there');
    assert.equal((await focused(page)).id, 'message-input', 'focus stays in the composer after sending');
    const history = await bob.call('GET', `/api/conversations/${new URL(page.url()).pathname.split('/').pop()}/messages`, undefined, [200]);
    assert.equal(history[0].content, 'Noon works, see you there');

    // Back up to the top bar's "Sign out" (past the composer's attach button, the message log,
    // the back link, Sessions, and on a wide screen the conversation list beside it).
    const listStops = await page.locator('.list-pane').evaluate((el) => [...el.querySelectorAll('a[href], button, input, summary')]
      .filter((e) => e.checkVisibility()).length);
    const toSignOut = await pressUntil(page, 'Shift+Tab', 'Sign out');
    assert.ok(toSignOut.length <= 7 + listStops, `"Sign out" is ${toSignOut.length} Shift+Tabs from the composer: ${toSignOut.join(' → ')}`);
    await page.keyboard.press('Enter');
    // It asks first, with the safe choice focused; Tab reaches the confirmation.
    await page.getByRole('dialog', { name: 'Sign out?' }).waitFor();
    assert.equal((await focused(page)).name, 'Cancel');
    await pressUntil(page, 'Tab', 'Sign out', { max: 1 });
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Sign in to Courier' }).waitFor();
    await eventually(async () => (await focused(page)).id === 'signin-username', { message: 'back in the username field' });
    assert.equal(new URL(page.url()).pathname, '/');
    assert.equal((await context.cookies()).some((c) => c.name === 'courier_session' && c.value), false, 'session cookie gone');
    assert.deepEqual(page.problems.filter((t) => !/401/.test(t)), []);
    await context.close();
  });

  it('the skip link is the first Tab stop, shows when focused and jumps past the top bar', async () => {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1024, height: 768 } });
    const page = trackProblems(await context.newPage());
    await page.goto('/');
    await eventually(async () => (await focused(page)).id === 'signin-username', { message: 'username field focused' });
    await page.keyboard.type('carol');
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.goto('/'); // a fresh load: focus starts at the top of the document
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.evaluate(() => { document.querySelector('main .page').dataset.marker = 'untouched'; });

    const [first] = await pressUntil(page, 'Tab', 'Skip to content', { max: 1 });
    assert.equal(first, 'Skip to content');
    await page.keyboard.press('Enter');
    assert.equal((await focused(page)).id, 'main', 'focus moved to the main region');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.querySelector('main').contains(document.activeElement)), true,
      'the next Tab stop is the first control of the page, past the top bar');
    // Following the link did not re-render the page (the router leaves in-page links alone).
    assert.equal(await page.evaluate(() => document.querySelector('main .page').dataset.marker), 'untouched');
    assert.equal(new URL(page.url()).pathname, '/');
    await context.close();
  });
});
