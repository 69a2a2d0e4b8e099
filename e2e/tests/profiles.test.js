// End-to-end, issue 17: a profile change seen live by a contact. Alice sets a display name and
// uploads a picture in Settings; Bob, with their conversation open in another browser context,
// sees both without reloading, in the header and then in his conversation list.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

describe('Profiles in the browser', { timeout: 120_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('alice changes her display name and picture; bob\'s open app shows both without a reload', async () => {
    const alice = await signIn(browser, server.url, 'alice');
    const bob = await signIn(browser, server.url, 'bob');

    await alice.page.getByLabel('New conversation with').fill('bob');
    await alice.page.getByRole('button', { name: 'Start' }).click();
    await alice.page.waitForURL((url) => url.pathname.startsWith('/c/'));
    const composer = alice.page.getByRole('textbox', { name: 'Message' });
    await composer.fill('hello bob');
    await composer.press('Enter');
    await waitForMessage(alice.page, 'hello bob');

    await bob.page.locator('.conversation-row').filter({ hasText: 'alice' }).first().click();
    await waitForMessage(bob.page, 'hello bob');
    const header = bob.page.locator('h1.conv-title');
    assert.equal((await header.textContent()).trim(), 'alice');
    // Gone if the page reloads.
    await bob.page.evaluate(() => { window.sameDocument = true; });

    // Alice, in Settings: a display name, then a picture (a 600×400 PNG drawn here).
    await alice.page.goto('/settings');
    const nameForm = alice.page.getByRole('form', { name: 'Display name' });
    await nameForm.getByLabel(/Display name/).fill('Alice Liddell');
    await nameForm.getByRole('button', { name: 'Save name' }).click();
    await nameForm.getByRole('status').filter({ hasText: 'Saved' }).waitFor();

    await header.filter({ hasText: 'Alice Liddell (@alice)' }).waitFor();

    const png = await alice.page.evaluate(() => {
      const canvas = document.createElement('canvas');
      canvas.width = 600;
      canvas.height = 400;
      const g = canvas.getContext('2d');
      g.fillStyle = '#0a7';
      g.fillRect(0, 0, 600, 400);
      return canvas.toDataURL('image/png').split(',')[1];
    });
    await alice.page.locator('#avatar-file').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: Buffer.from(png, 'base64') });
    await alice.page.getByRole('status').filter({ hasText: 'Picture saved' }).waitFor();
    const ownPicture = await alice.page.locator('.profile-preview img').getAttribute('src');
    assert.match(ownPicture, /\/api\/avatars\/[0-9a-f]{64}$/);

    // Bob's header avatar becomes the picture, live.
    const headerPicture = bob.page.locator('.conv-avatar img');
    await eventually(async () => /\/api\/avatars\/[0-9a-f]{64}$/.test((await headerPicture.getAttribute('src').catch(() => '')) || ''), { message: 'bob sees alice\'s picture' });
    // The picture loaded (not the initial as a fallback): the centred square scaled to 256×256.
    await eventually(async () => (await headerPicture.evaluate((img) => img.naturalWidth).catch(() => 0)) === 256, { message: 'the picture loads, 256 px square' });

    // Back to his list (in-app navigation): her row shows the new name and picture too.
    await bob.page.getByRole('link', { name: 'Back to conversations' }).click();
    const row = bob.page.locator('.conversation-row').filter({ hasText: 'Alice Liddell' });
    await row.waitFor();
    assert.match(await row.locator('.avatar img').getAttribute('src'), /\/api\/avatars\//);
    assert.equal(await bob.page.evaluate(() => window.sameDocument), true, 'bob\'s page never reloaded');

    // (The 401 is the signed-out first visit asking who it is.)
    for (const page of [alice.page, bob.page]) assert.deepEqual(page.problems.filter((t) => !/401/.test(t)), []);
    await alice.context.close();
    await bob.context.close();
  });
});
