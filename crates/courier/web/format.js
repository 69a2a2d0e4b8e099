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

// "9:46 PM": a bubble's time; the day is on the divider above it.
export function clockTime(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' });
}

// A day divider: "Today", "Yesterday", "Monday, March 4", "Monday, March 4, 2024".
export function dayLabel(iso, now = new Date()) {
  const then = new Date(iso);
  const days = Math.round((startOfDay(now) - startOfDay(then)) / DAY);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  const sameYear = then.getFullYear() === now.getFullYear();
  return then.toLocaleDateString(undefined, {
    weekday: 'long', month: 'long', day: 'numeric', year: sameYear ? undefined : 'numeric',
  });
}

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
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

// "Chrome on Linux", "Safari on iPhone", "curl": a readable name for a session's user agent.
export function describeDevice(userAgent) {
  const ua = typeof userAgent === 'string' ? userAgent.trim() : '';
  if (!ua || ua === 'unknown device') return 'Unknown device';
  const browser = browserName(ua);
  const os = osName(ua);
  if (browser && os) return `${browser} on ${os}`;
  if (browser || os) return browser || os;
  // Not a browser: an API client such as "curl/8.5.0" or "node".
  const product = ua.split(/[\s/;(]/)[0];
  if (/^node$/i.test(product)) return 'Node.js';
  return product.slice(0, 40) || 'Unknown device';
}

function browserName(ua) {
  if (/\bEdgA?\//.test(ua)) return 'Edge';
  if (/\b(OPR|Opera)\//.test(ua)) return 'Opera';
  if (/\bSamsungBrowser\//.test(ua)) return 'Samsung Internet';
  if (/\bFirefox\/|\bFxiOS\//.test(ua)) return 'Firefox';
  if (/\bHeadlessChrome\//.test(ua)) return 'Headless Chrome';
  if (/\bChromium\//.test(ua)) return 'Chromium';
  if (/\bChrome\/|\bCriOS\//.test(ua)) return 'Chrome';
  if (/\bVersion\/[\d.]+.*\bSafari\//.test(ua) || (/\bAppleWebKit\//.test(ua) && /\b(iPhone|iPad)\b/.test(ua))) return 'Safari';
  return '';
}

function osName(ua) {
  if (/\biPhone\b/.test(ua)) return 'iPhone';
  if (/\biPad\b/.test(ua)) return 'iPad';
  if (/\bAndroid\b/.test(ua)) return 'Android';
  if (/\bCrOS\b/.test(ua)) return 'ChromeOS';
  if (/\bWindows\b/.test(ua)) return 'Windows';
  if (/\bMac OS X\b|\bMacintosh\b/.test(ua)) return 'macOS';
  if (/\bLinux\b|\bX11\b/.test(ua)) return 'Linux';
  return '';
}

// "Active just now", "Active 5m ago", "Active Mon", "Active Mar 4".
export function lastActive(iso, now = Date.now()) {
  const rel = relativeTime(iso, now);
  if (!rel) return '';
  return /^\d+[mh]$/.test(rel) ? `Active ${rel} ago` : `Active ${rel}`;
}
