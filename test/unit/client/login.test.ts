/**
 * `sshca login` in process (src/client/login/login.ts) against a scripted HTTPS CA that signs the key it
 * is sent (test/helpers/scripted-server.ts) and an ssh-agent in memory behind a real unix socket
 * (test/helpers/memory-agent.ts: OpenSSH's behaviour, or gpg-agent's and others' quirks). Time is the
 * test's clock, for login and the agent alike. What goes into the agent (key, certificate, comment,
 * lifetime) and what comes out (this context's expired and superseded certificates, nothing else);
 * the files written instead (--out, or the agentless files when the agent cannot hold a certificate)
 * with their modes and bytes; what is refused, by code, before anything is spent or added; --ensure's
 * reuse; which provisioner is chosen. The identity provider itself (browser, device flow, refresh
 * grant) is not run here: oidc.ts has its own tests, and these stop where a person would be asked.
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, type KeyObject} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync} from 'node:fs'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {SignJWT} from 'jose'
import {bootstrap} from '../../../src/client/setup/bootstrap.ts'
import {CaClient} from '../../../src/client/ca-api/ca-client.ts'
import {agentlessFiles, CONTEXT_FILE, loadContext, readContext, saveContext} from '../../../src/client/home/home.ts'
import {
  agentComment,
  login,
  obtainIdToken,
  REUSE_MARGIN_SECONDS,
  type LoginDeps,
  type LoginOptions,
} from '../../../src/client/login/login.ts'
import {managedSshConfigPath, mergeSshConfig} from '../../../src/client/local/ssh-config.ts'
import type {StoredRefresh, TokenStore} from '../../../src/client/home/token-store.ts'
import type {HttpFetch, LoginEvent} from '../../../src/client/login/oidc.ts'
import {certificateLine, signCertificate, type Certificate} from '../../../src/ssh/cert.ts'
import {PublicKey} from '../../../src/ssh/keys.ts'
import {generatePrivateKey, parsePrivateKeyFile, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {MemoryAgent, type MemoryAgentOptions} from '../../helpers/memory-agent.ts'
import {json, startScriptedCa, type Answer, type ScriptedCa} from '../../helpers/scripted-server.ts'
import {tempDir} from '../../helpers/tmp.ts'

const b64 = (k: PublicKey): string => k.blob.toString('base64')
const mode = (p: string): number => statSync(p).mode & 0o777
/** The test's clock, in seconds. */
const T = 1_800_000_000

/** What the scripted CA signs: a user certificate for the key sent, valid T-60 … T+3600 unless told. */
interface Issue {
  signer: PrivateKey
  type?: 'host' | 'user'
  publicKey?: PublicKey
  validAfter?: number
  validBefore?: number
}

describe('login in process (src/client/login/login.ts)', function () {
  this.timeout(60_000)
  let ca: ScriptedCa
  let home: string
  let savedHome: string | undefined
  const userCa = generatePrivateKey('ed25519')
  const userCa2 = generatePrivateKey('ed25519')
  const hostCa = generatePrivateKey('ed25519').publicKey
  let issue: Issue | Answer
  let provisioners: Answer
  let issued: Certificate[]
  let nowMs: number
  let agent: MemoryAgent
  let sock: string
  let server: Server
  let events: LoginEvent[]
  let stored: Map<string, StoredRefresh>
  /** Sign requests to refuse (401) before signing again. */
  let refuseSigns: number
  let agentConnections: number
  /** The identity provider (reached only through deps.interactive.fetch): its key, what it was sent. */
  const ISSUER = 'https://idp.example'
  let idpKey: KeyObject
  let grants: URLSearchParams[]
  /** The nonce of the last authorization URL the "browser" was given. */
  let nonce: string | null
  /** Run during each token request: the IdP's time passing, on the test's clock. */
  let duringGrant: () => void
  let deviceFlow: boolean
  /** Whether the IdP's token answers carry a refresh token. */
  let issueRefresh: boolean

  before(async () => {
    ca = await startScriptedCa()
    const scripted = ca.server.answer
    ca.server.answer = async (path, body) => {
      if (path === '/ssh/sign') {
        if (refuseSigns > 0) {
          refuseSigns--
          return json({status: 401, message: 'token already used'}, 401)
        }
        if (!('signer' in issue)) return issue
        const req = JSON.parse(body) as {publicKey: string}
        const cert = await signCertificate(
          {
            type: issue.type ?? 'user',
            publicKey: issue.publicKey ?? PublicKey.fromBlob(Buffer.from(req.publicKey, 'base64')),
            serial: 100n + BigInt(issued.length),
            keyId: 'alice@example.com',
            principals: ['alice'],
            validAfter: BigInt(issue.validAfter ?? T - 60),
            validBefore: BigInt(issue.validBefore ?? T + 3600),
          },
          keySigner(issue.signer.keyObject),
        )
        issued.push(cert)
        return json({crt: cert.blob.toString('base64')}, 201)
      }
      if (path.startsWith('/provisioners')) return provisioners
      return scripted(path, body)
    }
    savedHome = process.env.HOME
    idpKey = generateKeyPairSync('rsa', {modulusLength: 2048}).privateKey
  })
  after(async () => {
    process.env.HOME = savedHome
    await ca?.server.stop()
  })
  beforeEach(async () => {
    // ~/.ssh (the user's ssh config, known_hosts) is a temp folder's for each test
    process.env.HOME = tempDir('sshca-login-user-')
    home = join(tempDir('sshca-login-home-'), 'sshca')
    nowMs = T * 1000
    issue = {signer: userCa}
    issued = []
    events = []
    stored = new Map()
    refuseSigns = 0
    grants = []
    nonce = null
    duringGrant = () => undefined
    deviceFlow = false
    issueRefresh = true
    provisioners = json({
      provisioners: [
        {
          type: 'OIDC',
          name: 'corp',
          clientID: 'sshca',
          configurationEndpoint: 'https://idp.example/.well-known/openid-configuration',
        },
        {type: 'OIDC', name: 'ci', audience: 'sshca-ci', interactive: false},
      ],
      nextCursor: '',
    })
    ca.roots = json({userKey: [b64(userCa.publicKey)], hostKey: [b64(hostCa)]})
    ca.krl = {status: 404, body: ''}
    await bootstrap(home, {caUrl: ca.server.url, fingerprint: ca.fingerprint, context: 'demo'})
    await startAgent()
    ca.server.requests.length = 0
    ca.server.received.length = 0
  })
  afterEach(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()))
    // every login closes its connection to the CA, whatever happened
    await ca.server.allClosed()
  })

  async function startAgent(o: MemoryAgentOptions = {}): Promise<void> {
    if (server?.listening) await new Promise<void>((resolve) => server.close(() => resolve()))
    agent = new MemoryAgent({clock: () => nowMs, ...o})
    sock = join(tempDir('sshca-agent-'), 'agent.sock')
    agentConnections = 0
    server = createServer((s) => agent.serve(s))
    server.on('connection', (s) => {
      agentConnections++
      s.on('error', () => undefined)
    })
    await new Promise<void>((resolve) => server.listen(sock, resolve))
  }

  const store: TokenStore = {
    kind: 'file',
    get: async (k) => stored.get(k),
    // as the file store does: the file it created, the first time
    set: async (k, v) => {
      const created = stored.size === 0
      stored.set(k, v)
      return created ? {created: `/tokens/${k}`} : undefined
    },
    delete: async (k) => {
      stored.delete(k)
    },
    keys: async (p) => [...stored.keys()].filter((k) => k.startsWith(p)),
  }
  const idToken = async (n?: string | null) =>
    new SignJWT({email: 'alice@example.com', ...(n ? {nonce: n} : {})})
      .setProtectedHeader({alg: 'RS256', kid: 'k1'})
      .setIssuer(ISSUER)
      .setAudience('sshca')
      .setSubject('alice')
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(idpKey)
  /** Discovery, the token endpoint (refresh and code grants); a device endpoint that refuses, when offered. */
  const idp: HttpFetch = async (url, init) => {
    if (url === `${ISSUER}/.well-known/openid-configuration`)
      return Response.json({
        issuer: ISSUER,
        authorization_endpoint: `${ISSUER}/auth`,
        token_endpoint: `${ISSUER}/token`,
        jwks_uri: `${ISSUER}/jwks`,
        ...(deviceFlow ? {device_authorization_endpoint: `${ISSUER}/device`} : {}),
      })
    if (url === `${ISSUER}/device`) return Response.json({error: 'unauthorized_client'}, {status: 400})
    if (url === `${ISSUER}/token`) {
      const form = new URLSearchParams(init.body as URLSearchParams)
      grants.push(form)
      duringGrant()
      return Response.json({
        access_token: 'at',
        token_type: 'Bearer',
        expires_in: 300,
        id_token: await idToken(form.get('grant_type') === 'authorization_code' ? nonce : null),
        ...(issueRefresh ? {refresh_token: `r${grants.length + 1}`} : {}),
      })
    }
    return new Response('no', {status: 404})
  }
  /** A browser that signs in at once: it follows the authorization URL back to the loopback listener. */
  const browser = async (url: string): Promise<boolean> => {
    const u = new URL(url)
    nonce = u.searchParams.get('nonce')
    const back = new URL(u.searchParams.get('redirect_uri')!)
    back.searchParams.set('code', 'code-1')
    back.searchParams.set('state', u.searchParams.get('state')!)
    void fetch(back).then((r) => r.text())
    return true
  }
  const person = (over: Partial<LoginDeps['interactive']> = {}): LoginDeps['interactive'] => ({
    openBrowser: browser,
    notify: (e) => events.push(e),
    canPrompt: true,
    fetch: idp,
    ...over,
  })
  const deps = (over: Partial<LoginDeps> = {}): LoginDeps => ({
    home,
    env: {},
    agent: {socketPath: sock},
    clock: () => nowMs,
    tokenStore: async () => store,
    interactive: {
      openBrowser: async () => false,
      notify: (e) => events.push(e),
      canPrompt: false,
      fetch: async () => new Response('no identity provider here', {status: 503}),
    },
    ...over,
  })
  const run = (o: LoginOptions = {}, d: Partial<LoginDeps> = {}) => login({context: 'demo', ...o}, deps(d))
  const withToken = (o: LoginOptions = {}, d: Partial<LoginDeps> = {}) => run({identityToken: ' id-token\n', ...o}, d)
  const requests = () => ca.server.requests.map((r) => r.replace(/\?.*/, ''))
  const signRequests = () => requests().filter((r) => r === 'POST /ssh/sign').length
  /** Adds a user certificate from `signer` to the agent, as a previous login (or someone else) would have. */
  async function held(o: {
    signer?: PrivateKey
    validBefore: number
    validAfter?: number
    comment?: string
    keyId?: string
    principals?: string[]
    type?: 'user' | 'host'
  }): Promise<Certificate> {
    const key = generatePrivateKey('ed25519')
    const cert = await signCertificate(
      {
        type: o.type ?? 'user',
        publicKey: key.publicKey,
        serial: 7n,
        keyId: o.keyId ?? 'alice@example.com',
        principals: o.principals ?? ['alice'],
        validAfter: BigInt(o.validAfter ?? T - 7200),
        validBefore: BigInt(o.validBefore),
      },
      keySigner((o.signer ?? userCa).keyObject),
    )
    const c = agent.client()
    try {
      await c.addCertificate(key, cert, {comment: o.comment ?? 'sshca:demo:token'})
    } finally {
      c.close()
    }
    return cert
  }
  const agentCerts = () => agent.entries.map((e) => ({blob: e.blob, comment: e.comment, expiresAt: e.expiresAt}))
  /** The agent's requests that add something (17: a key, 25: constrained). */
  const adds = () => agent.requests.filter((t) => t === 17 || t === 25).length

  it('the comment names the context and provisioner (or "token")', () => {
    assert.equal(agentComment('demo', 'corp'), 'sshca:demo:corp')
    assert.equal(agentComment('demo', null), 'sshca:demo:token')
    assert.equal(REUSE_MARGIN_SECONDS, 600)
  })

  describe('with a token given (--identity-token-file)', () => {
    it('sends the new key and the trimmed token; key and certificate into the agent for exactly what is left of it', async () => {
      const r = await withToken()
      assert.equal(issued.length, 1)
      const cert = issued[0]!
      const sent = JSON.parse(ca.server.received.find((x) => x.request === 'POST /ssh/sign')!.body) as Record<
        string,
        unknown
      >
      assert.deepEqual(sent, {publicKey: b64(cert.publicKey), ott: 'id-token', certType: 'user'})
      assert.deepEqual(agentCerts(), [{blob: cert.blob, comment: 'sshca:demo:token', expiresAt: (T + 3600) * 1000}])
      assert.deepEqual(
        {...r, krl: null},
        {
          context: 'demo',
          caUrl: ca.server.url,
          provisioner: null,
          method: 'identity-token',
          skipped: false,
          certificate: {
            keyId: 'alice@example.com',
            principals: ['alice'],
            serial: '100',
            validAfter: new Date((T - 60) * 1000).toISOString(),
            validBefore: new Date((T + 3600) * 1000).toISOString(),
            secondsLeft: 3600,
            fingerprint: cert.publicKey.fingerprint(),
          },
          agent: {added: true, socket: sock, lifetimeSeconds: 3600, removed: [], fallback: null},
          files: null,
          refreshTokenStore: null,
          krl: null,
          caKeys: {refreshed: true, knownHosts: null, note: null},
        },
      )
      assert.notEqual(r.krl, null)
      // the published keys and the KRL were fetched beside the sign-in
      assert.deepEqual(requests().sort(), ['GET /roots', 'GET /ssh/krl', 'GET /ssh/roots', 'POST /ssh/sign'])
      // no provisioner chosen: the context remembers none
      assert.equal((await readContext(home, 'demo'))!.provisioner, undefined)
    })

    it("--provisioner names the certificate's agent comment", async () => {
      const r = await withToken({provisioner: 'ci'})
      assert.equal(r.provisioner, 'ci')
      assert.deepEqual(
        agentCerts().map((e) => e.comment),
        ['sshca:demo:ci'],
      )
    })

    it("takes out this context's expired certificates and those the new one supersedes; nothing else", async () => {
      const expired = await held({validBefore: T - 1})
      const expiredNow = await held({validBefore: T, keyId: 'old', principals: ['x']})
      const older = await held({validBefore: T + 100})
      const otherCa = await held({validBefore: T - 1, signer: generatePrivateKey('ed25519')})
      const otherPrincipals = await held({validBefore: T + 100, principals: ['alice', 'root']})
      const longer = await held({validBefore: T + 7200})
      const r = await withToken()
      const view = (c: Certificate, why: string) => ({
        keyId: c.keyId,
        serial: c.serial.toString(),
        principals: [...c.principals],
        why,
      })
      assert.deepEqual(r.agent.removed, [
        view(expired, 'expired'),
        view(expiredNow, 'expired'),
        view(older, 'superseded'),
      ])
      assert.deepEqual(
        agent.entries.map((e) => e.blob),
        [otherCa.blob, otherPrincipals.blob, longer.blob, issued[0]!.blob],
      )
    })

    it("a certificate of the CA's previous user key is this context's too: taken out when expired", async () => {
      const expired = await held({validBefore: T - 1, signer: userCa})
      ca.roots = json({userKey: [b64(userCa2.publicKey)], hostKey: [b64(hostCa)]})
      issue = {signer: userCa2}
      const r = await withToken()
      assert.deepEqual(
        r.agent.removed.map((x) => x.serial),
        [expired.serial.toString()],
      )
      assert.deepEqual(
        agent.entries.map((e) => e.blob),
        [issued[0]!.blob],
      )
      // the context now trusts the key the CA publishes
      assert.deepEqual((await readContext(home, 'demo'))!.userCaKeys.length, 1)
    })

    it('an empty token, or a token and --github-actions: refused before the CA is asked', async () => {
      await rejectsCode(run({identityToken: ' \n'}), 'ERR_INPUT')
      await rejectsCode(run({identityToken: 'x', githubActions: true}), 'ERR_USAGE')
      assert.equal(signRequests(), 0)
      assert.equal(adds(), 0)
    })

    for (const [what, bad] of [
      ['a host certificate', () => ({signer: userCa, type: 'host'})],
      ['a certificate of another key', () => ({signer: userCa, publicKey: generatePrivateKey().publicKey})],
      ['a certificate from a key the CA does not publish', () => ({signer: userCa2})],
      ['something that is not a certificate', () => json({crt: Buffer.from('nonsense').toString('base64')}, 201)],
      // once reported as a login that worked, the key held for one second
      ['a certificate already expired', () => ({signer: userCa, validAfter: T - 7200, validBefore: T})],
      [
        'a certificate valid only from tomorrow',
        () => ({signer: userCa, validAfter: T + 86400, validBefore: T + 90000}),
      ],
    ] as const) {
      it(`refuses ${what} (ERR_CA_BAD_RESPONSE): nothing added, nothing written`, async () => {
        issue = bad() as Issue | Answer
        await rejectsCode(withToken(), 'ERR_CA_BAD_RESPONSE')
        assert.equal(adds(), 0)
        assert.deepEqual(agent.entries, [])
        assert.equal(existsSync(agentlessFiles({dir: join(home, 'contexts', 'demo')}).key), false)
      })
    }

    it("a CA's clock a few minutes ahead of this one: a certificate valid from then is still taken", async () => {
      issue = {signer: userCa, validAfter: T + 240, validBefore: T + 3600}
      const r = await withToken()
      assert.equal(r.agent.added, true)
    })

    it('a CA rotating its user key: checked against what it publishes now; if that fails, against what was remembered', async () => {
      ca.roots = json({userKey: [b64(userCa2.publicKey)], hostKey: [b64(hostCa)]})
      issue = {signer: userCa2}
      await withToken()
      assert.equal(agent.entries.length, 1)
      // /ssh/roots failing: the keys remembered (now userCa2's) decide
      ca.roots = {status: 500, body: ''}
      issue = {signer: userCa}
      await rejectsCode(withToken(), 'ERR_CA_BAD_RESPONSE')
      issue = {signer: userCa2}
      const r = await withToken()
      assert.equal(r.caKeys?.refreshed, false)
      assert.ok(r.caKeys?.note)
    })

    it('a CA that publishes no user CA key: the certificate cannot be checked against one, and is used', async () => {
      ca.roots = json({userKey: [], hostKey: [b64(hostCa)]})
      issue = {signer: userCa2}
      const r = await withToken()
      assert.equal(r.agent.added, true)
    })

    it('a refused sign-in returns once the requests beside it are done: none is left to open a connection after', async () => {
      issue = json({status: 403, message: 'not allowed'}, 403)
      await rejectsCode(withToken(), 'ERR_CA_DENIED')
      // the KRL and the published keys were asked for before login returned, not after it closed its client
      assert.deepEqual(requests().sort(), ['GET /roots', 'GET /ssh/krl', 'GET /ssh/roots', 'POST /ssh/sign'])
    })

    it('401: ERR_TOKEN_INVALID, explained with the audiences the CA accepts; 403 passes as ERR_CA_DENIED without asking', async () => {
      issue = json({status: 401, message: 'the token was rejected: audience'}, 401)
      await rejectsCode(withToken(), 'ERR_TOKEN_INVALID', {status: 401})
      assert.equal(requests().includes('GET /provisioners'), true)
      ca.server.requests.length = 0
      issue = json({status: 403, message: 'not allowed'}, 403)
      await rejectsCode(withToken(), 'ERR_CA_DENIED', {status: 403, caMessage: 'not allowed'})
      assert.equal(requests().includes('GET /provisioners'), false)
      assert.equal(adds(), 0)
    })
  })

  describe('--out: files instead of the agent', () => {
    it('the key 0600 and the certificate 0644, the agent not even asked', async () => {
      const dir = tempDir('sshca-out-')
      const out = join(dir, 'id_ci')
      const r = await withToken({out})
      const cert = issued[0]!
      const {key, comment} = parsePrivateKeyFile(readFileSync(out, 'utf8'))
      assert.ok(key.publicKey.equals(cert.publicKey))
      assert.equal(comment, 'sshca:demo:token')
      assert.equal(mode(out), 0o600)
      assert.equal(readFileSync(`${out}-cert.pub`, 'utf8'), `${certificateLine(cert, 'sshca:demo:token')}\n`)
      assert.equal(mode(`${out}-cert.pub`), 0o644)
      assert.deepEqual(r.files, {key: out, certificate: `${out}-cert.pub`})
      assert.deepEqual(r.agent, {added: false, socket: null, lifetimeSeconds: null, removed: [], fallback: null})
      assert.deepEqual(agent.requests, [])
      assert.equal(agentConnections, 0)
    })

    it('--out where either file is a symlink: ERR_UNSAFE_PATH before the token is spent', async () => {
      const dir = tempDir('sshca-out-')
      const target = join(dir, 'elsewhere')
      writeFileSync(target, 'keep')
      symlinkSync(target, join(dir, 'a'))
      symlinkSync(target, join(dir, 'b-cert.pub'))
      await rejectsCode(withToken({out: join(dir, 'a')}), 'ERR_UNSAFE_PATH')
      await rejectsCode(withToken({out: join(dir, 'b')}), 'ERR_UNSAFE_PATH')
      assert.equal(signRequests(), 0)
      assert.equal(readFileSync(target, 'utf8'), 'keep')
    })
  })

  describe('an agent that cannot hold the certificate: the agentless files', () => {
    const files = () => agentlessFiles({dir: join(home, 'contexts', 'demo')})

    for (const [quirk, o] of [
      ['refuses certificates', {certificates: 'refuse'}],
      ['keeps the key but forgets the certificate (gpg-agent)', {certificates: 'drop'}],
      ['refuses a lifetime', {lifetimes: 'refuse'}],
    ] as const) {
      it(`an agent that ${quirk}: 0600 key and 0644 certificate files, the context remembers why`, async () => {
        await startAgent(o)
        const r = await withToken()
        const cert = issued[0]!
        const f = files()
        assert.ok(parsePrivateKeyFile(readFileSync(f.key, 'utf8')).key.publicKey.equals(cert.publicKey))
        assert.equal(mode(f.key), 0o600)
        assert.equal(readFileSync(f.certificate, 'utf8'), `${certificateLine(cert, 'sshca:demo:token')}\n`)
        assert.equal(mode(f.certificate), 0o644)
        assert.deepEqual(r.files, f)
        assert.equal(r.agent.added, false)
        assert.equal(r.agent.socket, sock)
        assert.equal(r.agent.fallback?.sshConfig, 'not-installed')
        // the agent is left without our key
        assert.deepEqual(
          agent.entries.filter((e) => e.publicKey.equals(cert.publicKey)),
          [],
        )
        const ctx = await readContext(home, 'demo')
        assert.deepEqual(ctx!.agentless, {
          reason: r.agent.fallback!.reason,
          socket: sock,
          since: new Date(nowMs).toISOString(),
        })
      })
    }

    it('each quirk is told apart in the reason remembered', async () => {
      const reasons = new Set<string>()
      for (const o of [{certificates: 'refuse'}, {certificates: 'drop'}, {lifetimes: 'refuse'}] as const) {
        await startAgent(o)
        reasons.add((await withToken({force: true})).agent.fallback!.reason)
        assert.equal((await readContext(home, 'demo'))!.agentless!.reason, [...reasons].at(-1))
      }
      assert.equal(reasons.size, 3)
    })

    it('the same agent next time, and every time after: straight to the files, the agent not asked, the context not rewritten', async () => {
      await startAgent({certificates: 'refuse'})
      const first = await withToken()
      const remembered = (await readContext(home, 'demo'))!.agentless
      assert.equal(remembered!.socket, sock)
      const file = join(home, 'contexts', 'demo', CONTEXT_FILE)
      const ino = statSync(file).ino
      for (const n of [1, 2]) {
        agent.requests.length = 0
        agentConnections = 0
        nowMs += 60_000
        const r = await withToken()
        assert.equal(agentConnections, 0, `login ${n + 1} did not connect to the agent`)
        assert.deepEqual(r.agent, first.agent, `login ${n + 1} reports the agent that cannot hold it`)
        assert.equal(readFileSync(files().certificate, 'utf8'), `${certificateLine(issued[n]!, 'sshca:demo:token')}\n`)
        // nothing new to remember: the context is not rewritten
        assert.equal(statSync(file).ino, ino)
        assert.deepEqual((await readContext(home, 'demo'))!.agentless, remembered)
      }
    })

    for (const gone of ['key', 'certificate'] as const) {
      it(`an agent that holds certificates again: used, the files removed (the ${gone} already was), the context no longer agentless`, async () => {
        await startAgent({certificates: 'refuse'})
        await withToken()
        rmSync(files()[gone])
        await startAgent()
        const r = await withToken()
        assert.equal(r.agent.added, true)
        assert.equal(existsSync(files().key), false)
        assert.equal(existsSync(files().certificate), false)
        assert.equal((await readContext(home, 'demo'))!.agentless, undefined)
      })
    }

    /** While the login's sign request is answered, the context is bootstrapped again for another CA; then `after`. */
    const rebootstrapDuringSign = async (after: () => void | Promise<void> = () => undefined) => {
      const other = await startScriptedCa()
      other.roots = json({userKey: [b64(userCa2.publicKey)], hostKey: [b64(hostCa)]})
      const answer = ca.server.answer
      ca.server.answer = async (path, body) => {
        if (path === '/ssh/sign') {
          ca.server.answer = answer
          await bootstrap(home, {caUrl: other.server.url, fingerprint: other.fingerprint, context: 'demo', force: true})
          await after()
        }
        return answer(path, body)
      }
      return {other, done: async () => ((ca.server.answer = answer), await other.server.stop())}
    }

    it("a login that began before bootstrap --force: the old CA's key and certificate are not written into the new context (ERR_CONTEXT_NOT_FOUND)", async () => {
      await startAgent({certificates: 'refuse'})
      const {other, done} = await rebootstrapDuringSign()
      try {
        await rejectsCode(withToken(), 'ERR_CONTEXT_NOT_FOUND', {}, /bootstrapped again while sshca login ran/)
        const ctx = (await readContext(home, 'demo'))!
        assert.equal(ctx.caUrl, other.server.url)
        assert.equal(ctx.agentless, undefined)
        assert.equal(existsSync(files().key), false)
        assert.equal(existsSync(files().certificate), false)
      } finally {
        await done()
      }
    })

    it("a login that began before bootstrap --force, with an agent that holds certificates again: the new context's files and state stay", async () => {
      await startAgent({certificates: 'refuse'})
      await withToken()
      await startAgent()
      const theirs = {key: 'the new context key\n', certificate: 'the new context certificate\n'}
      const {done} = await rebootstrapDuringSign(async () => {
        // the new context is agentless too, with files of its own
        writeFileSync(files().key, theirs.key, {mode: 0o600})
        writeFileSync(files().certificate, theirs.certificate)
        const fresh = (await readContext(home, 'demo'))!
        await saveContext({...fresh, agentless: {reason: 'its own', socket: null, since: 'then'}})
      })
      try {
        const r = await withToken({force: true})
        assert.equal(r.agent.added, true)
        assert.deepEqual(
          {key: readFileSync(files().key, 'utf8'), certificate: readFileSync(files().certificate, 'utf8')},
          theirs,
        )
        assert.deepEqual((await readContext(home, 'demo'))!.agentless, {reason: 'its own', socket: null, since: 'then'})
      } finally {
        await done()
      }
    })

    it('no agent at all: refused (ERR_AGENT_UNAVAILABLE) unless ssh is configured to read the files', async () => {
      const gone = join(tempDir('sshca-noagent-'), 'agent.sock')
      await rejectsCode(withToken({}, {agent: {socketPath: gone}}), 'ERR_AGENT_UNAVAILABLE')
      assert.equal(signRequests(), 0)
      const {text} = mergeSshConfig('', {context: 'demo', pattern: '*.example.com', krlFile: null, matchFinal: true})
      mkdirSync(home, {recursive: true})
      writeFileSync(managedSshConfigPath(home), text)
      const r = await withToken({}, {agent: {socketPath: gone}})
      assert.deepEqual(r.agent.socket, null)
      assert.deepEqual(r.agent.removed, [])
      // the reason names the agent that could not be reached
      assert.ok(r.agent.fallback!.reason.includes(gone))
      assert.equal(r.agent.fallback?.sshConfig, 'names-them')
      assert.deepEqual(r.files, files())
      assert.equal((await readContext(home, 'demo'))!.agentless!.socket, null)
    })

    it('an agent that accepts a lifetime but keeps the key past it: files, after a sign-in long enough to tell', async () => {
      await startAgent({lifetimes: 'ignore'})
      // a person signing in: the existing-certificate check, the probe, then the refresh grant
      stored.set('demo/corp', {refreshToken: 'r', issuer: 'https://idp.example', clientId: 'sshca', savedAt: ''})
      const signIn = run(
        {},
        {
          interactive: {
            ...deps().interactive,
            fetch: async () => {
              // the IdP takes its time (by the test's clock)
              nowMs += 5_000
              return new Response('down', {status: 503})
            },
          },
        },
      )
      await rejectsCode(signIn, 'ERR_LOGIN_NO_TERMINAL')
      // the probe key is gone again
      assert.deepEqual(agent.entries, [])
    })
  })

  describe('--ensure', () => {
    it('a valid certificate of the context in the agent: nothing asked of the CA', async () => {
      const cert = await held({validBefore: T + 3600})
      const r = await run({ensure: true})
      assert.equal(r.skipped, true)
      assert.equal(r.certificate.serial, cert.serial.toString())
      assert.deepEqual(ca.server.requests, [])
    })

    it('a lock left by a login that ran longer than the longest sign-in (its timeout and a minute) is taken over', async () => {
      const lock = join(home, 'contexts', 'demo', 'login.lock')
      // held by a live process (this one), but 71 s old by the test's clock: past a 10 s sign-in's 70 s
      writeFileSync(lock, `${process.pid}\n`)
      const at = (nowMs - 71_000) / 1000
      utimesSync(lock, at, at)
      const r = await withToken({ensure: true}, {interactive: {...deps().interactive, timeoutMs: 10_000}})
      assert.equal(r.skipped, false)
      assert.equal(existsSync(lock), false)
    })

    it('a certificate that another login adds just before this one takes the lock: used, nothing signed', async () => {
      // that login let the lock go between this one's look at the agent and its taking the lock, so
      // this one never waited: once, it signed in again (with a spent token, under Match exec)
      const cert = await held({validBefore: T + 3600})
      const hidden = agent.entries.splice(0)
      const handle = (agent as unknown as {handle: (m: Buffer) => Buffer}).handle.bind(agent)
      ;(agent as unknown as {handle: (m: Buffer) => Buffer}).handle = (m) => {
        const reply = handle(m)
        if (m[0] === 11 && hidden.length > 0) agent.entries.push(...hidden.splice(0))
        return reply
      }
      const r = await withToken({ensure: true})
      assert.equal(r.skipped, true)
      assert.equal(r.certificate.serial, cert.serial.toString())
      assert.equal(signRequests(), 0)
    })

    it('none: signs in, once, holding the context lock, and lets it go', async () => {
      const r = await withToken({ensure: true})
      assert.equal(r.skipped, false)
      assert.equal(signRequests(), 1)
      assert.equal(existsSync(join(home, 'contexts', 'demo', 'login.lock')), false)
    })
  })

  describe('a person signing in (stops where the person would be asked)', () => {
    /** Answers as if a previous login with `name` had put its certificate into the agent. */
    const reused = async (name: string, left = REUSE_MARGIN_SECONDS + 1) =>
      held({validBefore: T + left, comment: `sshca:demo:${name}`})

    it('a certificate of this provisioner in the agent with more than the margin left: reused, nothing signed', async () => {
      const cert = await reused('corp')
      const r = await run()
      assert.equal(r.method, 'existing')
      assert.equal(r.skipped, true)
      assert.equal(r.provisioner, 'corp')
      assert.equal(r.certificate.serial, cert.serial.toString())
      assert.equal(r.certificate.secondsLeft, REUSE_MARGIN_SECONDS + 1)
      assert.deepEqual(r.agent, {added: false, socket: sock, lifetimeSeconds: null, removed: [], fallback: null})
      // the published keys were fetched to tell whether it is still from a trusted key
      assert.deepEqual(r.caKeys, {refreshed: true, knownHosts: null, note: null})
      assert.equal(signRequests(), 0)
    })

    for (const [what, setUp] of [
      ['the margin left exactly', () => reused('corp', REUSE_MARGIN_SECONDS)],
      ["another provisioner's", () => reused('other')],
      ['one not valid yet', () => held({validBefore: T + 3600, validAfter: T + 1, comment: 'sshca:demo:corp'})],
      ['a host certificate', () => held({validBefore: T + 3600, type: 'host', comment: 'sshca:demo:corp'})],
      ['one from another CA', () => held({validBefore: T + 3600, signer: userCa2, comment: 'sshca:demo:corp'})],
    ] as const) {
      it(`${what}: not reused (a sign-in is needed, and no one can be asked here)`, async () => {
        await setUp()
        await rejectsCode(run(), 'ERR_LOGIN_NO_TERMINAL')
        assert.equal(signRequests(), 0)
      })
    }

    it('one valid from this very second: reused', async () => {
      await held({validBefore: T + 3600, validAfter: T, comment: 'sshca:demo:corp'})
      assert.equal((await run()).skipped, true)
    })

    it('--identity names whom the reused certificate must be for (principal or key ID)', async () => {
      await reused('corp')
      assert.equal((await run({identity: 'alice'})).skipped, true)
      assert.equal((await run({identity: 'alice@example.com'})).skipped, true)
      await rejectsCode(run({identity: 'bob'}), 'ERR_LOGIN_NO_TERMINAL')
    })

    it('--force: never reused', async () => {
      await reused('corp')
      await rejectsCode(run({force: true}), 'ERR_LOGIN_NO_TERMINAL')
    })

    it('a certificate of a user CA key the CA no longer publishes: not reused', async () => {
      await reused('corp')
      ca.roots = json({userKey: [b64(userCa2.publicKey)], hostKey: [b64(hostCa)]})
      await rejectsCode(run(), 'ERR_LOGIN_NO_TERMINAL')
    })

    it('a saved refresh token for this IdP and client is tried first; one that fails is forgotten', async () => {
      stored.set('demo/corp', {refreshToken: 'r1', issuer: 'https://idp.example', clientId: 'sshca', savedAt: 'x'})
      stored.set('demo/other', {refreshToken: 'r2', issuer: 'https://idp.example', clientId: 'sshca', savedAt: 'x'})
      const asked: string[] = []
      const interactive = {
        ...deps().interactive,
        fetch: async (url: string) => {
          asked.push(String(url))
          return new Response('down', {status: 503})
        },
      }
      await rejectsCode(run({}, {interactive}), 'ERR_LOGIN_NO_TERMINAL')
      // the provisioner's issuer, its discovery document's URL without the well-known suffix
      assert.equal(asked[0], 'https://idp.example/.well-known/openid-configuration')
      assert.deepEqual([...stored.keys()], ['demo/other'])
      assert.deepEqual(
        events.map((e) => e.type),
        ['refreshing', 'refresh_failed'],
      )
    })

    it('a refresh token saved for another IdP or client is not sent', async () => {
      for (const saved of [
        {refreshToken: 'r', issuer: 'https://other-idp.example', clientId: 'sshca', savedAt: 'x'},
        {refreshToken: 'r', issuer: 'https://idp.example', clientId: 'other', savedAt: 'x'},
      ]) {
        stored.set('demo/corp', saved)
        events = []
        let asked = 0
        const interactive = {
          ...deps().interactive,
          fetch: async () => {
            asked++
            return new Response('down', {status: 503})
          },
        }
        await rejectsCode(run({}, {interactive}), 'ERR_LOGIN_NO_TERMINAL')
        assert.equal(asked, 0)
        assert.deepEqual(events, [])
      }
    })

    describe('which provisioner', () => {
      const corp = {type: 'OIDC', name: 'corp', clientID: 'sshca'}
      const eng = {type: 'oidc', name: 'eng', clientID: 'sshca-eng'}
      const ci = {type: 'OIDC', name: 'ci', audience: 'sshca-ci', interactive: false}
      const people = {type: 'OIDC', name: 'people-ci', clientID: 'x', interactive: false}
      const list = (...p: object[]) => json({provisioners: p, nextCursor: ''})
      /** Which provisioner login took: the one whose certificate it found in the agent. */
      async function chosen(o: LoginOptions = {}, d: Partial<LoginDeps> = {}): Promise<string | null> {
        for (const n of ['corp', 'eng']) await reused(n)
        return (await run(o, d)).provisioner
      }

      it('the only one people sign in with (OIDC, any case, with a client id, not marked non-interactive)', async () => {
        provisioners = list(ci, people, {type: 'OIDC', name: 'no-client'}, eng, {
          type: 'JWK',
          name: 'jwk',
          clientID: 'k',
        })
        assert.equal(await chosen(), 'eng')
      })

      it('--provisioner names it; one that is missing or not for people is refused', async () => {
        provisioners = list(corp, eng, ci)
        assert.equal(await chosen({provisioner: 'eng'}), 'eng')
        await rejectsCode(run({provisioner: 'nope'}), 'ERR_PROVISIONER_NOT_FOUND')
        await rejectsCode(run({provisioner: 'ci'}), 'ERR_USAGE')
      })

      it('several: the one the context last used, else the person chooses, else ERR_PROVISIONER_AMBIGUOUS', async () => {
        provisioners = list(corp, eng)
        await rejectsCode(run(), 'ERR_PROVISIONER_AMBIGUOUS')
        let offered: string[] = []
        const choose = async (names: string[]) => {
          offered = names
          return 'eng'
        }
        assert.equal(await chosen({}, {choose}), 'eng')
        assert.deepEqual(offered, ['corp', 'eng'])
        const ctx = (await readContext(home, 'demo'))!
        await saveContext({...ctx, provisioner: 'eng'})
        assert.equal(await run().then((r) => r.provisioner), 'eng')
        // a remembered one the CA no longer has: as if none were remembered
        await saveContext({...ctx, provisioner: 'gone'})
        await rejectsCode(run(), 'ERR_PROVISIONER_AMBIGUOUS')
      })

      it('none people can sign in with: ERR_PROVISIONER_NOT_FOUND', async () => {
        provisioners = list(ci, people)
        await rejectsCode(run(), 'ERR_PROVISIONER_NOT_FOUND')
      })
    })
  })
  describe('a person signing in (the identity provider through the fetch given)', () => {
    const saved = (refreshToken = 'r1'): StoredRefresh => ({
      refreshToken,
      issuer: ISSUER,
      clientId: 'sshca',
      savedAt: 'x',
    })

    it('a saved refresh token: a fresh ID token without the person, the new refresh token kept, the provisioner remembered', async () => {
      stored.set('demo/corp', saved())
      duringGrant = () => (nowMs += 1000)
      const r = await run({}, {interactive: person({openBrowser: async () => assert.fail('no browser for a refresh')})})
      assert.deepEqual(
        grants.map((g) => [g.get('grant_type'), g.get('refresh_token')]),
        [['refresh_token', 'r1']],
      )
      const sent = JSON.parse(ca.server.received.find((x) => x.request === 'POST /ssh/sign')!.body) as {ott: string}
      assert.equal(sent.ott.split('.').length, 3)
      assert.deepEqual([r.method, r.provisioner, r.refreshTokenStore], ['refresh', 'corp', 'file'])
      assert.deepEqual(stored.get('demo/corp'), {...saved('r2'), savedAt: new Date(nowMs).toISOString()})
      assert.deepEqual(
        events.map((e) => e.type),
        ['refreshing'],
      )
      assert.deepEqual(
        agent.entries.map((e) => e.comment),
        ['sshca:demo:corp'],
      )
      assert.equal((await readContext(home, 'demo'))!.provisioner, 'corp')
      // the next login changes nothing in the context: it already names the provisioner
      const file = join(home, 'contexts', 'demo', CONTEXT_FILE)
      const ino = statSync(file).ino
      await run({force: true}, {interactive: person()})
      assert.equal(statSync(file).ino, ino)
    })

    it("the CA refuses a refresh's ID token (step-ca: its nonce was seen): the person signs in again, once", async () => {
      stored.set('demo/corp', saved())
      refuseSigns = 1
      const r = await run({identity: 'alice'}, {interactive: person()})
      assert.equal(r.method, 'browser')
      assert.equal(signRequests(), 2)
      assert.deepEqual(
        grants.map((g) => g.get('grant_type')),
        ['refresh_token', 'authorization_code'],
      )
      assert.deepEqual(events.map((e) => e.type).slice(0, 2), ['refreshing', 'refresh_refused_by_ca'])
      // refused again: no third attempt
      stored.set('demo/corp', saved())
      refuseSigns = 2
      await rejectsCode(run({force: true}, {interactive: person()}), 'ERR_TOKEN_REPLAYED')
      // a token given is never retried, nor a refresh the CA denies (403)
      refuseSigns = 1
      ca.server.requests.length = 0
      await rejectsCode(withToken(), 'ERR_TOKEN_REPLAYED')
      assert.equal(signRequests(), 1)
      stored.set('demo/corp', saved())
      issue = json({status: 403, message: 'no'}, 403)
      ca.server.requests.length = 0
      await rejectsCode(run({force: true}, {interactive: person()}), 'ERR_CA_DENIED')
      assert.equal(signRequests(), 1)
    })

    it('the browser: the authorization URL opened (with the login hint), the refresh token saved, said once', async () => {
      let opened = ''
      const r = await run(
        {identity: 'alice@example.com'},
        {
          interactive: person({
            openBrowser: async (url) => {
              opened = url
              return browser(url)
            },
          }),
        },
      )
      assert.equal(r.method, 'browser')
      const u = new URL(opened)
      assert.equal(u.origin + u.pathname, `${ISSUER}/auth`)
      assert.equal(u.searchParams.get('login_hint'), 'alice@example.com')
      assert.deepEqual(
        grants.map((g) => g.get('grant_type')),
        ['authorization_code'],
      )
      assert.deepEqual(stored.get('demo/corp'), {
        refreshToken: 'r2',
        issuer: ISSUER,
        clientId: 'sshca',
        savedAt: new Date(nowMs).toISOString(),
      })
      assert.deepEqual(
        events.filter((e) => e.type === 'refresh_token_file'),
        [{type: 'refresh_token_file', file: '/tokens/demo/corp'}],
      )
      assert.equal(agent.entries.length, 1)
    })

    it('no browser here can reach the loopback: the device flow when the IdP offers it, else the browser', async () => {
      const why = 'an SSH session'
      await run({}, {interactive: person({noLocalBrowser: why})})
      assert.deepEqual(
        events.filter((e) => e.type === 'no_local_browser'),
        [{type: 'no_local_browser', reason: why, usingDevice: false}],
      )
      // (no refresh token from that sign-in: a person is asked again)
      stored.clear()
      events = []
      deviceFlow = true
      // the device endpoint refuses this client: the device flow was taken, not the browser
      await rejectsCode(
        run(
          {force: true},
          {interactive: person({noLocalBrowser: why, openBrowser: async () => assert.fail('no browser')})},
        ),
        'ERR_IDP_ERROR',
      )
      assert.deepEqual(
        events.filter((e) => e.type === 'no_local_browser'),
        [{type: 'no_local_browser', reason: why, usingDevice: true}],
      )
      // --console: the device flow, without asking the IdP first
      stored.clear()
      events = []
      await rejectsCode(
        run({force: true, console: true}, {interactive: person({openBrowser: async () => assert.fail('no browser')})}),
        'ERR_IDP_ERROR',
      )
      assert.deepEqual(events, [])
    })

    it('a provisioner with a client secret and scopes: both sent to the IdP', async () => {
      provisioners = json({
        provisioners: [
          {
            type: 'OIDC',
            name: 'corp',
            clientID: 'sshca',
            clientSecret: 's3cret',
            scopes: ['openid', 'email'],
            configurationEndpoint: `${ISSUER}/.well-known/openid-configuration`,
          },
        ],
        nextCursor: '',
      })
      stored.set('demo/corp', saved())
      await run({}, {interactive: person()})
      assert.deepEqual(
        grants.map((g) => [g.get('client_secret'), g.get('scope')]),
        [['s3cret', 'openid email']],
      )
    })

    it('an IdP that gives no refresh token: nothing saved; a refresh that brings none keeps the old one', async () => {
      issueRefresh = false
      await run({}, {interactive: person()})
      assert.deepEqual([...stored.keys()], [])
      stored.set('demo/corp', saved('r1'))
      const r = await run({force: true}, {interactive: person()})
      assert.equal(r.method, 'refresh')
      assert.equal(stored.get('demo/corp')!.refreshToken, 'r1')
    })

    it('a browser sign-in whose ID token the CA refuses: not retried (only a refresh is)', async () => {
      refuseSigns = 2
      await rejectsCode(run({}, {interactive: person()}), 'ERR_TOKEN_REPLAYED')
      assert.equal(signRequests(), 1)
    })

    it('--out with a person signing in: no agent to probe, the files written', async () => {
      const out = join(tempDir('sshca-out-'), 'id')
      stored.set('demo/corp', saved())
      const r = await run({out}, {interactive: person()})
      assert.deepEqual(r.files, {key: out, certificate: `${out}-cert.pub`})
      assert.equal(agentConnections, 0)
    })

    it('--console with no local browser either: the device flow, the IdP not asked whether it has one', async () => {
      deviceFlow = true
      await rejectsCode(
        run(
          {console: true},
          {interactive: person({noLocalBrowser: 'no display', openBrowser: async () => assert.fail()})},
        ),
        'ERR_IDP_ERROR',
      )
      assert.deepEqual(events, [])
    })

    it('an agent that honours lifetimes: told apart during the sign-in; the probe key gone, the certificate added', async () => {
      duringGrant = () => (nowMs += 3000)
      const r = await run({}, {interactive: person()})
      assert.equal(r.agent.added, true)
      assert.deepEqual(
        agent.entries.map((e) => e.blob),
        [issued[0]!.blob],
      )
    })

    it('an agent that keeps a key past its lifetime: the certificate goes to the files instead', async () => {
      await startAgent({lifetimes: 'ignore'})
      duringGrant = () => (nowMs += 3000)
      const r = await run({}, {interactive: person()})
      assert.equal(r.agent.added, false)
      assert.deepEqual(r.files, agentlessFiles({dir: join(home, 'contexts', 'demo')}))
      assert.deepEqual(agent.entries, [])
      // the reason names the agent
      assert.ok(r.agent.fallback!.reason.includes(sock))
      // a sign-in too quick to tell: the agent is given the benefit of the doubt
      await startAgent({lifetimes: 'ignore'})
      duringGrant = () => (nowMs += 1000)
      assert.equal((await run({force: true}, {interactive: person()})).agent.added, true)
    })
  })

  describe('GitHub Actions (--github-actions)', () => {
    const env = {ACTIONS_ID_TOKEN_REQUEST_URL: 'https://pipelines.example/token', ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'b'}
    let audiences: string[]
    const actions = (o: LoginOptions = {}) =>
      run(
        {githubActions: true, ...o},
        {
          env,
          interactive: person({
            fetch: async (url) => {
              audiences.push(new URL(url).searchParams.get('audience')!)
              return Response.json({value: 'gh-job-token'})
            },
          }),
        },
      )
    const gh = {
      type: 'OIDC',
      name: 'actions',
      audience: 'sshca-gh',
      configurationEndpoint: 'https://token.actions.githubusercontent.com/.well-known/openid-configuration',
    }
    const list = (...p: object[]) => json({provisioners: p, nextCursor: ''})
    beforeEach(() => {
      audiences = []
    })

    it("the job's token for the audience of the CA's GitHub provisioner", async () => {
      provisioners = list({type: 'OIDC', name: 'corp', clientID: 'sshca'}, gh)
      const r = await actions()
      assert.deepEqual(audiences, ['sshca-gh'])
      const sent = JSON.parse(ca.server.received.find((x) => x.request === 'POST /ssh/sign')!.body) as {ott: string}
      assert.equal(sent.ott, 'gh-job-token')
      assert.deepEqual([r.method, r.provisioner], ['github-actions', null])
      assert.deepEqual(
        agent.entries.map((e) => e.comment),
        ['sshca:demo:token'],
      )
    })

    it('--audience as given, without asking the CA; --provisioner: its audience, else its client id', async () => {
      await actions({audience: 'mine'})
      assert.deepEqual(audiences, ['mine'])
      assert.equal(requests().includes('GET /provisioners'), false)
      provisioners = list(gh, {type: 'OIDC', name: 'ci2', clientID: 'ci2-client', interactive: false})
      assert.equal((await actions({provisioner: 'ci2', force: true})).provisioner, 'ci2')
      await actions({provisioner: 'actions', force: true})
      assert.deepEqual(audiences, ['mine', 'ci2-client', 'sshca-gh'])
      await rejectsCode(actions({provisioner: 'nope'}), 'ERR_PROVISIONER_NOT_FOUND')
    })

    it("GitHub Enterprise Server (an issuer of its own): the CA's one provisioner for machines", async () => {
      provisioners = list(
        {type: 'OIDC', name: 'corp', clientID: 'sshca', configurationEndpoint: 'https://idp.example/x'},
        {type: 'OIDC', name: 'ghes', audience: 'sshca-ghes', interactive: false},
        {type: 'JWK', name: 'other', audience: 'no', interactive: false},
      )
      await actions()
      assert.deepEqual(audiences, ['sshca-ghes'])
    })

    it('none or several to choose from: ERR_USAGE, nothing asked of GitHub', async () => {
      provisioners = list({type: 'OIDC', name: 'corp', clientID: 'sshca'})
      await rejectsCode(actions(), 'ERR_USAGE')
      provisioners = list(gh, {...gh, name: 'actions2'})
      await rejectsCode(actions(), 'ERR_USAGE')
      provisioners = list({...gh, audience: undefined})
      await rejectsCode(actions(), 'ERR_USAGE')
      assert.deepEqual(audiences, [])
    })
  })

  describe('the rest of what a login does', () => {
    it('--kty ecdsa: an ECDSA key', async () => {
      await withToken({kty: 'ecdsa'})
      assert.equal(issued[0]!.publicKey.type, 'ecdsa-sha2-nistp256')
    })

    it('a plain login rewrites no context file', async () => {
      const file = join(home, 'contexts', 'demo', CONTEXT_FILE)
      const ino = statSync(file).ino
      await withToken()
      assert.equal(statSync(file).ino, ino)
    })

    it('what the CA returned that is not a certificate: its parse error is the cause', async () => {
      issue = json({crt: Buffer.from('nonsense').toString('base64')}, 201)
      await assert.rejects(withToken(), (err: {code?: string; cause?: {code?: string}}) => {
        assert.equal(err.code, 'ERR_CA_BAD_RESPONSE')
        assert.equal(err.cause?.code, 'ERR_SSH_FORMAT')
        return true
      })
    })

    it('obtainIdToken without hooks: straight to the person', async () => {
      const ctx = await loadContext(home, 'demo')
      const client = new CaClient(ctx.caUrl, ctx.rootPem)
      try {
        await rejectsCode(obtainIdToken(ctx, client, {}, deps()), 'ERR_LOGIN_NO_TERMINAL')
      } finally {
        client.close()
      }
    })

    it('the known_hosts block config wrote is brought up to the host CA keys the CA publishes', async () => {
      const knownHosts = join(process.env.HOME!, 'known_hosts')
      const ctx = await loadContext(home, 'demo')
      await saveContext({...ctx, configuredPattern: '*.example.com', knownHostsFile: knownHosts})
      writeFileSync(knownHosts, '# >>> sshca demo (managed by sshca; do not edit)\n# <<< sshca demo\n')
      const hostCa2 = generatePrivateKey('ed25519').publicKey
      ca.roots = json({userKey: [b64(userCa.publicKey)], hostKey: [b64(hostCa2)], hostPattern: '*.example.com'})
      const r = await withToken()
      assert.deepEqual(r.caKeys, {refreshed: true, knownHosts, note: null})
      assert.ok(readFileSync(knownHosts, 'utf8').includes(hostCa2.toLine('demo host CA').split(' ')[1]!))
      // one that cannot be written: a note, and the login stands
      rmSync(knownHosts)
      mkdirSync(knownHosts)
      ca.roots = json({userKey: [b64(userCa.publicKey)], hostKey: [b64(hostCa)], hostPattern: '*.example.com'})
      const again = await withToken({force: true})
      assert.equal(again.agent.added, true)
      assert.equal(again.caKeys?.refreshed, true)
      assert.equal(again.caKeys?.knownHosts, null)
      assert.ok(again.caKeys?.note)
    })
  })
})
