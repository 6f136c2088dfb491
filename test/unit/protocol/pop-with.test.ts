/**
 * SSHPOP tokens signed through an SSH signer (the ssh-agent, or a key file): the SSH signature
 * becomes a JWS signature, for every key type, and the token is the one mintSshpopToken makes from a
 * key file — the CA's own verifier (src/ca/provisioner/pop.ts) accepts it for its action only.
 */
import assert from 'node:assert/strict'
import {decodeJwt, decodeProtectedHeader} from 'jose'
import {verifyPop} from '../../../src/ca/provisioner/pop.ts'
import {mintSshpopToken, mintSshpopTokenWith, type SshpopOptions} from '../../../src/protocol/tokens.ts'
import {signCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey, type KeyKind} from '../../../src/ssh/private-key.ts'
import {jwsSignatureFromSsh, keySigner, signData} from '../../../src/ssh/signature.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'
import {MemoryAgent} from '../../helpers/memory-agent.ts'

const ca = generatePrivateKey('ed25519')
const root = 'ab'.repeat(32)
/** Now, when each proof is made and verified (a constant taken at load time ages past the 5-minute life on a busy machine). */
const nowS = (): number => Math.floor(Date.now() / 1000)
const opts = (action: SshpopOptions['action']): SshpopOptions => ({
  caUrl: 'https://ca.example.com:9000/',
  action,
  provisioner: 'sshpop',
  rootFingerprint: root,
  now: nowS(),
})
const check = (action: SshpopOptions['action']) => ({
  action,
  provisioner: 'sshpop',
  dnsNames: ['ca.example.com'],
  rootFingerprint: root,
  now: nowS(),
})

describe('SSHPOP tokens through an SSH signer', () => {
  for (const kind of ['ed25519', 'ecdsa', 'ecdsa-p384', 'ecdsa-p521', 'rsa'] as KeyKind[]) {
    it(`${kind}: the CA's verifier accepts it for its action, and the claims are mintSshpopToken's`, async () => {
      const key = generatePrivateKey(kind)
      const cert = await signCertificate(
        {
          type: 'host',
          publicKey: key.publicKey,
          serial: 77n,
          keyId: 'host:web',
          principals: ['web'],
          validAfter: 0n,
          validBefore: BigInt(nowS() + 3600),
        },
        keySigner(ca.keyObject),
      )
      const token = await mintSshpopTokenWith(
        async (d) => signData(key.keyObject, key.publicKey, d, 'rsa-sha2-256'),
        cert,
        opts('revoke'),
      )
      await verifyPop(token, cert, check('revoke'))
      // a proof for revoke is no proof for rekey
      await rejectsCode(verifyPop(token, cert, check('rekey')), 'ERR_TOKEN_INVALID')
      const fromFile = await mintSshpopToken(key.keyObject, cert, opts('revoke'))
      const strip = (t: string) => {
        const {jti, iat, nbf, exp, ...rest} = decodeJwt(t)
        return {
          ...rest,
          jti: typeof jti,
          life: (exp as number) - (iat as number),
          nbf: (nbf as number) - (iat as number),
        }
      }
      assert.deepEqual(strip(token), strip(fromFile))
      assert.deepEqual(decodeProtectedHeader(token), decodeProtectedHeader(fromFile))
    })
  }

  it("through an ssh-agent (the user's key never leaves it); another key's signature does not verify", async () => {
    const agent = new MemoryAgent()
    const client = agent.client()
    const key = generatePrivateKey('ed25519')
    const cert = await signCertificate(
      {
        type: 'user',
        publicKey: key.publicKey,
        serial: 9n,
        keyId: 'alice',
        principals: ['alice'],
        validAfter: 0n,
        validBefore: BigInt(nowS() + 3600),
      },
      keySigner(ca.keyObject),
    )
    await client.addCertificate(key, cert)
    const token = await mintSshpopTokenWith((d) => client.sign(cert.blob, d), cert, opts('revoke'))
    await verifyPop(token, cert, check('revoke'))
    assert.equal(decodeJwt(token).sub, '9')
    const other = generatePrivateKey('ed25519')
    const forged = await mintSshpopTokenWith(
      async (d) => signData(other.keyObject, other.publicKey, d),
      cert,
      opts('revoke'),
    )
    await rejectsCode(verifyPop(forged, cert, check('revoke')), 'ERR_TOKEN_INVALID')
    client.close()
  })

  it('refuses a signature that does not belong to the key type (no JWS from a mismatched blob)', () => {
    const ed = generatePrivateKey('ed25519')
    const ec = generatePrivateKey('ecdsa')
    throwsCode(
      () => jwsSignatureFromSsh(signData(ec.keyObject, ec.publicKey, Buffer.from('x')), ed.publicKey),
      'ERR_SSH_UNSUPPORTED',
    )
    const rsa = generatePrivateKey('rsa')
    throwsCode(
      () =>
        jwsSignatureFromSsh(signData(rsa.keyObject, rsa.publicKey, Buffer.from('x'), 'rsa-sha2-512'), rsa.publicKey),
      'ERR_SSH_UNSUPPORTED',
    )
  })
})
