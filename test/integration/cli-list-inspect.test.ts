/** `sshca list` and `sshca inspect` as processes, against a real ssh-agent and ssh-keygen. */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {AgentClient} from '../../src/ssh/agent.ts'
import {certificateLine, signCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {TERMINAL_UNSAFE} from '../helpers/assert.ts'
import {BIN, sshca} from '../helpers/cli.ts'
import {sshAdd, startAgent, type Agent} from '../helpers/openssh.ts'
import {run} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

// made in before(), not at import: Stryker loads this file once and re-runs its tests per mutant
let ca: PrivateKey
const nowSeconds = (): number => Math.floor(Date.now() / 1000)

/** A "TIME LEFT" cell (7h58m, 9m59s, 45s) in seconds, rounded down as printed. */
function secondsOf(cell: string): number {
  const m = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(cell)
  if (!m || cell === '') throw new Error(`not a duration: ${cell}`)
  return Number(m[1] ?? 0) * 86400 + Number(m[2] ?? 0) * 3600 + Number(m[3] ?? 0) * 60 + Number(m[4] ?? 0)
}

async function cert(keyId: string, principals: string[], seconds: bigint) {
  const key = generatePrivateKey('ed25519')
  const now = BigInt(nowSeconds())
  return {
    key,
    cert: await signCertificate(
      {
        type: 'user',
        publicKey: key.publicKey,
        serial: 3n,
        keyId,
        principals,
        validAfter: now - 60n,
        validBefore: now + seconds,
        extensions: {'permit-pty': true},
      },
      keySigner(ca.keyObject),
    ),
  }
}

describe('sshca list', function () {
  this.timeout(60_000)
  let agent: Agent
  before(async () => {
    ca = generatePrivateKey('ed25519')
    agent = await startAgent()
  })
  after(async () => agent.stop())

  const both = async (args: string[], env: NodeJS.ProcessEnv = {}) => {
    const fast = await sshca(['list', ...args], {env: {SSH_AUTH_SOCK: agent.socket, ...env}})
    const slow = await sshca(['list', ...args], {env: {SSH_AUTH_SOCK: agent.socket, SSHCA_NO_FAST_PATH: '1', ...env}})
    return {fast, slow}
  }

  it('says there are no certificates, exit 0, on both paths', async () => {
    const {fast, slow} = await both([])
    assert.equal(fast.code, 0, fast.stderr)
    assert.match(fast.stdout, /No certificates in the ssh-agent/)
    assert.deepEqual(fast, slow)
  })

  it('prints the same table, raw lines and JSON through the fast path and through oclif', async () => {
    const a = await cert('alice@example.com', ['alice', 'alice@example.com'], 8n * 3600n)
    const b = await cert('gha:acme/app:42', ['deploy'], 600n)
    await AgentClient.with({socketPath: agent.socket}, async (c) => {
      await c.addCertificate(a.key, a.cert, {lifetimeSeconds: 3600, comment: 'sshca:sso'})
      await c.addCertificate(b.key, b.cert, {lifetimeSeconds: 600})
      await c.addKey(generatePrivateKey('ecdsa'))
    })
    for (const args of [[], ['--raw'], ['--json'], ['--raw', '--json']]) {
      const {fast, slow} = await both(args)
      assert.equal(fast.code, 0, fast.stderr)
      // time passes between the two runs (seconds on a loaded machine): "time left" may differ, and
      // with it the width of the cell (8h0m, then 7h59m)
      const norm = (s: string) => s.replace(/(\d+m\d+s|\d+h\d+m) +/g, 'T ').replace(/"secondsLeft": \d+/g, 'T')
      assert.equal(norm(fast.stdout), norm(slow.stdout), `output differs for list ${args.join(' ')}`)
      assert.equal(fast.stderr, slow.stderr)
    }
    // time left is what remains at the moment `list` runs, however long the steps before it took
    const before = nowSeconds()
    const table = (await sshca(['list'], {env: {SSH_AUTH_SOCK: agent.socket}})).stdout
    const after = nowSeconds()
    assert.match(table, /^TYPE\s+KEY ID\s+PRINCIPALS\s+VALID FROM\s+VALID UNTIL\s+TIME LEFT\s+CONTEXT$/m)
    const left = (re: RegExp) => secondsOf(re.exec(table)?.[1] ?? '')
    const within = (printed: number, c: {validBefore: bigint}, granularity: number) => {
      const hi = Number(c.validBefore) - before
      const lo = Number(c.validBefore) - after - granularity
      assert.ok(printed >= lo && printed <= hi, `time left ${printed} s, expected ${lo}..${hi} s`)
    }
    within(left(/user\s+alice@example\.com\s+alice,alice@example\.com\s+.*\s+(\S+)\s+-/), a.cert, 60)
    within(left(/gha:acme\/app:42\s+deploy\s+.*\s+(\S+)\s+-/), b.cert, 1)
    const raw = (await sshca(['list', '--raw'], {env: {SSH_AUTH_SOCK: agent.socket}})).stdout
    assert.equal(
      raw,
      (await sshAdd(agent, ['-L'])).stdout
        .split('\n')
        .filter((l) => l.includes('-cert-v01@'))
        .map((l) => `${l}\n`)
        .join(''),
    )
    const beforeJson = nowSeconds()
    const json = JSON.parse((await sshca(['list', '--json'], {env: {SSH_AUTH_SOCK: agent.socket}})).stdout)
    assert.equal(json.certificates.length, 2)
    assert.equal(json.otherIdentities, 1)
    assert.equal(json.certificates[0].keyId, 'alice@example.com')
    assert.equal(json.certificates[0].comment, 'sshca:sso')
    assert.ok(
      json.certificates[0].secondsLeft <= Number(a.cert.validBefore) - beforeJson &&
        json.certificates[0].secondsLeft > Number(a.cert.validBefore) - nowSeconds() - 2,
    )
  })

  it('lists a certificate valid past the last year Date knows (2^62 s, a "forever" of other tools), on both paths', async () => {
    // Date's toISOString throws past the year 275760: such a certificate once made list and inspect fail
    const own = await startAgent()
    try {
      const key = generatePrivateKey('ed25519')
      const c = await signCertificate(
        {
          type: 'user',
          publicKey: key.publicKey,
          serial: 9n,
          keyId: 'far',
          principals: ['alice'],
          validAfter: 0n,
          validBefore: 1n << 62n,
        },
        keySigner(ca.keyObject),
      )
      await AgentClient.with({socketPath: own.socket}, (a) => a.addCertificate(key, c))
      const env = {SSH_AUTH_SOCK: own.socket}
      const fast = await sshca(['list'], {env})
      const slow = await sshca(['list'], {env: {...env, SSHCA_NO_FAST_PATH: '1'}})
      assert.equal(fast.code, 0, fast.stderr)
      assert.deepEqual(fast, slow)
      assert.match(fast.stdout, /far\s+alice\s+always\s+\+146138514283-06-19 07:45:04Z\s/)
      const json = JSON.parse((await sshca(['list', '--json'], {env})).stdout)
      assert.equal(json.certificates[0].validBefore, '+146138514283-06-19T07:45:04.000Z')
      const file = join(tempDir(), 'far-cert.pub')
      writeFileSync(file, `${certificateLine(c)}\n`)
      const inspected = await sshca(['inspect', file, '--json'])
      assert.equal(inspected.code, 0, inspected.stderr)
      assert.equal(JSON.parse(inspected.stdout).certificate.validBefore, '+146138514283-06-19T07:45:04.000Z')
      const text = await sshca(['inspect', file])
      assert.equal(text.code, 0, text.stderr)
      assert.match(text.stdout, /Valid: before \+146138514283-06-19T07:45:04Z\n/)
    } finally {
      await own.stop()
    }
  })

  it('lists the agent when another key has a comment that is not UTF-8 (OpenSSH refuses only NUL there)', async () => {
    // one Latin-1 comment in the agent once made list, login --ensure and proxycommand fail (ERR_SSH_FORMAT)
    const own = await startAgent()
    try {
      const dir = tempDir()
      const made = await run('sh', [
        '-c',
        `ssh-keygen -q -t ed25519 -N '' -f "$0/latin1" -C "$(printf 'cl\\351 de Jos\\351')"`,
        dir,
      ])
      assert.equal(made.code, 0, made.stderr)
      assert.equal((await sshAdd(own, [join(dir, 'latin1')])).code, 0)
      const {key, cert: c} = await cert('alice@example.com', ['alice'], 3600n)
      await AgentClient.with({socketPath: own.socket}, (a) => a.addCertificate(key, c, {comment: 'sshca:sso'}))
      const env = {SSH_AUTH_SOCK: own.socket}
      const fast = await sshca(['list', '--json'], {env})
      const slow = await sshca(['list', '--json'], {env: {...env, SSHCA_NO_FAST_PATH: '1'}})
      assert.equal(fast.code, 0, fast.stderr)
      assert.equal(slow.code, 0, slow.stderr)
      const json = JSON.parse(fast.stdout)
      assert.equal(json.otherIdentities, 1)
      assert.deepEqual(
        json.certificates.map((x: {keyId: string; comment: string}) => [x.keyId, x.comment]),
        [['alice@example.com', 'sshca:sso']],
      )
      const table = await sshca(['list'], {env})
      assert.equal(table.code, 0, table.stderr)
      assert.match(table.stdout, /alice@example\.com/)
    } finally {
      await own.stop()
    }
  })

  it('prints no terminal control sequence from a certificate or a comment in the agent, on both paths', async () => {
    // any program that can reach the agent (a forwarded one included) can add a certificate whose key
    // ID sets the window title, clears the screen or reorders the line a person reads
    const own = await startAgent()
    try {
      const keyId = 'alice\x1b]0;owned\x07\x1b[2J\rroot'
      const {key, cert: c} = await cert(keyId, ['alice\u202e', 'bob\x9b31m'], 3600n)
      const comment = 'sshca:sso\x1b[8m'
      await AgentClient.with({socketPath: own.socket}, (a) => a.addCertificate(key, c, {comment}))
      for (const slowPath of [false, true]) {
        const env = {SSH_AUTH_SOCK: own.socket, ...(slowPath ? {SSHCA_NO_FAST_PATH: '1'} : {})}
        for (const args of [[], ['--raw'], ['--json']]) {
          const r = await sshca(['list', ...args], {env})
          assert.equal(r.code, 0, r.stderr)
          assert.doesNotMatch(r.stdout + r.stderr, TERMINAL_UNSAFE, `list ${args.join(' ')}`)
          if (args[0] === '--json') {
            const json = JSON.parse(r.stdout)
            assert.equal(json.certificates[0].keyId, keyId)
            assert.deepEqual(json.certificates[0].principals, ['alice\u202e', 'bob\x9b31m'])
            assert.equal(json.certificates[0].comment, comment)
          }
          // a raw line is a -cert.pub line: its comment on that line, control characters as spaces (the
          // comment as the agent holds it is in --json)
          else if (args[0] === '--raw') assert.ok(r.stdout.includes('sshca:sso [8m'), r.stdout)
          else {
            assert.ok(r.stdout.includes('alice\\x1b]0;owned\\x07\\x1b[2J\\x0droot'), r.stdout)
            // escaped before the columns are padded: the principals stay under their heading
            const [head, row] = r.stdout.split('\n')
            assert.equal(row!.indexOf('alice\\u{202e}'), head!.indexOf('PRINCIPALS'), r.stdout)
          }
        }
      }
    } finally {
      await own.stop()
    }
  })

  it('fails the same way on both paths when there is no agent: ERR_AGENT_UNAVAILABLE, exit 5', async () => {
    for (const args of [[], ['--json']]) {
      const {fast, slow} = await both(args, {SSH_AUTH_SOCK: '/nonexistent/agent.sock'})
      assert.equal(fast.code, 5)
      assert.deepEqual(fast, slow)
    }
    const {fast} = await both([], {SSH_AUTH_SOCK: '/nonexistent/agent.sock'})
    assert.match(fast.stderr, /ERR_AGENT_UNAVAILABLE/)
    assert.match(fast.stderr, /ssh-agent -s/)
    const {fast: json} = await both(['--json'], {SSH_AUTH_SOCK: '/nonexistent/agent.sock'})
    assert.equal(JSON.parse(json.stdout).error.code, 'ERR_AGENT_UNAVAILABLE')
    assert.equal(json.stderr, '')
  })

  it('leaves --help and unknown flags to oclif', async () => {
    const help = await sshca(['list', '--help'])
    assert.equal(help.code, 0)
    assert.match(help.stdout, /EXAMPLES/)
    const bad = await sshca(['list', '--nope'], {env: {SSH_AUTH_SOCK: agent.socket}})
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /Nonexistent flag: --nope/)
  })
})

describe('sshca inspect', function () {
  this.timeout(60_000)
  let dir: string
  before(() => {
    ca = generatePrivateKey('ed25519')
    dir = tempDir()
  })

  it('prints what ssh-keygen -L prints, plus the signature check; --json gives the fields', async () => {
    const {cert: c} = await cert('inspect-me', ['alice'], 3600n)
    const file = join(dir, 'id-cert.pub')
    writeFileSync(file, certificateLine(c, 'comment') + '\n')
    const ours = await sshca(['inspect', file], {env: {TZ: 'UTC'}})
    const theirs = await run('ssh-keygen', ['-L', '-f', file], {env: {...process.env, TZ: 'UTC'}})
    assert.equal(ours.code, 0, ours.stderr)
    assert.equal(ours.stdout, theirs.stdout + '        Signature: valid\n')
    const json = JSON.parse((await sshca(['inspect', file, '--json'])).stdout)
    assert.equal(json.certificate.keyId, 'inspect-me')
    assert.equal(json.certificate.serial, '3')
    assert.equal(json.signature.valid, true)
    assert.equal(json.comment, 'comment')
  })

  it('prints no terminal control sequence from the certificate it reads, nor from its file name', async () => {
    const {cert: c} = await cert('inspect\x1b[2J\u2066me', ['alice\x07'], 3600n)
    const file = join(dir, 'escape\x1b[31m-cert.pub')
    writeFileSync(file, certificateLine(c, 'comment\x9b') + '\n')
    for (const args of [[file], [file, '--json'], [join(dir, 'missing\x1b]0;x\x07')]]) {
      const r = await sshca(['inspect', ...args])
      assert.doesNotMatch(r.stdout + r.stderr, TERMINAL_UNSAFE, `inspect ${args.join(' ')}`)
      if (args[1] === '--json') assert.equal(JSON.parse(r.stdout).certificate.keyId, 'inspect\x1b[2J\u2066me')
      else if (r.code === 0) assert.ok(r.stdout.includes('inspect\\x1b[2J\\u{2066}me'), r.stdout)
      else assert.match(r.stderr, /ERR_FILE_NOT_FOUND.*missing\\x1b\]0;x\\x07/)
    }
  })

  it('reads standard input, and the bare base64 blob or a /ssh/sign response', async () => {
    const {cert: c} = await cert('stdin', ['bob'], 60n)
    for (const input of [
      certificateLine(c),
      c.blob.toString('base64'),
      JSON.stringify({crt: c.blob.toString('base64')}),
    ]) {
      const r = await sshca(['inspect', '-', '--json'], {input})
      assert.equal(r.code, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).certificate.keyId, 'stdin')
    }
  })

  it('says INVALID and exits 3 when one bit of the signature changes', async () => {
    const {cert: c} = await cert('tampered', ['alice'], 60n)
    const blob = Buffer.from(c.blob)
    blob[blob.length - 5]! ^= 0x01
    const r = await sshca(['inspect', '-'], {input: `${c.keyType} ${blob.toString('base64')}`})
    assert.equal(r.code, 3)
    assert.match(r.stdout, /Signature: INVALID \(signature does not match\)/)
    assert.match(r.stderr, /ERR_CERT_SIGNATURE_INVALID/)
    const j = await sshca(['inspect', '-', '--json'], {input: `${c.keyType} ${blob.toString('base64')}`})
    assert.equal(j.code, 3)
    assert.equal(JSON.parse(j.stdout).signature.valid, false)
  })

  it('refuses an input that never ends (/dev/zero) or is over a MiB, ERR_INPUT, and still reads a pipe by name', async () => {
    // /dev/zero was once read until the memory ran out
    for (const r of [
      await sshca(['inspect', '/dev/zero']),
      await sshca(['inspect', '-'], {input: 'A'.repeat((1 << 20) + 1)}),
      await sshca(['needs-renewal', '/dev/zero']),
    ]) {
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /ERR_INPUT.*larger than 1 MiB/)
    }
    // a whole authorized_keys may be fingerprinted: 16 MiB, as `host audit` reads of one
    const f = await sshca(['fingerprint', '/dev/zero'])
    assert.equal(f.code, 2, f.stderr)
    assert.match(f.stderr, /ERR_INPUT.*larger than 16 MiB/)
    const {cert: c} = await cert('piped', ['alice'], 60n)
    // a pipe by name, as bash's <(…) gives one: read to its end, as before
    const piped = await run('sh', [
      '-c',
      'printf "%s\\n" "$2" | "$0" "$1" inspect /dev/stdin --json',
      process.execPath,
      BIN,
      certificateLine(c),
    ])
    assert.equal(piped.code, 0, piped.stderr)
    assert.equal(JSON.parse(piped.stdout).certificate.keyId, 'piped')
  })

  it('rejects what is not a certificate with ERR_SSH_FORMAT (exit 2), and a missing file with ERR_FILE_NOT_FOUND', async () => {
    const key = generatePrivateKey('ed25519')
    const r = await sshca(['inspect', '-'], {input: key.publicKey.toLine()})
    assert.equal(r.code, 2)
    assert.match(r.stderr, /ERR_SSH_FORMAT.*plain ssh-ed25519 public key/)
    const m = await sshca(['inspect', join(dir, 'nope')])
    assert.equal(m.code, 2)
    assert.match(m.stderr, /ERR_FILE_NOT_FOUND/)
  })
})
