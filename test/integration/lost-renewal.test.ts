/**
 * SECURITY.md row 62, performed for real against the CA over HTTPS, the CLI as processes and, on
 * SQLite and on PostgreSQL, the store: someone on the network path who cannot break TLS lets a host's
 * renewal (or rekey) through to the CA and resets the connection once the CA has committed, so the
 * host never gets its answer (a CA restart, packet loss or the client's deadline leave the same
 * state). Before, the CA had moved the lineage to a certificate the host never received and refused
 * every later renewal as superseded, for good; now the next `sshca renew` (or `sshca rekey`) gets that
 * certificate again, byte for byte as recorded, and nothing new is issued. What stays refused: a
 * certificate two steps back (a grandparent), a successor that was revoked, a rekey onto another key;
 * the client then says how to enrol the host again.
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {loadConfig} from '../../src/ca/config/config.ts'
import {openStore} from '../../src/ca/store/open.ts'
import type {Store} from '../../src/ca/store/store.ts'
import {SUPERSEDED_MESSAGE} from '../../src/protocol/api.ts'
import {mintSshpopToken, SSHPOP_PROVISIONER, type SshpopAction} from '../../src/protocol/tokens.ts'
import {parseCertificate, parseCertificateLine, type Certificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey, parsePrivateKeyFile, type PrivateKey} from '../../src/ssh/private-key.ts'
import {startAnswerCutter, type AnswerCutter} from '../helpers/answer-cutter.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {startPostgres, type TestPostgres} from '../helpers/postgres.ts'
import {runOk} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const now = () => Math.floor(Date.now() / 1000)
const b64 = (k: PrivateKey) => k.publicKey.blob.toString('base64')
const certOf = (file: string): Certificate => parseCertificateLine(readFileSync(file, 'utf8')).cert
const keyOf = (file: string): PrivateKey => parsePrivateKeyFile(readFileSync(file, 'utf8')).key

for (const backend of ['SQLite', 'PostgreSQL'] as const)
  describe(`a renewal or rekey whose answer was lost is answered again with what the CA made (${backend})`, function () {
    this.timeout(180_000)
    let pg: TestPostgres | undefined
    let t: TestCa
    let cutter: AnswerCutter
    let store: Store
    const env: NodeJS.ProcessEnv = {}
    const ca = () => ['--config', t.init.config]

    before(async () => {
      const settings: Record<string, unknown> = {provisioners: [], limits: {rate: false}}
      if (backend === 'PostgreSQL') {
        pg = await startPostgres()
        settings.db = pg.db({url: await pg.createDatabase(), pool: 4})
      }
      t = await startTestCa(settings)
      store = await openStore((await loadConfig(t.init.config)).config, 'admin')
      // the host talks to the CA through the path the attacker is on
      cutter = await startAnswerCutter(Number(new URL(t.url).port))
      const base = tempDir('sshca-lost-')
      env.SSHCA_HOME = join(base, 'sshca-home')
      env.HOME = join(base, 'home')
      const r = await sshca(
        ['bootstrap', '--ca-url', cutter.url, '--fingerprint', t.init.rootFingerprint, '--context', 'lossy'],
        {env},
      )
      assert.equal(r.code, 0, r.stderr)
    })
    after(async () => {
      await store?.close()
      await cutter?.close()
      await t?.stop()
      await pg?.destroy()
    })

    /** A host key made by ssh-keygen, enrolled through the CLI as `name`: its key file. */
    async function enrolledHost(name: string): Promise<string> {
      const key = join(tempDir('sshca-lost-host-'), 'ssh_host_ed25519_key')
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key])
      const tok = await sshca(['ca', 'token', '--host', name, ...ca(), '--password-file', t.passwordFile])
      assert.equal(tok.code, 0, tok.stderr)
      const tokenFile = join(tempDir(), 'enroll.token')
      writeFileSync(tokenFile, `${tok.stdout.trim().split('\n').pop()!}\n`, {mode: 0o600})
      const r = await sshca(['certificate', '--host', '--sign', '--token-file', tokenFile, name, `${key}.pub`], {env})
      assert.equal(r.code, 0, r.stderr)
      return key
    }

    /**
     * Runs `args` with the answer to its signing request cut once the CA has committed it (its
     * certificate_issued line, written after the commit and before the answer): the serial it issued.
     */
    async function answerLost(args: string[]): Promise<{serial: string; requestId: string}> {
      const mark = t.mark()
      const issued = () => t.since(mark).filter((l) => l.event === 'certificate_issued')
      const cut = cutter.arm(() => issued().length > 0)
      const r = await sshca(args, {env})
      await cut
      assert.notEqual(r.code, 0, r.stdout)
      assert.match(r.stderr, /cannot reach the CA/)
      const lines = issued()
      assert.equal(lines.length, 1)
      return {serial: String(lines[0]!.serial), requestId: String(lines[0]!.request_id)}
    }

    const pop = (action: SshpopAction, key: PrivateKey, cert: Certificate) =>
      mintSshpopToken(key.keyObject, cert, {
        caUrl: t.url,
        action,
        provisioner: SSHPOP_PROVISIONER,
        rootFingerprint: t.init.rootFingerprint,
        now: now(),
      })
    type Res = Awaited<ReturnType<TestCa['call']>>
    const renew = async (key: PrivateKey, cert: Certificate) =>
      t.call('POST', '/ssh/renew', {ott: await pop('renew', key, cert)})
    const rekey = async (key: PrivateKey, cert: Certificate, to: PrivateKey) =>
      t.call('POST', '/ssh/rekey', {ott: await pop('rekey', key, cert), publicKey: b64(to)})
    const crtOf = (res: Res): Certificate => parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))
    const linesOf = (res: Res) => {
      const id = (res.json as {request_id?: string}).request_id ?? res.headers['x-request-id']
      assert.ok(id, res.text)
      return t.audit().filter((l) => l.request_id === id)
    }
    const reasonOf = (res: Res) => linesOf(res).find((l) => l.event === 'certificate_denied')?.reason
    /** The certificate as the store recorded it at its issuance. */
    const recorded = async (serial: string | bigint) => (await store.findCertificate(BigInt(serial)))!.certificate

    it('the renewal committed, its answer cut: the next sshca renew installs that very certificate, and the one after renews on', async () => {
      const key = await enrolledHost('web1')
      const certFile = `${key}-cert.pub`
      const enrolled = readFileSync(certFile, 'utf8')
      const lost = await answerLost(['renew', '--force', certFile, key])
      assert.equal(readFileSync(certFile, 'utf8'), enrolled, 'nothing was installed')

      // the daily unit, the next day: the CA gives back what it made, nothing new
      const mark = t.mark()
      const again = await sshca(['renew', '--force', certFile, key, '--json'], {env})
      assert.equal(again.code, 0, again.stderr)
      const installed = certOf(certFile)
      assert.equal(installed.serial.toString(), lost.serial)
      assert.equal(installed.blob.toString('base64'), await recorded(lost.serial), 'byte for byte as recorded')
      assert.equal(JSON.parse(again.stdout).serial, lost.serial)
      // audited as handed out again, naming the lost request; no certificate_issued
      const lines = t.since(mark).filter((l) => String(l.event).startsWith('certificate_'))
      assert.deepEqual(
        lines.map((l) => [l.event, l.serial, l.parent_serial, l.lineage, l.issued_request_id]),
        [
          [
            'certificate_redelivered',
            lost.serial,
            parseCertificateLine(enrolled).cert.serial.toString(),
            'renew',
            lost.requestId,
          ],
        ],
      )
      // and the lineage goes on from it: the day after, a new certificate
      const next = await sshca(['renew', '--force', certFile, key, '--json'], {env})
      assert.equal(next.code, 0, next.stderr)
      const renewed = certOf(certFile)
      assert.notEqual(renewed.serial.toString(), lost.serial)
      assert.equal((await store.findCertificate(renewed.serial))!.parent?.toString(), lost.serial)
    })

    it('a successor revoked since is not handed out: sshca renew exits 7 and says how to enrol the host again', async () => {
      const key = await enrolledHost('web2')
      const certFile = `${key}-cert.pub`
      const enrolled = readFileSync(certFile, 'utf8')
      const lost = await answerLost(['renew', '--force', certFile, key])
      const rv = await sshca(['ca', 'revoke', '--serial', lost.serial, '--reason', 'not ours', ...ca()])
      assert.equal(rv.code, 0, rv.stderr)
      const r = await sshca(['renew', '--force', certFile, key], {env})
      assert.equal(r.code, 7, r.stderr)
      assert.match(
        r.stderr,
        /the CA will not renew .*ssh_host_ed25519_key-cert\.pub: it is no longer the newest certificate of this host key/,
      )
      assert.doesNotMatch(r.stderr, /policy denied/)
      assert.match(
        r.stderr,
        new RegExp(
          `sshca ca token --host web2 --key ${key}\\.pub .*sshca certificate --host --sign --token-file FILE web2 ${key}\\.pub`,
        ),
      )
      assert.equal(readFileSync(certFile, 'utf8'), enrolled)
    })

    it('over HTTP: two steps back gets nothing (403 superseded, said in words), one step back the newest; a revoked newest, nothing', async () => {
      const file = await enrolledHost('web3')
      const key = keyOf(file)
      const a = certOf(`${file}-cert.pub`)
      const rb = await renew(key, a)
      assert.equal(rb.status, 201, rb.text)
      const b = crtOf(rb)
      const rc = await renew(key, b)
      assert.equal(rc.status, 201, rc.text)
      const c = crtOf(rc)
      // whoever holds a and the key (a thief of an old copy, a host restored from one): nothing, and told why
      const fromA = await renew(key, a)
      assert.equal(fromA.status, 403, fromA.text)
      assert.equal(reasonOf(fromA), 'superseded')
      assert.ok((fromA.json as {message: string}).message.startsWith(SUPERSEDED_MESSAGE), fromA.text)
      // b's renewal asked again: c, as recorded; nothing issued
      const fromB = await renew(key, b)
      assert.equal(fromB.status, 201, fromB.text)
      assert.ok(crtOf(fromB).blob.equals(c.blob))
      assert.deepEqual(
        linesOf(fromB).map((l) => [l.event, l.serial]),
        [['certificate_redelivered', c.serial.toString()]],
      )
      assert.equal((await store.certificates({keyFingerprint: key.publicKey.fingerprint()})).length, 3)
      // c revoked: b gets nothing; c's own renewal is refused in the policy's general words, as before
      const rv = await sshca(['ca', 'revoke', '--serial', c.serial.toString(), ...ca()])
      assert.equal(rv.code, 0, rv.stderr)
      const fromB2 = await renew(key, b)
      assert.equal(fromB2.status, 403, fromB2.text)
      assert.equal(reasonOf(fromB2), 'superseded')
      const fromC = await renew(key, c)
      assert.equal(fromC.status, 403, fromC.text)
      assert.equal(reasonOf(fromC), 'certificate_revoked')
      assert.equal(
        (fromC.json as {message: string}).message,
        'the CA policy does not allow a certificate for this request',
      )
    })

    it('the rekey committed, its answer cut: the next sshca rekey installs that certificate for the new key it had kept; a rekey onto another key gets nothing', async () => {
      const key = await enrolledHost('web4')
      const certFile = `${key}-cert.pub`
      const old = {key: readFileSync(key, 'utf8'), cert: readFileSync(certFile, 'utf8')}
      const lost = await answerLost(['rekey', certFile, key])
      // nothing replaced; the new key waits beside the old one, for its owner alone
      assert.deepEqual({key: readFileSync(key, 'utf8'), cert: readFileSync(certFile, 'utf8')}, old)
      const pending = `${key}.rekey`
      assert.equal(statSync(pending).mode & 0o777, 0o600)
      const waiting = keyOf(pending)
      // the old certificate renews no more (its key's lineage ended with the rekey), and a rekey onto
      // any other key gets nothing
      const oldKey = keyOf(key)
      const oldCert = parseCertificateLine(old.cert).cert
      const other = await rekey(oldKey, oldCert, generatePrivateKey('ed25519'))
      assert.equal(other.status, 403, other.text)
      assert.equal(reasonOf(other), 'superseded')
      const mark = t.mark()
      const again = await sshca(['rekey', certFile, key, '--json'], {env})
      assert.equal(again.code, 0, again.stderr)
      const installed = certOf(certFile)
      assert.equal(installed.serial.toString(), lost.serial)
      assert.equal(installed.blob.toString('base64'), await recorded(lost.serial))
      assert.ok(installed.publicKey.equals(waiting.publicKey))
      assert.ok(keyOf(key).publicKey.equals(waiting.publicKey), 'the new key is the host key now')
      assert.ok(!existsSync(pending))
      assert.deepEqual(
        t
          .since(mark)
          .filter((l) => String(l.event).startsWith('certificate_'))
          .map((l) => [l.event, l.serial, l.lineage]),
        [['certificate_redelivered', lost.serial, 'rekey']],
      )
      // and it renews
      const next = await sshca(['renew', '--force', certFile, key], {env})
      assert.equal(next.code, 0, next.stderr)
      assert.notEqual(certOf(certFile).serial.toString(), lost.serial)
    })
  })
