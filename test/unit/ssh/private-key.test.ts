import assert from 'node:assert/strict'
import {
  formatOpenSshPrivateKey,
  generatePrivateKey,
  parsePrivateKeyFile,
  type KeyKind,
} from '../../../src/ssh/private-key.ts'

describe('private key files', () => {
  for (const kind of ['ed25519', 'ecdsa', 'ecdsa-p384', 'ecdsa-p521', 'rsa'] as KeyKind[]) {
    it(`${kind}: openssh-key-v1 round-trips`, () => {
      const k = generatePrivateKey(kind, 2048)
      const text = formatOpenSshPrivateKey(k, 'comment here')
      assert.match(text, /^-----BEGIN OPENSSH PRIVATE KEY-----\n/)
      const {key, comment} = parsePrivateKeyFile(text)
      assert.ok(key.publicKey.equals(k.publicKey))
      assert.equal(comment, 'comment here')
      assert.deepEqual(key.keyObject.export({format: 'jwk'}), k.keyObject.export({format: 'jwk'}))
    })
  }

  it('reads PKCS#8 PEM', () => {
    const k = generatePrivateKey('ecdsa')
    const pem = k.keyObject.export({format: 'pem', type: 'pkcs8'}) as string
    assert.ok(parsePrivateKeyFile(pem).key.publicKey.equals(k.publicKey))
  })

  it('refuses garbage, a corrupted check, and encrypted files with typed errors', () => {
    assert.throws(() => parsePrivateKeyFile('hello'), {code: 'ERR_SSH_FORMAT'})
    const k = generatePrivateKey('ed25519')
    const text = formatOpenSshPrivateKey(k)
    const body = Buffer.from(text.split('\n').slice(1, -2).join(''), 'base64')
    const encrypted = Buffer.concat([
      Buffer.from('openssh-key-v1\0', 'latin1'),
      Buffer.from('0000000a6165733235362d637472', 'hex'),
      body.subarray(15 + 8),
    ])
    const wrap = (b: Buffer): string =>
      `-----BEGIN OPENSSH PRIVATE KEY-----\n${b.toString('base64')}\n-----END OPENSSH PRIVATE KEY-----\n`
    assert.throws(() => parsePrivateKeyFile(wrap(encrypted)), {code: 'ERR_SSH_KEY_ENCRYPTED'})
    const pem = k.keyObject.export({format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'pw'}) as string
    assert.throws(() => parsePrivateKeyFile(pem), {code: 'ERR_SSH_KEY_ENCRYPTED'})
  })
})
