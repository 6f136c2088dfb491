/**
 * dnsNames on a reload: they name the API's TLS certificate from its next issue. Which events issue
 * it, what a reload's warning says the certificate names, and that every worker thread serves the
 * one certificate in force. Real CA directories from `ca init`, the real rotation functions.
 */
import assert from 'node:assert/strict'
import {X509Certificate} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {connect} from 'node:tls'
import {caPaths} from '../../src/ca/config/layout.ts'
import {parseCert, subjectAltNames} from '../../src/ca/keys/pki.ts'
import {activateRoot, prepareRoot} from '../../src/ca/keys/roots.ts'
import {startCa} from '../../src/ca/server.ts'
import {readAuditLines} from '../helpers/audit.ts'
import {makeCaDir, PASSWORD, startTestCa, writePolicy} from '../helpers/ca.ts'
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

  it('two replicas sharing the CA directory, one reloaded with other dnsNames: a root rotation step does not set them reissuing the certificate in turn', async () => {
    const {init} = await makeCaDir({})
    const start = (who: string) =>
      startCa({
        configPath: init.config,
        password: PASSWORD,
        address: '127.0.0.1:0',
        workers: 0,
        auditFile: join(init.dir, `${who}.log`),
        keysIntervalMs: 100,
      })
    const a = await start('a')
    const b = await start('b')
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
})
