// A real OpenID Connect provider (panva/oidc-provider) for Courier's sign-in tests.
//
// It listens on a free port first and prints `issuer http://127.0.0.1:PORT`, so the caller can
// give that issuer to Courier before Courier's own port (and so its redirect URI) is known.
// Then it reads one JSON line from stdin, `{"clients": [{client_id, client_secret,
// redirect_uris}]}`, builds the provider and prints `ready`. Until then it answers 503.
//
// Sign-in uses oidc-provider's devInteractions, which a test can drive without a browser:
// GET /interaction/:uid shows a login form (POST prompt=login&login=NAME&password=any), then a
// consent form (POST prompt=consent). Any login is accepted; it becomes the subject, and its
// part before `@` the preferred_username, so `alice@one` and `alice@two` are two people who
// both want the name "alice".
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';
import Provider from 'oidc-provider';

let handler = null;
const server = createServer((req, res) => {
  if (handler) return handler(req, res);
  res.statusCode = 503;
  res.end('not configured yet');
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(`issuer http://127.0.0.1:${port}\n`);
});

const lines = createInterface({ input: process.stdin });
lines.once('line', (line) => {
  const { clients } = JSON.parse(line);
  const { port } = server.address();
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: clients.map((c) => ({ grant_types: ['authorization_code'], response_types: ['code'], ...c })),
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'picture'] },
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            preferred_username: id.split('@')[0],
            name: id,
            picture: `https://avatars.example.com/u/${encodeURIComponent(id)}`,
          };
        },
      };
    },
  });
  // Quiet: the tests read stdout for the two protocol lines only.
  provider.on('server_error', (_ctx, err) => process.stderr.write(`oidc-provider: ${err.stack}\n`));
  handler = provider.callback();
  process.stdout.write('ready\n');
});

// The test ends us by closing stdin or by a signal.
lines.once('close', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
