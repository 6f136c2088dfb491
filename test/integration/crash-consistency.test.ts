/**
 * Nothing lost: `sshca ca serve` (a real process) killed with SIGKILL while 16 clients sign, and its
 * state directory on a full disk. What a client was given is on disk; what was refused was not issued.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync} from 'node:fs'
import {join} from 'node:path'
import {request} from 'undici'
import {DatabaseSync} from 'node:sqlite'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {makeCaDir, writePolicy} from '../helpers/ca.ts'
import {startCaProcess, type CaProcess} from '../helpers/ca-process.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {onCleanup, waitFor} from '../helpers/proc.ts'

const policy = (issuer: string) => ({
  provisioners: [
    {
      name: 'ci',
      type: 'oidc',
      issuer,
      audience: 'sshca-ci',
      rules: [
        {
          name: 'deploy',
          match: {repository: 'acme/app', ref: 'refs/heads/main'},
          certificate: {principals: ['deploy'], ttl: '10m', keyId: 'gha:${repository}:${run_id}'},
        },
      ],
    },
  ],
})

interface Attempt {
  jti: string
  ott: string
  /** undefined: no answer (the connection died with the server) */
  status?: number
  crt?: string
}

const auditLines = (file: string): Record<string, unknown>[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l, i) => {
      try {
        return JSON.parse(l) as Record<string, unknown>
      } catch {
        throw new Error(`audit line ${i + 1} is not JSON (a torn write?): ${l.slice(0, 200)}`)
      }
    })

describe('crash consistency: nothing a client was given is lost', function () {
  this.timeout(240_000)
  let gh: GithubIssuer
  const subject = generatePrivateKey('ed25519').publicKey.blob.toString('base64')

  before(async () => {
    gh = await startGithubIssuer()
  })
  after(async () => gh?.stop())

  async function caDir(settings: Record<string, unknown> = {}) {
    const {init, passwordFile} = await makeCaDir(policy(gh.issuer))
    const auditFile = join(init.dir, 'audit.log')
    await writePolicy(init.config, {audit: {file: auditFile}, ...policy(gh.issuer), ...settings})
    // two worker threads whatever the machine: the guarantees hold with the store's writer apart from the signers
    const start = () => startCaProcess({config: init.config, caDir: init.dir, passwordFile, env: {SSHCA_WORKERS: '2'}})
    return {init, auditFile, dbFile: join(init.dir, 'db', 'sshca.sqlite'), start}
  }

  async function attempt(ca: CaProcess, a: Attempt): Promise<Attempt> {
    try {
      const r = await ca.signSsh({publicKey: subject, ott: a.ott})
      a.status = r.status
      if (r.status === 201) a.crt = r.json!.crt as string
      else
        assert.deepEqual(
          Object.keys(r.json ?? {}).sort(),
          ['message', 'request_id', 'status'],
          `a ${r.status} without the error body`,
        )
    } catch (err) {
      if (
        !/ECONNRESET|socket|other side closed|ECONNREFUSED|terminated/i.test(
          String((err as Error).message) + String((err as {code?: string}).code),
        )
      )
        throw err
    }
    return a
  }

  const fresh = async (): Promise<Attempt> => {
    const ott = await gh.mint()
    return {jti: JSON.parse(Buffer.from(ott.split('.')[1]!, 'base64url').toString()).jti as string, ott}
  }

  it('SIGKILL under 16 signing clients: every 201 is in the store and the audit log, and no spent token works again', async () => {
    const {auditFile, dbFile, start} = await caDir()
    let ca = await start()
    const attempts: Attempt[] = []
    let issued = 0
    let killed = false
    const KILL_AFTER = 150
    // minted beforehand, so the clients keep the server busy instead of signing tokens themselves
    const pool = await Promise.all(Array.from({length: KILL_AFTER * 4}, fresh))
    const client = async (): Promise<void> => {
      while (!killed) {
        const a = pool.pop()
        assert.ok(a, 'the server outran the token pool')
        attempts.push(a)
        await attempt(ca, a)
        if (a.status === undefined) return
        assert.ok(a.status === 201, `status ${a.status} before the crash`)
        if (++issued === KILL_AFTER) {
          // a moment later, whatever the server is doing: the clients have requests in flight, some
          // committed and unanswered, some not
          setTimeout(() => {
            killed = true
            process.kill(ca.pid, 'SIGKILL')
          }, Math.random() * 50)
        }
      }
    }
    await Promise.all(Array.from({length: 16}, client))
    assert.equal((await ca.exited).signal, 'SIGKILL')
    await ca.stop()
    const ok = attempts.filter((a) => a.status === 201)
    const unanswered = attempts.filter((a) => a.status === undefined)
    assert.ok(ok.length >= KILL_AFTER)

    // what the dead process left on disk, before anything else opens the database
    const spentBefore = new Set<string>()
    const stored = new Map<string, string>()
    {
      const db = new DatabaseSync(dbFile, {readOnly: true})
      for (const r of db.prepare('SELECT token_id FROM used_tokens').all()) spentBefore.add(String(r.token_id))
      for (const r of db.prepare('SELECT serial, certificate FROM certificates').all())
        stored.set(String(r.serial), String(r.certificate))
      db.close()
    }
    const tokenId = (a: Attempt) => `${gh.issuer}#jti:${a.jti}`

    // 1. every certificate a client received with a 201 is in the store, byte for byte
    for (const a of ok) {
      const serial = parseCertificate(Buffer.from(a.crt!, 'base64')).serial.toString()
      assert.equal(stored.get(serial), a.crt, `certificate ${serial} was returned with a 201 but is not in the store`)
      assert.ok(spentBefore.has(tokenId(a)), `token ${a.jti} was accepted but is not recorded as spent`)
    }
    // and the store holds nothing but what was answered or in flight
    assert.ok(
      stored.size >= ok.length && stored.size <= ok.length + unanswered.length,
      `${stored.size} stored, ${ok.length} answered, ${unanswered.length} in flight`,
    )

    // 2. the audit log has certificate_issued for every 201 (no torn line either)
    const issuedSerials = new Set(
      auditLines(auditFile)
        .filter((l) => l.event === 'certificate_issued')
        .map((l) => l.serial),
    )
    for (const a of ok)
      assert.ok(
        issuedSerials.has(parseCertificate(Buffer.from(a.crt!, 'base64')).serial.toString()),
        'a 201 without its certificate_issued line',
      )

    // 3. restarted, no token spent before the crash is accepted again; an unanswered one that was never
    //    committed may be (its client never got a certificate)
    ca = await start()
    try {
      for (const a of [...ok, ...unanswered]) {
        const again = await ca.signSsh({publicKey: subject, ott: a.ott})
        if (spentBefore.has(tokenId(a)))
          assert.equal(again.status, 401, `token ${a.jti}, spent before the crash, got ${again.status} after it`)
        else assert.equal(again.status, 201, `token ${a.jti}, never spent, got ${again.status}`)
      }
      const replays = auditLines(auditFile).filter(
        (l) => l.event === 'certificate_denied' && l.reason === 'token_replayed',
      )
      assert.equal(replays.length, [...ok, ...unanswered].filter((a) => spentBefore.has(tokenId(a))).length)
      console.log(
        `      (${attempts.length} requests: ${ok.length} × 201 before the SIGKILL, ${unanswered.length} unanswered of which ${unanswered.filter((a) => spentBefore.has(tokenId(a))).length} committed)`,
      )
    } finally {
      await ca.stop()
    }
  })

  describe('the state directory on a full disk', () => {
    let mountPoint: string | undefined

    afterEach(() => {
      if (mountPoint) spawnSync('umount', [mountPoint])
      mountPoint = undefined
    })

    // the state directory holds the database and, as an operator would keep it, the audit log next to
    // it; then the audit log alone, so that commits succeed and writing their audit line fails
    for (const layout of [
      {what: 'database and audit log', db: true},
      {what: 'audit log only', db: false},
    ])
      it(`${layout.what}: issuance fails closed with 503 (ERR_STORE_UNAVAILABLE), never 500, and recovers by itself when space returns`, async function () {
        const {init, start} = await caDir()
        const stateDir = join(init.dir, 'state')
        mkdirSync(stateDir, {mode: 0o700})
        const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', stateDir], {encoding: 'utf8'})
        if (m.status !== 0) {
          console.log(
            `      skipped: cannot mount a tmpfs on ${stateDir} (needs root or CAP_SYS_ADMIN): ${(m.stderr || m.error?.message || '').trim()}`,
          )
          this.skip()
        }
        mountPoint = stateDir
        onCleanup(async () => void spawnSync('umount', [stateDir]))
        const dbFile = layout.db ? join(stateDir, 'sshca.sqlite') : join(init.dir, 'db', 'sshca.sqlite')
        const auditFile = join(stateDir, 'audit.log')
        await writePolicy(init.config, {
          db: {type: 'sqlite', path: dbFile},
          audit: {file: auditFile},
          ...policy(gh.issuer),
        })
        const ca = await start()
        try {
          assert.equal((await attempt(ca, await fresh())).status, 201)

          // fill the disk: what is left of the 2 MB goes to a filler file
          const filler = join(stateDir, 'filler')
          const fd = openSync(filler, 'w')
          try {
            const chunk = Buffer.alloc(16 * 1024)
            for (;;) writeSync(fd, chunk)
          } catch (err) {
            assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC')
          } finally {
            closeSync(fd)
          }

          // sign until the store cannot grow: every answer a 201 or a 503 with the API's error body, never a 500
          const answered: Attempt[] = []
          for (let i = 0; i < 400 && answered.filter((a) => a.status === 503).length < 5; i++) {
            const a = await attempt(ca, await fresh())
            answered.push(a)
            assert.ok(a.status === 201 || a.status === 503, `status ${a.status} on a full disk`)
          }
          const refused = answered.filter((a) => a.status === 503)
          assert.equal(refused.length, 5, 'the disk never filled up')
          const r = await ca.signSsh({publicKey: subject, ott: (await fresh()).ott})
          assert.equal(r.status, 503)
          assert.equal(
            r.json!.message,
            'the CA cannot record certificates right now, so it issued none; try again shortly',
          )
          assert.equal((await request(`${ca.url}/health`, {dispatcher: ca.dispatcher})).statusCode, 200)

          // space returns: issuance resumes by itself
          rmSync(filler)
          await waitFor('issuance to resume', async () => (await attempt(ca, await fresh())).status === 201, 30_000)

          // the audit log caught up (what it could not write then is appended now), with no torn line:
          // each 503 is denied for store_unavailable, from the database (token unspent, nothing recorded:
          // the token works now) or from the audit log after the commit (token spent, certificate recorded,
          // its certificate_issued line written late: the token is refused as a replay)
          const lines = auditLines(auditFile)
          const db = new DatabaseSync(dbFile, {readOnly: true})
          try {
            const stored = (serial: string) =>
              (
                db.prepare('SELECT certificate FROM certificates WHERE serial = ?').get(serial) as
                  {certificate?: string} | undefined
              )?.certificate
            for (const a of answered.filter((x) => x.status === 201)) {
              const serial = parseCertificate(Buffer.from(a.crt!, 'base64')).serial.toString()
              assert.equal(stored(serial), a.crt)
              assert.ok(lines.some((l) => l.event === 'certificate_issued' && l.serial === serial))
            }
            const denialOf = (a: Attempt) =>
              lines.find(
                (l) =>
                  l.event === 'certificate_denied' &&
                  (l.token as {id?: string} | undefined)?.id === `${gh.issuer}#jti:${a.jti}`,
              )
            const kinds = {store: 0, audit: 0}
            for (const a of refused) {
              const d = denialOf(a)
              assert.ok(d, `no certificate_denied for a 503 (jti ${a.jti})`)
              assert.equal(d.reason, 'store_unavailable')
              assert.equal(d.status, 503)
              const retry = await attempt(ca, {...a})
              if (/the store cannot commit: .*disk is full/.test(String(d.detail))) {
                kinds.store++
                assert.equal(retry.status, 201, 'a token refused before its commit must still be usable')
              } else {
                assert.match(String(d.detail), /the audit log cannot be written: .*ENOSPC/)
                kinds.audit++
                assert.equal(retry.status, 401, 'a token spent by a commit whose audit line failed is refused')
                const issued = lines.find((l) => l.event === 'certificate_issued' && l.request_id === d.request_id)
                assert.ok(
                  issued && stored(String(issued.serial)),
                  'the commit before the failed audit line is in the store and, late, in the audit log',
                )
              }
            }
            if (!layout.db) assert.equal(kinds.audit, refused.length)
            console.log(
              `      (${answered.length} requests on the full disk: ${answered.length - refused.length} × 201, 503 × ${refused.length}: ${kinds.store} from the database, ${kinds.audit} from the audit log)`,
            )
          } finally {
            db.close()
          }
        } finally {
          await ca.stop()
        }
      })
  })
})
