/**
 * A development identity provider: oidc-provider with its own dev sign-in pages (any login and
 * password are accepted), on 127.0.0.1, plain HTTP (or HTTPS with `tls`: the step CLI refuses an
 * http:// provider). Used by `sshca demo` and by the tests as the real IdP for people. Never for
 * production: it signs anyone in.
 */
import {generateKeyPairSync, randomBytes, randomUUID} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'

export interface DevIdpClient {
  clientId: string
  /** Loopback redirect URIs; the port is free for native clients (RFC 8252 §7.3). */
  redirectUris?: string[]
}

export interface DevIdpOptions {
  clients: DevIdpClient[]
  /** Claims per login name; a login not listed gets `<login>@example.com`, verified. */
  accounts?: Record<string, Record<string, unknown>>
  /** ID token lifetime in seconds (default 600). */
  idTokenTtl?: number
  /**
   * Hide oidc-provider's two "development-only" console warnings while it runs (the demo tells the
   * person itself that this IdP signs anyone in).
   */
  quiet?: boolean
  /** Serve HTTPS with this key and certificate (PEM, for 127.0.0.1); the issuer is then https://. */
  tls?: {key: string; cert: string}
}

export interface DevIdp {
  issuer: string
  port: number
  stop(): Promise<void>
}

export function claimsFor(
  login: string,
  accounts: Record<string, Record<string, unknown>> = {},
): Record<string, unknown> {
  const email = login.includes('@') ? login : `${login}@example.com`
  return {sub: login, email, email_verified: true, name: login, groups: ['engineering'], ...accounts[login]}
}

const page = (title: string, body: string): string =>
  `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head><body><h1>${title}</h1>${body}</body></html>`

/** oidc-provider warns through console.warn; hides matching lines until the returned function runs. */
function hideWarnings(re: RegExp): () => void {
  /* eslint-disable no-console -- oidc-provider's own output, not ours */
  const original = console.warn
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && re.test(args[0])) return
    original(...args)
  }
  return () => {
    console.warn = original
  }
  /* eslint-enable no-console */
}

export async function startDevIdp(opts: DevIdpOptions): Promise<DevIdp> {
  const {default: Provider} = await import('oidc-provider')
  const server: Server = opts.tls ? createHttpsServer({key: opts.tls.key, cert: opts.tls.cert}) : createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as {port: number}).port
  const issuer = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`
  const restoreWarn = opts.quiet
    ? hideWarnings(/oidc-provider WARNING: .*(development-only|devInteractions)/)
    : () => undefined
  const signingKey = generateKeyPairSync('ec', {namedCurve: 'P-256'}).privateKey.export({format: 'jwk'})
  const provider = new Provider(issuer, {
    clients: opts.clients.map((c) => ({
      client_id: c.clientId,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: c.redirectUris ?? ['http://127.0.0.1/callback'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
    })),
    jwks: {keys: [{...signingKey, kid: randomBytes(8).toString('hex'), alg: 'ES256', use: 'sig'}]},
    cookies: {keys: [randomBytes(32).toString('hex')]},
    // jti: each ID token is one of a kind (as Keycloak's are), so two tokens minted in the same second
    // are never mistaken for a replay of one another by the CA
    claims: {openid: ['sub', 'jti'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups']},
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    pkce: {required: () => true},
    ttl: {
      IdToken: opts.idTokenTtl ?? 600,
      AccessToken: 600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      RefreshToken: 86400,
      Session: 86400,
      Grant: 86400,
      Interaction: 3600,
    },
    features: {
      devInteractions: {enabled: true},
      deviceFlow: {
        enabled: true,
        userCodeInputSource: async (ctx, form, _out, err) => {
          ctx.body = page(
            'Sign-in',
            `${err ? '<p>The code was not accepted. Try again.</p>' : '<p>Enter the code shown on your device.</p>'}${form}<button type="submit" form="op.deviceInputForm">Continue</button>`,
          )
        },
        userCodeConfirmSource: async (ctx, form, _client, _info, userCode) => {
          ctx.body = page(
            'Confirm device',
            `<p>The device shows the code <code>${userCode}</code>.</p>${form}<button type="submit" form="op.deviceConfirmForm">Continue</button>`,
          )
        },
        successSource: async (ctx) => {
          ctx.body = page('Signed in', '<p>You are signed in. Return to your terminal.</p>')
        },
      },
      revocation: {enabled: true},
    },
    findAccount: async (_ctx, id) => ({
      accountId: id,
      claims: async () => ({sub: id, jti: randomUUID(), ...claimsFor(id, opts.accounts)}),
    }),
    renderError: async (ctx, out) => {
      ctx.type = 'html'
      ctx.body = page(
        'Sign-in error',
        `<pre>${String(out.error).replace(/[<>&]/g, '')}: ${String(out.error_description ?? '').replace(/[<>&]/g, '')}</pre>`,
      )
    },
  })
  provider.proxy = false
  server.on('request', provider.callback())
  return {
    issuer,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        restoreWarn()
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}
