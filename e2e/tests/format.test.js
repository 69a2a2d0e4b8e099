// Unit checks for the web app's pure helpers (format.js has no DOM dependency).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const source = readFileSync(
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../crates/courier/web/format.js'), 'utf8');
// web/ has no package.json, so load the ES module from its text.
const f = await import(`data:text/javascript,${encodeURIComponent(source)}`);

it('relative times read "just now", "5m", "3h", a weekday, then a date', () => {
  const now = Date.parse('2026-11-28T21:00:00Z');
  const ago = (ms) => new Date(now - ms).toISOString();
  assert.equal(f.relativeTime(ago(10e3), now), 'just now');
  assert.equal(f.relativeTime(ago(5 * 60e3), now), '5m');
  assert.equal(f.relativeTime(ago(3 * 3600e3), now), '3h');
  assert.match(f.relativeTime(ago(2 * 86400e3), now), /^[A-Z][a-z]{2}$/);
  assert.match(f.relativeTime(ago(20 * 86400e3), now), /^[A-Z][a-z]{2} \d{1,2}$/);
});

it('only http(s) URLs become links, without trailing punctuation', () => {
  const parts = f.linkParts('see https://a.com/x. or javascript:alert(1) (https://en.wikipedia.org/wiki/A_(b))');
  assert.deepEqual(parts.filter((p) => p.href).map((p) => p.href),
    ['https://a.com/x', 'https://en.wikipedia.org/wiki/A_(b)']);
  assert.equal(parts.map((p) => p.text).join(''), 'see https://a.com/x. or javascript:alert(1) (https://en.wikipedia.org/wiki/A_(b))');
});

it('content is normalised and counted like the server does', () => {
  assert.equal(f.normaliseContent('  a   b \n\n   \n c\t d  '), 'a b\nc d');
  assert.equal(f.charCount('\u{1F600}ab'), 3);
  assert.ok(f.compareIds('9', '10') < 0);
});

it('user agents shorten to "browser on system"', () => {
  const cases = {
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36': 'Chrome on Linux',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36': 'Headless Chrome on Linux',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0': 'Firefox on Windows',
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0': 'Edge on Windows',
    'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15': 'Safari on macOS',
    'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1': 'Safari on iPhone',
    'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36': 'Chrome on Android',
    'curl/8.5.0': 'curl',
    node: 'Node.js',
    'unknown device': 'Unknown device',
    '': 'Unknown device',
  };
  for (const [ua, want] of Object.entries(cases)) assert.equal(f.describeDevice(ua), want, ua);
});

it('last activity reads like "Active 5m ago"', () => {
  const now = Date.parse('2026-11-28T21:00:00Z');
  assert.equal(f.lastActive(new Date(now - 10e3).toISOString(), now), 'Active just now');
  assert.equal(f.lastActive(new Date(now - 5 * 60e3).toISOString(), now), 'Active 5m ago');
  assert.equal(f.lastActive(new Date(now - 3 * 3600e3).toISOString(), now), 'Active 3h ago');
});
