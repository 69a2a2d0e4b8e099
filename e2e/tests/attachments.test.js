// End-to-end: files in conversations. A pasted image reaches the other person live, inline,
// and opens in a lightbox that Escape closes; an upload in progress can be cancelled, and a
// cancelled upload leaves nothing on the server.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { apiLogin } from '../lib/api.js';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';
import { eventually, waitForMessage } from '../lib/wait.js';

function filesUnder(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const full = path.join(dir, e.name);
    out = out.concat(e.isDirectory() ? filesUnder(full) : [full]);
  }
  return out;
}

describe('Attachments in the browser', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let alice;
  let bob;
  let conversationPath;

  before(async () => {
    server = await new CourierServer({ args: ['--upload-grace', '1h'] }).start();
    browser = await launchBrowser();
    alice = await signIn(browser, server.url, 'alice');
    bob = await signIn(browser, server.url, 'bob');
    const api = await apiLogin(server.url, 'alice');
    const conversation = await api.startConversation('bob');
    conversationPath = `/c/${conversation.id}`;
    for (const p of [alice.page, bob.page]) {
      await p.goto(conversationPath);
      await p.getByRole('textbox', { name: 'Message' }).waitFor();
    }
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  it('an image pasted into the composer reaches bob live, inline, with a lightbox', async () => {
    const { page } = alice;
    // A real clipboard paste: a PNG drawn on a canvas, in a ClipboardEvent's DataTransfer.
    await page.evaluate(async () => {
      const canvas = document.createElement('canvas');
      canvas.width = 480;
      canvas.height = 240;
      const g = canvas.getContext('2d');
      g.fillStyle = '#c0392b';
      g.fillRect(0, 0, 480, 240);
      g.fillStyle = '#f1c40f';
      g.fillRect(120, 60, 240, 120);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
      const data = new DataTransfer();
      data.items.add(new File([blob], 'image.png', { type: 'image/png' }));
      const textarea = document.querySelector('#message-input');
      textarea.focus();
      textarea.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
    });
    await page.locator('.upload.uploaded').waitFor();
    await page.getByRole('textbox', { name: 'Message' }).fill('Look at this');
    await page.getByRole('textbox', { name: 'Message' }).press('Enter');
    await waitForMessage(page, 'Look at this');
    await eventually(async () => (await page.locator('.upload').count()) === 0, { message: 'the tray emptied after sending' });

    // Bob did not reload: the message and its image arrive over the stream.
    await waitForMessage(bob.page, 'Look at this');
    const image = bob.page.getByRole('button', { name: 'Open image image.png' });
    await image.waitFor();
    await eventually(
      () => image.locator('img').evaluate((img) => img.complete && img.naturalWidth > 0),
      { message: "bob's thumbnail to load" },
    );
    const natural = await image.locator('img').evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    assert.deepEqual(natural, [320, 160], 'the thumbnail, not the full image');

    await image.click();
    const dialog = bob.page.getByRole('dialog', { name: 'image.png' });
    await dialog.waitFor();
    await eventually(
      () => dialog.locator('img').evaluate((img) => img.complete && img.naturalWidth === 480),
      { message: 'the full image in the lightbox' },
    );
    await bob.page.keyboard.press('Escape');
    await eventually(async () => (await dialog.count()) === 0, { message: 'Escape to close the lightbox' });
    assert.equal(await image.evaluate((el) => el === document.activeElement), true, 'focus returns to the image');
    // The signed-out first load's 401 is expected; nothing else (no CSP violation, no error).
    for (const p of [alice.page, bob.page]) assert.deepEqual(p.problems.filter((t) => !/401/.test(t)), []);
  });

  it('an upload in progress can be cancelled and leaves nothing on the server', async () => {
    const { page } = alice;
    const blobs = path.join(server.dataDir, 'uploads', 'blobs');
    const temp = path.join(server.dataDir, 'uploads', 'tmp');
    const stored = filesUnder(blobs).length;
    // Slow the upload down so there is time to cancel it.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 256 * 1024,
    });
    await page.locator('.attach-input').setInputFiles({
      name: 'report.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(8 * 1024 * 1024, 7),
    });
    const row = page.locator('.upload', { hasText: 'report.bin' });
    await row.waitFor();
    await eventually(async () => filesUnder(temp).length > 0, { message: 'the server to start receiving' });
    assert.equal(await row.evaluate((r) => r.classList.contains('uploaded')), false);
    await page.getByRole('button', { name: 'Remove report.bin' }).click();
    await eventually(async () => (await row.count()) === 0, { message: 'the cancelled upload to leave the tray' });
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
    });
    await eventually(async () => filesUnder(temp).length === 0, { message: 'the partial file to be removed' });
    assert.equal(filesUnder(blobs).length, stored, 'nothing new was stored');

    // The composer still works, and sends no file.
    await page.getByRole('textbox', { name: 'Message' }).fill('Never mind the report');
    await page.getByRole('textbox', { name: 'Message' }).press('Enter');
    await waitForMessage(bob.page, 'Never mind the report');
    const last = bob.page.locator('.message-list .message').last();
    assert.equal(await last.locator('.attachments').count(), 0);
  });
});
