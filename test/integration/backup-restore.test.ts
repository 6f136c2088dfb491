/**
 * `sshca ca backup` and `sshca ca restore` as an operator runs them (the built CLI), against a CA
 * that serves while it is backed up: issued and revoked certificates, a restore into a new directory,
 * the restored CA started, and a real sshd configured for the OLD CA's user key accepting what the
 * restored CA signs while refusing what it revoked. Spent tokens stay spent; tokens spent after the
 * snapshot are refused by the restore window. Tampered, truncated and wrong-password archives, and a
 * restore over an existing CA, are refused without writing anything.
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, readdirSync, rmSync, statSync, watch, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {request} from 'undici'
import {startCa, type RunningCa} from '../../src/ca/server.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {parseCertificate, type Certificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../src/ssh/private-key.ts'
import {makeCaDir, PASSWORD, writePolicy} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {deployProvisioner, startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {currentUser, ssh, startAgent, startSshd, type Agent} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'
import {waitFor} from '../helpers/proc.ts'
import {DatabaseSync} from 'node:sqlite'
import {spawnSync} from 'node:child_process'
import {postgresBinDir, startPostgres} from '../helpers/postgres.ts'
import {Agent as HttpAgent} from 'undici'
import {readAuditLines} from '../helpers/audit.ts'
import {open} from 'node:fs/promises'
import {checkManifest, type BackupManifest} from '../../src/ca/backup.ts'
import {readArchive, writeArchive} from '../../src/ca/keys/archive.ts'

const BACKUP_PASSWORD = 'the backup password, kept apart'
const user = currentUser()

const policy = (issuer: string) => ({
  limits: {rate: false},
  provisioners: [deployProvisioner(issuer, [user], 'gha:${repository}:${run_id}')],
})

interface Served {
  ca: RunningCa
  http: HttpAgent
  auditFile: string
  sign(ott: string, key: PrivateKey): Promise<{status: number; reason?: string; cert?: Certificate; body: string}>
  stop(): Promise<void>
}

async function serve(config: string, dir: string): Promise<Served> {
  const auditFile = join(dir, 'audit.log')
  const ca = await startCa({
    configPath: config,
    password: PASSWORD,
    address: '127.0.0.1:0',
    auditFile,
    adminEventsIntervalMs: 100,
    safetyIntervalMs: 100,
  })
  const http = new HttpAgent({connect: {ca: readFileSync(join(dir, 'certs', 'root_ca.crt'))}})
  return {
    ca,
    http,
    auditFile,
    async sign(ott, key) {
      const res = await request(`${ca.url}/ssh/sign`, {
        method: 'POST',
        dispatcher: http,
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({ott, publicKey: key.publicKey.blob.toString('base64')}),
      })
      const body = await res.body.text()
      const id = res.headers['x-request-id']
      const line = readAuditLines(auditFile).find((e) => e.request_id === id)
      const crt = res.statusCode === 201 ? (JSON.parse(body) as {crt: string}).crt : undefined
      return {
        status: res.statusCode,
        body,
        ...(typeof line?.reason === 'string' ? {reason: line.reason} : {}),
        ...(crt ? {cert: parseCertificate(Buffer.from(crt, 'base64'))} : {}),
      }
    },
    async stop() {
      await ca.close()
      await http.close()
    },
  }
}

const json = <T>(r: {code: number | null; stdout: string; stderr: string}, what: string): T => {
  assert.equal(r.code, 0, `${what}: ${r.stderr}${r.stdout}`)
  return JSON.parse(r.stdout) as T
}

async function login(
  agent: Agent,
  port: number,
  key: PrivateKey,
  cert: Certificate,
): Promise<{code: number | null; stdout: string; stderr: string}> {
  await AgentClient.with({socketPath: agent.socket}, async (a) => {
    await a.removeAll()
    await a.addCertificate(key, cert, {lifetimeSeconds: 600})
  })
  return ssh({port, agentSocket: agent.socket, command: 'echo in-as-$(id -un)'})
}

describe('ca backup / ca restore: a CA that restores', function () {
  this.timeout(240_000)
  let gh: GithubIssuer
  let agent: Agent
  const base = tempDir('sshca-backup-')
  const backupPw = join(base, 'backup-password')
  const wrongPw = join(base, 'wrong-password')
  // the CA password: it signs an archive's manifest and checks it at restore
  const caPw = join(base, 'ca-password')

  before(async () => {
    gh = await startGithubIssuer()
    agent = await startAgent()
    writeFileSync(backupPw, `${BACKUP_PASSWORD}\n`, {mode: 0o600})
    writeFileSync(wrongPw, 'not the backup password\n', {mode: 0o600})
    writeFileSync(caPw, `${PASSWORD}\n`, {mode: 0o600})
  })
  after(async () => {
    await agent?.stop()
    await gh?.stop()
  })

  it('backs up a serving CA with issued and revoked certificates; the restored CA has its root, SSH CA keys, inventory and revocations, and refuses spent tokens', async () => {
    const {init} = await makeCaDir(policy(gh.issuer), 'Backed')
    await writePolicy(init.config, policy(gh.issuer))
    const old = await serve(init.config, init.dir)
    const oldUserCaLine = readFileSync(join(init.dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')
    const oldHostCaLine = readFileSync(join(init.dir, 'ssh', 'ssh_host_ca.pub'), 'utf8')

    // before the backup: A issued (its token spent), B issued then revoked
    const keyA = generatePrivateKey('ed25519')
    const keyB = generatePrivateKey('ed25519')
    const tokenA = await gh.mint()
    const a = await old.sign(tokenA, keyA)
    assert.equal(a.status, 201, a.body)
    const b = await old.sign(await gh.mint(), keyB)
    assert.equal(b.status, 201, b.body)
    const revoked = await sshca([
      'ca',
      'revoke',
      '--config',
      init.config,
      '--serial',
      b.cert!.serial.toString(),
      '--reason',
      'key lost',
      '--json',
    ])
    assert.equal(revoked.code, 0, revoked.stderr)

    // the backup, taken while the CA serves
    const backup = json<{
      file: string
      sha256: string
      manifest: {
        ca: {rootFingerprint: string}
        store: {type: string; certificates: number; revocations: number; spentTokens: number; method: string}
        files: {path: string}[]
      }
    }>(
      await sshca([
        'ca',
        'backup',
        '--config',
        init.config,
        '--out',
        base,
        '--password-file',
        backupPw,
        '--ca-password-file',
        caPw,
        '--json',
      ]),
      'ca backup',
    )
    assert.equal(statSync(backup.file).mode & 0o777, 0o600)
    assert.equal(backup.manifest.ca.rootFingerprint, init.rootFingerprint)
    assert.deepEqual(
      [
        backup.manifest.store.type,
        backup.manifest.store.method,
        backup.manifest.store.certificates,
        backup.manifest.store.revocations,
        backup.manifest.store.spentTokens,
      ],
      ['sqlite', 'sqlite3_backup', 2, 1, 2],
    )
    // the archive is sealed: no key, certificate or store page readable in it
    const raw = readFileSync(backup.file)
    for (const needle of ['sshca-encrypted-key', 'BEGIN CERTIFICATE', 'SQLite format 3', 'ssh-ed25519', 'provisioners'])
      assert.equal(raw.includes(needle), false, `${needle} in the clear`)
    // a second backup to the same name is refused, not overwritten
    const again = await sshca([
      'ca',
      'backup',
      '--config',
      init.config,
      '--out',
      backup.file,
      '--password-file',
      backupPw,
      '--ca-password-file',
      caPw,
    ])
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /ERR_FILE_EXISTS/)

    // after the snapshot: C issued with a token the restored store will not know was spent
    const keyC = generatePrivateKey('ed25519')
    const tokenC = await gh.mint()
    const c = await old.sign(tokenC, keyC)
    assert.equal(c.status, 201, c.body)
    await old.stop()

    // a restore never overwrites a CA
    const yamlBefore = readFileSync(init.config, 'utf8')
    const over = await sshca([
      'ca',
      'restore',
      backup.file,
      '--dir',
      init.dir,
      '--password-file',
      backupPw,
      '--ca-password-file',
      caPw,
    ])
    assert.notEqual(over.code, 0)
    assert.match(over.stderr, /ERR_CA_EXISTS/)
    assert.equal(readFileSync(init.config, 'utf8'), yamlBefore)

    // the restore, into a new directory
    const dir = join(base, 'restored')
    const restored = json<{
      dir: string
      config: string
      rootFingerprint: string
      replayWindowSeconds: number
      signature: string
    }>(
      await sshca([
        'ca',
        'restore',
        backup.file,
        '--dir',
        dir,
        '--password-file',
        backupPw,
        '--ca-password-file',
        caPw,
        '--json',
      ]),
      'ca restore',
    )
    assert.equal(restored.signature, 'verified')
    assert.equal(restored.rootFingerprint, init.rootFingerprint)
    assert.equal(readFileSync(join(dir, 'ssh', 'ssh_user_ca.pub'), 'utf8'), oldUserCaLine)
    assert.equal(readFileSync(join(dir, 'ssh', 'ssh_host_ca.pub'), 'utf8'), oldHostCaLine)
    assert.ok(existsSync(join(dir, 'restore-pending.json')))
    for (const f of ['ca.yaml', 'secrets/ssh_user_ca.key', 'secrets/intermediate_ca.key', 'db/sshca.sqlite'])
      assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f)
    assert.equal(statSync(dir).mode & 0o777, 0o700)

    // the restored CA starts with the same identity; its first start closes the replay window
    const fresh = await serve(restored.config, dir)
    try {
      assert.equal(fresh.ca.runtime.material.rootFingerprint, init.rootFingerprint)
      assert.equal(
        fresh.ca.runtime.material.userCa.active.publicKey.toLine(),
        oldUserCaLine.trim().split(' ').slice(0, 2).join(' '),
      )
      assert.equal(existsSync(join(dir, 'restore-pending.json')), false)
      const started = readFileSync(fresh.auditFile, 'utf8')
      assert.match(started, /"event":"ca_restored"|"ca_restored"/)

      // the inventory and the revocation came back
      const certs = json<{certificates: {serial: string}[]}>(
        await sshca(['ca', 'certs', '--config', restored.config, '--json']),
        'ca certs',
      )
      assert.deepEqual(
        new Set(certs.certificates.map((x) => x.serial)),
        new Set([a.cert!.serial.toString(), b.cert!.serial.toString()]),
        'A and B, not C (issued after the snapshot)',
      )
      const revs = json<{revocations: {serial: string | null}[]}>(
        await sshca(['ca', 'revocations', '--config', restored.config, '--json']),
        'ca revocations',
      )
      assert.deepEqual(
        revs.revocations.map((r) => r.serial),
        [b.cert!.serial.toString()],
      )

      // a token spent before the backup is a replay; one spent after it falls in the restore window
      const replay = await fresh.sign(tokenA, generatePrivateKey('ed25519'))
      assert.equal(replay.status, 401, replay.body)
      assert.equal(replay.reason, 'token_replayed')
      const lost = await fresh.sign(tokenC, generatePrivateKey('ed25519'))
      assert.equal(lost.status, 401, lost.body)
      assert.equal(lost.reason, 'token_before_restore')

      // a token issued after the mark (+ its 60 s skew allowance; iat that far ahead is within the
      // verifier's own 60 s leeway) signs, and a real sshd that trusts the OLD user CA key accepts it
      const keyD = generatePrivateKey('ed25519')
      const now = Math.floor(Date.now() / 1000)
      const d = await fresh.sign(await gh.mint({}, {iat: now + 60, nbf: now - 5, exp: now + 300}), keyD)
      assert.equal(d.status, 201, d.body)
      const krl = await request(`${fresh.ca.url}/ssh/krl`, {dispatcher: fresh.http})
      assert.equal(krl.statusCode, 200)
      const krlFile = join(base, 'restored.krl')
      writeFileSync(krlFile, Buffer.from(await krl.body.arrayBuffer()))
      const sshd = await startSshd({userCaKeys: [oldUserCaLine.trim()], revokedKeysFile: krlFile})
      try {
        const inD = await login(agent, sshd.port, keyD, d.cert!)
        assert.equal(inD.code, 0, inD.stderr + sshd.log().slice(-2000))
        assert.equal(inD.stdout.trim(), `in-as-${user}`)
        const inA = await login(agent, sshd.port, keyA, a.cert!)
        assert.equal(inA.code, 0, `A, issued before the backup and not revoked: ${inA.stderr}`)
        const inB = await login(agent, sshd.port, keyB, b.cert!)
        assert.notEqual(inB.code, 0, 'B was revoked before the backup: the restored KRL still lists it')
        assert.match(sshd.log(), /revoked/i)
      } finally {
        await sshd.stop()
      }
    } finally {
      await fresh.stop()
    }
  })

  it('the snapshot is one consistent moment while 8 clients sign: every certificate with its spent token, nothing torn', async () => {
    const {init} = await makeCaDir(policy(gh.issuer), 'Busy')
    await writePolicy(init.config, policy(gh.issuer))
    const ca = await serve(init.config, init.dir)
    let issued = 0
    let running = true
    const failures: string[] = []
    const signer = async () => {
      while (running) {
        const r = await ca.sign(await gh.mint(), generatePrivateKey('ed25519'))
        if (r.status === 201) issued++
        else failures.push(r.body)
      }
    }
    const signers = Array.from({length: 8}, signer)
    try {
      await waitFor('some certificates issued', () => issued >= 20, 60_000)
      const atStart = issued
      const out = await sshca([
        'ca',
        'backup',
        '--config',
        init.config,
        '--out',
        join(base, 'busy.sshca'),
        '--password-file',
        backupPw,
        '--ca-password-file',
        caPw,
        '--json',
      ])
      // keep signing a little after the backup returned, so the snapshot is strictly mid-stream
      const atEnd = issued
      await waitFor('more certificates after the backup', () => issued > atEnd, 60_000)
      running = false
      await Promise.all(signers)
      const backup = json<{file: string; manifest: {store: {certificates: number; spentTokens: number}}}>(
        out,
        'ca backup',
      )
      const snap = backup.manifest.store.certificates
      assert.ok(
        snap >= atStart && snap < issued,
        `snapshot of ${snap} certificates, ${atStart} issued before the backup, ${issued} in all`,
      )
      const dir = join(base, 'busy-restored')
      json(
        await sshca([
          'ca',
          'restore',
          backup.file,
          '--dir',
          dir,
          '--password-file',
          backupPw,
          '--ca-password-file',
          caPw,
          '--json',
        ]),
        'ca restore',
      )
      const db = new DatabaseSync(join(dir, 'db', 'sshca.sqlite'), {readOnly: true})
      try {
        const n = (sql: string) => Number((db.prepare(sql).get() as {n: number}).n)
        assert.equal(n('SELECT COUNT(*) AS n FROM certificates'), snap)
        assert.equal(
          n(
            'SELECT COUNT(*) AS n FROM certificates c WHERE NOT EXISTS (SELECT 1 FROM used_tokens u WHERE u.serial = c.serial)',
          ),
          0,
          'a certificate without its spent token',
        )
        assert.equal(
          n(
            'SELECT COUNT(*) AS n FROM used_tokens u WHERE u.serial IS NOT NULL AND NOT EXISTS (SELECT 1 FROM certificates c WHERE c.serial = u.serial)',
          ),
          0,
          'a spent token without its certificate',
        )
        assert.equal((db.prepare('PRAGMA integrity_check').get() as {integrity_check: string}).integrity_check, 'ok')
      } finally {
        db.close()
      }
      assert.deepEqual(failures, [], 'the backup made no signing request fail')
    } finally {
      // settled, not all: a signer that failed must not keep the CA (and mocha) running
      running = false
      await Promise.allSettled(signers)
      await ca.stop()
    }
  })

  it('PostgreSQL: the archive says to pg_dump alongside; pg_restore plus ca restore gives a CA whose first start closes the replay window', async function () {
    const bin = postgresBinDir()
    if (!bin) this.skip()
    const pg = await startPostgres()
    try {
      const url = await pg.createDatabase()
      const {init} = await makeCaDir(policy(gh.issuer), 'Pg')
      await writePolicy(init.config, {...policy(gh.issuer), db: pg.db({url})})
      const old = await serve(init.config, init.dir)
      const tokenA = await gh.mint()
      assert.equal((await old.sign(tokenA, generatePrivateKey('ed25519'))).status, 201)
      const backup = json<{
        file: string
        notes: string[]
        manifest: {
          store: {type: string; included: boolean}
          external: {setting: string; path: string}[]
          files: {path: string}[]
        }
      }>(
        await sshca([
          'ca',
          'backup',
          '--config',
          init.config,
          '--out',
          join(base, 'pg.sshca'),
          '--password-file',
          backupPw,
          '--ca-password-file',
          caPw,
          '--json',
        ]),
        'ca backup',
      )
      assert.deepEqual([backup.manifest.store.type, backup.manifest.store.included], ['postgresql', false])
      assert.equal(
        backup.manifest.files.some((f) => f.path.startsWith('db/')),
        false,
      )
      assert.ok(
        backup.notes.some((n) => /pg_dump/.test(n) && /pg_restore/.test(n)),
        backup.notes.join('\n'),
      )
      assert.ok(backup.manifest.external.some((e) => e.setting === 'db.passwordFile' && e.path === pg.passwordFile))
      // the database's own tools, as the notes say
      const dump = join(base, 'sshca.pgdump')
      const pgEnv = {...process.env, PGPASSWORD: pg.password}
      const d = spawnSync(join(bin!, 'pg_dump'), ['--format=custom', `--file=${dump}`, url], {
        env: pgEnv,
        encoding: 'utf8',
      })
      assert.equal(d.status, 0, d.stderr)
      const tokenC = await gh.mint()
      assert.equal((await old.sign(tokenC, generatePrivateKey('ed25519'))).status, 201, 'spent after the dump')
      await old.stop()

      const target = await pg.createDatabase()
      const r = spawnSync(join(bin!, 'pg_restore'), ['--no-owner', `--dbname=${target}`, dump], {
        env: pgEnv,
        encoding: 'utf8',
      })
      assert.equal(r.status, 0, r.stderr)
      const dir = join(base, 'pg-restored')
      const restored = json<{config: string; notes: string[]}>(
        await sshca([
          'ca',
          'restore',
          backup.file,
          '--dir',
          dir,
          '--password-file',
          backupPw,
          '--ca-password-file',
          caPw,
          '--json',
        ]),
        'ca restore',
      )
      assert.ok(restored.notes.some((n) => /pg_restore/.test(n)))
      await writePolicy(restored.config, {db: pg.db({url: target})})
      const fresh = await serve(restored.config, dir)
      try {
        assert.equal(fresh.ca.runtime.material.rootFingerprint, init.rootFingerprint)
        assert.ok(fresh.ca.runtime.safety?.restoredAt, 'the first start marked the database restored')
        assert.equal((await fresh.sign(tokenA, generatePrivateKey('ed25519'))).reason, 'token_replayed')
        assert.equal((await fresh.sign(tokenC, generatePrivateKey('ed25519'))).reason, 'token_before_restore')
        const now = Math.floor(Date.now() / 1000)
        assert.equal(
          (
            await fresh.sign(
              await gh.mint({}, {iat: now + 60, nbf: now - 5, exp: now + 300}),
              generatePrivateKey('ed25519'),
            )
          ).status,
          201,
        )
      } finally {
        await fresh.stop()
      }
    } finally {
      await pg.destroy()
    }
  })

  it("stages the store's unsealed snapshot in the CA's own directory, never beside the archive (the folder shipped offsite)", async () => {
    const {init} = await makeCaDir(policy(gh.issuer), 'Staging')
    assert.equal((await sshca(['ca', 'migrate', '--config', init.config])).code, 0)
    const out = tempDir('sshca-backup-out-')
    // inotify sees every name created there, however briefly (a backup killed mid-way would leave it)
    const created: string[] = []
    const watcher = watch(out, (_event, name) => void (name && created.push(String(name))))
    try {
      const r = await sshca([
        'ca',
        'backup',
        '--config',
        init.config,
        '--out',
        out,
        '--password-file',
        backupPw,
        '--ca-password-file',
        caPw,
      ])
      assert.equal(r.code, 0, r.stderr)
      await new Promise((resolve) => setTimeout(resolve, 200))
    } finally {
      watcher.close()
    }
    assert.deepEqual(
      // (the archive's own temporary name, sealed, ends in .tmp)
      created.filter((n) => n.startsWith('.sshca-backup-') && !n.endsWith('.tmp')),
      [],
      `no unsealed staging beside the archive: ${created.join(', ')}`,
    )
    assert.ok(
      created.some((n) => n.endsWith('.sshca')),
      `the archive was written there: ${created.join(', ')}`,
    )
    assert.deepEqual(
      readdirSync(join(init.dir, 'db')).filter((n) => n.startsWith('.sshca-backup-')),
      [],
      'the staging is gone after the backup',
    )
  })

  it('backs up with the CA directory read-only but its db folder (the documented unit: ProtectSystem=strict, ReadWritePaths= the out folder and db)', async function () {
    if (process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare')) this.skip() // CI runs as root: the namespace needs it
    const {init} = await makeCaDir(policy(gh.issuer), 'Read-only')
    assert.equal((await sshca(['ca', 'migrate', '--config', init.config])).code, 0)
    const out = tempDir('sshca-backup-ro-')
    const script = [
      'set -e',
      'mount --bind "$CA" "$CA"',
      'mount -o remount,ro,bind "$CA"',
      'mount --bind "$CA/db" "$CA/db"',
      'mount -o remount,rw,bind "$CA/db"',
      'exec "$NODE" bin/run.cjs ca backup --config "$CA/ca.yaml" --out "$OUT" --password-file "$PW" --ca-password-file "$CAPW" --json',
    ].join('\n')
    const r = spawnSync('unshare', ['-m', 'bash', '-c', script], {
      encoding: 'utf8',
      env: {...process.env, CA: init.dir, OUT: out, PW: backupPw, CAPW: caPw, NODE: process.execPath},
      timeout: 120_000,
    })
    assert.equal(r.status, 0, `${r.stderr}${r.stdout}`)
    const {file} = JSON.parse(r.stdout) as {file: string}
    assert.ok(existsSync(file))
    assert.deepEqual(
      readdirSync(out).filter((n) => n.startsWith('.')),
      [],
      'nothing but the archive in the out folder',
    )
  })

  it('a store restored by other means (a file or VM snapshot, pg_restore): ca mark-restored makes the serving CA refuse the tokens spent since, within a second', async () => {
    const {init} = await makeCaDir(policy(gh.issuer), 'By hand')
    assert.equal((await sshca(['ca', 'migrate', '--config', init.config])).code, 0)
    const db = join(init.dir, 'db', 'sshca.sqlite')
    // the copy an operator would bring back: the store before token A was spent
    const copy = readFileSync(db)
    let ca = await serve(init.config, init.dir)
    const tokenA = await gh.mint()
    try {
      assert.equal((await ca.sign(tokenA, generatePrivateKey('ed25519'))).status, 201)
      assert.equal((await ca.sign(tokenA, generatePrivateKey('ed25519'))).reason, 'token_replayed')
    } finally {
      await ca.stop()
    }
    for (const f of ['sshca.sqlite-wal', 'sshca.sqlite-shm']) rmSync(join(init.dir, 'db', f), {force: true})
    writeFileSync(db, copy)
    ca = await serve(init.config, init.dir)
    try {
      // the attack: the restored store has no record of token A, which signs a second time
      assert.equal((await ca.sign(tokenA, generatePrivateKey('ed25519'))).status, 201, 'replayed after the restore')
      // issued before the mark, not spent yet: any of them may have been spent after the copy was taken
      const early = await Promise.all(Array.from({length: 50}, () => gh.mint()))
      const r = await sshca([
        'ca',
        'mark-restored',
        '--config',
        init.config,
        '--reason',
        'VM snapshot of 02:00',
        '--json',
      ])
      const marked = json<{restoredAt: string; windowSeconds: number}>(r, 'ca mark-restored')
      assert.ok(Date.parse(marked.restoredAt) <= Date.now())
      // the CA serving from this store applies it within a second, without a restart
      await waitFor(
        'the serving CA to apply the mark',
        async () => (await ca.sign(early.pop()!, generatePrivateKey('ed25519'))).reason === 'token_before_restore',
        10_000,
      )
      assert.equal((await ca.sign(tokenA, generatePrivateKey('ed25519'))).status, 401, 'token A no longer signs')
      // a token issued after the mark and its minute of leeway signs (iat that far ahead is within the verifier's own leeway)
      const now = Math.floor(Date.now() / 1000)
      const later = await ca.sign(
        await gh.mint({}, {iat: now + 60, nbf: now - 5, exp: now + 300}),
        generatePrivateKey('ed25519'),
      )
      assert.equal(later.status, 201, later.body)
      await waitFor(
        'the ca_restored event in the audit log',
        () =>
          readAuditLines(ca.auditFile).some(
            (l) => l.event === 'ca_restored' && l.marked_by === 'sshca ca mark-restored',
          ),
        10_000,
      )
      // a clock behind the store's newest certificate would leave tokens spent since then signing: refused, nothing marked
      const {markStoreRestored} = await import('../../src/ca/safety.ts')
      await assert.rejects(
        markStoreRestored({configPath: init.config, reason: 'wrong clock', clock: () => Date.now() - 3600_000}),
        {code: 'ERR_USAGE', message: /clock .* is behind the store's newest certificate/},
      )
      // a reason is required, one line
      const bad = await sshca(['ca', 'mark-restored', '--config', init.config, '--reason', ' '])
      assert.notEqual(bad.code, 0)
      assert.match(bad.stderr, /ERR_USAGE/)
    } finally {
      await ca.stop()
    }
  })

  describe('archives that must not restore', () => {
    let archive: string
    before(async () => {
      const {init} = await makeCaDir(policy(gh.issuer), 'Tamper')
      assert.equal((await sshca(['ca', 'migrate', '--config', init.config])).code, 0)
      const r = json<{file: string}>(
        await sshca([
          'ca',
          'backup',
          '--config',
          init.config,
          '--out',
          join(base, 'tamper.sshca'),
          '--password-file',
          backupPw,
          '--ca-password-file',
          caPw,
          '--json',
        ]),
        'ca backup',
      )
      archive = r.file
    })

    const refused = async (file: string, pw: string, pattern: RegExp) => {
      const dir = join(base, `never-${Math.random().toString(36).slice(2)}`)
      const r = await sshca(['ca', 'restore', file, '--dir', dir, '--password-file', pw, '--ca-password-file', caPw])
      assert.notEqual(r.code, 0, r.stdout)
      assert.match(r.stderr, pattern)
      assert.equal(existsSync(dir), false, 'nothing written')
      assert.deepEqual(
        readdirSync(base).filter((n) => n.includes('.restore-')),
        [],
        'no staging directory left behind',
      )
    }

    it('refuses a wrong backup password', async () => {
      await refused(archive, wrongPw, /ERR_CA_PASSWORD.*wrong backup password/)
    })

    it('refuses an archive with one byte flipped in the sealed body, in the header, or cut short', async () => {
      const bytes = readFileSync(archive)
      const headerEnd = bytes.indexOf(0x0a)
      for (const [name, at] of [
        ['body', Math.floor((headerEnd + bytes.length) / 2)],
        ['last tag', bytes.length - 1],
      ] as const) {
        const t = Buffer.from(bytes)
        t[at]! ^= 0x01
        const f = join(base, `tampered-${name.replace(' ', '-')}.sshca`)
        writeFileSync(f, t)
        await refused(f, backupPw, /archive was altered|does not authenticate/)
      }
      // the header's KDF cost lowered: the header is authenticated with every chunk
      const header = JSON.parse(bytes.subarray(0, headerEnd).toString('utf8')) as {kdf: {N: number}}
      const weaker = Buffer.concat([
        Buffer.from(JSON.stringify({...header, kdf: {...header.kdf, N: header.kdf.N / 2}})),
        bytes.subarray(headerEnd),
      ])
      writeFileSync(join(base, 'weaker.sshca'), weaker)
      await refused(join(base, 'weaker.sshca'), backupPw, /archive was altered/)
      writeFileSync(join(base, 'cut.sshca'), bytes.subarray(0, bytes.length - 100))
      await refused(
        join(base, 'cut.sshca'),
        backupPw,
        /not a valid sshca backup: truncated|archive was altered|does not authenticate/,
      )
    })

    it('an archive re-sealed by someone with the backup password alone does not restore: its ca.yaml changed, or its signature dropped', async () => {
      // the attacker opens a real archive with the backup password, puts in a ca.yaml of theirs (a
      // rule granting root to anyone; or kms: a PKCS#11 module of theirs) and seals it again
      const files = new Map<string, Buffer>()
      const real = await readArchive(archive, BACKUP_PASSWORD, checkManifest, async (f) => {
        const parts: Buffer[] = []
        return {
          write: async (b) => void parts.push(Buffer.from(b)),
          close: async () => void files.set(f.path, Buffer.concat(parts)),
        }
      })
      assert.ok(real.integrity, 'the archive is signed')
      const forge = async (name: string, manifest: Omit<BackupManifest, 'files'>, yaml: string) => {
        const path = join(base, name)
        const fh = await open(path, 'wx', 0o600)
        try {
          const inputs = real.files.map((f) => ({
            path: f.path,
            data: f.path === 'ca.yaml' ? Buffer.from(yaml) : files.get(f.path)!,
          }))
          await writeArchive(fh, BACKUP_PASSWORD, manifest, inputs)
        } finally {
          await fh.close()
        }
        return path
      }
      const {files: _files, ...head} = real
      const theirs = `${files.get('ca.yaml')!.toString('utf8')}\n# the attacker's policy\n`
      await refused(await forge('forged.sshca', head, theirs), backupPw, /does not match what the CA signed/)
      const {integrity: _integrity, ...unsigned} = head
      const unsignedFile = await forge('unsigned.sshca', unsigned, theirs)
      await refused(unsignedFile, backupPw, /carries no signature/)
      // --unverified lets an unsigned archive through (what an archive from before signing needs), and says so
      const drill = json<{signature: string}>(
        await sshca([
          'ca',
          'restore',
          unsignedFile,
          '--dir',
          join(base, 'unverified-drill'),
          '--password-file',
          backupPw,
          '--unverified',
          '--dry-run',
          '--json',
        ]),
        'unverified dry run',
      )
      assert.equal(drill.signature, 'absent')
      // but never a signed one whose signature is not checked
      const signed = await sshca([
        'ca',
        'restore',
        archive,
        '--dir',
        join(base, 'never-unchecked'),
        '--password-file',
        backupPw,
        '--unverified',
      ])
      assert.notEqual(signed.code, 0)
      assert.match(signed.stderr, /the archive is signed: the CA password is needed/)
      // the real archive with a wrong CA password: refused too, before anything is written
      const dir = join(base, `never-${Math.random().toString(36).slice(2)}`)
      const r = await sshca([
        'ca',
        'restore',
        archive,
        '--dir',
        dir,
        '--password-file',
        backupPw,
        '--ca-password-file',
        wrongPw,
      ])
      assert.notEqual(r.code, 0)
      assert.match(r.stderr, /ERR_CA_PASSWORD/)
      assert.equal(existsSync(dir), false)
    })

    it('a dry run verifies and writes nothing', async () => {
      const dir = join(base, 'dry')
      const r = json<{dryRun: boolean}>(
        await sshca([
          'ca',
          'restore',
          archive,
          '--dir',
          dir,
          '--dry-run',
          '--password-file',
          backupPw,
          '--ca-password-file',
          caPw,
          '--json',
        ]),
        'dry run',
      )
      assert.equal(r.dryRun, true)
      assert.equal(existsSync(dir), false)
    })
  })
})
