// A real OpenID provider for Podstack's single sign-on tests: panva's oidc-provider (an
// OpenID Certified implementation) on a loopback port, with one confidential test client and
// test users. Started by tests/oidc/conftest.py; never listens beyond 127.0.0.1.
//
// Environment (all set by the fixture):
//   OIDC_PORT           port to listen on (127.0.0.1)
//   OIDC_CLIENT_ID      the test client's id
//   OIDC_CLIENT_SECRET  its secret (client_secret_basic at the token endpoint)
//   OIDC_REDIRECT_URI   the Podstack server's callback (/login/oidc/callback)
//   OIDC_ACCOUNTS_FILE  JSON {"<account id>": {"preferred_username": ..., "groups": [...]}}
//                       read at every findAccount, so a test can change a user's groups
//                       between two sign-ins.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_PORT);
const issuer = `http://127.0.0.1:${port}`;

function accounts() {
  return JSON.parse(readFileSync(process.env.OIDC_ACCOUNTS_FILE, 'utf8'));
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: process.env.OIDC_CLIENT_ID,
      client_secret: process.env.OIDC_CLIENT_SECRET,
      redirect_uris: [process.env.OIDC_REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Refuse any authorization request without a PKCE challenge: proves the client sends one
  // (S256 is the only method oidc-provider accepts).
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Dev interactions: the provider's own login and consent forms (any password is accepted
  // for a known account id), which the Playwright test fills in.
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account };
      },
    };
  },
  cookies: { keys: ['podstack-test-only-cookie-key'] },
});

// Plain http on loopback: the provider otherwise insists on https for its own cookies.
provider.proxy = false;
const server = provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider listening on ${issuer}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
