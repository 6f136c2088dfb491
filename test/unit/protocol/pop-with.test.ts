/**
 * Proofs of possession signed through an SSH signer (the ssh-agent, or a key file): the SSH signature
 * becomes a JWS signature that jose verifies with the certified key, for every key type; sshca's form
 * and step-ca's SSHPOP form carry what each CA checks.
 */
import assert from 'node:assert/strict'
import {decodeProtectedHeader, decodeJwt, jwtVerify} from 'jose'
import {mintPopWith, popAudience} from '../../../src/protocol/tokens.ts'
import {signCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey, type KeyKind} from '../../../src/ssh/private-key.ts'
import {jwsSignatureFromSsh, keySigner, signData} from '../../../src/ssh/signature.ts'
import {throwsCode} from '../../helpers/assert.ts'
import {MemoryAgent} from '../../helpers/memory-agent.ts'

const ca = generatePrivateKey('ed25519')
/** Now, when each proof is made and verified (a constant taken at load time ages past the 5-minute life on a busy machine). */
const nowS = (): number => Math.floor(Date.now() / 1000)

describe('proofs of possession through an SSH signer', () => {
  for (const kind of ['ed25519', 'ecdsa', 'ecdsa-p384', 'ecdsa-p521', 'rsa'] as KeyKind[]) {
    it(`${kind}: the JWS verifies with the certified key (sshca's form: audience per purpose, serial as subject)`, async () => {
      const key = generatePrivateKey(kind)
      const cert = signCertificate({type: 'host', publicKey: key.publicKey, serial: 77n, keyId: 'host:web', principals: ['web'], validAfter: 0n, validBefore: BigInt(nowS() + 3600)}, keySigner(ca.keyObject))
      const token = await mintPopWith(async (d) => signData(key.keyObject, key.publicKey, d, 'rsa-sha2-256'), cert, {now: nowS(), purpose: 'revoke', rootFingerprint: 'ab'.repeat(32)})
      const {payload, protectedHeader} = await jwtVerify(token, key.publicKey.keyObject, {audience: popAudience('ab'.repeat(32), 'revoke'), typ: 'sshca-pop+jwt'})
      assert.equal(payload.sub, '77')
      assert.equal(protectedHeader.sshpop, cert.blob.toString('base64'))
      assert.equal((payload.exp as number) - (payload.iat as number), 300)
    })
  }

  it('through an ssh-agent (the user\'s key never leaves it), in step-ca\'s SSHPOP form', async () => {
    const agent = new MemoryAgent()
    const client = agent.client()
    const key = generatePrivateKey('ed25519')
    const cert = signCertificate({type: 'user', publicKey: key.publicKey, serial: 9n, keyId: 'alice', principals: ['alice'], validAfter: 0n, validBefore: BigInt(nowS() + 3600)}, keySigner(ca.keyObject))
    await client.addCertificate(key, cert)
    const token = await mintPopWith((d) => client.sign(cert.blob, d), cert, {now: nowS(), purpose: 'revoke', step: {caUrl: 'https://ca.example.com:9000/', provisioner: 'sshpop'}})
    const {payload} = await jwtVerify(token, key.publicKey.keyObject, {issuer: 'sshpop', audience: 'https://ca.example.com:9000/1.0/ssh/revoke#sshpop/sshpop'})
    assert.equal(payload.sub, '9')
    assert.equal(decodeProtectedHeader(token).typ, 'JWT')
    assert.equal(decodeJwt(token).jti?.length, 36)
    client.close()
  })

  it('refuses a signature that does not belong to the key type (no JWS from a mismatched blob)', () => {
    const ed = generatePrivateKey('ed25519')
    const ec = generatePrivateKey('ecdsa')
    throwsCode(() => jwsSignatureFromSsh(signData(ec.keyObject, ec.publicKey, Buffer.from('x')), ed.publicKey), 'ERR_SSH_UNSUPPORTED')
    const rsa = generatePrivateKey('rsa')
    throwsCode(() => jwsSignatureFromSsh(signData(rsa.keyObject, rsa.publicKey, Buffer.from('x'), 'rsa-sha2-512'), rsa.publicKey), 'ERR_SSH_UNSUPPORTED')
  })
})
