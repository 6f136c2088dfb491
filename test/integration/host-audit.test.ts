/**
 * `sshca host audit` (the built CLI) against a real sshd configuration (read with the real sshd -T)
 * and accounts given by a passwd file: accounts with and without authorized_keys (plain, with
 * options, through a symlink, at an absolute %u path, cert-authority lines for a rogue CA and for
 * the CA sshd will trust), before and after `sshca config --host`, and after the migration — exit
 * 10 while any way in bypasses the CA, 0 once none does.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, chownSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {loadMaterial} from '../../src/ca/keys/material.ts'
import {certificateLine, signCertificate} from '../../src/ssh/cert.ts'
import {PublicKey} from '../../src/ssh/keys.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {PASSWORD, startTestCa, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {tempDir} from '../helpers/tmp.ts'

interface Audit {
  clean: boolean
  findings: {kind: string; user?: string; path?: string; message: string}[]
  accounts: {
    user: string
    canLogin: boolean
    authorizedKeys: {
      path: string
      symlink: boolean
      keys: {fingerprint: string; options: string; certAuthority: boolean; trustedCa: boolean}[]
    }[]
  }[]
  hostKeys: {path: string; problem?: string; certificate: string | null}[]
  configHost: {context: string; files: {path: string; state: string}[]} | {error: string} | null
}

describe('sshca host audit: the way off authorized_keys', function () {
  this.timeout(120_000)
  let t: TestCa
  before(async function () {
    // sshd -T reads the host keys, and config --host refuses units a non-root user could change
    if (process.getuid?.() !== 0) this.skip()
    t = await startTestCa({})
  })
  after(async () => t?.stop())

  it('lists every way in that bypasses the CA, shrinks after config --host, and exits 0 once the migration is done', async () => {
    const base = tempDir('sshca-audit-')
    // the accounts' files are read as the accounts (sshd does): their homes must be reachable by them
    chmodSync(base, 0o755)
    const env = {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}
    assert.equal(
      (
        await sshca(['bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'demo'], {
          env,
        })
      ).code,
      0,
    )
    const etc = join(base, 'etc-ssh')
    const units = join(base, 'units')
    mkdirSync(join(etc, 'sshd_config.d'), {recursive: true})
    const hostKey = join(etc, 'ssh_host_ed25519_key')
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]).status, 0)
    const sshdConfig = join(etc, 'sshd_config')
    const writeSshd = (lines: string[]) =>
      writeFileSync(
        sshdConfig,
        [
          `Include ${etc}/sshd_config.d/*.conf`,
          `HostKey ${hostKey}`,
          'UsePAM no',
          'KbdInteractiveAuthentication no',
          ...lines,
          '',
        ].join('\n'),
      )
    writeSshd([`AuthorizedKeysFile .ssh/authorized_keys ${etc}/keys/%u`, 'PasswordAuthentication yes'])

    // the accounts
    const homes = join(base, 'homes')
    const key = () => generatePrivateKey('ed25519').publicKey
    const alice = [key(), key()]
    const bobKey = key()
    const frankKey = key()
    const rogueCa = key()
    const userCa = PublicKey.parseLine(readFileSync(join(t.init.dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')).key
    const keysFile = (user: string, lines: string[]) => {
      mkdirSync(join(homes, user, '.ssh'), {recursive: true})
      writeFileSync(join(homes, user, '.ssh', 'authorized_keys'), `${lines.join('\n')}\n`)
    }
    keysFile('alice', [
      `# alice's laptop and CI`,
      alice[0]!.toLine('alice@laptop'),
      `from="10.0.0.0/8",command="/usr/bin/deploy \\"x y\\"",no-pty ${alice[1]!.toLine('ci')}`,
    ])
    keysFile('carol', [`cert-authority,principals="carol" ${rogueCa.toLine('another CA')}`])
    keysFile('dave', [`cert-authority ${userCa.toLine('the sshca user CA')}`])
    mkdirSync(join(homes, 'bob', '.ssh'), {recursive: true})
    writeFileSync(join(base, 'bob-keys'), `${bobKey.toLine('bob')}\n`)
    symlinkSync(join(base, 'bob-keys'), join(homes, 'bob', '.ssh', 'authorized_keys'))
    mkdirSync(join(etc, 'keys'))
    writeFileSync(join(etc, 'keys', 'frank'), `${frankKey.toLine('frank')}\n`)
    mkdirSync(join(homes, 'erin'), {recursive: true})
    const passwd = join(base, 'passwd')
    writeFileSync(
      passwd,
      [
        'svc:x:998:998:service:/nonexistent:/usr/sbin/nologin',
        ...['alice', 'bob', 'carol', 'dave', 'erin', 'frank'].map(
          (u, i) => `${u}:x:${1001 + i}:${1001 + i}:${u}:${join(homes, u)}:/bin/bash`,
        ),
        '',
      ].join('\n'),
    )

    const audit = async (expectCode: number): Promise<Audit> => {
      const r = await sshca(
        [
          'host',
          'audit',
          '--sshd-config',
          sshdConfig,
          '--passwd',
          passwd,
          '--sshd-dir',
          etc,
          '--systemd-dir',
          units,
          '--json',
        ],
        {env},
      )
      assert.equal(r.code, expectCode, r.stderr + r.stdout.slice(0, 3000))
      return JSON.parse(r.stdout) as Audit
    }
    const keyFindings = (a: Audit) =>
      a.findings
        .filter((f) => f.kind === 'authorized_keys')
        .map((f) => f.user)
        .sort()

    // before: everything that bypasses the CA, and the CA itself not trusted
    const before = await audit(10)
    assert.equal(before.clean, false)
    const kinds = new Set(before.findings.map((f) => f.kind))
    for (const k of [
      'no_trusted_user_ca',
      'authorized_keys_file_setting',
      'authorized_keys',
      'password_authentication',
      'host_key_without_certificate',
    ])
      assert.ok(kinds.has(k), `${k} in ${[...kinds].join(', ')}`)
    assert.equal(kinds.has('kbd_interactive_authentication'), false, 'KbdInteractiveAuthentication no')
    assert.deepEqual(
      keyFindings(before),
      ['alice', 'bob', 'carol', 'dave', 'frank'],
      'erin has no file, svc cannot log in',
    )
    const aliceKeys = before.accounts.find((a) => a.user === 'alice')!.authorizedKeys[0]!.keys
    assert.deepEqual(
      aliceKeys.map((k) => k.fingerprint),
      alice.map((k) => k.fingerprint()),
    )
    assert.equal(aliceKeys[1]!.options, 'from="10.0.0.0/8",command="/usr/bin/deploy \\"x y\\"",no-pty')
    assert.equal(before.accounts.find((a) => a.user === 'bob')!.authorizedKeys[0]!.symlink, true)
    assert.equal(before.accounts.find((a) => a.user === 'frank')!.authorizedKeys[0]!.path, join(etc, 'keys', 'frank'))
    assert.equal(
      before.accounts.find((a) => a.user === 'svc'),
      undefined,
    )
    const dave = before.accounts.find((a) => a.user === 'dave')!.authorizedKeys[0]!.keys[0]!
    assert.deepEqual([dave.certAuthority, dave.trustedCa], [true, false], 'sshd trusts no user CA yet')
    assert.ok(before.configHost && 'files' in before.configHost, JSON.stringify(before.configHost))
    assert.ok(
      before.configHost.files.some(
        (f) => f.path === join(etc, 'sshd_config.d', '50-sshca.conf') && f.state === 'create',
      ),
    )
    const text = await sshca(
      ['host', 'audit', '--sshd-config', sshdConfig, '--passwd', passwd, '--sshd-dir', etc, '--systemd-dir', units],
      {env},
    )
    assert.equal(text.code, 10)
    assert.match(text.stdout, /way\(s\) in that do not go through the CA/)
    assert.match(text.stdout, /sshca config --host \(context demo\) would create .*50-sshca\.conf/)

    // the host key certified by the CA, then config --host
    const m = await loadMaterial(t.init.dir, PASSWORD, ['127.0.0.1'])
    const hostPub = PublicKey.parseLine(readFileSync(`${hostKey}.pub`, 'utf8')).key
    const now = BigInt(Math.floor(Date.now() / 1000))
    const cert = await signCertificate(
      {
        type: 'host',
        publicKey: hostPub,
        serial: 77n,
        keyId: 'host:audit',
        principals: ['audit.example.com'],
        validAfter: now - 60n,
        validBefore: now + 3600n,
      },
      m.hostCa.active,
    )
    writeFileSync(`${hostKey}-cert.pub`, `${certificateLine(cert)}\n`)
    const configured = await sshca(['config', '--host', '--sshd-dir', etc, '--systemd-dir', units, '--json'], {env})
    assert.equal(configured.code, 0, configured.stderr)
    assert.deepEqual(
      (JSON.parse(configured.stdout) as {warnings: string[]}).warnings,
      [],
      'sshd reads what config wrote',
    )
    assert.equal(spawnSync('/usr/sbin/sshd', ['-t', '-f', sshdConfig]).status, 0, 'sshd accepts the configuration')

    const after = await audit(10)
    const kindsAfter = new Set(after.findings.map((f) => f.kind))
    assert.equal(kindsAfter.has('no_trusted_user_ca'), false)
    assert.equal(kindsAfter.has('host_key_without_certificate'), false)
    assert.equal(after.hostKeys[0]!.certificate, `${hostKey}-cert.pub`)
    assert.deepEqual(
      keyFindings(after),
      ['alice', 'bob', 'carol', 'frank'],
      "dave's cert-authority line names the CA sshd now trusts",
    )
    assert.ok(after.configHost && 'files' in after.configHost)
    assert.equal(after.configHost.files.find((f) => f.path.endsWith('50-sshca.conf'))?.state, 'same')
    assert.ok(
      kindsAfter.has('password_authentication') && kindsAfter.has('authorized_keys_file_setting'),
      'config --host does not touch these: the audit keeps saying so',
    )

    // the migration: keys removed, the settings closed; nothing bypasses the CA any more
    for (const u of ['alice', 'bob', 'carol']) rmSync(join(homes, u, '.ssh', 'authorized_keys'))
    rmSync(join(etc, 'keys', 'frank'))
    writeSshd(['AuthorizedKeysFile none', 'PasswordAuthentication no'])
    assert.equal(spawnSync('/usr/sbin/sshd', ['-t', '-f', sshdConfig]).status, 0)
    const done = await audit(0)
    assert.equal(done.clean, true)
    assert.deepEqual(done.findings, [])

    // a file read before sshca's (cloud-init's) sets its own: sshd no longer reads sshca's settings
    const cloud = join(etc, 'sshd_config.d', '10-cloud.conf')
    writeFileSync(cloud, 'RevokedKeys none\n')
    const shadowed = await audit(10)
    assert.deepEqual(
      shadowed.findings.map((f) => [f.kind, f.message.replace(/:.*/, '')]),
      [
        [
          'sshca_settings_not_in_effect',
          `sshd reads RevokedKeys none, not sshca's ${join(etc, 'sshca_revoked_keys.krl')}`,
        ],
      ],
    )
    const again = await sshca(['config', '--host', '--sshd-dir', etc, '--systemd-dir', units, '--json'], {env})
    assert.match(
      (JSON.parse(again.stdout) as {warnings: string[]}).warnings.join('\n'),
      /^sshd reads RevokedKeys none, not sshca's /,
    )
    rmSync(cloud)

    // a key put back (AuthorizedKeysFile re-enabled by someone) is caught again
    writeSshd(['AuthorizedKeysFile .ssh/authorized_keys', 'PasswordAuthentication no'])
    keysFile('erin', [key().toLine('erin')])
    const relapse = await audit(10)
    assert.deepEqual(keyFindings(relapse), ['erin'])

    // a key this audit cannot read is still a way in when sshd takes it: a DSA key, ssh-dss allowed
    writeSshd([
      'AuthorizedKeysFile .ssh/authorized_keys',
      'PasswordAuthentication no',
      'PubkeyAcceptedAlgorithms +ssh-dss',
    ])
    assert.equal(spawnSync('/usr/sbin/sshd', ['-t', '-f', sshdConfig]).status, 0)
    const dsa = join(base, 'dsa')
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'dsa', '-N', '', '-f', dsa]).status, 0)
    keysFile('erin', ['# an old key', readFileSync(`${dsa}.pub`, 'utf8').trim()])
    const dss = await audit(10)
    assert.deepEqual(
      dss.findings.filter((f) => f.user === 'erin').map((f) => [f.kind, f.message.replace(/\):.*/, ')')]),
      [
        [
          'authorized_keys_unparsed',
          `${join(homes, 'erin', '.ssh', 'authorized_keys')} (erin) has 1 line(s) this audit cannot read as keys (line 2)`,
        ],
      ],
    )
  })

  it('reads authorized_keys as sshd does: whole regular files only; a FIFO or /dev/zero cannot stall it', async () => {
    // a local user once hung root's audit with a FIFO, or filled its memory with a link to /dev/zero;
    // and keys after the first MiB of a file went unseen though sshd reads all of it
    const base = tempDir('sshca-audit-odd-')
    // the accounts' files are read as the accounts (sshd does): their homes must be reachable by them
    chmodSync(base, 0o755)
    const etc = join(base, 'etc-ssh')
    mkdirSync(etc, {recursive: true})
    const hostKey = join(etc, 'ssh_host_ed25519_key')
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]).status, 0)
    const sshdConfig = join(etc, 'sshd_config')
    writeFileSync(sshdConfig, `HostKey ${hostKey}\nUsePAM no\nPasswordAuthentication no\n`)
    const homes = join(base, 'homes')
    const users = ['fifo', 'zero', 'padded', 'huge']
    for (const u of users) mkdirSync(join(homes, u, '.ssh'), {recursive: true})
    const keysOf = (u: string) => join(homes, u, '.ssh', 'authorized_keys')
    assert.equal(spawnSync('mkfifo', [keysOf('fifo')]).status, 0)
    symlinkSync('/dev/zero', keysOf('zero'))
    const hidden = generatePrivateKey('ed25519').publicKey
    writeFileSync(keysOf('padded'), `${'# padding\n'.repeat(200_000)}${hidden.toLine('after 2 MB of comments')}\n`)
    writeFileSync(keysOf('huge'), '')
    truncateSync(keysOf('huge'), 17 << 20) // sparse: 17 MiB that sshd would read to the end
    const passwd = join(base, 'passwd')
    writeFileSync(
      passwd,
      users.map((u, i) => `${u}:x:${2001 + i}:${2001 + i}:${u}:${join(homes, u)}:/bin/bash\n`).join(''),
    )
    const r = await sshca(
      ['host', 'audit', '--sshd-config', sshdConfig, '--passwd', passwd, '--sshd-dir', etc, '--json'],
      {env: {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}, timeoutMs: 60_000},
    )
    assert.equal(r.code, 10, r.stderr + r.stdout.slice(0, 3000))
    const a = JSON.parse(r.stdout) as Audit
    const about = (u: string) => a.findings.filter((f) => f.user === u).map((f) => f.kind)
    assert.deepEqual(about('fifo'), [])
    assert.deepEqual(about('zero'), [])
    assert.deepEqual(about('padded'), ['authorized_keys'])
    // the key after the padding, by its fingerprint (compared as text: a fingerprint holds regex characters)
    const padded = a.findings.find((f) => f.user === 'padded')!.message
    assert.ok(padded.includes(` ${hidden.fingerprint()} `), padded)
    assert.deepEqual(about('huge'), ['authorized_keys_unreadable'])
    assert.match(a.findings.find((f) => f.user === 'huge')!.message, /larger than 16 MiB/)
  })

  it("opens each account's files as that account, as sshd does: a link to a root-only file or FIFO is not opened with root's rights", async () => {
    // a local user links ~/.ssh/authorized_keys to a file only root may read (root's own
    // authorized_keys): root's audit listed its keys as that user's, comments and all; or to a node
    // whose opening acts (/dev/watchdog arms a reboot; here a FIFO, whose writer the opening wakes)
    const base = tempDir('sshca-audit-links-')
    chmodSync(base, 0o755)
    const etc = join(base, 'etc-ssh')
    mkdirSync(etc, {recursive: true})
    const hostKey = join(etc, 'ssh_host_ed25519_key')
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]).status, 0)
    const sshdConfig = join(etc, 'sshd_config')
    writeFileSync(sshdConfig, `HostKey ${hostKey}\nUsePAM no\nPasswordAuthentication no\n`)
    const secret = join(base, 'root-only')
    mkdirSync(secret, {mode: 0o700})
    const rootKey = generatePrivateKey('ed25519').publicKey
    writeFileSync(join(secret, 'authorized_keys'), `${rootKey.toLine('root@admin-laptop')}\n`, {mode: 0o600})
    const fifo = join(secret, 'fifo')
    assert.equal(spawnSync('mkfifo', ['-m', '600', fifo]).status, 0)
    const homes = join(base, 'homes')
    const users = {mallory: 2201, trudy: 2202, olive: 2203}
    const keysOf = (u: string) => join(homes, u, '.ssh', 'authorized_keys')
    for (const [u, uid] of Object.entries(users)) {
      mkdirSync(join(homes, u, '.ssh'), {recursive: true})
      chownSync(join(homes, u), uid, uid)
      chownSync(join(homes, u, '.ssh'), uid, uid)
    }
    symlinkSync(join(secret, 'authorized_keys'), keysOf('mallory'))
    symlinkSync(fifo, keysOf('trudy'))
    // an account's own file, 0600 as sshd wants it: still read
    const oliveKey = generatePrivateKey('ed25519').publicKey
    writeFileSync(keysOf('olive'), `${oliveKey.toLine('olive')}\n`, {mode: 0o600})
    chownSync(keysOf('olive'), users.olive, users.olive)
    const passwd = join(base, 'passwd')
    writeFileSync(
      passwd,
      Object.entries(users)
        .map(([u, uid]) => `${u}:x:${uid}:${uid}:${u}:${join(homes, u)}:/bin/bash\n`)
        .join(''),
    )
    // waits in open() until someone opens the FIFO to read
    const writer = spawn('sh', ['-c', `echo x > ${fifo}`], {stdio: 'ignore'})
    try {
      const r = await sshca(
        ['host', 'audit', '--sshd-config', sshdConfig, '--passwd', passwd, '--sshd-dir', etc, '--json'],
        {env: {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}, timeoutMs: 60_000},
      )
      assert.equal(r.code, 10, r.stderr + r.stdout.slice(0, 3000))
      const a = JSON.parse(r.stdout) as Audit
      const about = (u: string) => a.findings.filter((f) => f.user === u).map((f) => f.kind)
      assert.ok(!r.stdout.includes(rootKey.fingerprint()), `root's key listed: ${JSON.stringify(a.findings)}`)
      assert.ok(!r.stdout.includes('root@admin-laptop'))
      // sshd, reading as mallory, cannot open it either: a file that may hold keys, nothing of it shown
      assert.deepEqual(about('mallory'), ['authorized_keys_unreadable'])
      assert.deepEqual(about('olive'), ['authorized_keys'])
      assert.ok(a.findings.find((f) => f.user === 'olive')!.message.includes(oliveKey.fingerprint()))
      await new Promise((resolve) => setTimeout(resolve, 300))
      assert.equal(writer.exitCode, null, 'root opened the FIFO only root may open: its writer was woken')
    } finally {
      writer.kill()
    }
  })

  it('fails closed: an sshd configuration sshd rejects is an error, not a clean audit', async () => {
    const base = tempDir('sshca-audit-bad-')
    const bad = join(base, 'sshd_config')
    writeFileSync(bad, 'NoSuchKeyword yes\n')
    writeFileSync(join(base, 'passwd'), '')
    const r = await sshca(['host', 'audit', '--sshd-config', bad, '--passwd', join(base, 'passwd')], {
      env: {SSHCA_HOME: join(base, 'h')},
    })
    assert.equal(r.code, 2, r.stdout)
    assert.match(r.stderr, /sshd -T .* failed/)
  })
})
