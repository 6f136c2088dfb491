/**
 * The emergency stop as an operator pulls it: `sshca ca stop-issuance` (the built CLI) next to two
 * CAs serving from one store, `sshca ca status --json` saying since when and until when certificates
 * work, an attempt to undo it by editing ca.yaml back, and `sshca ca resume-issuance`; all audited.
 */
import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {Agent, request} from 'undici'
import {startCa, type RunningCa} from '../../src/ca/server.ts'
import {parseCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {makeCaDir, PASSWORD, writePolicy} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {startGithubIssuer, type GithubIssuer} from '../helpers/github-issuer.ts'
import {waitFor} from '../helpers/proc.ts'
import {startPostgres} from '../helpers/postgres.ts'
import {exclusiveLockKey} from '../../src/ca/store/postgres.ts'
import {readAuditLines} from '../helpers/audit.ts'

const policy = (issuer: string) => ({
  limits: {rate: false},
  provisioners: [
    {
      name: 'ci',
      type: 'oidc',
      issuer,
      audience: 'sshca-ci',
      rules: [{name: 'deploy', match: {repository: 'acme/app'}, certificate: {principals: ['deploy'], ttl: '10m'}}],
    },
  ],
})

interface Status {
  issuing: boolean
  state: string
  stop: {since: string; reason: string} | null
  configDisabled: boolean
  lastValidBefore: string | null
  nothingValid: boolean
  certificates: {user: {active: number; lastValidBefore: string | null}}
}

describe('ca stop-issuance / ca status / ca resume-issuance', function () {
  this.timeout(120_000)
  let gh: GithubIssuer

  before(async () => {
    gh = await startGithubIssuer()
  })
  after(async () => gh?.stop())

  it('stops every replica on the store within seconds, says after when nothing works, survives a ca.yaml edit, and resumes', async () => {
    const {init} = await makeCaDir(policy(gh.issuer), 'Stop')
    const auditFile = join(init.dir, 'audit.log')
    await writePolicy(init.config, {...policy(gh.issuer), audit: {file: auditFile}})
    const http = new Agent({connect: {ca: readFileSync(join(init.dir, 'certs', 'root_ca.crt'))}})
    // two replicas on one SQLite store (one process, as ca serve would be twice on a shared volume)
    const replicas: RunningCa[] = []
    for (let i = 0; i < 2; i++)
      replicas.push(
        await startCa({
          configPath: init.config,
          password: PASSWORD,
          address: '127.0.0.1:0',
          safetyIntervalMs: 200,
          adminEventsIntervalMs: 200,
        }),
      )
    const validBefore: string[] = []
    const sign = async (ca: RunningCa) => {
      const res = await request(`${ca.url}/ssh/sign`, {
        method: 'POST',
        dispatcher: http,
        headers: {'content-type': 'application/json'},
        body: JSON.stringify({
          ott: await gh.mint(),
          publicKey: generatePrivateKey('ed25519').publicKey.blob.toString('base64'),
        }),
      })
      const text = await res.body.text()
      const json = JSON.parse(text) as Record<string, unknown>
      if (res.statusCode === 201)
        validBefore.push(
          new Date(
            Number(parseCertificate(Buffer.from(json.crt as string, 'base64')).validBefore) * 1000,
          ).toISOString(),
        )
      return {status: res.statusCode, json}
    }
    const status = async () => {
      const r = await sshca(['ca', 'status', '--config', init.config, '--json'])
      assert.equal(r.code, 0, r.stderr)
      return JSON.parse(r.stdout) as Status
    }
    const audit = () => readAuditLines(auditFile)
    try {
      const issued = await sign(replicas[0]!)
      assert.equal(issued.status, 201)
      const cert = parseCertificate(Buffer.from(issued.json.crt as string, 'base64'))
      const before = await status()
      assert.equal(before.issuing, true)
      assert.equal(before.stop, null)
      assert.equal(before.certificates.user.active, 1)
      assert.equal(before.lastValidBefore, new Date(Number(cert.validBefore) * 1000).toISOString())

      // a reason is required, and must be one line
      const noReason = await sshca(['ca', 'stop-issuance', '--config', init.config, '--reason', 'two\nlines'])
      assert.notEqual(noReason.code, 0)
      assert.equal((await status()).issuing, true, 'a refused stop changed nothing')

      const t0 = Date.now()
      const stopped = await sshca([
        'ca',
        'stop-issuance',
        '--config',
        init.config,
        '--reason',
        'user CA key on a stolen laptop',
        '--json',
      ])
      assert.equal(stopped.code, 0, stopped.stderr)
      const s = JSON.parse(stopped.stdout) as Status & {changed: boolean}
      assert.equal(s.changed, true)
      assert.equal(s.issuing, false)
      assert.ok(s.lastValidBefore! >= before.lastValidBefore!, 'after this moment nothing signed by this CA works')
      assert.match(readFileSync(init.config, 'utf8'), /^disabled: true$/m)

      // both replicas refuse, without a signal, within a few of their one-second polls
      for (const ca of replicas) {
        await waitFor('the replica to apply the stop', async () => (await sign(ca)).status === 503, 20_000)
      }
      const refused = await sign(replicas[1]!)
      assert.equal(refused.status, 503)
      const tookMs = Date.now() - t0

      const st = await status()
      assert.equal(st.state, 'stopped')
      assert.equal(st.stop?.reason, 'user CA key on a stolen laptop')
      assert.ok(Math.abs(Date.parse(st.stop!.since) - t0) < 5000, `since ${st.stop!.since}`)
      assert.equal(st.nothingValid, false)
      // what status promises covers every certificate any replica issued, also in the second before it applied the stop
      assert.equal(st.lastValidBefore, validBefore.sort().at(-1))
      const text = await sshca(['ca', 'status', '--config', init.config])
      assert.match(text.stdout, /STOPPED since .*user CA key on a stolen laptop/)
      assert.ok(text.stdout.includes(`after ${st.lastValidBefore} nothing signed by this CA works`), text.stdout)

      // stopping again keeps the first time and reason
      const again = JSON.parse(
        (await sshca(['ca', 'stop-issuance', '--config', init.config, '--reason', 'again', '--json'])).stdout,
      ) as Status & {changed: boolean}
      assert.equal(again.changed, false)
      assert.equal(again.stop?.since, st.stop?.since)

      // someone edits ca.yaml back and reloads: the store's stop still holds
      await writePolicy(init.config, {disabled: false})
      for (const ca of replicas) assert.equal(await ca.reload(), true)
      assert.equal((await sign(replicas[0]!)).status, 503)
      assert.equal((await status()).issuing, false)

      const resumed = await sshca([
        'ca',
        'resume-issuance',
        '--config',
        init.config,
        '--reason',
        'keys rotated',
        '--json',
      ])
      assert.equal(resumed.code, 0, resumed.stderr)
      for (const ca of replicas)
        await waitFor('the replica to resume', async () => (await sign(ca)).status === 201, 20_000)
      assert.equal((await status()).issuing, true)

      // the audit log says who stopped, that each replica applied it, and the resume
      await waitFor('admin events in the audit log', () => audit().some((e) => e.event === 'issuance_resumed'), 20_000)
      const events = audit()
      const stopEvent = events.find((e) => e.event === 'issuance_stopped' && e.already_stopped === false)
      assert.equal(stopEvent?.reason, 'user CA key on a stolen laptop')
      assert.equal(
        events.filter((e) => e.event === 'issuance_state_applied' && e.issuing === false).length,
        2,
        'each replica records that it stopped',
      )
      assert.equal(events.find((e) => e.event === 'issuance_resumed')?.stop_reason, 'user CA key on a stolen laptop')
      assert.ok(tookMs < 20_000)
    } finally {
      for (const ca of replicas) await ca.close()
      await http.close()
    }
  })

  it('a CA that never issued says so; a CA stopped only by ca.yaml reports stopped without a store stop', async () => {
    const {init} = await makeCaDir({...policy(gh.issuer), disabled: true}, 'Idle')
    const r = await sshca(['ca', 'status', '--config', init.config, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const s = JSON.parse(r.stdout) as Status
    assert.deepEqual(
      [s.issuing, s.stop, s.configDisabled, s.lastValidBefore, s.nothingValid],
      [false, null, true, null, true],
    )
  })

  it("with the database out of reach (down, or its lock held by a process that stopped with it) ca stop-issuance still sets ca.yaml's disabled, and says the store's stop is not written", async () => {
    const pg = await startPostgres()
    const {init} = await makeCaDir({db: pg.db({timeout: 1})})
    const stop = () =>
      sshca(['ca', 'stop-issuance', '--config', init.config, '--reason', 'key may be compromised', '--json'])
    const disabled = () => /^disabled: true$/m.test(readFileSync(init.config, 'utf8'))
    try {
      const holder = await pg.holdLock(exclusiveLockKey('issuance-stop'))
      const held = await stop()
      assert.equal(held.code, 6, held.stderr)
      const err = JSON.parse(held.stdout).error as {code: string; message: string; details: Record<string, unknown>}
      assert.equal(err.code, 'ERR_STORE_UNAVAILABLE')
      assert.match(err.message, /the lock "issuance-stop" is held by another process[\s\S]*says disabled: true now/)
      assert.equal(err.details.config_changed, true)
      assert.ok(disabled(), 'ca.yaml says disabled: true')
      await holder.release()
      // the database down: the same, ca.yaml already saying it
      await pg.stop()
      const down = await stop()
      assert.equal(down.code, 6, down.stderr)
      assert.match(JSON.parse(down.stdout).error.message, /says disabled: true already/)
      assert.ok(disabled())
    } finally {
      await pg.destroy()
    }
  })
})
