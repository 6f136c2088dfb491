import assert from 'node:assert/strict'
import {
  defaultContextName,
  fingerprintsEqual,
  normalizeCaUrl,
  normalizeFingerprint,
} from '../../../src/client/setup/bootstrap.ts'
import {throwsCode} from '../../helpers/assert.ts'

const FP = '3f'.repeat(32)

describe('bootstrap inputs', () => {
  it('takes a fingerprint as ssh-keygen, openssl or step print it, and nothing else', () => {
    assert.equal(normalizeFingerprint(FP), FP)
    assert.equal(normalizeFingerprint(` ${FP.toUpperCase()}\n`), FP)
    assert.equal(normalizeFingerprint(FP.match(/../g)!.join(':')), FP)
    assert.equal(normalizeFingerprint(FP.match(/.{8}/g)!.join('-')), FP)
    for (const bad of [
      '',
      FP.slice(2),
      `${FP}3f`,
      `${FP.slice(2)}g0`,
      `${FP.slice(2)} 3f`,
      `x${FP}`,
      `${FP}x`,
      `SHA256:${FP}`,
    ]) {
      assert.equal(normalizeFingerprint(bad), undefined, bad)
    }
  })

  it('compares fingerprints whole: any difference, including length, is a mismatch and not an exception', () => {
    assert.equal(fingerprintsEqual(FP, FP), true)
    assert.equal(fingerprintsEqual(FP, `${FP.slice(0, -1)}e`), false)
    assert.equal(fingerprintsEqual(FP, FP.slice(0, -2)), false)
    assert.equal(fingerprintsEqual(FP.slice(0, -2), FP), false)
    assert.equal(fingerprintsEqual('', FP), false)
  })

  it("keeps an https URL's origin and path, without trailing slashes", () => {
    assert.equal(normalizeCaUrl('https://ca.example.com'), 'https://ca.example.com')
    assert.equal(normalizeCaUrl('https://ca.example.com:9000///'), 'https://ca.example.com:9000')
    assert.equal(normalizeCaUrl('https://ca.example.com/pki/ssh/'), 'https://ca.example.com/pki/ssh')
    assert.equal(normalizeCaUrl('https://CA.Example.com:443/'), 'https://ca.example.com')
  })

  it('refuses a URL that is not https, or that carries a query, a fragment or credentials', () => {
    for (const bad of [
      'ca.example.com',
      'http://ca.example.com',
      'ftp://ca.example.com',
      'https://ca.example.com/?a=1',
      'https://ca.example.com/#x',
      'https://me@ca.example.com',
      'https://me:pw@ca.example.com',
    ]) {
      throwsCode(() => normalizeCaUrl(bad), 'ERR_USAGE')
    }
  })

  it("names a context after the CA's host, in characters a context name allows", () => {
    assert.equal(defaultContextName('https://ca.example.com:9000/pki'), 'ca.example.com')
    assert.equal(defaultContextName('https://127.0.0.1:9000'), '127.0.0.1')
    assert.equal(defaultContextName('https://my_ca-1.example.com'), 'my_ca-1.example.com')
    assert.equal(defaultContextName('https://[::1]:9000'), '1')
    assert.equal(defaultContextName('https://[fd00::5]'), 'fd00_5')
    assert.equal(defaultContextName('https://[2001:db8::a:1]'), '2001_db8_a_1')
  })
})
