/** (a) certificates signed per second by src/ssh, against raw crypto.sign with the same key. */
import {sign} from 'node:crypto'
import {checkSubjectKey} from '../src/ca/authority/sign.ts'
import {signCertificate} from '../src/ssh/cert.ts'
import {PublicKey} from '../src/ssh/keys.ts'
import {generatePrivateKey, type KeyKind} from '../src/ssh/private-key.ts'
import {keySigner} from '../src/ssh/signature.ts'
import {roughModulus, rsaBlob} from '../test/helpers/forge.ts'
import {opsPerSecond, opsPerSecondAsync, print, type Row} from './lib.ts'

export async function benchSigning(): Promise<void> {
  const rows: Row[] = []
  const subject = generatePrivateKey('ed25519')
  for (const kind of ['ed25519', 'ecdsa'] as KeyKind[]) {
    const ca = generatePrivateKey(kind)
    const signer = keySigner(ca.keyObject)
    const now = BigInt(Math.floor(Date.now() / 1000))
    let serial = 1n
    const template = {
      type: 'user' as const,
      publicKey: subject.publicKey,
      keyId: 'alice@example.com',
      principals: ['alice', 'alice@example.com'],
      validAfter: now - 60n,
      validBefore: now + 28_800n,
      extensions: {'permit-pty': true as const},
    }
    const body = (await signCertificate({...template, serial: 0n}, signer)).blob
    const data = body.subarray(0, body.length - 100)
    const hash = kind === 'ed25519' ? null : 'sha256'
    const raw = opsPerSecond(() => {
      sign(hash, data, ca.keyObject)
    })
    // the Signer is async (a CA key may be in an HSM): the price of that promise is part of the number
    const ours = await opsPerSecondAsync(async () => {
      await signCertificate({...template, serial: serial++}, signer)
    })
    const ratio = ours / raw
    rows.push({name: `${kind} CA: raw crypto.sign`, value: `${raw.toFixed(0)}/s`})
    rows.push({
      name: `${kind} CA: signCertificate`,
      value: `${ours.toFixed(0)}/s = ${(ratio * 100).toFixed(0)}% of raw`,
      target: '≥ 60%',
      ok: ratio >= 0.6,
    })
  }
  print('Certificate signing (src/ssh, in process)', rows)
  benchSubjectKeyCheck()
}

/**
 * (b) what refusing keys anyone can sign with (src/ssh/weak-keys.ts) costs each signing request: it
 * runs before the token is read, so for anyone. RSA moduli without a small factor, so that every
 * check runs: the cost of a real key, and the most a caller can make the CA spend at that size.
 */
function benchSubjectKeyCheck(): void {
  const keys: [string, PublicKey][] = [
    ['ed25519', generatePrivateKey('ed25519').publicKey],
    ['RSA 3072 bits', PublicKey.fromBlob(rsaBlob(65537n, roughModulus(3072)))],
    ['RSA 4096 bits', PublicKey.fromBlob(rsaBlob(65537n, roughModulus(4096)))],
    ['RSA 16384 bits', PublicKey.fromBlob(rsaBlob(65537n, roughModulus(16384)))],
  ]
  const rows: Row[] = keys.map(([name, key]) => ({
    name: `checkSubjectKey, ${name}`,
    value: `${(1e6 / opsPerSecond(() => checkSubjectKey(key), 500)).toFixed(1)} µs`,
  }))
  print('Subject key checks (before the token, on every signing request)', rows)
}
