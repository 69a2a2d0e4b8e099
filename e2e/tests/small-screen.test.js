// Small screens: at 360×740 (a common small phone) no page scrolls sideways, and the controls a
// conversation needs are on screen, whole and not on top of each other. Saves screenshots.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { apiLogin, apiPassword } from '../lib/api.js';
import { launchBrowser, passwordSignIn, signIn, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { waitForMessage } from '../lib/wait.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCREENSHOTS = path.resolve(here, '../../docs/screenshots');
const PHONE = { width: 360, height: 740 };

// No horizontal scrolling, and no element (other than inside a scroller) reaching past the edge.
async function assertNoOverflow(page, state) {
  const found = await page.evaluate(() => {
    const width = innerWidth;
    const wide = [];
    for (const el of document.querySelectorAll('body *')) {
      const rect = el.getBoundingClientRect();
      if (rect.width === 0 || rect.height === 0) continue;
      if (el.closest('.visually-hidden, .skip-link')) continue;
      if (rect.right > width + 0.5 || rect.left < -0.5) {
        wide.push(`${el.tagName.toLowerCase()}${el.className && typeof el.className === 'string' ? `.${el.className.split(' ').join('.')}` : ''} [${Math.round(rect.left)}, ${Math.round(rect.right)}]`);
      }
    }
    return { scrollWidth: document.scrollingElement.scrollWidth, innerWidth: width, wide: wide.slice(0, 10) };
  });
  assert.ok(found.scrollWidth <= found.innerWidth,
    `${state}: the page scrolls sideways (${found.scrollWidth} > ${found.innerWidth}); wide: ${found.wide.join(', ')}`);
  assert.deepEqual(found.wide, [], `${state}: elements past the edge of a ${found.innerWidth} px screen`);
}

// Each locator is visible, entirely inside the viewport, and no two of them overlap.
async function assertSeparateAndOnScreen(page, state, locators) {
  const boxes = [];
  for (const [name, locator] of Object.entries(locators)) {
    // The app may re-render the element between two reads (a stream event redraws the top
    // bar), so wait for it and read its box until a read finds it laid out.
    await locator.waitFor({ state: 'visible', timeout: 5_000 });
    let box = null;
    for (let tries = 0; box === null && tries < 50; tries++) {
      box = await locator.boundingBox();
      if (box === null) await page.waitForTimeout(100);
    }
    assert.ok(box, `${state}: ${name} is not visible`);
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= PHONE.width && box.y + box.height <= PHONE.height,
      `${state}: ${name} is not entirely on screen: ${JSON.stringify(box)}`);
    assert.ok(box.width >= 24 && box.height >= 24, `${state}: ${name} is smaller than 24 px: ${JSON.stringify(box)}`);
    boxes.push({ name, ...box });
  }
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i];
      const b = boxes[j];
      const overlap = a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
      assert.ok(!overlap, `${state}: ${a.name} and ${b.name} overlap: ${JSON.stringify([a, b])}`);
    }
  }
}

describe('at 360 px wide', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let direct;
  let group;

  const composer = (page) => page.getByRole('textbox', { name: 'Message' });

  before(async () => {
    server = await new CourierServer({ args: ['--signup', 'open'] }).start();
    browser = await launchBrowser();
    // Long names, to find what doesn't shrink.
    await apiPassword(server.url, 'signup', 'alexandra_montgomery', 'correct-Horse-battery-7');
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('the access page: sign-in, sign-up and dev sign-in forms', async () => {
    const context = await browser.newContext({ baseURL: server.url, viewport: PHONE, isMobile: true, hasTouch: true });
    const page = trackProblems(await context.newPage());
    await page.goto('/');
    await page.getByRole('form', { name: 'Development sign-in' }).waitFor();
    await assertNoOverflow(page, 'access page');
    await page.getByRole('button', { name: 'Create an account' }).click();
    await page.getByRole('form', { name: 'Create an account' }).waitFor();
    await assertNoOverflow(page, 'sign-up form');
    await context.close();
  });

  it('home: empty, with the New group form open, and with conversations; screenshot', async () => {
    // A password account: dev login never signs in to one.
    const context = await browser.newContext({ baseURL: server.url, viewport: PHONE });
    const page0 = trackProblems(await context.newPage());
    await page0.goto('/');
    await passwordSignIn(page0, 'alexandra_montgomery', 'correct-Horse-battery-7');
    await page0.getByRole('heading', { name: 'Conversations' }).waitFor();
    alice = { context, page: page0 };
    const { page } = alice;
    await page.getByText('No conversations yet').waitFor();
    await assertNoOverflow(page, 'empty home');
    await assertSeparateAndOnScreen(page, 'home top bar', {
      brand: page.getByRole('link', { name: 'Courier, home' }),
      sessions: page.getByRole('link', { name: 'Sessions' }),
      signOut: page.locator('#topbar').getByRole('button', { name: 'Sign out' }),
    });
    await page.getByText('New group').click();
    await page.getByLabel('Group title').waitFor();
    await assertNoOverflow(page, 'home with the New group form open');

    const bob = await apiLogin(server.url, 'bob');
    const carol = await apiLogin(server.url, 'carol');
    const dave = await apiLogin(server.url, 'dave_the_very_long_username');
    direct = await bob.startConversation('alexandra_montgomery');
    await bob.send(direct.id, 'Are you coming to the climbing gym tonight? We could take the 6:15 bus together.');
    await bob.send(direct.id, 'https://example.com/a/really/long/link/that/goes/on/and/on/without/any/spaces/at/all?x=1');
    const withDave = await dave.startConversation('alexandra_montgomery');
    await dave.send(withDave.id, 'Supercalifragilisticexpialidociouslylongwordwithoutanybreaks');
    group = await carol.call('POST', '/api/conversations',
      { title: 'Thursday climbing crew and friends of friends', usernames: ['alexandra_montgomery', 'bob', 'dave_the_very_long_username'] }, [201]);
    await carol.send(group.id, 'Who is bringing the rope?');
    await bob.send(group.id, 'Me! And the chalk.');
    await page.reload();
    await page.locator('.conversation-row').nth(2).waitFor();
    await assertNoOverflow(page, 'home with conversations');
    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SCREENSHOTS, 'home-360.png') });
    await page.getByText('New group').click();
    await page.getByLabel('Group title').waitFor();
    await assertNoOverflow(page, 'home with conversations and the New group form open');
  });

  it('a direct conversation: the composer and send button are on screen and apart', async () => {
    const { page } = alice;
    await page.goto(`/c/${direct.id}`);
    await waitForMessage(page, 'Are you coming to the climbing gym tonight? We could take the 6:15 bus together.');
    await composer(page).fill('Yes! See you at six.');
    await composer(page).press('Enter');
    await waitForMessage(page, 'Yes! See you at six.');
    await assertNoOverflow(page, 'direct conversation');
    await assertSeparateAndOnScreen(page, 'direct conversation', {
      back: page.getByRole('link', { name: 'Back to conversations' }),
      composer: composer(page),
      send: page.getByRole('button', { name: 'Send message' }),
    });
  });

  it('a group conversation with its Members panel open; screenshot', async () => {
    const { page } = alice;
    await page.goto(`/c/${group.id}`);
    await waitForMessage(page, 'Me! And the chalk.');
    await composer(page).fill('I can drive two people.');
    await composer(page).press('Enter');
    await waitForMessage(page, 'I can drive two people.');
    const controls = {
      back: page.getByRole('link', { name: 'Back to conversations' }),
      title: page.getByRole('heading', { level: 1 }),
      members: page.getByRole('button', { name: 'Members' }),
      mute: page.getByRole('button', { name: 'Mute' }),
      composer: composer(page),
      send: page.getByRole('button', { name: 'Send message' }),
    };
    await assertNoOverflow(page, 'group conversation');
    await assertSeparateAndOnScreen(page, 'group conversation', controls);
    const title = await controls.title.boundingBox();
    assert.ok(title.width >= 120, `the group's title has room to be read (${Math.round(title.width)} px)`);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'group-360.png') });

    await controls.members.click();
    await page.locator('.member-row', { hasText: 'dave_the_very_long_username' }).waitFor();
    await assertNoOverflow(page, 'group conversation with the Members panel open');
    await assertSeparateAndOnScreen(page, 'group conversation with the Members panel open', controls);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'group-members-360.png') });
  });

  it('the sessions page and the not-found page', async () => {
    const { page } = alice;
    await apiPassword(server.url, 'signin', 'alexandra_montgomery', 'correct-Horse-battery-7', {
      userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1',
    });
    await page.goto('/sessions');
    await page.locator('.session-row').nth(1).waitFor();
    await assertNoOverflow(page, 'sessions page');
    await page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await page.getByRole('dialog').waitFor();
    await assertNoOverflow(page, 'sign out everywhere dialog');
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.goto('/nowhere');
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
    await assertNoOverflow(page, 'not-found page');
  });
});
