// Small polling helpers (playwright-core ships no `expect`).
import assert from 'node:assert/strict';

export async function eventually(check, { timeout = 10_000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${message}${last ? `: ${last.message}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

// The text of every message bubble in the open conversation, oldest first.
export function messageTexts(page) {
  return page.locator('.message-list .content').allTextContents();
}

export async function waitForMessage(page, text, timeout = 10_000) {
  await eventually(async () => (await messageTexts(page)).includes(text), {
    timeout,
    message: `message "${text}" on ${page.url()}`,
  });
}

export async function assertShownOnce(page, text) {
  const count = (await messageTexts(page)).filter((t) => t === text).length;
  assert.equal(count, 1, `"${text}" should be shown exactly once, was ${count}`);
}
