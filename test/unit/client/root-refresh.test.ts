/**
 * A context's pinned roots followed through a root rotation (src/client/ca-api/ca-keys.ts fetchSshRoots,
 * src/client/ca-api/roots.ts): saved with their fingerprint under the settings lock, over the roots saved
 * then, never a copy a login read before another login's rotation.
 */
import assert from 'node:assert/strict'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {certFingerprint, createRoot, crossCertify} from '../../../src/ca/keys/pki.ts'
import type {CaClient} from '../../../src/client/ca-api/ca-client.ts'
import {fetchSshRoots} from '../../../src/client/ca-api/ca-keys.ts'
import {loadContext, ROOT_FILE, saveContext, type Context} from '../../../src/client/home/home.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe("a context's roots through a root rotation", () => {
  it('a login that read the roots before two rotation steps does not roll back what later logins saved', async () => {
    const r1 = await createRoot('Rotating', new Date(), 1)
    const r2 = await createRoot('Rotating', new Date(), 2)
    const r3 = await createRoot('Rotating', new Date(), 3)
    const x12 = await crossCertify(r2.cert, r1, 2)
    const x23 = await crossCertify(r3.cert, r2, 2)
    const home = join(tempDir('sshca-root-refresh-'), 'sshca')
    const dir = join(home, 'contexts', 'demo')
    mkdirSync(dir, {recursive: true})
    const hostCa = generatePrivateKey('ed25519').publicKey
    const ctx: Context = {
      name: 'demo',
      caUrl: 'https://ca.example.com',
      rootFingerprint: certFingerprint(r1.der),
      userCaKeys: [],
      hostCaKeys: [hostCa.toLine('demo host CA')],
      hostPattern: '*.example.com',
      bootstrappedAt: '2026-11-27T09:00:00.000Z',
      rootPem: r1.pem,
      dir,
    }
    await saveContext(ctx)
    writeFileSync(join(dir, ROOT_FILE), r1.pem)
    let published = {crts: [r1.pem, r2.pem], crossSigned: [x12.pem]}
    let hostKeys = [hostCa]
    const ca = {
      call: async (_method: string, path: string) =>
        path === '/roots'
          ? published
          : {userKey: [], hostKey: hostKeys.map((k) => k.blob.toString('base64')), hostPattern: '*.example.com'},
    } as unknown as CaClient
    const roots = () => readFileSync(join(dir, ROOT_FILE), 'utf8')
    // a login starts (a browser sign-in takes minutes): it read [R1]
    const slow = await loadContext(home, 'demo')
    // meanwhile other logins follow two steps: R2 vouched for by R1, then R3 by R2 as R1 retires
    await fetchSshRoots(await loadContext(home, 'demo'), ca)
    assert.equal(roots(), `${r1.pem}${r2.pem}`)
    assert.equal((await loadContext(home, 'demo')).rootFingerprint, certFingerprint(r2.der))
    published = {crts: [r2.pem, r3.pem], crossSigned: [x12.pem, x23.pem]}
    await fetchSshRoots(await loadContext(home, 'demo'), ca)
    const saved = roots()
    assert.equal(saved, `${r2.pem}${r3.pem}`)
    // the slow login ends, having seen a new host key too: the key is saved, the roots stay
    hostKeys = [hostCa, generatePrivateKey('ed25519').publicKey]
    const r = await fetchSshRoots(slow, ca)
    assert.ok(r.changed)
    assert.equal(roots(), saved)
    const after = await loadContext(home, 'demo')
    assert.equal(after.rootFingerprint, certFingerprint(r3.der))
    assert.equal(after.hostCaKeys.length, 2)
  })
})
