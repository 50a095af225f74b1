// A real OpenID provider for the browser tests: the certified
// `oidc-provider` package, configured from a JSON file the Rust side
// (tests/src/oidc_provider.rs) writes, with a minimal login page of its own.
//
//   node provider.js CONFIG.json PORT
//
// CONFIG.json: { "issuer": "http://127.0.0.1:PORT",
//                "clients": [{ "client_id", "client_secret", "redirect_uris": [..],
//                              "post_logout_redirect_uris": [..] }],
//                "users": [{ "sub", "email", "name", "password", "groups": [..] }] }
//
// Every client must use PKCE (S256); the scopes are `openid email profile
// groups`, and the ID token carries the user's claims as well as userinfo.
// Signing keys (RS256) and cookie keys are made afresh at each start. The
// login form (/interaction/UID) has the fields `username` (the user's email
// or sub) and `password` and the button "Sign in"; a wrong pair shows the
// form again with "Invalid username or password." Consent is given at once.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const [configPath, portArg] = process.argv.slice(2);
const port = Number(portArg || process.env.OIDC_PORT);
if (!configPath || !Number.isInteger(port) || port <= 0) {
  console.error('usage: node provider.js CONFIG.json PORT (or OIDC_PORT)');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
const users = config.users || [];

function userBy(login) {
  return users.find((u) => u.email === login || u.sub === login);
}

const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: 'rs256-' + randomBytes(6).toString('hex'),
  alg: 'RS256',
  use: 'sig',
};

const provider = new Provider(config.issuer, {
  clients: config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    post_logout_redirect_uris: c.post_logout_redirect_uris || [],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_basic',
  })),
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { methods: ['S256'], required: () => true },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  ttl: {
    AccessToken: 3600, AuthorizationCode: 60, Grant: 3600, IdToken: 3600, Interaction: 3600, Session: 3600,
  },
  features: { devInteractions: { enabled: false } },
  async findAccount(_ctx, sub) {
    const user = users.find((u) => u.sub === sub);
    if (!user) return undefined;
    return {
      accountId: user.sub,
      async claims() {
        return {
          sub: user.sub,
          email: user.email,
          email_verified: true,
          name: user.name,
          groups: user.groups || [],
        };
      },
    };
  },
  // Consent is given at once: each authorization gets a grant of the scopes
  // it asks for.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    await grant.save();
    return grant;
  },
});

for (const event of ['server_error', 'authorization.error', 'grant.error', 'userinfo.error']) {
  provider.on(event, (_ctx, err) => console.error(`${event}: ${err.name}: ${err.message} ${err.error_description || ''}`));
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, clientId, error) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in to ${escape(clientId)}</h1>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label>Username <input name="username" type="text" autofocus></label>
<label>Password <input name="password" type="password"></label>
<button type="submit" id="sign-in">Sign in</button>
</form>
<form method="post" action="/interaction/${escape(uid)}/abort">
<button type="submit" id="cancel">Cancel</button>
</form>
</body></html>`;
}

async function formBody(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

function send(res, status, html) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(html);
}

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const clientId = details.params.client_id;
  const action = new URL(req.url, config.issuer).pathname.split('/')[3];
  if (req.method === 'GET' && !action) {
    return send(res, 200, loginPage(details.uid, clientId));
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await formBody(req);
    const user = userBy(form.get('username') || '');
    if (!user || user.password !== form.get('password')) {
      console.error(`login refused for ${JSON.stringify(form.get('username'))}`);
      return send(res, 200, loginPage(details.uid, clientId, 'Invalid username or password.'));
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
  }
  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user cancelled the sign-in',
    }, { mergeWithLastSubmission: false });
  }
  return send(res, 404, 'not found');
}

const callback = provider.callback();
const server = createServer((req, res) => {
  console.log(`${req.method} ${req.url}`);
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      console.error(`interaction failed: ${err.name}: ${err.message}`);
      send(res, 400, `<p>${escape(err.message)}</p>`);
    });
  } else {
    callback(req, res);
  }
});
server.listen(port, '127.0.0.1', () => console.log(`listening on ${config.issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
