/**
 * The attack of the security review, performed against the real CA over HTTPS, the real `sshca ca
 * revoke` and OpenSSH's own KRL reader, on SQLite and on PostgreSQL: a host enrols (A, key K1),
 * renews (B) and rekeys (C, key K2, proven by K1); an admin who learns that K1 was stolen revokes A
 * by serial, or K1. What the host renewed or rekeyed to must end with it: no renewal of the newest,
 * and its serial in the KRL (`ssh-keygen -Q` says REVOKED), also when renewals are in flight while the
 * revocation commits.
 */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {mintSshpopToken, SSHPOP_PROVISIONER, type SshpopAction} from '../../src/protocol/tokens.ts'
import {certificateLine, parseCertificate, type Certificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey, type PrivateKey} from '../../src/ssh/private-key.ts'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {sshca} from '../helpers/cli.ts'
import {startPostgres, type TestPostgres} from '../helpers/postgres.ts'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const b64 = (k: PrivateKey) => k.publicKey.blob.toString('base64')
const now = () => Math.floor(Date.now() / 1000)
const serialOrder = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0)

for (const backend of ['SQLite', 'PostgreSQL'] as const)
  describe(`a host certificate revoked by serial or key ends what was renewed or rekeyed from it (${backend})`, function () {
    this.timeout(120_000)
    let pg: TestPostgres | undefined
    let t: TestCa
    const ca = () => ['--config', t.init.config]

    before(async () => {
      const settings: Record<string, unknown> = {provisioners: [], limits: {rate: false}}
      if (backend === 'PostgreSQL') {
        pg = await startPostgres()
        settings.db = pg.db({url: await pg.createDatabase(), pool: 4})
      }
      t = await startTestCa(settings)
    })
    after(async () => {
      await t?.stop()
      await pg?.destroy()
    })

    type Res = Awaited<ReturnType<TestCa['call']>>
    const crtOf = (res: Res): Certificate => parseCertificate(Buffer.from((res.json as {crt: string}).crt, 'base64'))
    const reasonOf = (res: Res) =>
      t
        .audit()
        .find(
          (l) => l.request_id === (res.json as {request_id?: string}).request_id && l.event === 'certificate_denied',
        )?.reason

    function hostKey(): {key: PrivateKey; pubFile: string} {
      const key = generatePrivateKey('ed25519')
      const pubFile = join(tempDir(), 'ssh_host_ed25519_key.pub')
      writeFileSync(pubFile, `${key.publicKey.toLine('host')}\n`)
      return {key, pubFile}
    }

    async function enrol(host: string, key: PrivateKey): Promise<Certificate> {
      const r = await sshca(['ca', 'token', '--host', host, ...ca(), '--password-file', t.passwordFile])
      assert.equal(r.code, 0, r.stderr)
      const token = r.stdout.trim().split('\n').pop()!
      const res = await t.call('POST', '/ssh/sign', {publicKey: b64(key), ott: token, certType: 'host'})
      assert.equal(res.status, 201, res.text)
      return crtOf(res)
    }

    const pop = (action: SshpopAction, key: PrivateKey, cert: Certificate) =>
      mintSshpopToken(key.keyObject, cert, {
        caUrl: t.url,
        action,
        provisioner: SSHPOP_PROVISIONER,
        rootFingerprint: t.init.rootFingerprint,
        now: now(),
      })
    const renew = async (key: PrivateKey, cert: Certificate) =>
      t.call('POST', '/ssh/renew', {ott: await pop('renew', key, cert)})
    const rekey = async (key: PrivateKey, cert: Certificate, to: PrivateKey) =>
      t.call('POST', '/ssh/rekey', {ott: await pop('rekey', key, cert), publicKey: b64(to)})

    /** What OpenSSH's own KRL reader says of each certificate, against the CA's current KRL. */
    async function keygenSays(certs: Certificate[]): Promise<('REVOKED' | 'ok')[]> {
      const {request} = await import('undici')
      const res = await request(`${t.url}/ssh/krl`, {dispatcher: t.dispatcher})
      const dir = tempDir()
      const krl = join(dir, 'krl')
      writeFileSync(krl, Buffer.from(await res.body.arrayBuffer()))
      const files = certs.map((c, i) => {
        const f = join(dir, `${i}-cert.pub`)
        writeFileSync(f, `${certificateLine(c)}\n`)
        return f
      })
      const out = (await run('ssh-keygen', ['-Q', '-f', krl, ...files])).stdout
      return files.map((f) => {
        // "FILE (FILE): REVOKED", or "FILE: ok"
        const name = f.replace(/[.]/g, '\\.')
        const m = new RegExp(`^${name}(?: \\(${name}\\))?: (REVOKED|ok)$`, 'm').exec(out)
        assert.ok(m, `ssh-keygen said nothing of ${f}:\n${out}`)
        return m[1] as 'REVOKED' | 'ok'
      })
    }

    /** Enrol A with K1, renew to B, rekey to C with K2 (proven by K1): the lineage of a stolen K1. */
    async function lineage(host: string) {
      const k1 = hostKey()
      const k2 = hostKey()
      const a = await enrol(host, k1.key)
      const rb = await renew(k1.key, a)
      assert.equal(rb.status, 201, rb.text)
      const b = crtOf(rb)
      const rc = await rekey(k1.key, b, k2.key)
      assert.equal(rc.status, 201, rc.text)
      const c = crtOf(rc)
      assert.deepEqual(await keygenSays([a, b, c]), ['ok', 'ok', 'ok'])
      return {k1, k2, a, b, c}
    }

    it('enrol → renew → rekey, ca revoke --serial of the first: the newest renews and rekeys no more, and ssh-keygen -Q says REVOKED for all three', async () => {
      const {k2, a, b, c} = await lineage('by-serial')
      const r = await sshca([
        'ca',
        'revoke',
        '--serial',
        a.serial.toString(),
        '--reason',
        'K1 stolen',
        ...ca(),
        '--json',
      ])
      assert.equal(r.code, 0, r.stderr)
      const out = JSON.parse(r.stdout) as {descendants: string[]; hostKeyIds: string[]; revocations: {id: string}[]}
      assert.deepEqual(out.descendants, [b.serial, c.serial].sort(serialOrder).map(String))
      assert.deepEqual(out.hostKeyIds, [])
      // (i) the newest certificate can neither renew nor rekey
      const renewed = await renew(k2.key, c)
      assert.equal(renewed.status, 403, renewed.text)
      assert.equal(reasonOf(renewed), 'certificate_revoked')
      const rekeyed = await rekey(k2.key, c, generatePrivateKey('ed25519'))
      assert.equal(rekeyed.status, 403, rekeyed.text)
      // (ii) sshd refuses it at once: its serial is in the KRL
      assert.deepEqual(await keygenSays([a, b, c]), ['REVOKED', 'REVOKED', 'REVOKED'])
      // ca unrevoke of that revocation lifts the descendants' with it
      const u = await sshca(['ca', 'unrevoke', out.revocations[0]!.id, ...ca()])
      assert.equal(u.code, 0, u.stderr)
      assert.match(u.stdout, /With it, the revocations of the 2 certificate\(s\) renewed or rekeyed from it/)
      assert.deepEqual(await keygenSays([a, b, c]), ['ok', 'ok', 'ok'])
      assert.equal((await renew(k2.key, c)).status, 201)
    })

    it('enrol → renew → rekey → renew, ca revoke --key K1: what K2 holds renews no more and is REVOKED; the admin is told so', async () => {
      const {k1, k2, a, b, c} = await lineage('by-key')
      const rd = await renew(k2.key, c)
      assert.equal(rd.status, 201, rd.text)
      const d = crtOf(rd)
      const r = await sshca(['ca', 'revoke', '--key', k1.pubFile, '--reason', 'K1 stolen', ...ca()])
      assert.equal(r.code, 0, r.stderr)
      const named = [c.serial, d.serial].sort(serialOrder).join(', ')
      assert.match(
        r.stdout,
        new RegExp(`^Also revoked: the 2 certificate\\(s\\) renewed or rekeyed from them, serial ${named}\\.$`, 'm'),
      )
      assert.doesNotMatch(r.stdout, /--key-id/)
      // (iii) the same for a revocation by key
      const renewed = await renew(k2.key, d)
      assert.equal(renewed.status, 403, renewed.text)
      assert.equal(reasonOf(renewed), 'certificate_revoked')
      assert.deepEqual(await keygenSays([a, b, c, d]), ['REVOKED', 'REVOKED', 'REVOKED', 'REVOKED'])
    })

    it('renewals and rekeys in flight while ca revoke --serial runs: every certificate the CA handed out is REVOKED, and the lineage ends', async () => {
      const k1 = hostKey()
      const a = await enrol('in-flight', k1.key)
      let head = {key: k1.key, cert: a}
      const handedOut: Certificate[] = []
      let stop = false
      let ended = false
      let step = 0
      // each step: three renewals of the newest at once (one is issued, the others get it again), every
      // third step a rekey instead, onto a fresh key
      const renewing = (async () => {
        while (!stop) {
          step++
          const next = step % 3 === 0 ? generatePrivateKey('ed25519') : head.key
          const out = await Promise.all(
            [0, 1, 2].map(() => (next === head.key ? renew(head.key, head.cert) : rekey(head.key, head.cert, next))),
          )
          const won = out.find((res) => res.status === 201)
          if (won) {
            head = {key: next, cert: crtOf(won)}
            handedOut.push(head.cert)
            continue
          }
          for (const res of out) assert.equal(res.status, 403, res.text)
          if (out.every((res) => ['certificate_revoked', 'revoked'].includes(String(reasonOf(res)))))
            return (ended = true)
        }
      })()
      await waitFor('a few renewals', () => handedOut.length >= 3)
      const r = await sshca(['ca', 'revoke', '--serial', a.serial.toString(), ...ca(), '--json'])
      assert.equal(r.code, 0, r.stderr)
      // the lineage ends at once; a certificate that escaped the revocation would go on renewing
      const after = step
      await waitFor('the lineage to end, or 20 more steps', () => ended || step > after + 20, 60_000)
      stop = true
      await renewing
      assert.ok(ended, 'the newest certificate still renews')
      const says = await keygenSays(handedOut)
      const escaped = handedOut.filter((_, i) => says[i] !== 'REVOKED').map((c) => c.serial.toString())
      assert.deepEqual(escaped, [], `${handedOut.length} handed out`)
      const listed = new Set((JSON.parse(r.stdout) as {descendants: string[]}).descendants)
      assert.ok(
        handedOut.every((c) => listed.has(c.serial.toString())),
        'ca revoke named each one',
      )
    })
  })
