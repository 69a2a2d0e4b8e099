// A node-side API client (bearer token), for seeding data and sending "from elsewhere".
export async function apiLogin(baseURL, username) {
  const res = await fetch(`${baseURL}/api/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username }),
  });
  if (res.status !== 200) throw new Error(`login ${username}: ${res.status} ${await res.text()}`);
  const { token, authUser } = await res.json();
  return new ApiClient(baseURL, token, authUser);
}

// Password sign-up / sign-in over the API; resolves to a client for that new session.
export async function apiPassword(baseURL, route, username, password, { userAgent } = {}) {
  const res = await fetch(`${baseURL}/api/${route}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(userAgent ? { 'User-Agent': userAgent } : {}) },
    body: JSON.stringify({ username, password }),
  });
  const want = route === 'signup' ? 201 : 200;
  if (res.status !== want) throw new Error(`${route} ${username}: ${res.status} ${await res.text()}`);
  const { token, authUser } = await res.json();
  return new ApiClient(baseURL, token, authUser);
}

// The status of GET `path` with a raw `Cookie` header, as a browser holding that cookie would get.
export async function statusWithCookie(baseURL, path, cookie) {
  const res = await fetch(`${baseURL}${path}`, { headers: { Cookie: cookie, Accept: 'application/json' } });
  await res.arrayBuffer();
  return res.status;
}

export class ApiClient {
  constructor(baseURL, token, user) {
    this.baseURL = baseURL;
    this.token = token;
    this.user = user;
  }

  async call(method, path, body, expect) {
    const res = await fetch(`${this.baseURL}${path}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.token}`,
        Accept: 'application/json',
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!expect.includes(res.status)) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  // 201 when new; an existing pair answers 302, which fetch follows to a 200.
  startConversation(username) {
    return this.call('POST', '/api/conversations', { username }, [200, 201]);
  }

  // The status code of a GET, whatever it is (for checking that a token was revoked).
  async status(path) {
    const res = await fetch(`${this.baseURL}${path}`, { headers: { Authorization: `Bearer ${this.token}` } });
    await res.arrayBuffer();
    return res.status;
  }

  send(conversationId, content) {
    return this.call('POST', `/api/conversations/${conversationId}/messages`, { content }, [201]);
  }
}
