// Installable: the web app manifest parses, names PNG icons (192, 512 and a maskable one) that
// load as images, and Chromium itself reports the page installable.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchProfile, trackProblems } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';

// Width and height from a PNG's IHDR chunk.
function pngSize(bytes) {
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return `${view.getUint32(16)}x${view.getUint32(20)}`;
}

describe('installable web app', { timeout: 60_000 }, () => {
  let server;
  let manifest;

  before(async () => {
    server = await new CourierServer().start();
  });

  after(async () => {
    await server?.dispose();
  });

  it('the page links a manifest that parses and has what install needs', async () => {
    const html = await (await fetch(`${server.url}/`)).text();
    assert.match(html, /<link rel="manifest" href="\/manifest\.webmanifest">/);
    const res = await fetch(`${server.url}/manifest.webmanifest`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/manifest+json');
    manifest = JSON.parse(await res.text());
    assert.equal(manifest.name, 'Courier');
    assert.equal(manifest.short_name, 'Courier');
    assert.equal(manifest.id, '/');
    assert.equal(manifest.start_url, '/');
    assert.equal(manifest.scope, '/');
    assert.ok(['standalone', 'fullscreen', 'minimal-ui'].includes(manifest.display), `display ${manifest.display}`);
    assert.match(manifest.theme_color, /^#[0-9a-f]{6}$/i);
    assert.match(manifest.background_color, /^#[0-9a-f]{6}$/i);
    const pngs = manifest.icons.filter((i) => i.type === 'image/png');
    const find = (sizes, purpose) => pngs.find((i) => i.sizes === sizes && (i.purpose || 'any').split(' ').includes(purpose));
    assert.ok(find('192x192', 'any'), 'a 192 px PNG icon');
    assert.ok(find('512x512', 'any'), 'a 512 px PNG icon');
    assert.ok(find('512x512', 'maskable'), 'a 512 px maskable PNG icon');
  });

  it('every icon loads with its declared content type and size', async () => {
    for (const icon of manifest.icons) {
      const res = await fetch(new URL(icon.src, server.url));
      assert.equal(res.status, 200, icon.src);
      assert.equal(res.headers.get('content-type'), icon.type, `${icon.src} content type`);
      const bytes = new Uint8Array(await res.arrayBuffer());
      if (icon.type === 'image/png') assert.equal(pngSize(bytes), icon.sizes, `${icon.src} size`);
    }
  });

  it('Chromium parses the manifest without errors and reports no installability errors', async () => {
    // Chromium never offers to install from an incognito profile, which every newContext() is.
    const profile = mkdtempSync(path.join(tmpdir(), 'courier-profile-'));
    const context = await launchProfile(profile, { baseURL: server.url });
    after(() => rmSync(profile, { recursive: true, force: true }));
    const page = trackProblems(context.pages()[0] ?? await context.newPage());
    await page.goto('/');
    await page.getByRole('heading', { name: 'Sign in to Courier' }).waitFor();
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
    const cdp = await context.newCDPSession(page);

    const { url, errors, manifest: parsed } = await cdp.send('Page.getAppManifest');
    assert.equal(url, `${server.url}/manifest.webmanifest`);
    assert.deepEqual(errors, [], 'manifest parse errors');
    assert.equal(parsed.name, 'Courier');
    assert.equal(parsed.display, 'kStandalone');
    assert.equal(parsed.id, `${server.url}/`);
    assert.deepEqual(parsed.icons.filter((i) => i.type === 'image/png').map((i) => i.sizes), ['192x192', '512x512', '512x512']);

    const { installabilityErrors } = await cdp.send('Page.getInstallabilityErrors');
    assert.deepEqual(installabilityErrors, [], 'Chromium says the page is not installable');

    // And every icon Chromium would pick really decodes as an image in the page.
    const decoded = await page.evaluate(async (srcs) => Promise.all(srcs.map(async (src) => {
      const img = new Image();
      img.src = src;
      await img.decode();
      return `${img.naturalWidth}x${img.naturalHeight}`;
    })), manifest.icons.filter((i) => i.type === 'image/png').map((i) => i.src));
    assert.deepEqual(decoded, manifest.icons.filter((i) => i.type === 'image/png').map((i) => i.sizes));
    await context.close();
  });
});
