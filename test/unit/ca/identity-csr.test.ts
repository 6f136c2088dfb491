/**
 * An identityCSR's key is judged before its signature is checked, and the signature before the
 * token: an RSA key with a huge public exponent (or modulus) would make that check cost many times a
 * normal one, for anyone who can reach the CA, so only the curves the CA's TLS takes a client
 * certificate of are accepted. The CSR is a real one whose key is swapped for another (its signature
 * no longer matches, which the CA must not get as far as checking).
 */
import assert from 'node:assert/strict'
import {generateKeyPairSync, webcrypto} from 'node:crypto'
import 'reflect-metadata'
import * as x509 from '@peculiar/x509'
import {readIdentityCsr} from '../../../src/ca/keys/pki.ts'
import {hugeExponentRsaKey} from '../../helpers/forge.ts'

/** DER: a length's encoding. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n])
  const bytes: number[] = []
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** The TLV at `at`: where its content starts and ends. */
function tlv(der: Buffer, at: number): {start: number; end: number} {
  const first = der[at + 1]!
  if (first < 0x80) return {start: at + 2, end: at + 2 + first}
  const n = first & 0x7f
  const len = der.subarray(at + 2, at + 2 + n).reduce((a, b) => a * 256 + b, 0)
  return {start: at + 2 + n, end: at + 2 + n + len}
}

const seq = (content: Buffer): Buffer => Buffer.concat([Buffer.from([0x30]), derLength(content.length), content])

/** A PEM CSR like `csrDer` whose subject key is `spki` instead (the signature left as it was). */
function withKey(csrDer: Buffer, oldSpki: Buffer, spki: Buffer): string {
  const outer = tlv(csrDer, 0)
  const info = tlv(csrDer, outer.start)
  const infoContent = csrDer.subarray(info.start, info.end)
  const at = infoContent.indexOf(oldSpki)
  assert.ok(at > 0, 'the CSR carries its key')
  const newInfo = seq(Buffer.concat([infoContent.subarray(0, at), spki, infoContent.subarray(at + oldSpki.length)]))
  const der = seq(Buffer.concat([newInfo, csrDer.subarray(info.end, outer.end)]))
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`
}

describe('identityCSR: its key is judged before its signature is checked', function () {
  this.timeout(60_000)

  it('an RSA key is refused for its type, before its signature: also one with a huge exponent; a curve key is checked', async () => {
    const alg = {
      name: 'RSASSA-PKCS1-v1_5',
      hash: 'SHA-256',
      publicExponent: new Uint8Array([1, 0, 1]),
      modulusLength: 3072,
    }
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({name: 'CN=mallory', keys, signingAlgorithm: alg})
    const der = Buffer.from(csr.rawData)
    const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey))
    // an RSA identity could never be presented (the CA's TLS takes ECDSA and Ed25519 client certificates)
    await assert.rejects(readIdentityCsr(csr.toString('pem')), /not ECDSA P-256\/P-384 or Ed25519/)
    // its key swapped for one with a 3,000-bit exponent: refused before any signature check
    const huge = hugeExponentRsaKey(3072, 3000).keyObject.export({type: 'spki', format: 'der'})
    await assert.rejects(readIdentityCsr(withKey(der, spki, huge)), /not ECDSA P-256\/P-384 or Ed25519/)
    // step's key (ECDSA P-256): accepted; another P-256 key put in without its own signature: refused
    const ec = {name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256'}
    const ecKeys = (await webcrypto.subtle.generateKey(ec, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
    const ecCsr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=step',
      keys: ecKeys,
      signingAlgorithm: ec,
    })
    assert.equal((await readIdentityCsr(ecCsr.toString('pem'))).subject, 'CN=step')
    const ecSpki = Buffer.from(await webcrypto.subtle.exportKey('spki', ecKeys.publicKey))
    const other = generateKeyPairSync('ec', {namedCurve: 'P-256'}).publicKey.export({type: 'spki', format: 'der'})
    await assert.rejects(
      readIdentityCsr(withKey(Buffer.from(ecCsr.rawData), ecSpki, other)),
      /not signed by the key it carries/,
    )
  })
})

describe('identityCSR: its text is read in time linear in its length', function () {
  this.timeout(60_000)

  // @peculiar/x509 finds PEM blocks with a regular expression whose header-continuation lines
  // (` +[^\n]+\n`) can be split in as many ways as a line has spaces: on a text that then fails to
  // match, V8 tries every split of every line. Anyone may send an identityCSR (it is read before the
  // token), and one request of a few hundred bytes held a thread's event loop for seconds (ten lines),
  // for years (twenty): every request on that thread waited.
  const hostile = (lines: number): string =>
    `-----BEGIN CERTIFICATE REQUEST-----\nk: v\n${`${' '.repeat(10)}\n`.repeat(lines)}!`

  it('a PEM built to make the parser backtrack is refused at once, even at the size the API accepts', async () => {
    // ten lines took the old parser 4–18 s on the development box (eleven 2 min: each line multiplies
    // it), a linear read well under a millisecond: the bound is far from both, so a busy
    // machine does not decide it. The short text goes first: were the parser to backtrack again, the
    // test fails there rather than hanging the suite on the long one, which would take years
    for (const text of [hostile(10), hostile(740).slice(0, 8192)]) {
      const started = performance.now()
      await assert.rejects(readIdentityCsr(text), /identityCSR is not a PEM certificate request/)
      const ms = performance.now() - started
      assert.ok(ms < 1000, `refused after ${Math.round(ms)} ms (${text.length} characters)`)
    }
  })

  it('the PEM spellings a client writes are still read: CRLF, surrounding blank lines, NEW CERTIFICATE REQUEST', async () => {
    const alg = {name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256'}
    const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({name: 'CN=step', keys, signingAlgorithm: alg})
    const pem = csr.toString('pem')
    const b64 = Buffer.from(csr.rawData).toString('base64')
    for (const text of [
      pem,
      `\n${pem.replace(/\n/g, '\r\n')}\r\n`,
      `-----BEGIN NEW CERTIFICATE REQUEST-----\n${b64}\n-----END NEW CERTIFICATE REQUEST-----\n`,
    ])
      assert.equal((await readIdentityCsr(text)).subject, 'CN=step')
    // what is not one certificate request is refused as before
    for (const text of [
      `-----BEGIN CERTIFICATE-----\n${b64}\n-----END CERTIFICATE-----\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE-----\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${b64.slice(0, -4)}*${b64.slice(-3)}\n-----END CERTIFICATE REQUEST-----\n`,
      `${pem}${pem}`,
      b64,
    ])
      await assert.rejects(readIdentityCsr(text), /identityCSR is not a PEM certificate request/)
  })
})
