// The web app as people use it every day (issue 18): any script in either direction, two panes
// with a live list, history that reads like a conversation, focus without stray rings, phones
// with touch, and words that say what is wrong. Saves the screenshots in docs/screenshots.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { seriousViolations, describeViolations } from '../lib/axe.js';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, messageTexts, waitForMessage } from '../lib/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.resolve(here, '../../docs/screenshots');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

const ARABIC = 'مرحبا، كيف حالك اليوم؟ أتمنى أن يكون يومك جميلا ومليئا بالأخبار السارة والأوقات الطيبة مع العائلة';
const HEBREW = 'שלום! מה שלומך?';
const MIXED = 'The meeting is in room 4, قاعة الاجتماعات, at 10.';
const MINE_RTL = 'سأصل بعد قليل.';

const rowFor = (page, name) => page.locator('.conversation-row', { has: page.locator('.name', { hasText: new RegExp(`^${name}$`) }) });
const exactly = (text) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
const bubbleFor = (page, text) => page.locator('.message-list .message', { has: page.locator('.content', { hasText: exactly(text) }) });

// The focused element, and whether it draws a focus outline.
function focusState(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    const style = getComputedStyle(el);
    return {
      tag: el.tagName.toLowerCase(),
      text: (el.textContent || '').trim().slice(0, 40),
      id: el.id,
      ring: style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0,
    };
  });
}

async function assertAccessible(page, state) {
  for (const colorScheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme });
    const violations = await seriousViolations(page);
    assert.deepEqual(violations, [], `${state} (${colorScheme}):\n${describeViolations(violations)}`);
  }
  await page.emulateMedia({ colorScheme: null });
}

describe('everyday use', { timeout: 300_000 }, () => {
  let server;
  let browser;
  let bob;
  let carol;
  let bobConv; // alice and bob

  before(async () => {
    server = await new CourierServer({ args: ['--signup', 'open'] }).start();
    browser = await launchBrowser();
    mkdirSync(SCREENSHOTS, { recursive: true });
    await apiLogin(server.url, 'alice');
    bob = await apiLogin(server.url, 'bob');
    carol = await apiLogin(server.url, 'carol');
    bobConv = await bob.startConversation('alice');
    await carol.startConversation('alice');
    await carol.send((await carol.startConversation('alice')).id, 'Lunch tomorrow?');
    for (const text of ['Hello alice', ARABIC, HEBREW, MIXED]) await bob.send(bobConv.id, text);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('right-to-left and left-to-right text: each message its own direction, alignment by sender', async () => {
    const { context, page } = await signIn(browser, server.url, 'alice', { viewport: DESKTOP });
    try {
      // The list's preview of a long Arabic message shows its start, not its end.
      const preview = rowFor(page, 'bob').locator('.preview');
      await eventually(async () => (await preview.textContent()).includes('قاعة') || (await preview.textContent()).includes('room'),
        { message: 'bob\'s preview' });
      await bob.send(bobConv.id, ARABIC);
      await eventually(async () => (await preview.textContent()).startsWith('مرحبا'), { message: 'the Arabic preview' });
      const shown = await preview.evaluate((el) => {
        const range = document.createRange();
        range.setStart(el.firstChild, 0);
        range.setEnd(el.firstChild, 5);
        const first = range.getBoundingClientRect();
        const box = el.getBoundingClientRect();
        return { direction: getComputedStyle(el).direction, clipped: el.scrollWidth > el.clientWidth, inside: first.left >= box.left - 1 && first.right <= box.right + 1 };
      });
      assert.equal(shown.direction, 'rtl');
      assert.ok(shown.clipped, 'the preview is long enough to be cut');
      assert.ok(shown.inside, 'the first word of the message is the part that shows');

      await rowFor(page, 'bob').getByRole('link').click();
      await waitForMessage(page, MIXED);
      await page.locator('#message-input').fill(MINE_RTL);
      await page.keyboard.press('Enter');
      await waitForMessage(page, MINE_RTL);
      await page.locator('#message-input').fill('On my way, see you soon');
      await page.keyboard.press('Enter');
      await waitForMessage(page, 'On my way, see you soon');

      const list = await page.locator('.message-list').boundingBox();
      const expect = [
        [HEBREW, 'rtl', 'theirs'],
        [ARABIC, 'rtl', 'theirs'],
        [MIXED, 'ltr', 'theirs'],
        [MINE_RTL, 'rtl', 'mine'],
        ['On my way, see you soon', 'ltr', 'mine'],
      ];
      for (const [text, direction, side] of expect) {
        const bubble = bubbleFor(page, text).last();
        const content = bubble.locator('.content');
        const got = await content.evaluate((el) => ({ direction: getComputedStyle(el).direction, dir: el.getAttribute('dir') }));
        assert.equal(got.dir, 'auto', `${text}: dir="auto"`);
        assert.equal(got.direction, direction, `${text}: computed direction`);
        const box = await bubble.locator('.bubble').boundingBox();
        if (side === 'mine') assert.ok(list.x + list.width - (box.x + box.width) < 40, `${text}: my message sits on the right`);
        else assert.ok(box.x - list.x < 40, `${text}: their message sits on the left`);
        // The text starts at its own start edge: the right for right-to-left text.
        const edge = await content.evaluate((el) => {
          const range = document.createRange();
          range.selectNodeContents(el);
          const first = range.getBoundingClientRect();
          const box = el.getBoundingClientRect();
          return { leftGap: first.left - box.left, rightGap: box.right - first.right };
        });
        if (direction === 'rtl') assert.ok(edge.rightGap < 2, `${text}: starts at the right edge (${JSON.stringify(edge)})`);
        else assert.ok(edge.leftGap < 2, `${text}: starts at the left edge (${JSON.stringify(edge)})`);
      }
      // Names, titles and the composer isolate their own direction too.
      assert.equal(await page.locator('.conv-title').getAttribute('dir'), 'auto');
      assert.equal(await page.locator('#message-input').getAttribute('dir'), 'auto');
      assert.equal(await rowFor(page, 'bob').locator('.name').getAttribute('dir'), 'auto');
      await page.locator('#message-input').fill('');
      await page.screenshot({ path: path.join(SCREENSHOTS, 'two-pane-rtl-ltr.png') });
      await page.emulateMedia({ colorScheme: 'dark' });
      await page.screenshot({ path: path.join(SCREENSHOTS, 'two-pane-dark.png') });
      await page.emulateMedia({ colorScheme: null });
    } finally {
      await context.close();
    }
  });

  it('two panes: the list stays beside the conversation, live, and the title counts messages elsewhere', async () => {
    const { context, page } = await signIn(browser, server.url, 'alice', { viewport: DESKTOP });
    try {
      await rowFor(page, 'bob').getByRole('link').click();
      await waitForMessage(page, MIXED);
      const listBox = await page.locator('.list-pane').boundingBox();
      const convBox = await page.locator('.conversation').boundingBox();
      assert.ok(listBox.width >= 300 && listBox.x + listBox.width <= convBox.x + 1, 'the list is beside the conversation');
      assert.equal(await rowFor(page, 'bob').getByRole('link').getAttribute('aria-current'), 'page', 'the open one is marked');
      await page.waitForTimeout(300);
      const title = await page.title();
      assert.ok(!title.startsWith('('), `no count yet: ${title}`);

      // A message in another conversation: badge, top of the list, preview, and the title.
      const carolConv = await carol.startConversation('alice');
      await carol.send(carolConv.id, 'Are you coming?');
      const carolRow = rowFor(page, 'carol');
      await eventually(async () => (await carolRow.locator('.unread-count').textContent()) === '2', { message: 'carol\'s badge' });
      await eventually(async () => (await page.locator('.conversation-row').first().locator('.name').textContent()) === 'carol',
        { message: 'carol on top' });
      assert.equal(await carolRow.locator('.preview').textContent(), 'Are you coming?');
      await eventually(async () => (await page.title()).startsWith('(1) '), { message: 'the title counts it' });

      // A message in the open conversation: no badge and no count.
      await bob.send(bobConv.id, 'Seen live');
      await waitForMessage(page, 'Seen live');
      await page.waitForTimeout(300);
      assert.equal(await rowFor(page, 'bob').locator('.unread-count').isVisible(), false, 'no badge for the open conversation');
      assert.ok((await page.title()).startsWith('(1) '), 'the title still counts only carol\'s');

      // Opening carol's conversation clears both.
      await carolRow.getByRole('link').click();
      await waitForMessage(page, 'Are you coming?');
      await eventually(async () => !(await page.title()).startsWith('('), { message: 'title count cleared' });
      await eventually(async () => !(await carolRow.locator('.unread-count').isVisible()), { message: 'badge cleared' });
      await assertAccessible(page, 'two panes');
    } finally {
      await context.close();
    }
  });

  it('narrow screens: one pane at a time, and Back keeps the list and its scroll position', async () => {
    for (let i = 1; i <= 14; i++) {
      const friend = await apiLogin(server.url, `friend${String(i).padStart(2, '0')}`);
      await friend.send((await friend.startConversation('alice')).id, `Hello from friend ${i}`);
    }
    const { context, page } = await signIn(browser, server.url, 'alice', { viewport: { width: 800, height: 600 } });
    try {
      await rowFor(page, 'friend01').waitFor();
      await page.evaluate(() => window.scrollTo(0, 500));
      const link = rowFor(page, 'friend03').getByRole('link');
      await link.scrollIntoViewIfNeeded();
      const y = await page.evaluate(() => window.scrollY);
      assert.ok(y > 300, `the list scrolls (${y})`);
      let listFetches = 0;
      page.on('request', (req) => {
        if (req.method() === 'GET' && /\/api\/conversations(\?|$)/.test(req.url())) listFetches += 1;
      });
      await link.click();
      await waitForMessage(page, 'Hello from friend 3');
      assert.equal(await page.locator('.list-pane').isVisible(), false, 'one pane: the list is hidden');
      await page.getByRole('link', { name: 'Back to conversations' }).click();
      await page.getByRole('heading', { name: 'Conversations' }).waitFor();
      await eventually(async () => Math.abs((await page.evaluate(() => window.scrollY)) - y) < 4, { message: `scroll back at ${y}` });
      assert.equal(listFetches, 0, 'the list was kept, not reloaded');
      assert.equal(await page.locator('.conversation').isVisible(), false, 'one pane: the conversation is gone');
    } finally {
      await context.close();
    }
  });

  it('history: skeletons, then older pages on scroll up, keeping the place, with day dividers and groups', async () => {
    const dave = await apiLogin(server.url, 'dave');
    const conv = await dave.startConversation('alice');
    for (let i = 1; i <= 40; i++) await dave.send(conv.id, `Story part ${i}`);
    const { context, page } = await signIn(browser, server.url, 'alice', { viewport: DESKTOP });
    try {
      // The server stamps everything now: move the first parts into the past, as if sent then.
      const day = 24 * 3600_000;
      const now = Date.now();
      await page.route(`**/api/conversations/${conv.id}/messages*`, async (route) => {
        if (route.request().method() !== 'GET') return route.fallback();
        const response = await route.fetch();
        const page_ = await response.json();
        for (const m of page_) {
          const n = Number(m.content.replace('Story part ', ''));
          if (n <= 10) m.createdAt = new Date(now - 3 * day - (40 - n) * 1000).toISOString();
          else if (n <= 20) m.createdAt = new Date(now - day - (40 - n) * 1000).toISOString();
        }
        await new Promise((resolve) => setTimeout(resolve, 700)); // slow enough to see placeholders
        return route.fulfill({ response, json: page_ });
      });
      await page.goto(`/c/${conv.id}`);
      await page.locator('.message-list .skeleton').first().waitFor();
      await waitForMessage(page, 'Story part 40');
      assert.equal(await page.locator('.message-list .skeleton').count(), 0, 'placeholders gone');
      const older = await page.getByRole('button', { name: 'Load older messages', includeHidden: true }).boundingBox();
      assert.ok(!older || older.width <= 1, 'no button on screen (it shows only when focused from the keyboard)');

      // Scroll to the top: the next page arrives above without moving what is on screen.
      const before = await page.evaluate(() => {
        const scroller = document.querySelector('.messages');
        const anchor = [...document.querySelectorAll('.message-list .message')].find((li) => li.textContent.includes('Story part 16')).querySelector('.bubble');
        scroller.scrollTop = 0;
        return anchor.getBoundingClientRect().top;
      });
      await waitForMessage(page, 'Story part 1');
      await page.waitForTimeout(100);
      const afterTop = await bubbleFor(page, 'Story part 16').locator('.bubble').evaluate((el) => el.getBoundingClientRect().top);
      assert.ok(Math.abs(afterTop - before) < 3, `the reader's place is kept (${before} → ${afterTop})`);
      assert.deepEqual(await messageTexts(page), Array.from({ length: 40 }, (_, i) => `Story part ${i + 1}`));

      const dividers = await page.locator('.message-list .day-divider').allTextContents();
      assert.equal(dividers.length, 3, `three days: ${dividers}`);
      assert.match(dividers[0], /^[A-Z][a-z]+day, [A-Z][a-z]+ \d{1,2}/, 'a date for older days');
      assert.deepEqual(dividers.slice(1), ['Yesterday', 'Today']);
      assert.equal(await page.locator('.day-divider').first().getAttribute('role'), 'separator');

      // One group per day here (one sender, seconds apart): the time shows on its last message.
      const times = await page.locator('.message-list .message .meta time').evaluateAll((els) => els.filter((el) => el.checkVisibility()).length);
      assert.equal(times, 3, 'one visible time per group');
      const middle = bubbleFor(page, 'Story part 30');
      assert.equal(await middle.locator('time').isVisible(), false);
      await middle.locator('.bubble').hover();
      assert.equal(await middle.locator('time').isVisible(), true, 'the time shows on hover');
      // My reply starts a new group.
      await page.locator('#message-input').fill('The end!');
      await page.keyboard.press('Enter');
      await waitForMessage(page, 'The end!');
      const reply = bubbleFor(page, 'The end!');
      assert.equal(await reply.evaluate((li) => li.classList.contains('grouped')), false);
      assert.equal(await bubbleFor(page, 'Story part 40').evaluate((li) => li.classList.contains('group-last')), true);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'history-dividers.png') });

      // Opening the conversation around an older message (for links from search and quotes).
      const early = await bubbleFor(page, 'Story part 3').getAttribute('data-id');
      await page.goto(`/c/${conv.id}?message=${early}`);
      await page.locator('.message.highlight', { hasText: 'Story part 3' }).waitFor();
    } finally {
      await context.close();
    }
  });

  it('focus: no ring after a mouse sign-in, Back or a reconnect; keyboard use still shows it', async () => {
    const context = await browser.newContext({ baseURL: server.url, viewport: DESKTOP });
    const page = trackProblems(await context.newPage());
    try {
      await page.goto('/');
      const dev = page.getByRole('form', { name: 'Development sign-in' });
      await dev.getByLabel('Username').fill('alice');
      await dev.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Conversations' }).waitFor();
      let state = await eventually(async () => {
        const s = await focusState(page);
        return s.tag === 'h1' ? s : false;
      }, { message: 'the heading has focus' });
      assert.equal(state.ring, false, 'no ring after a mouse sign-in');

      await rowFor(page, 'bob').getByRole('link').click();
      await waitForMessage(page, MIXED);
      await page.getByRole('link', { name: 'Back to conversations' }).click();
      await page.getByRole('heading', { name: 'Conversations' }).waitFor();
      state = await focusState(page);
      assert.equal(state.tag, 'h1');
      assert.equal(state.ring, false, 'no ring after Back');

      // A reconnect: the page comes back from the service worker, then the server returns.
      await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
      await server.stop();
      await page.reload();
      await page.getByRole('heading', { name: "Can't reach the server" }).waitFor();
      await server.start();
      await page.getByRole('heading', { name: 'Conversations' }).waitFor({ timeout: 20_000 });
      state = await focusState(page);
      assert.equal(state.tag, 'h1');
      assert.equal(state.ring, false, 'no ring after reconnecting');

      // The keyboard: Tab shows where focus is, on links and on headings it moves to.
      await page.keyboard.press('Tab');
      state = await focusState(page);
      assert.equal(state.ring, true, `Tab shows a ring on ${state.tag} "${state.text}"`);
      await rowFor(page, 'bob').getByRole('link').focus();
      await page.keyboard.press('Enter');
      await waitForMessage(page, MIXED);
      await page.keyboard.press('Shift+Tab');
      state = await focusState(page);
      assert.equal(state.ring, true, `Shift+Tab shows a ring on ${state.tag} "${state.text}"`);
      await assertAccessible(page, 'a conversation beside the list');
    } finally {
      await context.close();
    }
  });

  it('a phone at 390×844 with touch: one header, no keyboard on open, Enter is a newline, sign-out asks', async () => {
    const context = await browser.newContext({ baseURL: server.url, viewport: PHONE, isMobile: true, hasTouch: true });
    const page = trackProblems(await context.newPage());
    try {
      await page.goto('/');
      const dev = page.getByRole('form', { name: 'Development sign-in' });
      await dev.getByLabel('Username').fill('alice');
      await dev.getByRole('button', { name: 'Sign in' }).tap();
      await page.getByRole('heading', { name: 'Conversations' }).waitFor();
      await page.screenshot({ path: path.join(SCREENSHOTS, 'phone-list.png') });

      await rowFor(page, 'bob').getByRole('link').tap();
      await waitForMessage(page, MIXED);
      assert.equal(await page.locator('#topbar').isVisible(), false, 'no top bar in a conversation');
      assert.equal(await page.locator('.conv-header').isVisible(), true, 'the conversation header is the one bar');
      await page.waitForTimeout(300);
      assert.notEqual((await focusState(page)).id, 'message-input', 'the composer is not focused on open');

      const input = page.locator('#message-input');
      await input.tap();
      await page.keyboard.type('line one');
      await page.keyboard.press('Enter');
      await page.keyboard.type('line two');
      assert.equal(await input.inputValue(), 'line one\nline two', 'Enter inserts a newline on touch');
      await page.getByRole('button', { name: 'Send message' }).tap();
      await waitForMessage(page, 'line one\nline two');
      await page.screenshot({ path: path.join(SCREENSHOTS, 'phone-conversation.png') });

      // The setting: Enter sends.
      await page.getByRole('link', { name: 'Back to conversations' }).tap();
      await page.locator('.preferences summary').tap();
      await page.getByLabel(/Always sends the message/).check();
      await rowFor(page, 'bob').getByRole('link').tap();
      await input.tap();
      await page.keyboard.type('sent with Enter');
      await page.keyboard.press('Enter');
      await waitForMessage(page, 'sent with Enter');
      assert.equal(await input.inputValue(), '');

      // Sign out: labelled, and it asks; at 360 px the dialog fits in both themes.
      await page.getByRole('link', { name: 'Back to conversations' }).tap();
      await page.setViewportSize({ width: 360, height: 740 });
      const signOut = page.locator('#topbar').getByRole('button', { name: 'Sign out' });
      assert.equal((await signOut.innerText()).trim(), 'Sign out', 'the words show, not only an icon');
      await signOut.tap();
      const dialog = page.getByRole('dialog', { name: 'Sign out?' });
      await dialog.waitFor();
      for (const colorScheme of ['light', 'dark']) {
        await page.emulateMedia({ colorScheme });
        const box = await dialog.boundingBox();
        assert.ok(box.x >= 8 && box.x + box.width <= 352, `${colorScheme}: the dialog fits: ${JSON.stringify(box)}`);
        const buttons = await dialog.getByRole('button').evaluateAll((els) => els.map((b) => b.getBoundingClientRect().toJSON()));
        for (const b of buttons) assert.ok(b.left >= box.x && b.right <= box.x + box.width + 0.5, `${colorScheme}: buttons inside`);
        assert.equal(await page.evaluate(() => document.scrollingElement.scrollWidth <= innerWidth), true, 'no sideways scroll');
        const violations = await seriousViolations(page);
        assert.deepEqual(violations, [], `sign-out dialog (${colorScheme}):\n${describeViolations(violations)}`);
        if (colorScheme === 'dark') await page.screenshot({ path: path.join(SCREENSHOTS, 'phone-sign-out-dark.png') });
      }
      await page.emulateMedia({ colorScheme: null });
      await dialog.getByRole('button', { name: 'Cancel' }).tap();
      assert.equal(await dialog.isVisible(), false);
      assert.ok(await signOut.isVisible(), 'still signed in after Cancel');
      await signOut.tap();
      // (The 401 is the signed-out page's own "who am I?" before signing in.)
      assert.deepEqual(page.problems.filter((p) => !p.includes('status of 401')), []);
      await dialog.getByRole('button', { name: 'Sign out' }).tap();
      await page.getByRole('heading', { name: 'Sign in to Courier' }).waitFor();
    } finally {
      await context.close();
    }
  });

  it('words: "You\'re offline" only when the browser is; otherwise the server; errors clear when it is back', async () => {
    const { context, page } = await signIn(browser, server.url, 'alice', { viewport: DESKTOP });
    try {
      const banner = page.locator('#connection-status');
      await rowFor(page, 'bob').getByRole('link').click();
      await waitForMessage(page, MIXED);
      await context.setOffline(true);
      await banner.filter({ hasText: "You're offline" }).waitFor();
      await context.setOffline(false);
      await eventually(async () => !(await banner.isVisible()), { timeout: 15_000, message: 'banner clears online' });

      await server.stop();
      await banner.filter({ hasText: "Can't reach the server, retrying…" }).waitFor({ timeout: 15_000 });
      assert.equal(await banner.textContent().then((t) => t.includes('offline')), false, 'not called offline');
      await page.locator('#message-input').fill('Written during the outage');
      await page.keyboard.press('Enter');
      const waiting = page.locator('.outbox-list .message', { hasText: 'Written during the outage' });
      await waiting.filter({ hasText: 'Not sent yet' }).waitFor({ timeout: 10_000 });
      await server.start();
      await waitForMessage(page, 'Written during the outage', 30_000);
      await eventually(async () => (await waiting.count()) === 0, { message: 'the "not sent" bubble clears' });
      await eventually(async () => !(await banner.isVisible()), { timeout: 15_000, message: 'banner clears' });
    } finally {
      await context.close();
    }
  });

  it('words: username rules before submitting, matching the server; a separate development sign-in', async () => {
    const context = await browser.newContext({ baseURL: server.url, viewport: { width: 1366, height: 768 } });
    const page = trackProblems(await context.newPage());
    try {
      await page.goto('/');
      // The dev sign-in is its own section, with one "Sign in" button elsewhere, and fits a laptop.
      const dev = page.getByRole('form', { name: 'Development sign-in' });
      await dev.getByRole('heading', { name: 'Development sign-in' }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'Sign in', exact: true }).count(), 1, 'one plain "Sign in" button');
      assert.equal(await page.getByLabel('Username', { exact: true }).evaluateAll((els) => els.filter((e) => e.checkVisibility()).length), 2);
      const devBox = await dev.boundingBox();
      assert.ok(devBox.y + devBox.height <= 768, `the development sign-in fits on a laptop screen: ${JSON.stringify(devBox)}`);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'access-dev-sign-in.png') });

      await page.getByRole('button', { name: 'Create an account' }).click();
      const form = page.getByRole('form', { name: 'Create an account' });
      const field = form.getByLabel('Username');
      const hint = await form.locator('#signup-username-hint').textContent();
      assert.match(hint, /Up to 32 characters/);
      assert.match(hint, /without accents/);
      assert.equal(await field.getAttribute('maxlength'), '32');
      // The same rules as the server's.
      const login = (username) => fetch(`${server.url}/api/login`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username }),
      }).then((r) => r.status);
      assert.equal(await login('a'.repeat(32)), 200);
      assert.equal(await login('a'.repeat(33)), 422);
      assert.equal(await login('José'), 422, 'the server refuses accented letters');
      assert.equal(await login('jo_se-2'), 200);

      let posted = 0;
      page.on('request', (req) => {
        if (req.url().endsWith('/api/signup')) posted += 1;
      });
      await field.fill('José');
      await form.getByLabel('Password').fill('a long enough password 1');
      await form.getByRole('button', { name: 'Create account' }).click();
      await form.locator('#signup-username-error', { hasText: 'without accents' }).waitFor();
      assert.equal(posted, 0, 'caught before submitting');
    } finally {
      await context.close();
    }
  });
});
