// Desktop notifications for messages that arrive while Courier is in the background.
// Permission is asked only when the person presses "Turn on notifications", never at load.
// Every tab receives every message (they share one stream), so each may try to notify: the
// notification's tag is the message id, and the browser shows one per tag.
// Muted conversations (stored on the server, so every device knows) never notify; a change
// made in one tab reaches the others over BroadcastChannel.

import { api } from './api.js';
import { displayName } from './avatar.js';
import { navigate } from './router.js';

const CACHE_MS = 30_000;
const known = new Map(); // conversation id -> { conv, at }
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('courier-mute') : null;
channel?.addEventListener('message', ({ data }) => setMuted(data.id, data.muted, false));

export function supported() {
  return typeof window.Notification === 'function';
}

export function permission() {
  return supported() ? window.Notification.permission : 'unsupported';
}

export async function askPermission() {
  if (!supported()) return 'unsupported';
  const answer = await window.Notification.requestPermission();
  if (answer === 'granted') subscribePush().catch((err) => console.info('Web Push unavailable:', err.message));
  return answer;
}

// With Courier closed, the server pushes to this browser's push service (Web Push); the
// service worker shows the notification. Browsers without a reachable push service just
// keep the in-page notifications.
async function subscribePush() {
  if (!('serviceWorker' in navigator) || !('PushManager' in window)) return;
  const { publicKey } = await api.pushKey();
  const registration = await navigator.serviceWorker.ready;
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: publicKey,
  });
  await api.addPushSubscription(subscription.toJSON());
}

export function remember(conv) {
  known.set(conv.id, { conv, at: Date.now() });
}

export function setMuted(id, muted, tell = true) {
  const entry = known.get(id);
  if (entry) entry.conv = { ...entry.conv, muted };
  if (tell) channel?.postMessage({ id, muted });
}

async function conversation(id) {
  const entry = known.get(id);
  if (entry && Date.now() - entry.at < CACHE_MS) return entry.conv;
  const conv = await api.conversation(id);
  remember(conv);
  return conv;
}

export async function notifyIncoming(msg) {
  if (msg.mine || !document.hidden || permission() !== 'granted') return;
  let conv;
  try {
    conv = await conversation(msg.conversationId);
  } catch {
    return;
  }
  if (conv.muted) return;
  const title = conv.kind === 'group' ? conv.title : (conv.otherParticipant && displayName(conv.otherParticipant));
  const url = `/c/${encodeURIComponent(msg.conversationId)}`;
  const note = new window.Notification(title || 'Courier', {
    body: msg.content,
    tag: `courier-${msg.id}`,
    icon: '/icon.svg',
    data: { url },
  });
  note.onclick = () => {
    window.focus();
    navigate(url);
    note.close();
  };
}
