/**
 * A GitHub-Actions-shaped OIDC issuer on loopback: discovery, JWKS, tokens with the Actions claim
 * set, and the runner's token request endpoint (ACTIONS_ID_TOKEN_REQUEST_URL). Tests mint hostile
 * tokens with it too (alg none, HS256 with the public key, unknown keys, bad times).
 */
import {createHmac, generateKeyPairSync, randomBytes, randomUUID, type KeyObject} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import {SignJWT, exportJWK} from 'jose'

export interface GithubIssuer {
  issuer: string
  kid: string
  publicKey: KeyObject
  requestToken: string
  /** A token with the GitHub Actions claim set; `claims` override or add, `undefined` removes. */
  mint(
    claims?: Record<string, unknown>,
    opts?: {key?: KeyObject; kid?: string; alg?: string; exp?: number; iat?: number; nbf?: number},
  ): Promise<string>
  /** Number of JWKS fetches so far. */
  jwksFetches(): number
  stop(): Promise<void>
}

export function actionsClaims(issuer: string, audience: string): Record<string, unknown> {
  const runId = String(Math.floor(Math.random() * 1e10))
  return {
    jti: randomUUID(),
    sub: 'repo:acme/app:ref:refs/heads/main',
    aud: audience,
    ref: 'refs/heads/main',
    sha: randomBytes(20).toString('hex'),
    repository: 'acme/app',
    repository_owner: 'acme',
    repository_owner_id: '1001',
    repository_id: '2002',
    repository_visibility: 'private',
    run_id: runId,
    run_number: '42',
    run_attempt: '1',
    actor: 'octocat',
    actor_id: '3003',
    workflow: 'deploy',
    workflow_ref: 'acme/app/.github/workflows/deploy.yml@refs/heads/main',
    job_workflow_ref: 'acme/app/.github/workflows/deploy.yml@refs/heads/main',
    event_name: 'push',
    ref_type: 'branch',
    ref_protected: 'true',
    runner_environment: 'github-hosted',
    head_ref: '',
    base_ref: '',
    iss: issuer,
  }
}

/**
 * A CI provisioner of `issuer` (startGithubIssuer's, audience sshca-ci) whose one rule, deploy, grants
 * `principals` to acme/app for 10 minutes; `keyId` as the test needs it.
 */
export const deployProvisioner = (issuer: string, principals: string[], keyId = 'gha:${run_id}') => ({
  name: 'ci',
  type: 'oidc',
  issuer,
  audience: 'sshca-ci',
  rules: [{name: 'deploy', match: {repository: 'acme/app'}, certificate: {principals, ttl: '10m', keyId}}],
})

/** RS256 like GitHub by default; `es256` mints faster (benchmarks pre-mint tens of thousands). */
export async function startGithubIssuer(
  defaultAudience = 'sshca-ci',
  keyAlg: 'RS256' | 'ES256' = 'RS256',
): Promise<GithubIssuer> {
  const {privateKey, publicKey} =
    keyAlg === 'RS256'
      ? generateKeyPairSync('rsa', {modulusLength: 2048})
      : generateKeyPairSync('ec', {namedCurve: 'P-256'})
  const kid = randomBytes(8).toString('hex')
  const jwk = {...(await exportJWK(publicKey)), kid, alg: keyAlg, use: 'sig'}
  const requestToken = randomBytes(16).toString('hex')
  let fetches = 0
  let issuer = ''
  const mint: GithubIssuer['mint'] = async (claims = {}, opts = {}) => {
    const now = Math.floor(Date.now() / 1000)
    const payload: Record<string, unknown> = {...actionsClaims(issuer, defaultAudience), ...claims}
    for (const [k, v] of Object.entries(claims)) if (v === undefined) delete payload[k]
    payload.iat = opts.iat ?? now
    payload.nbf = opts.nbf ?? now - 5
    payload.exp = opts.exp ?? now + 300
    const alg = opts.alg ?? keyAlg
    if (alg === 'none') {
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
      return `${enc({alg: 'none', typ: 'JWT'})}.${enc(payload)}.`
    }
    if (alg === 'HS256-with-public-key') {
      // the classic confusion attack: an HMAC keyed with the issuer's public key
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url')
      const input = `${enc({alg: 'HS256', typ: 'JWT', kid})}.${enc(payload)}`
      const secret = publicKey.export({type: 'spki', format: 'pem'})
      return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`
    }
    return new SignJWT(payload).setProtectedHeader({alg, kid: opts.kid ?? kid, typ: 'JWT'}).sign(opts.key ?? privateKey)
  }
  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', issuer)
    const json = (status: number, body: unknown) => {
      res.writeHead(status, {'content-type': 'application/json'})
      res.end(JSON.stringify(body))
    }
    if (u.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks`,
        subject_types_supported: ['public', 'pairwise'],
        response_types_supported: ['id_token'],
        id_token_signing_alg_values_supported: [keyAlg],
        claims_supported: Object.keys(actionsClaims(issuer, '')),
      })
    }
    if (u.pathname === '/.well-known/jwks') {
      fetches++
      return json(200, {keys: [jwk]})
    }
    if (u.pathname === '/token') {
      if (!/^bearer /i.test(req.headers.authorization ?? '') || req.headers.authorization!.slice(7) !== requestToken)
        return json(401, {message: 'bad request token'})
      void mint(u.searchParams.has('audience') ? {aud: u.searchParams.get('audience')} : {}).then((value) =>
        json(200, {count: 1, value}),
      )
      return
    }
    json(404, {message: 'not found'})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  issuer = `http://127.0.0.1:${(server.address() as {port: number}).port}`
  return {
    get issuer() {
      return issuer
    },
    kid,
    publicKey,
    requestToken,
    mint,
    jwksFetches: () => fetches,
    stop: () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}
