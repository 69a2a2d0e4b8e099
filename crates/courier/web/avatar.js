import { h } from './dom.js';

// White text reaches at least 4.5:1 on every one of these.
const PALETTE = [
  '#b91c1c', '#c2410c', '#a16207', '#15803d', '#0f766e',
  '#0369a1', '#1d4ed8', '#6d28d9', '#a21caf', '#be123c',
];

export function colourFor(name) {
  let hash = 2166136261;
  for (const ch of name) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  return PALETTE[hash % PALETTE.length];
}

function initial(name) {
  const first = [...(name || '?')][0];
  return first.toLocaleUpperCase();
}

function safePicture(url) {
  if (typeof url !== 'string' || url === '') return null;
  try {
    const parsed = new URL(url, location.origin);
    if (parsed.protocol === 'https:' || parsed.origin === location.origin) return parsed.href;
  } catch {
    // fall through to the initial
  }
  return null;
}

// The name to show for a person: their display name, else the username; a deleted account is
// "Deleted account" whatever it was called.
export function displayName(user) {
  if (!user) return 'Someone';
  if (user.deleted) return 'Deleted account';
  return user.displayName || user.username || 'Someone';
}

// "Display Name (@username)" where both differ, for places that name one person fully.
export function fullName(user) {
  const shown = displayName(user);
  if (!user || user.deleted || !user.displayName || user.displayName === user.username) return shown;
  return `${shown} (@${user.username})`;
}

// Applies an `event: profile` to a user object kept by a view (same id), in place.
export function applyProfile(user, change) {
  if (!user || user.id !== change.userId) return false;
  user.displayName = change.displayName ?? null;
  user.avatarURL = change.avatarURL ?? null;
  if (change.deleted) user.deleted = true;
  return true;
}

// Decorative: the name is always shown next to it, so it's hidden from assistive tech.
export function avatar(user, size = 'md') {
  const name = user?.deleted ? '?' : displayName(user);
  const el = h('span', { class: `avatar avatar-${size}`, 'aria-hidden': 'true' });
  const showInitial = () => {
    el.replaceChildren(initial(name));
    // Coloured by the username, so a new display name keeps the colour people know.
    el.style.backgroundColor = user?.deleted ? '#6b7280' : colourFor(user?.username ?? name);
  };
  const src = safePicture(user?.avatarURL);
  if (src) {
    const img = h('img', { src, alt: '', loading: 'lazy', referrerpolicy: 'no-referrer', decoding: 'async' });
    img.addEventListener('error', showInitial, { once: true });
    el.append(img);
  } else {
    showInitial();
  }
  return el;
}
