// HTTP client for the Courier API. The session rides in an HttpOnly cookie; state-changing
// requests echo the readable courier_csrf cookie (__Host-courier_csrf over HTTPS) in X-CSRF-Token;
// its value is bound to the session by the server.

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
  }
  get offline() {
    return this.status === 0;
  }
  // The server (or its database, or the proxy in front of it) cannot answer right now: not a
  // sign-out, so the app keeps the session and retries.
  get unavailable() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

function describe(status, body) {
  if (status === 0) return "Can't reach the server.";
  if (body && typeof body.error === 'string') return body.error;
  if (body && body.errors && typeof body.errors === 'object') {
    const first = Object.values(body.errors)[0];
    if (typeof first === 'string') return first;
  }
  return `Request failed (${status}).`;
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export function csrfToken() {
  for (const part of document.cookie.split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === 'courier_csrf' || name === '__Host-courier_csrf') return decodeURIComponent(rest.join('='));
  }
  return '';
}

export async function request(method, path, body, { quiet401 = false, headers: extra = {} } = {}) {
  const headers = { Accept: 'application/json', ...extra };
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrfToken();
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, null);
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(res.status, data);
  }
  return data;
}

const enc = encodeURIComponent;

export const api = {
  providers: () => request('GET', '/api/auth/providers'),
  authUser: () => request('GET', '/api/auth_user', undefined, { quiet401: true }),
  login: (username) => request('POST', '/api/login', { username }, { quiet401: true }),
  signIn: (username, password) => request('POST', '/api/signin', { username, password }, { quiet401: true }),
  signUp: (username, password, invite) =>
    request('POST', '/api/signup', invite === undefined ? { username, password } : { username, password, invite }, { quiet401: true }),
  logout: () => request('POST', '/api/logout', undefined, { quiet401: true }),
  sessions: () => request('GET', '/api/sessions'),
  signOutSession: (id) => request('DELETE', `/api/sessions/${enc(id)}`),
  signOutEverywhere: () => request('DELETE', '/api/sessions'),
  usernames: (search) => request('GET', `/api/usernames?search=${enc(search)}`),
  conversations: (before) =>
    request('GET', `/api/conversations${before ? `?before=${enc(before)}` : ''}`),
  conversation: (id) => request('GET', `/api/conversations/${enc(id)}`),
  // 201 for a new conversation; an existing one answers 302 and fetch follows it to the JSON.
  startConversation: (username) => request('POST', '/api/conversations', { username }),
  createGroup: (usernames, title) => request('POST', '/api/conversations', { usernames, title }),
  members: (id) => request('GET', `/api/conversations/${enc(id)}/members?limit=1000`),
  addMembers: (id, usernames) => request('POST', `/api/conversations/${enc(id)}/members`, { usernames }),
  leave: (id) => request('POST', `/api/conversations/${enc(id)}/leave`),
  pushKey: () => request('GET', '/api/push/vapid-public-key'),
  addPushSubscription: (subscription) => request('POST', '/api/push/subscriptions', subscription),
  mute: (id, muted) => request(muted ? 'PUT' : 'DELETE', `/api/conversations/${enc(id)}/mute`),
  rename: (id, title) => request('PATCH', `/api/conversations/${enc(id)}`, { title }),
  removeMember: (id, userId) => request('DELETE', `/api/conversations/${enc(id)}/members/${enc(userId)}`),
  setRole: (id, userId, role) => request('PATCH', `/api/conversations/${enc(id)}/members/${enc(userId)}`, { role }),
  messages: (id, before) =>
    request('GET', `/api/conversations/${enc(id)}/messages${before ? `?before=${enc(before)}` : ''}`),
  // Search (views/search-view.js): a page of hits, and the history around one message.
  search: (q, before) =>
    request('GET', `/api/search?q=${enc(q)}${before ? `&before=${enc(before)}` : ''}`),
  messagesAround: (id, messageId) =>
    request('GET', `/api/conversations/${enc(id)}/messages?around=${enc(messageId)}`),
  // `key`: the Idempotency-Key, the same on every retry of one send, so it is stored once.
  sendMessage: (id, content, replyTo, key, attachments) =>
    request('POST', `/api/conversations/${enc(id)}/messages`, {
      content,
      ...(replyTo ? { replyTo } : {}),
      ...(attachments?.length ? { attachments } : {}),
    }, key ? { headers: { 'Idempotency-Key': key } } : {}),
  message: (id, messageId) => request('GET', `/api/conversations/${enc(id)}/messages/${enc(messageId)}`),
  editMessage: (id, messageId, content) =>
    request('PATCH', `/api/conversations/${enc(id)}/messages/${enc(messageId)}`, { content }),
  deleteMessage: (id, messageId) => request('DELETE', `/api/conversations/${enc(id)}/messages/${enc(messageId)}`),
  react: (id, messageId, emoji, on) =>
    request(on ? 'PUT' : 'DELETE', `/api/conversations/${enc(id)}/messages/${enc(messageId)}/reactions/${enc(emoji)}`),
  // This device has loaded the conversations: everything up to now is delivered to it.
  ackNow: () => request('POST', '/api/ack', {}, { quiet401: true }),
  markRead: (id) => request('POST', `/api/conversations/${enc(id)}/read_messages`),
  typing: (id) => request('POST', `/api/conversations/${enc(id)}/typing`),
  reportPresence: (state) => request('PUT', '/api/presence', { state }),
  settings: () => request('GET', '/api/me/settings'),
  updateSettings: (changes) => request('PATCH', '/api/me/settings', changes),
  // Accounts (views/account.js): setup, invites, passwords, leaving.
  setupStatus: () => request('GET', '/api/setup', undefined, { quiet401: true }),
  setup: (username, password) => request('POST', '/api/setup', { username, password }, { quiet401: true }),
  account: () => request('GET', '/api/account'),
  changePassword: (currentPassword, newPassword, signOutOthers) =>
    request('POST', '/api/account/password', { currentPassword, newPassword, signOutOthers }),
  deleteAccount: (password, removeMessages) => request('DELETE', '/api/account', { password, removeMessages }),
  invites: () => request('GET', '/api/invites'),
  createInvite: (expiresInHours, maxUses) => request('POST', '/api/invites', { expiresInHours, maxUses }),
  revokeInvite: (id) => request('DELETE', `/api/invites/${enc(id)}`),
  checkInvite: (code) => request('POST', '/api/invites/check', { code }, { quiet401: true }),
  passwordLink: (username) => request('POST', '/api/admin/password_links', { username }),
  setEmail: (email) => request('PUT', '/api/account/email', { email }),
  setDisplayName: (displayName) => request('PATCH', '/api/account/profile', { displayName }),
  removeAvatar: () => request('DELETE', '/api/account/avatar'),
  // The picture's own bytes as the body; the server crops, resizes and re-encodes it.
  setAvatar: async (file) => {
    let res;
    try {
      res = await fetch('/api/account/avatar', {
        method: 'PUT',
        credentials: 'same-origin',
        headers: { Accept: 'application/json', 'X-CSRF-Token': csrfToken(), 'Content-Type': file.type || 'application/octet-stream' },
        body: file,
      });
    } catch {
      throw new ApiError(0, null);
    }
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      if (res.status === 401) onUnauthorized();
      throw new ApiError(res.status, data);
    }
    return data;
  },
  forgotPassword: (email) => request('POST', '/api/password_forgot', { email }, { quiet401: true }),
  // Moderation (views/moderation.js).
  reportMessage: (id, messageId, reason) =>
    request('POST', `/api/conversations/${enc(id)}/messages/${enc(messageId)}/report`, reason ? { reason } : {}),
  adminUsers: (search) => request('GET', `/api/admin/users${search ? `?search=${enc(search)}` : ''}`),
  setDisabled: (userId, disabled) => request('POST', `/api/admin/users/${enc(userId)}/${disabled ? 'disable' : 'enable'}`),
  reports: () => request('GET', '/api/admin/reports'),
  resolveReport: (id) => request('POST', `/api/admin/reports/${enc(id)}/resolve`),
  resetPassword: (token, newPassword) => request('POST', '/api/password_reset', { token, newPassword }, { quiet401: true }),
};
