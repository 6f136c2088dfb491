/** needs-renewal's arithmetic and fingerprint's encodings, on files, with a frozen clock. */
import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fingerprintFile, needsRenewal} from '../../../src/client/host/cert-tools.ts'
import {certificateLine, FOREVER, signCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

const ca = keySigner(generatePrivateKey('ed25519').keyObject)
const dir = tempDir('sshca-certtools-')
const T0 = 1_900_000_000
const at = (s: number) => () => (T0 + s) * 1000

async function certFile(name: string, validAfter: bigint, validBefore: bigint): Promise<string> {
  const key = generatePrivateKey('ed25519')
  const c = await signCertificate(
    {type: 'host', publicKey: key.publicKey, serial: 5n, keyId: 'h', principals: ['h'], validAfter, validBefore},
    ca,
  )
  const f = join(dir, name)
  writeFileSync(f, `${certificateLine(c, 'a comment')}\n`)
  return f
}

describe('needs-renewal', () => {
  let f = ''
  before(async () => {
    f = await certFile('day-cert.pub', BigInt(T0), BigInt(T0 + 90_000))
  })

  it('by default from two thirds of the validity on (what renew uses)', async () => {
    assert.equal((await needsRenewal(f, {clock: at(59_000)})).needsRenewal, false)
    assert.equal((await needsRenewal(f, {clock: at(60_000)})).needsRenewal, true)
    assert.equal((await needsRenewal(f, {clock: at(95_000)})).needsRenewal, true, 'expired')
  })

  it('--expires-in as a share used or a time left', async () => {
    assert.equal((await needsRenewal(f, {clock: at(45_000), expiresIn: '50%'})).needsRenewal, true)
    assert.equal((await needsRenewal(f, {clock: at(44_000), expiresIn: '50%'})).needsRenewal, false)
    assert.equal((await needsRenewal(f, {clock: at(86_400), expiresIn: '1h'})).needsRenewal, true)
    assert.equal((await needsRenewal(f, {clock: at(86_399), expiresIn: '1h'})).needsRenewal, false)
    await rejectsCode(needsRenewal(f, {expiresIn: '120%'}), 'ERR_USAGE')
    await rejectsCode(needsRenewal(f, {expiresIn: '1 week'}), 'ERR_USAGE')
  })

  it('a certificate valid forever never needs it; a missing file is ERR_FILE_NOT_FOUND', async () => {
    const forever = await certFile('forever-cert.pub', 0n, FOREVER)
    const r = await needsRenewal(forever, {clock: at(0)})
    assert.deepEqual([r.needsRenewal, r.secondsLeft, r.validBefore], [false, null, null])
    await rejectsCode(needsRenewal(join(dir, 'missing')), 'ERR_FILE_NOT_FOUND')
  })
})

describe('fingerprint', () => {
  it('every encoding of the same digest', async () => {
    const f = await certFile('fp-cert.pub', 0n, FOREVER)
    const get = async (format: 'base64-raw' | 'base64' | 'base64-url' | 'base64-raw-url' | 'hex') =>
      (await fingerprintFile(f, {format})).keys[0]!.fingerprint.slice('SHA256:'.length)
    const digest = Buffer.from(await get('hex'), 'hex')
    assert.equal(digest.length, 32)
    assert.equal(await get('base64'), digest.toString('base64'))
    assert.equal(await get('base64-raw'), digest.toString('base64').replace(/=+$/, ''))
    assert.equal(await get('base64-raw-url'), digest.toString('base64url'))
    assert.equal(await get('base64-url'), `${digest.toString('base64url')}=`)
    assert.match((await fingerprintFile(f)).keys[0]!.line, /^256 SHA256:\S+ a comment \(ED25519-CERT\)$/)
  })
})
