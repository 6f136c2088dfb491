/** `sshca bootstrap` and `sshca config` against a real CA over HTTPS. */
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {loadMaterial} from '../../src/ca/keys/material.ts'
import {certificateLine, signCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {PASSWORD, startTestCa, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {tempDir} from '../helpers/tmp.ts'
import {beginMarker} from '../../src/client/local/known-hosts.ts'

describe('sshca bootstrap', function () {
  this.timeout(60_000)
  let t: TestCa
  let other: TestCa
  before(async () => {
    t = await startTestCa({ssh: {hostPattern: '*.example.com'}})
    other = await startTestCa({})
  })
  after(async () => {
    await t?.stop()
    await other?.stop()
  })
  const env = () => ({SSHCA_HOME: join(tempDir('sshca-home-'), 'home')})

  it('trusts the CA: context folder 0700, files 0600, current set; fingerprint case, ":" and "-" ignored', async () => {
    const e = env()
    const fp = t.init.rootFingerprint.toUpperCase().match(/../g)!.join(':')
    const r = await sshca(['bootstrap', '--ca-url', `${t.url}/`, '--fingerprint', fp, '--json'], {env: e})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.context, '127.0.0.1')
    assert.equal(doc.rootFingerprint, t.init.rootFingerprint)
    assert.equal(readFileSync(join(e.SSHCA_HOME, 'current'), 'utf8').trim(), '127.0.0.1')
    const dir = join(e.SSHCA_HOME, 'contexts', '127.0.0.1')
    assert.equal(statSync(e.SSHCA_HOME).mode & 0o777, 0o700)
    assert.equal(statSync(dir).mode & 0o777, 0o700)
    for (const f of readdirSync(dir)) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f)
    assert.equal(readFileSync(join(dir, 'root_ca.crt'), 'utf8'), t.rootPem)
    const settings = JSON.parse(readFileSync(join(dir, 'context.json'), 'utf8'))
    assert.equal(settings.caUrl, t.url)
    assert.equal(settings.hostPattern, '*.example.com')
    assert.equal(
      settings.userCaKeys[0].split(' ').slice(0, 2).join(' '),
      t.init.userCaKey.split(' ').slice(0, 2).join(' '),
    )
  })

  it('a wrong fingerprint writes nothing and says so (exit 4)', async () => {
    const e = env()
    const wrong = other.init.rootFingerprint
    const r = await sshca(['bootstrap', '--ca-url', t.url, '--fingerprint', wrong], {env: e})
    assert.equal(r.code, 4)
    assert.match(r.stderr, /ERR_TRUST_FINGERPRINT_MISMATCH/)
    assert.equal(existsSync(e.SSHCA_HOME), false)
  })

  it('an unreachable CA writes nothing (exit 6); malformed input is a usage error (exit 2)', async () => {
    const e = env()
    const r = await sshca(['bootstrap', '--ca-url', 'https://127.0.0.1:9', '--fingerprint', t.init.rootFingerprint], {
      env: e,
    })
    assert.equal(r.code, 6)
    assert.match(r.stderr, /ERR_CA_UNREACHABLE.*connection refused/)
    assert.equal(existsSync(e.SSHCA_HOME), false)
    assert.equal((await sshca(['bootstrap', '--ca-url', t.url, '--fingerprint', 'abc'], {env: e})).code, 2)
    assert.equal(
      (
        await sshca(
          ['bootstrap', '--ca-url', t.url.replace('https', 'http'), '--fingerprint', t.init.rootFingerprint],
          {env: e},
        )
      ).code,
      2,
    )
  })

  it("changing a context's root needs --force; the same root again is fine", async () => {
    const e = env()
    assert.equal(
      (
        await sshca(['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'prod'], {
          env: e,
        })
      ).code,
      0,
    )
    assert.equal(
      (
        await sshca(['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'prod'], {
          env: e,
        })
      ).code,
      0,
    )
    const swap = await sshca(
      ['bootstrap', '--ca-url', other.url, '--fingerprint', other.init.rootFingerprint, '--context', 'prod'],
      {env: e},
    )
    assert.equal(swap.code, 4)
    assert.match(swap.stderr, /ERR_TRUST_ROOT_CHANGED/)
    assert.equal(readFileSync(join(e.SSHCA_HOME, 'contexts', 'prod', 'root_ca.crt'), 'utf8'), t.rootPem)
    const forced = await sshca(
      ['bootstrap', '--ca-url', other.url, '--fingerprint', other.init.rootFingerprint, '--context', 'prod', '--force'],
      {env: e},
    )
    assert.equal(forced.code, 0, forced.stderr)
    assert.equal(readFileSync(join(e.SSHCA_HOME, 'contexts', 'prod', 'root_ca.crt'), 'utf8'), other.rootPem)
    assert.deepEqual(readdirSync(join(e.SSHCA_HOME, 'contexts')), ['prod'])
  })

  it('the same root under a second context is said, not silent; the next steps name the laptop and the server', async () => {
    const e = env()
    const first = await sshca(
      ['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'prod'],
      {env: e},
    )
    assert.equal(first.code, 0, first.stderr)
    assert.doesNotMatch(first.stderr, /already trusted/)
    assert.match(
      first.stdout,
      /Next, on a laptop: sshca config\b.*then: sshca login\n\s+on a server: sudo sshca certificate --host --sign --token-file FILE .*then: sudo sshca config --host\n/,
    )
    const second = await sshca(
      ['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'prod-2', '--json'],
      {env: e},
    )
    assert.equal(second.code, 0, second.stderr)
    const r = JSON.parse(second.stdout)
    assert.deepEqual(r.sameRoot, [{context: 'prod', caUrl: t.url}])
    assert.ok(
      r.warnings.includes(
        `this root is already trusted as context "prod" (${t.url}); "prod-2" (${t.url}) is a second context for the same CA and is now current — to use "prod" instead, pass --context prod to sshca login/config; to reuse that name here, run bootstrap again with --context prod`,
      ),
      r.warnings.join('\n'),
    )
    const text = await sshca(
      ['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'prod-3'],
      {env: e},
    )
    assert.match(
      text.stderr,
      /this root is already trusted as context "prod" .*\n?[\s\S]*already trusted as context "prod-2"/,
    )
  })

  it('pins the root: a CA at the bootstrapped URL with another root is refused (ERR_TRUST_TLS)', async () => {
    const e = env()
    assert.equal(
      (
        await sshca(['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'pinned'], {
          env: e,
        })
      ).code,
      0,
    )
    // point the context at the other CA's address: same name, different TLS root
    const file = join(e.SSHCA_HOME, 'contexts', 'pinned', 'context.json')
    const s = JSON.parse(readFileSync(file, 'utf8'))
    writeFileSync(file, JSON.stringify({...s, caUrl: other.url}))
    const r = await sshca(['config', '--roots'], {env: e})
    assert.equal(r.code, 4)
    assert.match(r.stderr, /ERR_TRUST_TLS/)
  })

  it('commands that need a CA say how to bootstrap one', async () => {
    const r = await sshca(['config', '--roots'], {env: env()})
    assert.equal(r.code, 4)
    assert.match(r.stderr, /ERR_NOT_BOOTSTRAPPED[\s\S]*sshca bootstrap --ca-url/)
  })
})

describe('sshca config', function () {
  this.timeout(60_000)
  let t: TestCa
  let t2: TestCa
  before(async () => {
    t = await startTestCa({ssh: {hostPattern: '*.example.com'}})
    t2 = await startTestCa({})
  })
  after(async () => {
    await t?.stop()
    await t2?.stop()
  })

  async function bootstrapped(ca = t) {
    const base = tempDir('sshca-cfg-')
    const e = {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}
    const r = await sshca(
      ['bootstrap', '--ca-url', ca.url, '--fingerprint', ca.init.rootFingerprint, '--context', 'demo'],
      {env: e},
    )
    assert.equal(r.code, 0, r.stderr)
    return e
  }

  it('writes one managed block into an existing known_hosts, every other byte unchanged, with a backup', async () => {
    const e = await bootstrapped()
    mkdirSync(join(e.HOME, '.ssh'), {recursive: true})
    const kh = join(e.HOME, '.ssh', 'known_hosts')
    const original =
      '# my hosts\n|1|salt=|hash= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGH1\n\ngit.example.org ssh-rsa AAAAB3NzaC1yc2E=\n'
    writeFileSync(kh, original, {mode: 0o644})
    const r = await sshca(['config'], {env: e})
    assert.equal(r.code, 0, r.stderr)
    const after1 = readFileSync(kh, 'utf8')
    assert.ok(after1.startsWith(original))
    const hostCa = t.init.hostCaKey.split(' ').slice(0, 2).join(' ')
    assert.match(
      after1.slice(original.length),
      new RegExp(
        `^${beginMarker('demo').replace(/[.*+?^${}()|[\]\\`]/g, '\\$&')}\\n@cert-authority \\*\\.example\\.com ${hostCa.replace(/[+/]/g, '\\$&')} demo host CA\\n# <<< sshca demo\\n$`,
      ),
    )
    assert.equal(readFileSync(`${kh}.sshca-backup`, 'utf8'), original)
    assert.equal(statSync(kh).mode & 0o777, 0o644)
    const again = await sshca(['config'], {env: e})
    assert.match(again.stdout, /already trusts/)
    assert.equal(readFileSync(kh, 'utf8'), after1)
    assert.equal(readFileSync(kh, 'utf8').split('# >>> sshca demo').length, 2)
  })

  it("replaces the block when the CA's host key changes, and --pattern overrides the CA's pattern", async () => {
    const e = await bootstrapped()
    const kh = join(e.HOME, '.ssh', 'known_hosts')
    assert.equal((await sshca(['config'], {env: e})).code, 0)
    // the same context now points at another CA (re-created): its host CA key differs
    assert.equal(
      (
        await sshca(
          ['bootstrap', '--ca-url', t2.url, '--fingerprint', t2.init.rootFingerprint, '--context', 'demo', '--force'],
          {env: e},
        )
      ).code,
      0,
    )
    const r = await sshca(['config', '--pattern', '10.0.0.*'], {env: e})
    assert.equal(r.code, 0, r.stderr)
    const text = readFileSync(kh, 'utf8')
    assert.equal(text.split('# >>> sshca demo').length, 2)
    assert.ok(text.includes(`@cert-authority 10.0.0.* ${t2.init.hostCaKey.split(' ').slice(0, 2).join(' ')}`))
    assert.ok(!text.includes(t.init.hostCaKey.split(' ')[1]!))
  })

  it('--dry-run prints the block and writes nothing; --roots and --host --roots print the CA keys', async () => {
    const e = await bootstrapped()
    const dry = await sshca(['config', '--dry-run'], {env: e})
    // the changes as diff -u shows them, each file from nothing
    assert.match(
      dry.stdout,
      /^# \S+known_hosts: the "demo" block[^\n]*\n--- \S+known_hosts\n\+\+\+ \S+known_hosts\n@@ -0,0 \+1,\d+ @@\n\+# >>> sshca demo[\s\S]*\+@cert-authority \*\.example\.com ssh-ed25519 /,
    )
    assert.match(
      dry.stdout,
      /^\+Match final host \*\.example\.com\n\+ {2}# [^\n]*\n\+ {2}RevokedHostKeys \S+\/contexts\/demo\/revoked_host_keys\.krl$/m,
    )
    assert.match(
      dry.stdout,
      /: its Include line at the top\n--- \S+\n\+\+\+ \S+\n@@ -0,0 \+1,2 @@\n\+# [^\n]*\n\+Include \S+\/ssh_config\n$/,
    )
    assert.equal(existsSync(join(e.HOME, '.ssh', 'known_hosts')), false)
    assert.equal(existsSync(join(e.HOME, '.ssh', 'config')), false)
    assert.equal(existsSync(join(e.SSHCA_HOME, 'ssh_config')), false)
    assert.equal(
      existsSync(join(e.SSHCA_HOME, 'contexts', 'demo', 'revoked_host_keys.krl')),
      true,
      'bootstrap fetched the KRL',
    )
    const user = await sshca(['config', '--roots'], {env: e})
    assert.equal(user.stdout.split(' ').slice(0, 2).join(' '), t.init.userCaKey.split(' ').slice(0, 2).join(' '))
    const host = await sshca(['config', '--host', '--roots'], {env: e})
    assert.equal(host.stdout.split(' ').slice(0, 2).join(' '), t.init.hostCaKey.split(' ').slice(0, 2).join(' '))
  })

  it('--host writes the sshd snippet and the user CA key file; --dry-run prints them', async function () {
    // the units run this checkout as root: only a root-owned one may (a user's is refused, see client-security.test.ts)
    if (process.getuid?.() !== 0) this.skip()
    const e = await bootstrapped()
    const sshd = tempDir('sshca-etc-ssh-')
    // as Debian ships them: three host keys; only ed25519 has a certificate from this CA, rsa one from another
    const m = await loadMaterial(t.init.dir, PASSWORD, ['127.0.0.1'])
    const rogue = keySigner(generatePrivateKey('ed25519').keyObject)
    for (const [name, type, signer] of [
      ['ed25519', 'ed25519', m.hostCa.active],
      ['ecdsa', 'ecdsa', undefined],
      ['rsa', 'rsa', rogue],
    ] as const) {
      const k = generatePrivateKey(type)
      writeFileSync(join(sshd, `ssh_host_${name}_key.pub`), `${k.publicKey.toLine('host')}\n`)
      if (signer) {
        const c = await signCertificate(
          {
            type: 'host',
            publicKey: k.publicKey,
            serial: 9n,
            keyId: 'host:x',
            principals: ['x'],
            validAfter: 0n,
            validBefore: BigInt(Math.floor(Date.now() / 1000) + 3600),
          },
          signer,
        )
        writeFileSync(join(sshd, `ssh_host_${name}_key-cert.pub`), `${certificateLine(c)}\n`)
      }
    }
    const dry = await sshca(['config', '--host', '--dry-run', '--sshd-dir', sshd], {env: e})
    assert.match(dry.stdout, /TrustedUserCAKeys .*sshca_user_ca\.pub/, dry.stderr)
    // only the certified key is configured; the others are named with the reason
    assert.deepEqual(
      [...dry.stdout.matchAll(/^HostCertificate (.*)$/gm)].map((x) => x[1]),
      [join(sshd, 'ssh_host_ed25519_key-cert.pub')],
    )
    assert.match(dry.stdout, /^skipped ssh_host_ecdsa_key: no certificate$/m)
    assert.match(dry.stdout, /^skipped ssh_host_rsa_key: its certificate is from another CA$/m)
    const json = JSON.parse(
      (await sshca(['config', '--host', '--dry-run', '--sshd-dir', sshd, '--json'], {env: e})).stdout,
    )
    assert.deepEqual(json.certified, ['ssh_host_ed25519_key'])
    assert.deepEqual(
      json.skipped.map((x: {key: string}) => x.key),
      ['ssh_host_ecdsa_key', 'ssh_host_rsa_key'],
    )
    assert.equal(existsSync(join(sshd, 'sshca_user_ca.pub')), false)
    const units = tempDir('sshca-units-')
    const r = await sshca(['config', '--host', '--sshd-dir', sshd, '--systemd-dir', units], {env: e})
    assert.equal(r.code, 0, r.stderr)
    assert.equal(
      readFileSync(join(sshd, 'sshca_user_ca.pub'), 'utf8').split(' ').slice(0, 2).join(' '),
      t.init.userCaKey.split(' ').slice(0, 2).join(' '),
    )
    const snippet = readFileSync(join(sshd, 'sshd_config.d', '50-sshca.conf'), 'utf8')
    assert.match(snippet, /^# Managed by sshca/)
    assert.match(snippet, new RegExp(`^RevokedKeys ${sshd}/sshca_revoked_keys\\.krl$`, 'm'))
    // the KRL sshd will read exists and parses: a missing RevokedKeys file makes sshd refuse every key
    assert.equal(readFileSync(join(sshd, 'sshca_revoked_keys.krl')).subarray(0, 8).toString('latin1'), 'SSHKRL\n\0')
    // one unit for the KRL, a template instance per host key for renewal (unsafe-path refusals: client-security.test.ts)
    const krlService = readFileSync(join(units, 'sshca-krl.service'), 'utf8')
    // the hourly unit keeps TrustedUserCAKeys too: how a CA key rotation reaches sshd
    assert.match(
      krlService,
      /^ExecStart=\/\S+ \/\S+ krl --context demo --out .*sshca_revoked_keys\.krl --user-ca-keys .*sshca_user_ca\.pub$/m,
    )
    assert.match(krlService, new RegExp(`^Environment=SSHCA_HOME=${e.SSHCA_HOME}$`, 'm'))
    const renew = readFileSync(join(units, 'sshca-renew@.service'), 'utf8')
    assert.match(
      renew,
      new RegExp(`^ExecStart=/\\S+ /\\S+ renew --context demo --reload-sshd ${sshd}/%i-cert\\.pub ${sshd}/%i$`, 'm'),
    )
    assert.doesNotMatch(renew, / krl /)
    assert.match(readFileSync(join(units, 'sshca-renew@.timer'), 'utf8'), /^OnCalendar=daily$/m)
    assert.match(readFileSync(join(units, 'sshca-krl.timer'), 'utf8'), /^OnCalendar=hourly$/m)
    assert.match(r.stdout, /systemctl enable --now sshca-krl\.timer sshca-renew@ssh_host_ed25519_key\.timer/)
    const {spawnSync} = await import('node:child_process')
    assert.match(r.stdout, /sshca-renew@ssh_host_ed25519_key\.timer\n/)
    assert.doesNotMatch(r.stdout, /sshca-renew@ssh_host_(ecdsa|rsa)_key\.timer/)
    // a real sshd accepts the snippet
    spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshd, 'test_host_key')])
    writeFileSync(
      join(sshd, 'sshd_config'),
      `HostKey ${join(sshd, 'test_host_key')}\nInclude ${join(sshd, 'sshd_config.d')}/*.conf\n`,
    )
    const check = spawnSync('/usr/sbin/sshd', ['-t', '-f', join(sshd, 'sshd_config')], {encoding: 'utf8'})
    assert.equal(check.status, 0, check.stderr)
    const analyze = spawnSync('systemd-analyze', ['verify', '--man=no', join(units, 'sshca-krl.timer')], {
      encoding: 'utf8',
    })
    if (analyze.error === undefined) assert.doesNotMatch(analyze.stderr, /sshca-krl\.(service|timer):\d+: /)
  })
})
