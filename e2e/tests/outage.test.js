// End-to-end: a database blip is not a sign-out. While the server answers 503 (its store is
// unreachable), the app keeps the session and says it is reconnecting; it never shows the
// sign-in page, and it carries on by itself once the server answers again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, signIn } from '../lib/browser.js';
import { CourierServer } from '../lib/server.js';

describe('A server that answers 503', { timeout: 60_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await new CourierServer().start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('shows "reconnecting", never the sign-in page, and recovers', async () => {
    const { context, page } = await signIn(browser, server.url, 'alice');
    // What the server says while its database is unreachable (see ApiError::Unavailable).
    const unavailable = (route) => route.fulfill({
      status: 503,
      headers: { 'content-type': 'application/json', 'retry-after': '1' },
      body: JSON.stringify({ error: 'temporarily unavailable, try again' }),
    });
    await context.route('**/api/auth_user', unavailable);
    await context.route('**/api/conversations*', unavailable);
    await page.reload();
    const status = page.locator('#connection-status');
    await status.filter({ hasText: /temporarily unavailable, retrying/i }).waitFor();
    assert.equal(await page.getByRole('heading', { name: 'Sign in to Courier' }).count(), 0, 'no sign-in page');
    assert.ok(
      (await context.cookies()).some((c) => c.name === 'courier_session'),
      'the session cookie is kept',
    );

    await context.unroute('**/api/auth_user');
    await context.unroute('**/api/conversations*');
    await page.getByRole('heading', { name: 'Conversations' }).waitFor({ timeout: 15_000 });
    await status.filter({ hasText: /retrying/i }).waitFor({ state: 'hidden' });
  });
});
