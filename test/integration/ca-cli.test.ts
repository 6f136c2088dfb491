/**
 * The `sshca ca …` commands as processes: init, check-config, explain, and serve (SIGHUP with a
 * broken ca.yaml, SIGTERM), and a certificate it issues logging into a real sshd.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import {join} from 'node:path'
import {once} from 'node:events'
import {Agent, request} from 'undici'
import {writePolicy} from '../helpers/ca.ts'
import {BIN, sshca} from '../helpers/cli.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {currentUser, ssh, startAgent, startSshd} from '../helpers/openssh.ts'
import {waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'

const PASSWORD = 'a long enough test password'

function modes(dir: string): string[] {
  const out: string[] = []
  const walk = (d: string) => {
    for (const e of readdirSync(d, {withFileTypes: true})) {
      const p = join(d, e.name)
      out.push(`${(statSync(p).mode & 0o777).toString(8)} ${e.isDirectory() ? 'd' : 'f'} ${p.slice(dir.length + 1)}`)
      if (e.isDirectory()) walk(p)
    }
  }
  walk(dir)
  return out
}

describe('sshca ca commands', function () {
  this.timeout(90_000)
  let base: string
  let pwFile: string
  let dir: string
  let gh: GithubIssuer
  let fingerprint = ''

  before(async () => {
    base = tempDir('sshca-cacli-')
    pwFile = join(base, 'pw')
    dir = join(base, 'ca')
    writeFileSync(pwFile, `${PASSWORD}\n`, {mode: 0o600})
    gh = await startGithubIssuer()
  })
  after(async () => gh?.stop())

  it('ca init creates the CA (0600 files, 0700 dirs, encrypted keys) and prints the fingerprint and next steps', async () => {
    const r = await sshca([
      'ca',
      'init',
      '--dir',
      dir,
      '--name',
      'Acme',
      '--dns',
      'ca.example.com,127.0.0.1',
      '--dns',
      '::1',
      '--password-file',
      pwFile,
    ])
    assert.equal(r.code, 0, r.stderr)
    fingerprint = /Root fingerprint\s+([0-9a-f]{64})/.exec(r.stdout)![1]!
    assert.match(r.stdout, /sshca bootstrap --ca-url https:\/\/ca\.example\.com:9000 --fingerprint [0-9a-f]{64}/)
    assert.match(r.stdout, /sshca ca serve --config .*ca\.yaml --password-file/)
    for (const line of modes(dir)) assert.match(line, /^(600 f|700 d) /, line)
    for (const f of readdirSync(join(dir, 'secrets'))) {
      const text = readFileSync(join(dir, 'secrets', f), 'utf8')
      assert.doesNotMatch(text, /PRIVATE KEY/, `${f} is not encrypted`)
      assert.equal(JSON.parse(text).kdf.name, 'scrypt')
    }
    const tls = readFileSync(join(dir, 'certs', 'tls.crt'), 'utf8')
    const {X509Certificate} = await import('node:crypto')
    const leaf = new X509Certificate(tls)
    assert.match(leaf.subjectAltName!, /DNS:ca\.example\.com/)
    assert.match(leaf.subjectAltName!, /IP Address:127\.0\.0\.1/)
    assert.match(leaf.subjectAltName!, /IP Address:0:0:0:0:0:0:0:1/)
    assert.ok(leaf.verify(new X509Certificate(readFileSync(join(dir, 'certs', 'intermediate_ca.crt'))).publicKey))
    const json = await sshca(['ca', 'init', '--dir', join(base, 'ca2'), '--password-file', pwFile, '--json'])
    assert.match(JSON.parse(json.stdout).rootFingerprint, /^[0-9a-f]{64}$/)
  })

  it('ca init refuses to overwrite a CA, and a failed init leaves nothing behind', async () => {
    const r = await sshca(['ca', 'init', '--dir', dir, '--password-file', pwFile])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /ERR_CA_EXISTS/)
    const missing = join(base, 'never')
    const bad = await sshca(['ca', 'init', '--dir', missing, '--password-file', join(base, 'no-such-file')])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /ERR_CA_PASSWORD/)
    assert.equal(existsSync(missing), false)
    assert.deepEqual(
      readdirSync(base).filter((f) => f.includes('init-')),
      [],
    )
    const noTty = await sshca(['ca', 'init', '--dir', missing])
    assert.match(noTty.stderr, /no --password-file given and no terminal/)
  })

  it('ca check-config: valid with warnings, invalid names the field (exit 3)', async () => {
    const cfg = join(dir, 'ca.yaml')
    const ok = await sshca(['ca', 'check-config', '--config', cfg])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /is valid: 0 provisioner/)
    assert.match(ok.stdout, /warning: provisioners: none configured/)
    await writePolicy(cfg, {
      provisioners: [
        {
          name: 'ci',
          type: 'oidc',
          issuer: gh.issuer,
          audience: 'sshca-ci',
          rules: [
            {
              name: 'deploy',
              match: {repository: 'acme/app', ref: 'refs/heads/main'},
              certificate: {
                principals: [currentUser()],
                ttl: '10m',
                keyId: 'gha:${repository}:${run_id}',
                forceCommand: 'echo deployed-by-sshca',
                sourceAddress: ['127.0.0.1/32'],
              },
            },
            {name: 'loose', match: {repository: 'acme/loose'}, certificate: {principals: ['x'], ttl: '5m'}},
          ],
        },
      ],
    })
    const warn = await sshca(['ca', 'check-config', '--config', cfg, '--json'])
    assert.equal(warn.code, 0)
    const doc = JSON.parse(warn.stdout)
    assert.deepEqual(doc.provisioners[0].rules, ['deploy', 'loose'])
    assert.match(doc.warnings.join('\n'), /loose\): matches on repository alone/)
    const broken = join(base, 'broken.yaml')
    writeFileSync(broken, readFileSync(cfg, 'utf8').replace('ttl: 10m', 'ttl: ten minutes'))
    const bad = await sshca(['ca', 'check-config', '--config', broken])
    assert.equal(bad.code, 3)
    assert.match(bad.stderr, /ERR_CA_CONFIG/)
    assert.match(bad.stderr, /provisioners\[0\]\.rules\[0\]\.certificate\.ttl: "ten minutes" is not a duration/)
  })

  it('ca explain: each rule, the certificate it would issue, or the denial (exit 7)', async () => {
    const cfg = join(dir, 'ca.yaml')
    const ok = await sshca(['ca', 'explain', '--config', cfg, '--token', await gh.mint()])
    assert.equal(ok.code, 0, ok.stderr)
    assert.match(ok.stdout, /✓ deploy: matches/)
    assert.match(ok.stdout, /✗ loose: repository is "acme\/app", not "acme\/loose"/)
    assert.match(ok.stdout, /force-command echo deployed-by-sshca/)
    assert.match(ok.stdout, /token signature NOT checked/)
    const no = await sshca(['ca', 'explain', '--config', cfg, '--claims', '-', '--provisioner', 'ci', '--json'], {
      input: JSON.stringify({repository: 'acme/app'}),
    })
    assert.equal(no.code, 7)
    const doc = JSON.parse(no.stdout)
    assert.deepEqual(doc.rules[0], {rule: 'deploy', matched: false, failed: 'claim "ref" is absent'})
    assert.equal(doc.decision.reason, 'no_rule_matched')
  })

  it('ca serve: issues, survives SIGHUP with a broken ca.yaml, stops on SIGTERM; sshd accepts what it issued', async () => {
    const cfg = join(dir, 'ca.yaml')
    const auditFile = join(base, 'audit.log')
    await writePolicy(cfg, {audit: {file: auditFile}})
    const child = spawn(
      process.execPath,
      [BIN, 'ca', 'serve', '--config', cfg, '--password-file', pwFile, '--address', '127.0.0.1:0', '--json'],
      {stdio: ['ignore', 'pipe', 'pipe']},
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    try {
      await waitFor('ca serve to start', () => out.includes('"url"') || child.exitCode !== null, 60_000)
      const {url, rootFingerprint} = JSON.parse(out)
      assert.equal(rootFingerprint, fingerprint)
      const dispatcher = new Agent({connect: {ca: readFileSync(join(dir, 'certs', 'root_ca.crt'))}})
      const signKey = async () => {
        const key = generatePrivateKey('ed25519')
        const res = await request(`${url}/ssh/sign`, {
          method: 'POST',
          dispatcher,
          headers: {'content-type': 'application/json'},
          body: JSON.stringify({publicKey: key.publicKey.blob.toString('base64'), ott: await gh.mint()}),
        })
        const body = (await res.body.json()) as {crt: string}
        return {status: res.statusCode, key, body}
      }
      const first = await signKey()
      assert.equal(first.status, 201)

      // SIGHUP with a broken file: logged, old policy kept
      const good = readFileSync(cfg, 'utf8')
      writeFileSync(cfg, good.replace('ttl: 10m', 'ttl: 10 fortnights'))
      child.kill('SIGHUP')
      await waitFor(
        'policy_reload_failed',
        () => existsSync(auditFile) && readFileSync(auditFile, 'utf8').includes('policy_reload_failed'),
      )
      const afterHup = await signKey()
      assert.equal(afterHup.status, 201)
      writeFileSync(cfg, good)

      // the certificate it issued logs into a real sshd and runs only its force-command
      const roots = (await (await request(`${url}/ssh/roots`, {dispatcher})).body.json()) as {userKey: string[]}
      const sshd = await startSshd({userCaKeys: [`ssh-ed25519 ${roots.userKey[0]}`]})
      const agent = await startAgent()
      try {
        const cert = parseCertificate(Buffer.from(afterHup.body.crt, 'base64'))
        await AgentClient.with({socketPath: agent.socket}, (a) =>
          a.addCertificate(afterHup.key, cert, {lifetimeSeconds: 300}),
        )
        const r = await ssh({port: sshd.port, agentSocket: agent.socket, command: 'echo arbitrary-command'})
        assert.equal(r.code, 0, r.stderr + sshd.log().slice(-1500))
        assert.equal(r.stdout.trim(), 'deployed-by-sshca')
      } finally {
        await agent.stop()
        await sshd.stop()
        await dispatcher.close()
      }

      child.kill('SIGTERM')
      const [code] = await once(child, 'exit')
      assert.equal(code, 0, err)
      const events = readFileSync(auditFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).event)
      assert.deepEqual(
        events.filter((e) => e !== 'certificate_issued'),
        ['policy_loaded', 'server_started', 'policy_reload_failed', 'server_stopped'],
      )
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL')
    }
  })

  it('ca serve with its audit log on a full disk: a SIGHUP says on stderr what it did and the CA serves on; a stop it cannot audit exits non-zero', async function () {
    const cfg = join(dir, 'ca.yaml')
    const before = readFileSync(cfg, 'utf8')
    const full = join(base, 'full')
    mkdirSync(full, {mode: 0o700})
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', full], {encoding: 'utf8'})
    if (m.status !== 0) {
      console.log(
        `      skipped: cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): ${(m.stderr || m.error?.message || '').trim()}`,
      )
      this.skip()
    }
    let child: ReturnType<typeof spawn> | undefined
    try {
      await writePolicy(cfg, {audit: {file: join(full, 'audit.log')}})
      const good = readFileSync(cfg, 'utf8')
      child = spawn(
        process.execPath,
        [BIN, 'ca', 'serve', '--config', cfg, '--password-file', pwFile, '--address', '127.0.0.1:0', '--json'],
        {stdio: ['ignore', 'pipe', 'pipe']},
      )
      const proc = child
      let out = ''
      let err = ''
      proc.stdout!.on('data', (d) => (out += d))
      proc.stderr!.on('data', (d) => (err += d))
      await waitFor('ca serve to start', () => out.includes('"url"') || proc.exitCode !== null, 60_000)
      const {url} = JSON.parse(out) as {url: string}
      // the audit log padded to a page boundary (64 KiB: a multiple of any page size), so that its next
      // line needs a page of its own; then what is left of the megabyte goes to a filler file
      const auditFile = join(full, 'audit.log')
      const line = JSON.stringify({event: 'test_padding'})
      const pad = 65_536 - ((statSync(auditFile).size + line.length + 1) % 65_536)
      appendFileSync(auditFile, `${line}${' '.repeat(pad % 65_536)}\n`)
      assert.equal(statSync(auditFile).size % 65_536, 0)
      const fd = openSync(join(full, 'filler'), 'w')
      try {
        for (const chunk = Buffer.alloc(16 * 1024); ;) writeSync(fd, chunk)
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC')
      } finally {
        closeSync(fd)
      }
      const hup = async (yaml: string, said: RegExp) => {
        writeFileSync(cfg, yaml)
        const seen = err.length
        proc.kill('SIGHUP')
        await waitFor(
          'the reload to be said on stderr',
          () => said.test(err.slice(seen)) || proc.exitCode !== null,
        ).catch((e: Error) => assert.fail(`${e.message}; stderr: ${err.slice(seen)}`))
        assert.equal(proc.exitCode, null, `the CA ended on a SIGHUP: ${err}`)
      }
      await hup(
        good.replace('ttl: 10m', 'ttl: 10 fortnights'),
        /warning \(reload\): SIGHUP: ca\.yaml was refused and the previous policy kept, unrecorded: the audit log cannot be written: .*ENOSPC/,
      )
      await hup(
        good,
        /warning \(reload\): SIGHUP: the new policy is in force, unrecorded: the audit log cannot be written: .*ENOSPC/,
      )
      const dispatcher = new Agent({connect: {ca: readFileSync(join(dir, 'certs', 'root_ca.crt'))}})
      try {
        const res = await request(`${url}/health`, {dispatcher})
        assert.equal(res.statusCode, 200)
        assert.equal(((await res.body.json()) as {status: string}).status, 'ok')
        // a balancer's health check drains it (every thread sees the audit log failing), and stderr says why
        const ready = await request(`${url}/ready`, {dispatcher})
        assert.deepEqual(
          {status: ready.statusCode, json: await ready.body.json()},
          {
            status: 503,
            json: {ready: false, audit: 'failing'},
          },
        )
        assert.match(
          err,
          /warning: the audit log cannot be written \(.*ENOSPC.*\): signing requests are refused \(503\) until it takes a line again/,
        )
      } finally {
        await dispatcher.close()
      }
      // what the stop says, not the SIGHUPs' warnings before it
      const stopping = err.length
      const outBefore = out.length
      proc.kill('SIGTERM')
      const [code] = (await once(proc, 'exit')) as [number | null]
      assert.notEqual(code, 0, 'a stop without its server_stopped line')
      assert.match(
        err.slice(stopping) + out.slice(outBefore),
        /ERR_STORE_UNAVAILABLE.*the audit log cannot be written: .*ENOSPC/s,
        `stdout: ${out.slice(outBefore)} stderr: ${err.slice(stopping)}`,
      )
    } finally {
      if (child && child.exitCode === null) {
        child.kill('SIGKILL')
        await once(child, 'exit')
      }
      spawnSync('umount', [full])
      writeFileSync(cfg, before)
    }
  })

  it('ca serve refuses to start on an invalid ca.yaml or a wrong password', async () => {
    const cfg = join(dir, 'ca.yaml')
    const broken = join(dir, 'broken.yaml')
    writeFileSync(broken, readFileSync(cfg, 'utf8').replace('disabled: false', 'disabled: maybe'))
    const r = await sshca(['ca', 'serve', '--config', broken, '--password-file', pwFile, '--address', '127.0.0.1:0'])
    assert.equal(r.code, 3)
    assert.match(r.stderr, /disabled: /)
    const wrong = join(base, 'wrong-pw')
    writeFileSync(wrong, 'not the password\n', {mode: 0o600})
    const w = await sshca(['ca', 'serve', '--config', cfg, '--password-file', wrong, '--address', '127.0.0.1:0'])
    assert.equal(w.code, 2)
    assert.match(w.stderr, /ERR_CA_PASSWORD.*wrong password/)
  })
})

describe('ca init and the directories around it', function () {
  this.timeout(30_000)
  it('never changes the mode of an existing parent directory (regression: it chmod-ed it 0700)', async () => {
    const parent = tempDir('sshca-parent-')
    const {chmodSync} = await import('node:fs')
    chmodSync(parent, 0o755)
    const pw = join(parent, 'pw')
    writeFileSync(pw, `${PASSWORD}\n`, {mode: 0o600})
    const r = await sshca(['ca', 'init', '--dir', join(parent, 'ca'), '--password-file', pw])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(statSync(parent).mode & 0o777, 0o755)
    assert.equal(statSync(join(parent, 'ca')).mode & 0o777, 0o700)
  })
})
