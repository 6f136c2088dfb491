/**
 * Issue 12, items 3 and 6: `sshca context list|current|use|remove` and `sshca status`, through the
 * CLI against a real CA, ssh-agent and ssh (for what ssh makes of the managed config after a removal).
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {createServer} from 'node:net'
import {appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {caPaths} from '../../src/ca/config/layout.ts'
import {readSealedKey} from '../../src/ca/keys/keystore.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {FOREVER, signCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {PASSWORD, startTestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {idToken} from '../helpers/idp-token.ts'
import {startAgent} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, worldPolicy, type World} from '../helpers/world.ts'

describe('contexts and status (issue 12)', function () {
  this.timeout(180_000)
  let w: World
  let env: NodeJS.ProcessEnv
  const json = async (args: string[], code = 0): Promise<Record<string, unknown>> => {
    const r = await sshca([...args, '--json'], {env})
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}${r.stdout}`)
    return JSON.parse(r.stdout)
  }
  /** A saved sign-in (a refresh token in a file, as one is left without an OS keyring) for `context`; its path. */
  const plantSignIn = (context: string, home = env.SSHCA_HOME!): string => {
    const file = join(home, 'tokens', `${context}~sso.json`)
    mkdirSync(dirname(file), {recursive: true, mode: 0o700})
    const saved = {refreshToken: 'x', issuer: w.idp.issuer, clientId: 'sshca-cli', savedAt: new Date().toISOString()}
    writeFileSync(file, JSON.stringify(saved), {mode: 0o600})
    return file
  }
  const token = async (clientId = 'sshca-cli'): Promise<string> =>
    (await idToken(w.idp.issuer, {clientId, login: 'alice@example.com'})).idToken

  before(async () => {
    // a client of the IdP for the second CA: each CA is sent tokens for an audience of its own
    w = await startWorld({}, {clients: ['other-cli']})
    const base = tempDir('sshca-ctx-')
    env = {...w.env, SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}
    mkdirSync(env.HOME!, {recursive: true})
    for (const name of ['prod', 'lab']) {
      const r = await sshca(
        ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', name],
        {env},
      )
      assert.equal(r.code, 0, r.stderr)
    }
  })
  after(async () => w?.stop())

  it('list marks the current one; current and use switch it; --json everywhere', async () => {
    const list = await json(['context', 'list'])
    assert.deepEqual(
      (list.contexts as {name: string; current: boolean}[]).map((c) => [c.name, c.current]),
      [
        ['lab', true],
        ['prod', false],
      ],
    )
    const text = (await sshca(['context', 'list'], {env})).stdout
    assert.match(text, /^\*\s+lab\s+https:\/\/127\.0\.0\.1:\d+/m)
    assert.equal((await json(['context', 'current'])).name, 'lab')
    const used = await json(['context', 'use', 'prod'])
    assert.equal(used.previous, 'lab')
    assert.equal((await json(['context', 'current'])).name, 'prod')
    assert.equal(readFileSync(join(env.SSHCA_HOME!, 'current'), 'utf8'), 'prod\n')
    const missing = await sshca(['context', 'use', 'nope', '--json'], {env})
    assert.equal(missing.code, 4)
    assert.equal(JSON.parse(missing.stdout).error.code, 'ERR_CONTEXT_NOT_FOUND')
  })

  it('status before config and login: each missing piece named with the command that fixes it', async () => {
    const r = await json(['status'])
    assert.equal(r.context, 'prod')
    assert.equal(r.ready, false)
    const c = r.checks as Record<string, {state: string; fix: string | null}>
    assert.equal(c.ca!.state, 'ok')
    assert.equal(c.certificate!.state, 'fail')
    assert.equal(c.certificate!.fix, 'sshca login')
    assert.equal(c.sshConfig!.state, 'fail')
    assert.equal(c.sshConfig!.fix, 'sshca config')
    assert.equal(c.refreshToken!.state, 'warn')
    const text = await sshca(['status'], {env})
    assert.equal(text.code, 0)
    assert.match(text.stdout, /^✗ Certificate\s+no current certificate of "prod"\n\s+→ sshca login$/m)
  })

  it("status when all is in place: ready, time left, the KRL's age", async () => {
    assert.equal((await sshca(['config', '--pattern', '*.prod.example', '--no-auto-login'], {env})).code, 0)
    const login = await sshca(['login', '--identity-token-file', '-'], {env, input: await token()})
    assert.equal(login.code, 0, login.stderr)
    const r = await json(['status'])
    const c = r.checks as Record<string, {state: string; secondsLeft?: number; ageSeconds?: number; where?: string}>
    assert.equal(c.certificate!.state, 'ok')
    assert.equal(c.certificate!.where, 'agent')
    assert.ok(c.certificate!.secondsLeft! > 7 * 3600)
    assert.equal(c.sshConfig!.state, 'ok')
    assert.equal(c.krl!.state, 'ok')
    assert.ok(c.krl!.ageSeconds! < 300)
    assert.equal(r.ready, true)
  })

  it('status says when the CA cannot be reached (a context whose URL answers nothing)', async () => {
    const ctx = JSON.parse(readFileSync(join(env.SSHCA_HOME!, 'contexts', 'lab', 'context.json'), 'utf8'))
    const dead = {...env, SSHCA_HOME: env.SSHCA_HOME}
    // the same context, pointed at a closed port
    const copy = join(env.SSHCA_HOME!, 'contexts', 'lab', 'context.json')
    const original = readFileSync(copy, 'utf8')
    try {
      writeFileSync(copy, JSON.stringify({...ctx, caUrl: 'https://127.0.0.1:1'}))
      const r = await sshca(['status', '--context', 'lab', '--json'], {env: dead})
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.checks.ca.state, 'fail')
      assert.match(doc.checks.ca.detail, /connection refused/)
    } finally {
      writeFileSync(copy, original)
    }
  })

  it('remove: trust, ssh_config block, then KRL, certificates in the agent, refresh tokens and the folder; current cleared', async () => {
    // prod is configured, logged in, and has a (file) refresh token planted as a sign-in would leave it
    plantSignIn('prod')
    assert.equal(
      (await sshca(['config', '--context', 'lab', '--pattern', '*.lab.example', '--no-auto-login'], {env})).code,
      0,
    )
    const knownHosts = join(env.HOME!, '.ssh', 'known_hosts')
    const managed = join(env.SSHCA_HOME!, 'ssh_config')
    assert.match(readFileSync(knownHosts, 'utf8'), /# >>> sshca prod/)
    assert.match(readFileSync(managed, 'utf8'), /# >>> sshca prod/)
    assert.equal((JSON.parse((await sshca(['list', '--json'], {env})).stdout).certificates as unknown[]).length, 1)

    const r = await json(['context', 'remove', 'prod'])
    assert.equal(r.wasCurrent, true)
    assert.equal((r.certificates as unknown[]).length, 1)
    assert.equal(r.forgottenRefreshTokens, 1)
    assert.equal(r.krl, join(env.SSHCA_HOME!, 'contexts', 'prod', 'revoked_host_keys.krl'))
    assert.doesNotMatch(readFileSync(knownHosts, 'utf8'), /sshca prod/)
    assert.match(readFileSync(knownHosts, 'utf8'), /# >>> sshca lab/, 'the other context is kept')
    assert.doesNotMatch(readFileSync(managed, 'utf8'), /sshca prod/)
    assert.match(readFileSync(managed, 'utf8'), /# >>> sshca lab/)
    assert.equal(existsSync(join(env.SSHCA_HOME!, 'contexts', 'prod')), false)
    assert.deepEqual(readdirSync(join(env.SSHCA_HOME!, 'tokens')), [])
    assert.equal(existsSync(join(env.SSHCA_HOME!, 'current')), false)
    assert.equal((JSON.parse((await sshca(['list', '--json'], {env})).stdout).certificates as unknown[]).length, 0)
    // what ssh makes of what is left: it reads the config without error, and lab's RevokedHostKeys names an existing file
    const g = spawnSync('ssh', ['-G', '-F', join(env.HOME!, '.ssh', 'config'), 'web.lab.example'], {encoding: 'utf8'})
    assert.equal(g.status, 0, g.stderr)
    const krl = /^revokedhostkeys (\S+)$/m.exec(g.stdout)![1]!
    assert.ok(existsSync(krl))
    const none = await sshca(['context', 'current', '--json'], {env})
    assert.equal(JSON.parse(none.stdout).error.code, 'ERR_NOT_BOOTSTRAPPED')
  })

  it('list names the context each certificate came from and marks expired ones; logout --all empties every context and nothing else', async () => {
    // a second CA ("other"), and a certificate in the agent from each of lab, other and a stranger CA
    const policy = worldPolicy(w.idp.issuer, w.gh.issuer) as {provisioners: {name: string; clientId?: string}[]}
    for (const p of policy.provisioners) if (p.name === 'sso') p.clientId = 'other-cli'
    const t2 = await startTestCa(policy)
    try {
      assert.equal(
        (
          await sshca(
            ['bootstrap', '--ca-url', t2.url, '--fingerprint', t2.init.rootFingerprint, '--context', 'other'],
            {env},
          )
        ).code,
        0,
      )
      for (const [c, client] of [
        ['lab', 'sshca-cli'],
        ['other', 'other-cli'],
      ])
        assert.equal(
          (await sshca(['login', '--context', c!, '--identity-token-file', '-'], {env, input: await token(client)}))
            .code,
          0,
        )
      const now = BigInt(Math.floor(Date.now() / 1000))
      const labCa = await readSealedKey(caPaths(w.t.init.dir).userCaKey, PASSWORD)
      const strangerCa = generatePrivateKey('ed25519')
      const k1 = generatePrivateKey('ed25519')
      const k2 = generatePrivateKey('ed25519')
      const expired = await signCertificate(
        {
          type: 'user',
          publicKey: k1.publicKey,
          serial: 4242n,
          keyId: 'alice@old',
          principals: ['alice'],
          validAfter: now - 7200n,
          validBefore: now - 600n,
        },
        keySigner(labCa),
      )
      const foreign = await signCertificate(
        {
          type: 'user',
          publicKey: k2.publicKey,
          serial: 77n,
          keyId: 'foreign',
          principals: ['alice'],
          validAfter: now - 60n,
          validBefore: now + 3600n,
        },
        keySigner(strangerCa.keyObject),
      )
      await AgentClient.with({socketPath: env.SSH_AUTH_SOCK!}, async (a) => {
        await a.addCertificate(k1, expired, {comment: 'stale'})
        await a.addCertificate(k2, foreign, {comment: 'foreign', lifetimeSeconds: 3600})
      })
      const table = (await sshca(['list'], {env})).stdout
      assert.match(table, /^user\s+alice@old\s+alice\s+.*EXPIRED 1\dm\d*s? ago\s+lab$/m)
      assert.match(table, /^user\s+foreign\s+alice\s+.*\s+-$/m)
      const listed = (await json(['list'])).certificates as {keyId: string; context: string | null; state: string}[]
      assert.deepEqual(
        listed.map((c) => [c.keyId, c.context, c.state]).sort(),
        [
          ['alice@example.com', 'lab', 'valid'],
          ['alice@example.com', 'other', 'valid'],
          ['alice@old', 'lab', 'expired'],
          ['foreign', null, 'valid'],
        ].sort(),
      )
      // a saved sign-in for each context, as a browser login leaves it
      for (const c of ['lab', 'other']) plantSignIn(c)
      const out = await json(['logout', '--all'])
      assert.deepEqual((out.contexts as string[]).sort(), ['lab', 'other'])
      assert.equal(out.forgottenRefreshTokens, 2)
      assert.deepEqual(readdirSync(join(env.SSHCA_HOME!, 'tokens')), [])
      const left = (await json(['list'])).certificates as {keyId: string}[]
      assert.deepEqual(
        left.map((c) => c.keyId),
        ['foreign'],
        "another CA's certificate stays",
      )
    } finally {
      await t2.stop()
    }
  })

  it('a damaged context is named as such, never an internal error; the others still work; bootstrap --force mends it', async () => {
    // context.json of the wrong shape, or a root_ca.crt with a block that does not parse, once gave
    // ERR_INTERNAL from list, context list, logout --all and config, and bootstrap --force (what the
    // error told to run) failed the same way
    const boot = (name: string, extra: string[] = []) =>
      sshca(
        ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', name, ...extra],
        {
          env,
        },
      )
    for (const name of ['shape', 'pem']) assert.equal((await boot(name)).code, 0)
    const dirOf = (name: string) => join(env.SSHCA_HOME!, 'contexts', name)
    writeFileSync(join(dirOf('shape'), 'context.json'), '{"userCaKeys": 5}\n')
    appendFileSync(join(dirOf('pem'), 'root_ca.crt'), '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')

    assert.equal((await sshca(['list'], {env})).code, 0)
    const names = ((await json(['context', 'list'])).contexts as {name: string}[]).map((c) => c.name)
    assert.ok(!names.includes('shape') && names.includes('pem'), names.join(' '))
    const shape = await sshca(['context', 'use', 'shape', '--json'], {env})
    assert.equal(shape.code, 2, shape.stderr)
    assert.equal(JSON.parse(shape.stdout).error.code, 'ERR_INPUT')
    assert.match(JSON.parse(shape.stdout).error.message, /damaged: context\.json: name is not a string/)
    const pem = await sshca(['config', '--context', 'pem', '--dry-run', '--json'], {env})
    assert.equal(pem.code, 2, pem.stdout)
    assert.equal(JSON.parse(pem.stdout).error.code, 'ERR_INPUT')
    assert.match(JSON.parse(pem.stdout).error.message, /root_ca\.crt .*certificate 2 does not parse/)
    assert.match(JSON.parse(pem.stdout).error.hint, /sshca bootstrap --context pem .* --force/)

    // logout --all once stopped at the damaged context, leaving every other context's certificate in the
    // agent: now it logs those out, removes what the damaged ones left (refresh tokens, key files: found
    // by their names), then reports them (exit 2, what was done in the details). Damaged three ways:
    // context.json's shape, a CA key line that does not parse, root_ca.crt gone
    for (const name of ['keys', 'noroot']) assert.equal((await boot(name)).code, 0)
    const keysJson = JSON.parse(readFileSync(join(dirOf('keys'), 'context.json'), 'utf8')) as Record<string, unknown>
    writeFileSync(
      join(dirOf('keys'), 'context.json'),
      JSON.stringify({...keysJson, userCaKeys: ['ssh-ed25519 AAAA!!']}),
    )
    rmSync(join(dirOf('noroot'), 'root_ca.crt'))
    const left = [join(dirOf('shape'), 'id_sshca'), join(dirOf('shape'), 'id_sshca-cert.pub')]
    for (const f of left) writeFileSync(f, 'x', {mode: 0o600})
    const savedSignIn = plantSignIn('keys')
    const login = await sshca(['login', '--context', 'lab', '--identity-token-file', '-'], {env, input: await token()})
    assert.equal(login.code, 0, login.stderr)
    const partial = await sshca(['logout', '--all', '--json'], {env})
    assert.equal(partial.code, 2, partial.stderr)
    const {error} = JSON.parse(partial.stdout) as {
      error: {
        code: string
        message: string
        hint: string
        details: {contexts: string[]; damaged: string[]; removed: unknown[]; removedFiles: string[]}
      }
    }
    assert.equal(error.code, 'ERR_INPUT')
    assert.match(error.message, /but not of a damaged one: the context "keys" .* is damaged: userCaKeys: /)
    assert.match(error.message, /the context "noroot" .* is damaged: .*root_ca\.crt/)
    assert.match(error.message, /the context "shape" .* is damaged: context\.json/)
    assert.match(error.hint, /--context keys .* --force.*ssh-add -D/)
    assert.deepEqual(error.details.damaged, ['keys', 'noroot', 'shape'])
    assert.ok(error.details.contexts.includes('lab') && !error.details.contexts.includes('shape'))
    // lab and pem trust one CA here: its certificate is out, whichever context names it
    assert.equal(error.details.removed.length, 1)
    const still = (await json(['list'])).certificates as {context: string | null}[]
    assert.ok(!still.some((c) => c.context !== null), JSON.stringify(still))
    assert.deepEqual(error.details.removedFiles.sort(), left.sort())
    for (const f of [...left, savedSignIn]) assert.equal(existsSync(f), false, f)
    for (const name of ['keys', 'noroot']) rmSync(dirOf(name), {recursive: true})

    // without --force a damaged context stays (the error says so); with it, it is replaced whole
    const refused = await boot('pem')
    assert.equal(refused.code, 2, refused.stderr)
    assert.match(refused.stderr, /ERR_INPUT/)
    assert.match(refused.stderr, /with --force to replace the context/)
    for (const name of ['shape', 'pem']) {
      const mended = await boot(name, ['--force', '--json'])
      assert.equal(mended.code, 0, mended.stderr + mended.stdout)
      assert.equal(JSON.parse(mended.stdout).replaced, true)
    }
    const mendedConfig = await sshca(['config', '--context', 'pem', '--dry-run', '--pattern', '*.example.com'], {env})
    assert.equal(mendedConfig.code, 0, mendedConfig.stderr)
    assert.equal((await json(['context', 'use', 'shape'])).current !== undefined, true)
    // a folder that is no context (no context.json) is skipped by logout --all, as by context list
    mkdirSync(dirOf('stray'))
    const out = await json(['logout', '--all'])
    assert.ok(!(out.contexts as string[]).includes('stray') && (out.contexts as string[]).includes('pem'))
  })
  it('logout --all forgets every saved sign-in even when the agent hangs up, then says so', async () => {
    // an agent that takes the request and closes the connection (sshd's forwarded socket does, under
    // ssh -A, when the client side has no agent): once, every agent error but "unavailable" stopped
    // logout before it forgot anything, and one context kept in files hid the error altogether
    const home = join(tempDir('sshca-hangup-'), 'sshca')
    const sock = join(tempDir(), 'agent.sock')
    const agent = createServer((c) => c.once('data', () => c.destroy()))
    await new Promise<void>((resolve) => agent.listen(sock, resolve))
    try {
      const e = {...env, SSHCA_HOME: home, SSH_AUTH_SOCK: sock}
      for (const name of ['a', 'b']) {
        const r = await sshca(
          ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', name],
          {env: e},
        )
        assert.equal(r.code, 0, r.stderr)
      }
      // b keeps its certificates in files (its agent could not hold them): a keeps them in the agent
      const bJson = join(home, 'contexts', 'b', 'context.json')
      const agentless = {reason: 'test', socket: null, since: new Date().toISOString()}
      writeFileSync(bJson, JSON.stringify({...JSON.parse(readFileSync(bJson, 'utf8')), agentless}))
      const saved = ['a', 'b'].map((c) => plantSignIn(c, home))
      const out = await sshca(['logout', '--all', '--json'], {env: e})
      assert.equal(out.code, 5, out.stderr)
      const {error} = JSON.parse(out.stdout) as {
        error: {code: string; message: string; details: Record<string, unknown>}
      }
      assert.equal(error.code, 'ERR_AGENT_PROTOCOL')
      assert.match(error.message, /^forgot 2 saved sign-in\(s\) and removed 0 key file\(s\), but could not remove /)
      assert.equal(error.details.forgottenRefreshTokens, 2)
      for (const f of saved) assert.equal(existsSync(f), false, f)
      // only a context kept in files (logout ended that state: b is one again): no agent needed
      writeFileSync(bJson, JSON.stringify({...JSON.parse(readFileSync(bJson, 'utf8')), agentless}))
      const only = await sshca(['logout', '--context', 'b', '--json'], {env: e})
      assert.equal(only.code, 0, only.stdout)
    } finally {
      agent.close()
    }
  })
  it('logout of a damaged current context still forgets its saved sign-in and files, then says it is damaged', async () => {
    const home = join(tempDir('sshca-damaged-current-'), 'sshca')
    const e = {...env, SSHCA_HOME: home}
    const r = await sshca(
      ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'c'],
      {env: e},
    )
    assert.equal(r.code, 0, r.stderr)
    const dir = join(home, 'contexts', 'c')
    writeFileSync(join(dir, 'context.json'), JSON.stringify({name: 7}))
    const files = [join(dir, 'id_sshca'), join(dir, 'id_sshca-cert.pub')]
    for (const f of files) writeFileSync(f, 'x', {mode: 0o600})
    const saved = plantSignIn('c', home)
    // once, it failed on reading the context and kept both: the next login needed no password
    const out = await sshca(['logout', '--json'], {env: e})
    assert.equal(out.code, 2, out.stderr)
    const {error} = JSON.parse(out.stdout) as {error: {code: string; message: string; details: Record<string, unknown>}}
    assert.equal(error.code, 'ERR_INPUT')
    assert.match(error.message, /but not of a damaged one: the context "c" .* is damaged/)
    assert.deepEqual(error.details.damaged, ['c'])
    assert.equal(error.details.forgottenRefreshTokens, 1)
    for (const f of [...files, saved]) assert.equal(existsSync(f), false, f)
  })
  it('login --ensure with a certificate that never expires: "forever", and null in --json as in list', async () => {
    const agent = await startAgent()
    try {
      const e = {...env, SSHCA_HOME: join(tempDir('sshca-forever-'), 'sshca'), SSH_AUTH_SOCK: agent.socket}
      const boot = await sshca(
        ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'f'],
        {env: e},
      )
      assert.equal(boot.code, 0, boot.stderr)
      const key = generatePrivateKey('ed25519')
      const cert = await signCertificate(
        {
          type: 'user',
          publicKey: key.publicKey,
          serial: 9n,
          keyId: 'always',
          principals: ['alice'],
          validAfter: 0n,
          validBefore: FOREVER,
        },
        keySigner(await readSealedKey(caPaths(w.t.init.dir).userCaKey, PASSWORD)),
      )
      await AgentClient.with({socketPath: agent.socket}, (a) => a.addCertificate(key, cert, {lifetimeSeconds: 600}))
      // once, login printed a date 584 billion years away where list said "forever" (null)
      const text = await sshca(['login', '--ensure'], {env: e})
      assert.equal(text.code, 0, text.stderr)
      assert.match(text.stdout, /valid until forever\./)
      const out = await sshca(['login', '--ensure', '--json'], {env: e})
      assert.equal(out.code, 0, out.stderr)
      const {certificate} = JSON.parse(out.stdout) as {certificate: Record<string, unknown>}
      assert.deepEqual([certificate.validAfter, certificate.validBefore, certificate.secondsLeft], [null, null, null])
      const listed = (
        JSON.parse((await sshca(['list', '--json'], {env: e})).stdout) as {certificates: Record<string, unknown>[]}
      ).certificates
      assert.deepEqual([listed[0]!.validAfter, listed[0]!.validBefore, listed[0]!.secondsLeft], [null, null, null])
    } finally {
      await agent.stop()
    }
  })

  it("logout and remove of one context leave another context's certificates, though both trust one CA key (a CA can publish anyone's public key)", async () => {
    const agent = await startAgent()
    try {
      const e = {...env, SSHCA_HOME: join(tempDir('sshca-shared-key-'), 'sshca'), SSH_AUTH_SOCK: agent.socket}
      // "theirs" trusts the very user CA key "mine" does: a second context of one CA, or a hostile CA
      // that publishes mine's public key as its own
      for (const name of ['mine', 'theirs']) {
        const boot = await sshca(
          ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', name],
          {env: e},
        )
        assert.equal(boot.code, 0, boot.stderr)
      }
      const caKey = await readSealedKey(caPaths(w.t.init.dir).userCaKey, PASSWORD)
      /** A certificate of that CA in the agent, with the comment sshca (or another tool) gave it. */
      const add = async (comment: string, keyId: string) => {
        const key = generatePrivateKey('ed25519')
        const now = BigInt(Math.floor(Date.now() / 1000))
        const cert = await signCertificate(
          {
            type: 'user',
            publicKey: key.publicKey,
            serial: 5n,
            keyId,
            principals: ['alice'],
            validAfter: now - 60n,
            validBefore: now + 3600n,
          },
          keySigner(caKey),
        )
        await AgentClient.with({socketPath: agent.socket}, (a) =>
          a.addCertificate(key, cert, {comment, lifetimeSeconds: 600}),
        )
      }
      const held = async () =>
        (await AgentClient.with({socketPath: agent.socket}, (a) => a.list())).map((id) => id.comment).sort()
      await add('sshca:mine:sso', 'alice@mine')
      await add('sshca:theirs:sso', 'alice@theirs')
      const out = JSON.parse((await sshca(['logout', '--context', 'theirs', '--json'], {env: e})).stdout) as {
        removed: {keyId: string; context: string}[]
      }
      assert.deepEqual(
        out.removed.map((r) => [r.keyId, r.context]),
        [['alice@theirs', 'theirs']],
      )
      assert.deepEqual(await held(), ['sshca:mine:sso'], "mine's certificate stays")
      await add('sshca:theirs:sso', 'alice@theirs')
      const removed = JSON.parse((await sshca(['context', 'remove', 'theirs', '--json'], {env: e})).stdout) as {
        certificates: {keyId: string}[]
      }
      assert.deepEqual(
        removed.certificates.map((c) => c.keyId),
        ['alice@theirs'],
      )
      assert.deepEqual(await held(), ['sshca:mine:sso'], "mine's certificate stays")
      // another tool's certificate from that CA (no sshca comment) is the context's to remove, as before
      await add('alice@laptop', 'step')
      // one sshca added for a context since removed stays for a logout of mine, and goes with --all
      await add('sshca:gone:sso', 'alice@gone')
      const all = JSON.parse((await sshca(['logout', '--context', 'mine', '--json'], {env: e})).stdout) as {
        removed: {keyId: string; context: string}[]
      }
      assert.deepEqual(all.removed.map((r) => [r.keyId, r.context]).sort(), [
        ['alice@mine', 'mine'],
        ['step', 'mine'],
      ])
      assert.deepEqual(await held(), ['sshca:gone:sso'])
      assert.equal((await sshca(['logout', '--all'], {env: e})).code, 0)
      assert.deepEqual(await held(), [])
    } finally {
      await agent.stop()
    }
  })
})
