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

  send(conversationId, content) {
    return this.call('POST', `/api/conversations/${conversationId}/messages`, { content }, [201]);
  }
}
