/**
 * `sshca config --host` in process (src/client/setup/config.ts, configureHost): the user CA key file, the
 * KRL, the sshd snippet and the systemd units, byte for byte, into temp folders that stand in for
 * /etc/ssh and /etc/systemd/system; what is refused, and that a refusal writes nothing. The root-only
 * check reads a made-up file system (its rules: exec-path.test.ts).
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import {join} from 'node:path'
import {bootstrap} from '../../../src/client/setup/bootstrap.ts'
import {
  configureHost,
  SSHD_DIR,
  SYSTEMD_DIR,
  type HostConfigOptions,
  type HostConfigResult,
} from '../../../src/client/setup/config.ts'
import {realFs, type ExecPathDeps, type InstalledSshca} from '../../../src/client/local/exec-path.ts'
import {certificateLine, signCertificate} from '../../../src/ssh/cert.ts'
import {buildKrl} from '../../../src/ssh/krl.ts'
import type {PublicKey} from '../../../src/ssh/keys.ts'
import {generatePrivateKey, type PrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {krlOpenSshRefuses} from '../../helpers/forge.ts'
import {json, startScriptedCa, type ScriptedCa} from '../../helpers/scripted-server.ts'
import {snapshot} from '../../helpers/snapshot.ts'
import {tempDir} from '../../helpers/tmp.ts'

const b64 = (k: PublicKey): string => k.blob.toString('base64')
const mode = (p: string): number => statSync(p).mode & 0o777

const SSHCA: InstalledSshca = {
  node: '/opt/node/bin/node',
  script: '/opt/sshca/bin/run.js',
  packageRoot: '/opt/sshca',
  command: '/opt/node/bin/node /opt/sshca/bin/run.js',
}

/** Every path root-owned and writable by root only. */
const rootOwned: ExecPathDeps = {
  lstat: () => ({uid: 0, mode: 0o40755, isDirectory: true, isSymbolicLink: false}),
  readdir: () => [],
  readlink: () => {
    throw new Error('no links here')
  },
  realpath: (p) => p,
}

describe('sshca config --host, in process', function () {
  this.timeout(60_000)
  let ca: ScriptedCa
  let home: string
  /** Stands in for /etc/ssh. */
  let sshd: string
  /** Stands in for /etc/systemd/system (not there yet: config creates it). */
  let units: string
  const hostCa = generatePrivateKey('ed25519')
  const userCa = generatePrivateKey('ed25519').publicKey
  const userCa2 = generatePrivateKey('ed25519').publicKey
  const krl = buildKrl({version: 3n, generatedAt: 1_700_000_000n, comment: '', sections: []})

  before(async () => {
    ca = await startScriptedCa()
  })
  after(async () => {
    await ca?.server.stop()
  })
  beforeEach(async () => {
    home = join(tempDir('sshca-host-'), 'sshca')
    sshd = tempDir('sshca-etc-ssh-')
    units = join(tempDir('sshca-etc-systemd-'), 'system')
    // an sshd_config as Debian's: the Include first; a host key of its own (sshd -T loads them)
    writeSshdConfig()
    ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa.publicKey)], hostPattern: '*.example.com'})
    ca.krl = {status: 200, body: krl}
    await bootstrap(home, {caUrl: ca.server.url, fingerprint: ca.fingerprint, context: 'demo'})
  })

  /** sshd_config in the stand-in /etc/ssh, with its own ssh-keygen host key; the Include unless told. */
  function writeSshdConfig(o: {include?: boolean} = {}): void {
    const key = join(sshd, 'sshd_test_host_key')
    if (!existsSync(key)) assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status, 0)
    const include = o.include === false ? [] : [`Include ${sshd}/sshd_config.d/*.conf`]
    writeFileSync(join(sshd, 'sshd_config'), [...include, `HostKey ${key}`, ''].join('\n'))
  }

  const run = (o: Partial<HostConfigOptions> = {}) =>
    configureHost(home, {sshdDir: sshd, systemdDir: units, sshca: SSHCA, pathDeps: rootOwned, ...o})

  /** A host key `ssh_host_<name>_key.pub`, and beside it a certificate as told (none by default). */
  async function hostKey(
    name: 'ed25519' | 'ecdsa' | 'rsa',
    cert?: {signer: PrivateKey; type?: 'host' | 'user'} | 'garbage',
  ): Promise<void> {
    const k = generatePrivateKey(name === 'ecdsa' ? 'ecdsa' : 'ed25519')
    writeFileSync(join(sshd, `ssh_host_${name}_key.pub`), `${k.publicKey.toLine('root@host')}\n`)
    if (cert === undefined) return
    const file = join(sshd, `ssh_host_${name}_key-cert.pub`)
    if (cert === 'garbage') {
      writeFileSync(file, 'ssh-ed25519-cert-v01@openssh.com AAAA\n')
      return
    }
    const c = await signCertificate(
      {
        type: cert.type ?? 'host',
        publicKey: k.publicKey,
        serial: 9n,
        keyId: 'host:x',
        principals: ['x.example.com'],
        validAfter: 0n,
        validBefore: BigInt(Math.floor(Date.now() / 1000) + 3600),
      },
      keySigner(cert.signer.keyObject),
    )
    writeFileSync(file, `${certificateLine(c)}\n`)
  }

  const snippet = (o: {krl: boolean; certs: string[]}) =>
    [
      `# Managed by sshca (sshca config --host) for the CA "demo" at ${ca.server.url}.`,
      '# Users log in with short-lived certificates from this CA; a principal must equal the login name.',
      `TrustedUserCAKeys ${sshd}/sshca_user_ca.pub`,
      ...(o.krl
        ? [
            '# Certificates the CA revoked (refreshed hourly by sshca-krl.timer; sshd rereads it on every login).',
            `RevokedKeys ${sshd}/sshca_revoked_keys.krl`,
          ]
        : ['# This CA publishes no revocation list: no RevokedKeys.']),
      '# Present host certificates (issue them with: sshca certificate --host --sign …).',
      ...o.certs.map((k) => `HostCertificate ${sshd}/${k}-cert.pub`),
      '',
    ].join('\n')
  const krlService = () =>
    [
      '[Unit]',
      'Description=Refresh the SSH key revocation list and the trusted user CA keys from the sshca CA "demo"',
      'After=network-online.target',
      'Wants=network-online.target',
      '',
      '[Service]',
      'Type=oneshot',
      `Environment=SSHCA_HOME=${home}`,
      'NoNewPrivileges=yes',
      'PrivateTmp=yes',
      `ExecStart=/opt/node/bin/node /opt/sshca/bin/run.js krl --context demo --out ${sshd}/sshca_revoked_keys.krl --user-ca-keys ${sshd}/sshca_user_ca.pub`,
      '',
    ].join('\n')
  const KRL_TIMER = [
    '[Unit]',
    'Description=Hourly refresh of the SSH key revocation list (sshca, sshca-krl.service)',
    '',
    '[Timer]',
    'OnCalendar=hourly',
    'RandomizedDelaySec=10m',
    'Persistent=true',
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n')
  const renewService = () =>
    [
      '[Unit]',
      `Description=Renew the SSH host certificate of ${sshd}/%i from the sshca CA "demo"`,
      'After=network-online.target',
      'Wants=network-online.target',
      '',
      '[Service]',
      'Type=oneshot',
      `Environment=SSHCA_HOME=${home}`,
      'NoNewPrivileges=yes',
      'PrivateTmp=yes',
      '# after a renewal only, and only if sshd -t accepts its configuration: sshd reloaded to present it',
      `ExecStart=/opt/node/bin/node /opt/sshca/bin/run.js renew --context demo --reload-sshd ${sshd}/%i-cert.pub ${sshd}/%i`,
      '',
    ].join('\n')
  const renewTimer = () =>
    [
      '[Unit]',
      `Description=Daily renewal of the SSH host certificate of ${sshd}/%i (sshca)`,
      '',
      '[Timer]',
      'OnCalendar=daily',
      'RandomizedDelaySec=1h',
      'Persistent=true',
      '',
      '[Install]',
      'WantedBy=timers.target',
      '',
    ].join('\n')

  /** The files a CA with a KRL gets, in the order written. */
  const allFiles = (certs: string[], userKeys = [userCa]): HostConfigResult['files'] => [
    {
      path: join(sshd, 'sshca_user_ca.pub'),
      content: userKeys.map((k) => `${k.toLine('demo user CA')}\n`).join(''),
      mode: 0o644,
    },
    {path: join(sshd, 'sshca_revoked_keys.krl'), content: krl, mode: 0o644},
    {path: join(sshd, 'sshd_config.d', '50-sshca.conf'), content: snippet({krl: true, certs}), mode: 0o644},
    {path: join(units, 'sshca-krl.service'), content: krlService(), mode: 0o644},
    {path: join(units, 'sshca-krl.timer'), content: KRL_TIMER, mode: 0o644},
    {path: join(units, 'sshca-renew@.service'), content: renewService(), mode: 0o644},
    {path: join(units, 'sshca-renew@.timer'), content: renewTimer(), mode: 0o644},
  ]

  it("the defaults are sshd's and systemd's own folders", () => {
    assert.equal(SSHD_DIR, '/etc/ssh')
    assert.equal(SYSTEMD_DIR, '/etc/systemd/system')
  })

  it('--dry-run: every file, byte for byte, only host keys with a certificate of this CA, and nothing written', async () => {
    // as Debian ships them: ed25519 certified by this CA, ecdsa with no certificate, rsa by another CA
    await hostKey('ed25519', {signer: hostCa})
    await hostKey('ecdsa')
    await hostKey('rsa', {signer: generatePrivateKey('ed25519')})
    const before = snapshot(sshd)
    const r = await run({dryRun: true})
    assert.deepEqual(snapshot(sshd), before)
    assert.equal(existsSync(units), false)
    const skipped = r.skipped.map((s) => s.key)
    assert.deepEqual(skipped, ['ssh_host_ecdsa_key', 'ssh_host_rsa_key'])
    assert.notEqual(r.skipped[0]!.reason, r.skipped[1]!.reason)
    assert.deepEqual(r, {
      context: 'demo',
      files: allFiles(['ssh_host_ed25519_key']),
      command: SSHCA.command,
      certified: ['ssh_host_ed25519_key'],
      skipped: r.skipped,
      written: false,
      next: [
        `# to add ssh_host_ecdsa_key, ssh_host_rsa_key: sshca certificate --host --sign … ${sshd}/ssh_host_ecdsa_key.pub, then sshca config --host again`,
        'sshd -t && systemctl reload ssh          # check, then apply',
        'systemctl daemon-reload && systemctl enable --now sshca-krl.timer sshca-renew@ssh_host_ed25519_key.timer',
      ],
      krl: 'published',
      warnings: [],
    })
  })

  it('writes them, each 0644, creating the folders; the same again gives the same bytes', async () => {
    await hostKey('ed25519', {signer: hostCa})
    await hostKey('rsa', {signer: hostCa})
    ca.roots = json({
      userKey: [b64(userCa), b64(userCa2)],
      hostKey: [b64(hostCa.publicKey)],
      hostPattern: '*.example.com',
    })
    const r = await run()
    const files = allFiles(['ssh_host_ed25519_key', 'ssh_host_rsa_key'], [userCa, userCa2])
    assert.deepEqual(r.files, files)
    assert.equal(r.written, true)
    assert.deepEqual(r.certified, ['ssh_host_ed25519_key', 'ssh_host_rsa_key'])
    assert.deepEqual(r.skipped, [])
    assert.deepEqual(r.next, [
      'sshd -t && systemctl reload ssh          # check, then apply',
      'systemctl daemon-reload && systemctl enable --now sshca-krl.timer sshca-renew@ssh_host_ed25519_key.timer sshca-renew@ssh_host_rsa_key.timer',
    ])
    for (const f of files) {
      assert.deepEqual(readFileSync(f.path), Buffer.from(f.content), f.path)
      assert.equal(mode(f.path), 0o644, f.path)
    }
    assert.equal(mode(units), 0o700)
    assert.equal(mode(join(sshd, 'sshd_config.d')), 0o700)
    assert.deepEqual(readdirSync(units).sort(), [
      'sshca-krl.service',
      'sshca-krl.timer',
      'sshca-renew@.service',
      'sshca-renew@.timer',
    ])
    const again = await run()
    assert.deepEqual(again, r)
    for (const f of files) assert.deepEqual(readFileSync(f.path), Buffer.from(f.content), f.path)
  })

  it('why a host key is left out: no certificate, not a host certificate, from another CA, one that does not parse', async () => {
    await hostKey('ed25519', {signer: hostCa, type: 'user'})
    await hostKey('ecdsa', 'garbage')
    await hostKey('rsa')
    const r = await run({dryRun: true})
    await hostKey('ed25519', {signer: generatePrivateKey('ed25519')})
    const r2 = await run({dryRun: true})
    const reasons = new Map([...r.skipped, ...r2.skipped].map((s) => [`${s.key} ${s.reason}`, s.reason]))
    // ed25519 twice (a user certificate, then another CA's), ecdsa and rsa the same both times
    assert.deepEqual(
      [...r.skipped, ...r2.skipped].map((s) => s.key),
      [
        'ssh_host_ed25519_key',
        'ssh_host_ecdsa_key',
        'ssh_host_rsa_key',
        'ssh_host_ed25519_key',
        'ssh_host_ecdsa_key',
        'ssh_host_rsa_key',
      ],
    )
    assert.equal(new Set(reasons.values()).size, 4, 'four different reasons')
    for (const why of reasons.values()) assert.ok(why.length > 0)
    assert.deepEqual(r.certified, [])
    assert.deepEqual(r.files, [
      ...allFiles([]).slice(0, 2),
      {path: join(sshd, 'sshd_config.d', '50-sshca.conf'), content: snippet({krl: true, certs: []}), mode: 0o644},
      ...allFiles([]).slice(3),
    ])
    // with no certified key, the first step is to get a certificate
    assert.deepEqual(r.next, [
      `sshca certificate --host --sign --token-file FILE $(hostname -f) ${sshd}/ssh_host_ed25519_key.pub   # then run sshca config --host again`,
      'sshd -t && systemctl reload ssh          # check, then apply',
      'systemctl daemon-reload && systemctl enable --now sshca-krl.timer',
    ])
  })

  it('a host key without its .pub is not a host key here; a folder with none configures no certificate', async () => {
    writeFileSync(join(sshd, 'ssh_host_ed25519_key-cert.pub'), 'stray\n')
    const r = await run({dryRun: true})
    assert.deepEqual([r.certified, r.skipped], [[], []])
  })

  it('a CA without a KRL (404): no RevokedKeys, no KRL file or units, and a warning', async () => {
    ca.krl = {status: 404, body: ''}
    await hostKey('ed25519', {signer: hostCa})
    const r = await run()
    assert.equal(r.krl, 'none')
    assert.equal(r.warnings.length, 1)
    const all = allFiles(['ssh_host_ed25519_key'])
    assert.deepEqual(r.files, [
      all[0],
      {
        path: join(sshd, 'sshd_config.d', '50-sshca.conf'),
        content: snippet({krl: false, certs: ['ssh_host_ed25519_key']}),
        mode: 0o644,
      },
      ...all.slice(5),
    ])
    assert.equal(existsSync(join(sshd, 'sshca_revoked_keys.krl')), false)
    assert.deepEqual(readdirSync(units).sort(), ['sshca-renew@.service', 'sshca-renew@.timer'])
    assert.equal(
      r.next.at(-1),
      'systemctl daemon-reload && systemctl enable --now sshca-renew@ssh_host_ed25519_key.timer',
    )
  })

  describe('what sshd reads once the files are written (sshd -T)', () => {
    it("sshd reads sshca's TrustedUserCAKeys and RevokedKeys: no warning", async () => {
      await hostKey('ed25519', {signer: hostCa})
      assert.deepEqual((await run()).warnings, [])
    })

    it("a file of sshd_config.d read first (cloud-init's) wins over sshca's: a warning for each setting, naming what sshd reads", async () => {
      await hostKey('ed25519', {signer: hostCa})
      mkdirSync(join(sshd, 'sshd_config.d'), {recursive: true})
      const other = join(sshd, 'other_ca.pub')
      writeFileSync(join(sshd, 'sshd_config.d', '10-cloud.conf'), `TrustedUserCAKeys ${other}\nRevokedKeys none\n`)
      const r = await run()
      assert.equal(r.written, true)
      assert.deepEqual(
        r.warnings.map((w) => w.replace(/;.*/, '')),
        [
          `sshd reads TrustedUserCAKeys ${other}, not sshca's ${join(sshd, 'sshca_user_ca.pub')}: certificates from this CA do not log in, and whatever CA that file holds does`,
          `sshd reads RevokedKeys none, not sshca's ${join(sshd, 'sshca_revoked_keys.krl')}: the CA's revocations do not apply here`,
        ],
      )
      assert.match(
        r.warnings[0]!,
        /sshd keeps the first value it reads .*remove or change the other setting, then sshd -t && systemctl reload ssh$/,
      )
    })

    it('an sshd_config without the Include reads none of it; no sshd_config at all: said, with how to check', async () => {
      await hostKey('ed25519', {signer: hostCa})
      writeSshdConfig({include: false})
      assert.match((await run()).warnings[0]!, /^sshd reads TrustedUserCAKeys none, not sshca's /)
      rmSync(join(sshd, 'sshd_config'))
      assert.deepEqual((await run()).warnings, [
        `there is no ${join(sshd, 'sshd_config')}, so no sshd reads these settings; check what it reads with: sshd -T | grep -i -e trustedusercakeys -e revokedkeys`,
      ])
      writeSshdConfig()
      assert.match(
        (await run({sshd: join(sshd, 'no-such-sshd')})).warnings[0]!,
        /^could not ask sshd what it reads \(sshd -T -f .* failed: .*\); check what it reads with: sshd -T/,
      )
    })
  })

  it('a KRL the CA fails to send (an error status, a cut connection), or that does not parse, stops it before anything is written', async () => {
    await hostKey('ed25519', {signer: hostCa})
    const before = snapshot(sshd)
    ca.krl = {status: 500, body: ''}
    await rejectsCode(run(), 'ERR_CA_BAD_RESPONSE', {status: 500})
    ca.krl = {status: 200, body: Buffer.from('not a KRL at all')}
    await rejectsCode(run(), 'ERR_SSH_FORMAT')
    // one that parses here but that this machine's OpenSSH cannot load: sshd would refuse every public key
    ca.krl = {status: 200, body: krlOpenSshRefuses()}
    await rejectsCode(run(), 'ERR_CA_BAD_RESPONSE', {}, /OpenSSH here cannot load .*; nothing was written/)
    // a network failure is no "publishes none": it stops too
    ca.krl = {status: 0, body: '', hangUp: true}
    await rejectsCode(run(), 'ERR_CA_UNREACHABLE')
    assert.deepEqual(snapshot(sshd), before)
    assert.equal(existsSync(units), false)
  })

  it('the previous single renewal unit: the next steps say to disable and remove it (the .timer or the .service)', async () => {
    await hostKey('ed25519', {signer: hostCa})
    const legacy = `systemctl disable --now sshca-renew.timer; rm -f ${units}/sshca-renew.service ${units}/sshca-renew.timer   # the previous single unit, replaced by the ones below`
    assert.equal((await run({dryRun: true})).next.includes(legacy), false)
    mkdirSync(units)
    for (const old of ['sshca-renew.timer', 'sshca-renew.service']) {
      writeFileSync(join(units, old), '[Unit]\n')
      const r = await run({dryRun: true})
      assert.deepEqual(r.next.slice(-2), [
        legacy,
        'systemctl daemon-reload && systemctl enable --now sshca-krl.timer sshca-renew@ssh_host_ed25519_key.timer',
      ])
      assert.equal(r.next.length, 3)
      // the other one only
      rmSync(join(units, old))
    }
  })

  it('an sshd folder a unit file would have to quote is refused (ERR_USAGE); the characters paths use are not', async () => {
    for (const bad of [
      'with space',
      'dollar$x',
      'pct%i',
      'quote"x',
      "apos'x",
      'semi;x',
      'back\\slash',
      'new\nline',
      'tab\tx',
      'star*',
    ]) {
      const dir = join(sshd, bad, 'etc')
      await rejectsCode(run({sshdDir: dir}), 'ERR_USAGE', {}, undefined)
      assert.equal(existsSync(join(sshd, bad)), false, JSON.stringify(bad))
    }
    // last character alone
    await rejectsCode(run({sshdDir: `${sshd}/x `}), 'ERR_USAGE')
    const fine = join(sshd, 'Az09._@+-')
    mkdirSync(fine)
    const r = await run({sshdDir: fine, dryRun: true})
    assert.equal(r.files[0]!.path, join(fine, 'sshca_user_ca.pub'))
  })

  it('refuses (ERR_UNSAFE_PATH) when root would run a file another user can change, before writing anything', async () => {
    await hostKey('ed25519', {signer: hostCa})
    const before = snapshot(sshd)
    const userOwnedNode: ExecPathDeps = {
      ...rootOwned,
      lstat: (p) => ({
        uid: p === SSHCA.node ? 1000 : 0,
        mode: 0o40755,
        isDirectory: p !== SSHCA.node,
        isSymbolicLink: false,
      }),
    }
    await rejectsCode(run({pathDeps: userOwnedNode}), 'ERR_UNSAFE_PATH', {path: SSHCA.node})
    assert.deepEqual(snapshot(sshd), before)
    assert.equal(existsSync(units), false)
  })

  it('a home reached through a link another user can change: the units name the folder that was checked, never the link', async function () {
    // the attack: root runs `SSHCA_HOME=/srv/users/mallory/sshca sshca config --host`, a link that
    // mallory made to root's own (safe) home. The check judged the folder the link leads to; a unit
    // naming the link would, once mallory points it at a home of theirs, trust mallory's CA: the
    // hourly KRL unit writes that CA's user keys into TrustedUserCAKeys, and mallory logs in as root
    if (process.getuid?.() !== 0) this.skip()
    await hostKey('ed25519', {signer: hostCa})
    const mallory = tempDir('sshca-mallory-')
    chownSync(mallory, 65534, 65534)
    const link = join(mallory, 'sshca')
    symlinkSync(home, link)
    // the real file system for the home (root's 0700 temp folder), made-up root-owned files for node and sshca
    const deps: ExecPathDeps = {
      lstat: (p) => (p.startsWith('/opt/') ? rootOwned.lstat(p) : realFs.lstat(p)),
      readdir: (p) => (p.startsWith('/opt/') ? [] : realFs.readdir(p)),
      readlink: (p) => realFs.readlink(p),
      realpath: (p) => (p.startsWith('/opt/') ? p : realFs.realpath(p)),
    }
    const r = await configureHost(link, {sshdDir: sshd, systemdDir: units, sshca: SSHCA, pathDeps: deps})
    assert.equal(r.written, true)
    const envs = readdirSync(units)
      .filter((f) => f.endsWith('.service'))
      .map((f) => /^Environment=SSHCA_HOME=(.*)$/m.exec(readFileSync(join(units, f), 'utf8'))?.[1])
    assert.equal(envs.length, 2)
    // mallory points the link at a home of theirs: what would the timers read?
    const theirs = tempDir('sshca-mallory-home-')
    unlinkSync(link)
    symlinkSync(theirs, link)
    for (const env of envs) assert.equal(realpathSync(env!), realpathSync(home), `the unit reads SSHCA_HOME=${env}`)
  })

  it('closes its connection to the CA, also when it fails', async () => {
    await ca.server.allClosed()
    await run({dryRun: true})
    await ca.server.allClosed()
    ca.krl = {status: 500, body: ''}
    await assert.rejects(run())
    await ca.server.allClosed()
  })
})
