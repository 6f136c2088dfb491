/**
 * SECURITY.md row 63: a hostile or compromised CA changes the host pattern it publishes on /ssh/roots
 * after the person accepted one (bootstrap showed it, or config --pattern chose it), so that its host
 * certificates are trusted for every host (`@cert-authority *`). Performed for real: the built CLI
 * against a CA on 127.0.0.1 whose /ssh/roots each test sets (test/helpers/scripted-server.ts), with
 * CI=true and no terminal, as a script or ssh's Match exec runs sshca.
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {sshca} from '../helpers/cli.ts'
import {startAgent} from '../helpers/openssh.ts'
import {json, startScriptedCa, type ScriptedCa} from '../helpers/scripted-server.ts'
import {tempDir} from '../helpers/tmp.ts'

const key = (): string => generatePrivateKey('ed25519').publicKey.blob.toString('base64')

describe('a CA cannot widen the hosts its host certificates are trusted for by changing its host pattern', function () {
  this.timeout(120_000)
  let evil: ScriptedCa
  let prod: ScriptedCa
  const hostKey = key()
  /** What the hostile CA publishes from now on. */
  const publish = (ca: ScriptedCa, hostPattern: string) =>
    (ca.roots = json({userKey: [key()], hostKey: [hostKey], hostPattern}))

  before(async () => {
    evil = await startScriptedCa()
    prod = await startScriptedCa()
  })
  after(async () => {
    await evil?.server.stop()
    await prod?.server.stop()
  })

  /** A fresh $HOME and $SSHCA_HOME, not interactive (CI=true; the CLI's stdin and stdout are pipes). */
  function person() {
    const base = tempDir('sshca-pattern-')
    const env = {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home'), CI: 'true'}
    const knownHosts = () => readFileSync(join(env.HOME, '.ssh', 'known_hosts'), 'utf8')
    const sshConfig = () => readFileSync(join(env.SSHCA_HOME, 'ssh_config'), 'utf8')
    const settings = (name: string) =>
      JSON.parse(readFileSync(join(env.SSHCA_HOME, 'contexts', name, 'context.json'), 'utf8'))
    const bootstrap = async (ca: ScriptedCa, context: string) => {
      const r = await sshca(
        ['bootstrap', '--ca-url', ca.server.url, '--fingerprint', ca.fingerprint, '--context', context],
        {env},
      )
      assert.equal(r.code, 0, r.stderr)
      return r
    }
    return {env, knownHosts, sshConfig, settings, bootstrap}
  }

  it('the CA switches to "*" after bootstrap: sshca config keeps the pattern bootstrap showed, says so and how to adopt the new one; only --pattern adopts it', async () => {
    const p = person()
    publish(evil, '*.evil.test')
    const b = await p.bootstrap(evil, 'evil')
    assert.match(b.stdout, /host pattern \*\.evil\.test \(the hosts/)
    assert.doesNotMatch(b.stderr, /any domain/)

    publish(evil, '*')
    const r = await sshca(['config'], {env: p.env})
    assert.equal(r.code, 0, r.stderr)
    assert.match(p.knownHosts(), /^@cert-authority \*\.evil\.test ssh-ed25519 /m)
    assert.doesNotMatch(p.knownHosts(), /^@cert-authority \* /m)
    assert.match(p.sshConfig(), /^Match final host \*\.evil\.test$/m)
    assert.doesNotMatch(p.sshConfig(), /^Match final host \*( |$)/m)
    const warning = r.stderr.replace(/\s+/g, ' ')
    assert.match(warning, /changed its host pattern from "\*\.evil\.test" to "\*" \("\*" matches hosts in any domain/)
    assert.match(warning, /say so: sshca config --context evil --pattern '\*'/)
    // said again at every run (and in --json) until the person decides
    const again = await sshca(['config', '--json'], {env: p.env})
    assert.equal(again.code, 0, again.stderr)
    const doc = JSON.parse(again.stdout)
    assert.deepEqual([doc.pattern, doc.caPattern], ['*.evil.test', '*'])
    assert.ok(
      doc.warnings.some((w: string) => w.includes("sshca config --context evil --pattern '*'")),
      JSON.stringify(doc.warnings),
    )

    // the explicit choice is taken, with bootstrap's warning
    const adopted = await sshca(['config', '--pattern', '*'], {env: p.env})
    assert.equal(adopted.code, 0, adopted.stderr)
    assert.match(p.knownHosts(), /^@cert-authority \* ssh-ed25519 /m)
    assert.match(adopted.stderr.replace(/\s+/g, ' '), /"\*" matches hosts in any domain/)
    assert.deepEqual([p.settings('evil').configuredPattern, p.settings('evil').acceptedCaPattern], ['*', '*'])
  })

  it('a narrowing (config --pattern web.evil.test) survives the CA widening to "*" and a config without --pattern', async () => {
    const p = person()
    publish(evil, '*.evil.test')
    await p.bootstrap(evil, 'evil')
    const narrow = await sshca(['config', '--pattern', 'web.evil.test'], {env: p.env})
    assert.equal(narrow.code, 0, narrow.stderr)

    publish(evil, '*')
    const r = await sshca(['config'], {env: p.env})
    assert.equal(r.code, 0, r.stderr)
    assert.match(p.knownHosts(), /^@cert-authority web\.evil\.test ssh-ed25519 /m)
    assert.doesNotMatch(p.knownHosts(), /^@cert-authority \* /m)
    assert.match(p.sshConfig(), /^Match final host web\.evil\.test$/m)
    assert.match(r.stderr.replace(/\s+/g, ' '), /since you accepted "web\.evil\.test"/)
  })

  it('a CA whose pattern matches every host: config without --pattern is refused (exit 4, ERR_TRUST_HOST_PATTERN) and writes nothing, also for a context of an older sshca; --pattern takes it', async () => {
    const p = person()
    publish(evil, '*')
    const b = await p.bootstrap(evil, 'star')
    assert.match(b.stderr.replace(/\s+/g, ' '), /"\*" matches hosts in any domain/)

    const r = await sshca(['config'], {env: p.env})
    assert.equal(r.code, 4, r.stderr)
    assert.match(r.stderr, /ERR_TRUST_HOST_PATTERN\]: the host pattern of "star" is "\*"/)
    assert.match(r.stderr.replace(/\s+/g, ' '), /sshca config --context star --pattern '\*'/)
    const doc = JSON.parse((await sshca(['config', '--json'], {env: p.env})).stdout)
    assert.equal(doc.error.code, 'ERR_TRUST_HOST_PATTERN')
    assert.equal(existsSync(join(p.env.HOME, '.ssh', 'known_hosts')), false)
    assert.equal(existsSync(join(p.env.SSHCA_HOME, 'ssh_config')), false)
    // and bootstrap's next step says as much
    assert.match(b.stdout, /Next, on a laptop: sshca config --pattern "\*\.your-domain"/)

    // a context bootstrapped by an older sshca saved no acceptedCaPattern: the CA's widening is refused all the same
    publish(evil, '*.evil.test')
    await p.bootstrap(evil, 'old')
    const file = join(p.env.SSHCA_HOME, 'contexts', 'old', 'context.json')
    const {acceptedCaPattern, ...older} = p.settings('old')
    assert.equal(acceptedCaPattern, '*.evil.test')
    writeFileSync(file, JSON.stringify(older))
    publish(evil, '*')
    const legacy = await sshca(['config', '--context', 'old'], {env: p.env})
    assert.equal(legacy.code, 4, legacy.stderr)
    assert.match(legacy.stderr, /ERR_TRUST_HOST_PATTERN/)
    assert.equal(existsSync(join(p.env.HOME, '.ssh', 'known_hosts')), false)

    const given = await sshca(['config', '--context', 'star', '--pattern', '*'], {env: p.env})
    assert.equal(given.code, 0, given.stderr)
    assert.match(p.knownHosts(), /^@cert-authority \* ssh-ed25519 /m)
  })

  it('proxycommand: a context never configured, whose CA now claims "*", does not take the connections to another CA\'s hosts (nor their ID token)', async () => {
    const p = person()
    publish(evil, '*.evil.test')
    publish(prod, '*.prod.example')
    // "a-evil" sorts first: proxycommand tries the contexts by name
    await p.bootstrap(evil, 'a-evil')
    await p.bootstrap(prod, 'prod')
    publish(evil, '*')
    // any command that talks to the CA refreshes the pattern it publishes, without asking anyone
    assert.equal((await sshca(['config', '--roots', '--context', 'a-evil'], {env: p.env})).code, 0)
    assert.equal(p.settings('a-evil').hostPattern, '*')

    const agent = await startAgent()
    try {
      const tokenFile = join(tempDir('sshca-token-'), 'token')
      writeFileSync(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZXBsb3kifQ.c2ln\n', {mode: 0o600})
      evil.server.requests.length = 0
      prod.server.requests.length = 0
      const r = await sshca(['proxycommand', '--identity-token-file', tokenFile, 'deploy', 'db.prod.example', '9'], {
        env: {...p.env, SSH_AUTH_SOCK: agent.socket},
        input: '',
      })
      // the scripted CA signs nothing: what matters is whom the token went to
      assert.notEqual(r.code, 0)
      assert.deepEqual(evil.server.requests, [], 'the hostile CA was not asked')
      assert.ok(prod.server.requests.includes('POST /ssh/sign'), JSON.stringify(prod.server.requests))
    } finally {
      await agent.stop()
    }
  })
})
