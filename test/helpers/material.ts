/**
 * The CA's material for in-process tests of the app or the Authority: a fresh root that is also the
 * intermediate, no TLS (app.inject), and fresh ed25519 user and host CA keys.
 */
import {generateKeyPairSync} from 'node:crypto'
import {certFingerprint, createRoot} from '../../src/ca/keys/pki.ts'
import {soleKeySet, type CaMaterial} from '../../src/ca/keys/material.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'

export async function testMaterial(name: string): Promise<CaMaterial> {
  const root = await createRoot(name)
  const fingerprint = certFingerprint(root.der)
  return {
    rootPem: root.pem,
    rootFingerprint: fingerprint,
    intermediatePem: root.pem,
    intermediateKey: root.key,
    tls: {certPem: '', keyPem: '', notAfter: new Date(0)},
    roots: [
      {pem: root.pem, fingerprint, state: 'active', subject: `CN=${name}`, notAfter: new Date(Date.now() + 86_400_000)},
    ],
    crossPems: [],
    userCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
    hostCa: soleKeySet(keySigner(generatePrivateKey('ed25519').keyObject)),
    enrollmentKey: generateKeyPairSync('ed25519').privateKey,
  }
}
