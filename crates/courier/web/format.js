// Pure formatting helpers: relative times, message text normalisation, link detection.

export const MESSAGE_LIMIT = 480;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

// "just now", "5m", "3h", "Mon", "Mar 4", "Mar 4, 2024".
export function relativeTime(iso, now = Date.now()) {
  const then = new Date(iso);
  const diff = now - then.getTime();
  if (Number.isNaN(diff)) return '';
  if (diff < MINUTE) return 'just now';
  if (diff < HOUR) return `${Math.floor(diff / MINUTE)}m`;
  if (diff < DAY) return `${Math.floor(diff / HOUR)}h`;
  if (diff < 6 * DAY) return then.toLocaleDateString(undefined, { weekday: 'short' });
  const sameYear = then.getFullYear() === new Date(now).getFullYear();
  return then.toLocaleDateString(undefined, {
    month: 'short',
    day: 'numeric',
    year: sameYear ? undefined : 'numeric',
  });
}

// "9:46 PM" today, "Mar 4, 9:46 PM" on other days.
export function messageTime(iso, now = new Date()) {
  const then = new Date(iso);
  const time = then.toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
  if (then.toDateString() === now.toDateString()) return time;
  const sameYear = then.getFullYear() === now.getFullYear();
  const day = then.toLocaleDateString(undefined, { month: 'short', day: 'numeric', year: sameYear ? undefined : 'numeric' });
  return `${day}, ${time}`;
}

export function fullTime(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

// Mirrors the server's normalisation so the client-side length check agrees with it:
// whitespace runs inside a line become one space, lines are trimmed, empty lines dropped.
export function normaliseContent(text) {
  return text
    .split(/\r\n|\r|\n/)
    .map((line) => line.replace(/\s+/g, ' ').trim())
    .filter((line) => line !== '')
    .join('\n');
}

// Length in Unicode scalar values, which is what the server counts (not UTF-16 units).
export function charCount(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

// Splits text into [{text}|{text, href}] parts; only http(s) URLs become links.
export function linkParts(text) {
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(URL_RE)) {
    const raw = trimUrl(match[0]);
    const href = safeHref(raw);
    if (!href) continue;
    if (match.index > last) parts.push({ text: text.slice(last, match.index) });
    parts.push({ text: raw, href });
    last = match.index + raw.length;
  }
  if (last < text.length) parts.push({ text: text.slice(last) });
  return parts;
}

// Drops sentence punctuation after a URL, but keeps a ')' that closes a '(' inside it.
function trimUrl(raw) {
  let url = raw;
  for (;;) {
    const trail = url.match(TRAILING);
    if (!trail) return url;
    const last = url.at(-1);
    if (last === ')' && count(url, '(') >= count(url, ')')) return url;
    url = url.slice(0, -1);
  }
}

function count(text, ch) {
  return text.split(ch).length - 1;
}

function safeHref(raw) {
  try {
    const url = new URL(raw);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

// Ids are decimal strings; compare numerically without losing precision past 2^53.
export function compareIds(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}
