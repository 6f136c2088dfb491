/**
 * dnsNames on a reload: they name the API's TLS certificate from its next issue. Which events issue
 * it, what a reload's warning says the certificate names, and that every worker thread serves the
 * one certificate in force. Real CA directories from `ca init`, the real rotation functions.
 */
import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'
import {closeSync, openSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {connect} from 'node:tls'
import {caPaths} from '../../src/ca/config/layout.ts'
import {readSealedKey} from '../../src/ca/keys/keystore.ts'
import {createRoot, createTlsCert, parseCert, subjectAltNames} from '../../src/ca/keys/pki.ts'
import {activateRoot, prepareRoot} from '../../src/ca/keys/roots.ts'
import {startCa} from '../../src/ca/server.ts'
import {readAuditLines} from '../helpers/audit.ts'
import {makeCaDir, PASSWORD, startTestCa, writePolicy} from '../helpers/ca.ts'
import {startPostgres} from '../helpers/postgres.ts'
import {exclusiveLockKey, LOCK_WAIT_TIMEOUTS} from '../../src/ca/store/postgres.ts'
import {waitFor} from '../helpers/proc.ts'

const namesOf = (pem: string): string[] => subjectAltNames(parseCert(pem))

/** The fingerprint of the TLS certificate the CA presents to one new connection. */
function served(url: string): Promise<string> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const s = connect({host: u.hostname, port: Number(u.port), rejectUnauthorized: false}, () => {
      const fp = s.getPeerCertificate().fingerprint256
      s.end()
      resolve(fp)
    })
    s.on('error', reject)
  })
}
const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256

describe('a reload that changes dnsNames, and the TLS certificate', function () {
  this.timeout(120_000)

  /**
   * Two replicas serving one CA directory, in this process (a and b, each with its audit log a.log,
   * b.log in the directory), watching its files every `keysIntervalMs`.
   */
  const replicas = (init: {config: string; dir: string}, keysIntervalMs: number) => {
    const start = (who: string) =>
      startCa({
        configPath: init.config,
        password: PASSWORD,
        address: '127.0.0.1:0',
        workers: 0,
        auditFile: join(init.dir, `${who}.log`),
        keysIntervalMs,
      })
    return Promise.all([start('a'), start('b')])
  }

  it('two replicas sharing the CA directory, one reloaded with other dnsNames: a root rotation step does not set them reissuing the certificate in turn', async () => {
    const {init} = await makeCaDir({})
    const [a, b] = await replicas(init, 100)
    try {
      await writePolicy(init.config, {dnsNames: ['127.0.0.1', 'ca.example.com']})
      assert.equal(await a.reload(), true)
      const tlsFile = () => readFileSync(caPaths(init.dir).tlsCert, 'utf8')
      const before = tlsFile()
      await prepareRoot(init.dir, 'Test', PASSWORD)
      const loads = (who: string) =>
        readAuditLines(join(init.dir, `${who}.log`)).filter((l) => l.event === 'ca_roots_loaded').length
      await waitFor('both replicas to load the prepared root', () => loads('a') >= 1 && loads('b') >= 1)
      // 20 ticks of each replica's watch of the files
      await new Promise((resolve) => setTimeout(resolve, 2000))
      // each reissued the certificate under its own names, and each write was a change for the other:
      // the certificate was rewritten every tick, for as long as one replica was not reloaded
      assert.ok(loads('a') <= 2 && loads('b') <= 2, `roots loaded ${loads('a')} and ${loads('b')} times`)
      assert.equal(tlsFile(), before, 'prepare writes no TLS certificate; neither replica reissued it')
      assert.equal(a.runtime.material.tls.certPem, b.runtime.material.tls.certPem)
    } finally {
      await a.close()
      await b.close()
    }
  })

  it('two replicas finding a stale certificate at once: one reissues it under the store lock, the other takes it', async () => {
    const {init} = await makeCaDir({})
    // the test calls reloadKeys itself, on both at once
    const [a, b] = await replicas(init, 3_600_000)
    try {
      // a certificate the intermediate did not sign (as after a root activation cut short): stale
      const other = await createRoot('Another CA')
      const stray = await createTlsCert(['127.0.0.1'], {cert: other.cert, key: other.key})
      writeFileSync(caPaths(init.dir).tlsCert, stray.pem)
      assert.deepEqual(await Promise.all([a.reloadKeys(), b.reloadKeys()]), [true, true])
      const reissued = (who: string) =>
        readAuditLines(join(init.dir, `${who}.log`)).find((l) => l.event === 'ca_roots_loaded')!.tls_reissued
      // without the lock both read the stale pair, both reissued and wrote key and certificate in turn
      assert.deepEqual([reissued('a'), reissued('b')].sort(), [false, true])
      const onDisk = readFileSync(caPaths(init.dir).tlsCert, 'utf8')
      assert.equal(a.runtime.material.tls.certPem, onDisk)
      assert.equal(b.runtime.material.tls.certPem, onDisk)
      const key = await readSealedKey(caPaths(init.dir).tlsKey, PASSWORD)
      assert.ok(new X509Certificate(onDisk).checkPrivateKey(key), 'the key on disk is the certificate’s')
      assert.equal(await served(a.url), fingerprint(onDisk))
      assert.equal(await served(b.url), fingerprint(onDisk))
    } finally {
      await a.close()
      await b.close()
    }
  })

  it("replicas on PostgreSQL: the reissue is ordered by the database's lock; without the lock (the database down, another process holding it) it waits for the next look", async () => {
    const pg = await startPostgres()
    const {init} = await makeCaDir({db: pg.db({timeout: 1})})
    const [a, b] = await replicas(init, 3_600_000)
    const stray = async () => {
      const other = await createRoot('Another CA')
      writeFileSync(caPaths(init.dir).tlsCert, (await createTlsCert(['127.0.0.1'], other)).pem)
    }
    const lines = (who: string) => readAuditLines(join(init.dir, `${who}.log`))
    const reissued = (who: string) =>
      lines(who)
        .filter((l) => l.event === 'ca_roots_loaded')
        .map((l) => l.tls_reissued)
    const failures = () => lines('a').filter((l) => l.event === 'ca_keys_reload_failed')
    /** a reissues the stray certificate once it has the lock: what it serves is what is on disk, and verifies. */
    const reissuedByA = async () => {
      assert.equal(await a.reloadKeys(), true)
      assert.equal(reissued('a').at(-1), true)
      const onDisk = readFileSync(caPaths(init.dir).tlsCert, 'utf8')
      assert.equal(a.runtime.material.tls.certPem, onDisk)
      assert.equal(await served(a.url), fingerprint(onDisk))
    }
    let holder: {release(): Promise<void>} | undefined
    try {
      await stray()
      assert.deepEqual(await Promise.all([a.reloadKeys(), b.reloadKeys()]), [true, true])
      assert.deepEqual([...reissued('a'), ...reissued('b')].sort(), [false, true])
      assert.equal(a.runtime.material.tls.certPem, b.runtime.material.tls.certPem)

      // the database down: no reissue without the lock (another replica may be writing the pair); the
      // CA keeps what it serves, says so once, and looks again at each tick until the store answers
      const serving = a.runtime.material.tls.certPem
      await pg.stop()
      await stray()
      assert.equal(await a.reloadKeys(), false)
      assert.equal(await a.reloadKeys(), false)
      assert.equal(failures().length, 1, JSON.stringify(failures()))
      assert.equal(failures()[0]!.retry, 'when the store answers')
      assert.equal(a.runtime.material.tls.certPem, serving)
      await pg.start()
      await reissuedByA()

      // another process holds the lock and does not let go (a replica cut off from the network keeps its
      // session for hours): the wait ends after 6 x db.timeout, and the next look after it reissues
      holder = await pg.holdLock(exclusiveLockKey('tls-renewal'))
      await stray()
      const started = Date.now()
      assert.equal(await a.reloadKeys(), false)
      assert.ok(Date.now() - started >= LOCK_WAIT_TIMEOUTS * 1000, `gave up after ${Date.now() - started} ms`)
      assert.match(String(failures().at(-1)!.error), /the lock "tls-renewal" is held by another process/)
      await holder.release()
      holder = undefined
      await reissuedByA()
    } finally {
      await holder?.release().catch(() => undefined)
      await a.close().catch(() => undefined)
      await b.close().catch(() => undefined)
      await pg.destroy()
    }
  })

  it("the lock held elsewhere for long: the 5 s looks do not pile up behind its waits, and a SIGHUP's policy reload is not held behind them", async () => {
    const pg = await startPostgres()
    const {init} = await makeCaDir({db: pg.db({timeout: 1})})
    // the watch of the files looks every 100 ms here (5 s in production): each look waits out the lock (6 s)
    const a = await startCa({
      configPath: init.config,
      password: PASSWORD,
      address: '127.0.0.1:0',
      workers: 0,
      auditFile: join(init.dir, 'a.log'),
      keysIntervalMs: 100,
    })
    // a replica cut off from the network holds the lock (PostgreSQL keeps its session for hours)
    const holder = await pg.holdLock(exclusiveLockKey('tls-renewal'))
    try {
      const other = await createRoot('Another CA')
      writeFileSync(caPaths(init.dir).tlsCert, (await createTlsCert(['127.0.0.1'], other)).pem)
      // two waits' worth of looks: 140 of them queued one behind the other without a bound
      await new Promise((r) => setTimeout(r, 2 * LOCK_WAIT_TIMEOUTS * 1000 + 2000))
      // the operator narrows the policy and sends SIGHUP: applied within a look or two, not hours later
      await writePolicy(init.config, {dnsNames: ['127.0.0.1', 'ca.example.com']})
      const started = Date.now()
      const applied = await Promise.race([
        a.reload(),
        new Promise<string>((r) => setTimeout(() => r('still waiting'), 3 * LOCK_WAIT_TIMEOUTS * 1000)),
      ])
      assert.equal(applied, true, `the policy reload waited ${Date.now() - started} ms and more`)
      assert.deepEqual(a.runtime.policy.config.dnsNames, ['127.0.0.1', 'ca.example.com'])
    } finally {
      await holder.release().catch(() => undefined)
      await a.close().catch(() => undefined)
      await pg.destroy()
    }
  })

  it("a later reload's warning names what the certificate in force names, not what it named at the start", async () => {
    const t = await startTestCa({}, {workers: 0})
    try {
      const warningsOfReload = async (): Promise<string[]> => {
        const mark = t.mark()
        assert.equal(await t.ca.reload(), true)
        const line = t.since(mark).find((l) => l.event === 'policy_loaded')!
        return (line.warnings as string[]).filter((w) => w.startsWith('dnsNames'))
      }
      await writePolicy(t.init.config, {dnsNames: ['127.0.0.1', 'ca.example.com']})
      assert.match((await warningsOfReload())[0]!, /until then it names \["127\.0\.0\.1"\]$/)
      // a root activation issues the certificate under ca.yaml's names (`ca rotate activate` reads them)
      await prepareRoot(t.init.dir, 'Test', PASSWORD)
      await activateRoot(t.init.dir, ['127.0.0.1', 'ca.example.com'], PASSWORD)
      assert.equal(await t.ca.reloadKeys(), true)
      assert.deepEqual(namesOf(t.ca.runtime.material.tls.certPem), ['127.0.0.1', 'ca.example.com'])
      assert.equal(await served(t.url), fingerprint(t.ca.runtime.material.tls.certPem))
      // the same ca.yaml again: the certificate names them already
      assert.deepEqual(await warningsOfReload(), [])
      // back to the start's names: the certificate keeps the other ones until its next issue
      await writePolicy(t.init.config, {dnsNames: ['127.0.0.1']})
      const back = await warningsOfReload()
      assert.equal(back.length, 1, JSON.stringify(back))
      assert.match(back[0]!, /until then it names \["127\.0\.0\.1","ca\.example\.com"\]$/)
    } finally {
      await t.stop()
    }
  })

  it('every worker thread serves the certificate in force, one started after it changed too', async () => {
    const t = await startTestCa({}, {workers: 2})
    try {
      const fingerprints = async (): Promise<Set<string>> => {
        const seen = new Set<string>()
        for (let i = 0; i < 12; i++) seen.add(await served(t.url))
        return seen
      }
      assert.deepEqual([...(await fingerprints())], [fingerprint(t.ca.runtime.material.tls.certPem)])
      await prepareRoot(t.init.dir, 'Test', PASSWORD)
      await activateRoot(t.init.dir, ['127.0.0.1'], PASSWORD)
      assert.equal(await t.ca.reloadKeys(), true)
      const now = fingerprint(t.ca.runtime.material.tls.certPem)
      assert.deepEqual([...(await fingerprints())], [now])
      const dead = t.ca.pool!.threads[0]!
      await dead.terminate()
      await waitFor(
        'the replacement worker',
        () => t.ca.pool!.threads[0] !== dead && t.ca.pool!.threads[0]!.threadId !== -1,
      )
      assert.deepEqual([...(await fingerprints())], [now])
    } finally {
      await t.stop()
    }
  })

  it('a CA stopped while its renewal waits for the lock: the look ends without a line, a file written or an error thrown', async () => {
    const t = await startTestCa({}, {clock: () => Date.now() + 340 * 86_400_000, tlsRenewIntervalMs: 100})
    const paths = caPaths(t.init.dir)
    const thrown: unknown[] = []
    const onRejection = (err: unknown): void => void thrown.push(err)
    process.on('unhandledRejection', onRejection)
    // another replica renewing holds the lock (on SQLite a lock in this process, taken through the same
    // store); a look that began before it (a slow start) has finished once it is held
    let release = (): void => undefined
    let holding = false
    const held = t.ca.runtime.store.exclusive(
      'tls-renewal',
      () =>
        new Promise<void>((r) => {
          holding = true
          release = r
        }),
    )
    try {
      await waitFor('the lock', () => holding)
      const cert = readFileSync(paths.tlsCert, 'utf8')
      await new Promise((r) => setTimeout(r, 500))
      await t.stop()
      // the descriptor the audit log had is the next file's: a line written to it would land there
      const next = join(t.init.dir, 'next-file')
      const fd = openSync(next, 'w')
      try {
        release()
        await held
        await new Promise((r) => setTimeout(r, 500))
      } finally {
        closeSync(fd)
      }
      assert.deepEqual(thrown, [])
      assert.equal(readFileSync(paths.tlsCert, 'utf8'), cert, 'a stopped CA renews nothing')
      assert.equal(readFileSync(next, 'utf8'), '')
      assert.equal(t.audit().at(-1)!.event, 'server_stopped')
    } finally {
      process.off('unhandledRejection', onRejection)
    }
  })

  it('the 12-hourly look: a certificate within 30 days of its end is reissued and served; a renewal that fails is audited and the certificate in force serves on', async () => {
    let skew = 0
    const t = await startTestCa({}, {clock: () => Date.now() + skew, tlsRenewIntervalMs: 100})
    const paths = caPaths(t.init.dir)
    const events = (name: string) => t.audit().filter((l) => l.event === name)
    try {
      const before = await served(t.url)
      await new Promise((r) => setTimeout(r, 300))
      assert.deepEqual(events('tls_certificate_renewed'), [], 'a year left: nothing to renew')
      // 340 days on, the 365-day certificate has 25 left
      skew = 340 * 86_400_000
      await waitFor('the renewal', () => events('tls_certificate_renewed').length > 0, 20_000)
      skew = 0
      // a look already running when the clock went back may renew once more: the count settles first
      let seen = -1
      await waitFor(
        'the renewals to settle',
        async () => {
          const n = events('tls_certificate_renewed').length
          const settled = n === seen
          seen = n
          await new Promise((r) => setTimeout(r, 400))
          return settled
        },
        20_000,
      )
      // on a busy machine a look may still finish after that: the certificate served is the one on disk
      let renewed = ''
      await waitFor(
        'the certificate on disk served',
        async () => (await served(t.url)) === (renewed = fingerprint(readFileSync(paths.tlsCert, 'utf8'))),
        20_000,
      )
      assert.notEqual(renewed, before)
      assert.equal(events('tls_certificate_renewed')[0]!.by_this_replica, true)

      // the intermediate key unreadable (a disk error, a file overwritten): the renewal cannot sign
      writeFileSync(paths.intermediateKey, 'not a sealed key\n', {mode: 0o600})
      skew = 340 * 86_400_000
      await waitFor('the failure in the audit log', () => events('tls_certificate_renewal_failed').length > 0, 20_000)
      skew = 0
      const failed = events('tls_certificate_renewal_failed')[0]!
      assert.match(String(failed.error), /intermediate|sealed|key/i)
      assert.equal(failed.next_attempt_in_seconds, 0)
      assert.equal(typeof failed.not_after, 'string')
      // the certificate in force serves on: the one the last renewal wrote. On a busy machine a look that
      // began before the key was overwritten (its unsealing outlasting the settling above) renews once more
      const inForce = readFileSync(paths.tlsCert, 'utf8')
      assert.equal(await served(t.url), fingerprint(inForce))
      assert.notEqual(fingerprint(inForce), before)
      assert.equal(
        new Date(new X509Certificate(inForce).validTo).toISOString(),
        events('tls_certificate_renewed').at(-1)!.not_after,
        'the certificate on disk is the last renewal’s, not a failed one’s',
      )
      assert.equal((await t.call('GET', '/health')).status, 200)
    } finally {
      await t.stop()
    }
  })
})
