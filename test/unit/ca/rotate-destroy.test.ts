/**
 * `ca rotate retire` destroys the retired key's private half. A key another entry of the manifest still
 * names (one key for both kinds, a manifest edited by hand) must not go with it: that would take the
 * private half of a key that still signs, and the CA could sign nothing more of that kind.
 */
import assert from 'node:assert/strict'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {initCa} from '../../../src/ca/init.ts'
import {keyringPath, type Keyring} from '../../../src/ca/keys/keyring.ts'
import {SignerRegistry} from '../../../src/ca/keys/signers.ts'
import {rotate} from '../../../src/ca/rotate.ts'
import {tempDir} from '../../helpers/tmp.ts'

const PASSWORD = 'correct horse battery staple'

describe('ca rotate retire: the private half it destroys is no other entry’s', function () {
  this.timeout(120_000)

  it('a key the host CA still signs with, named by the retired user entry too (the same file): kept, and said so', async () => {
    const dir = join(tempDir('sshca-retire-shared-'), 'ca')
    const {config} = await initCa({dir, name: 'Acme', dnsNames: ['127.0.0.1'], password: PASSWORD})
    // one key for both kinds: the user entry names the host CA's key (its file and its public key)
    const k = JSON.parse(readFileSync(keyringPath(dir), 'utf8')) as Keyring
    k.user[0] = {...k.user[0]!, ref: k.host[0]!.ref, publicKey: k.host[0]!.publicKey}
    writeFileSync(keyringPath(dir), JSON.stringify(k))
    const shared = join(dir, (k.host[0]!.ref as {path: string}).path)
    await rotate({configPath: config, step: 'prepare', password: PASSWORD, kinds: ['user']})
    await rotate({configPath: config, step: 'activate', password: PASSWORD, kinds: ['user']})
    const r = await rotate({configPath: config, step: 'retire', password: PASSWORD, kinds: ['user']})
    assert.ok(existsSync(shared), 'the host CA key that still signs was destroyed with the retired user key')
    assert.equal(r.destroyed.length, 1)
    assert.equal(r.destroyed[0]!.destroyed, false)
    assert.match(r.destroyed[0]!.error!, /host-1 \(active\)/)
    // and the host CA still opens it
    const reg = new SignerRegistry({dir, password: PASSWORD, kms: {type: 'file'}})
    try {
      await reg.open(k.host[0]!.ref)
    } finally {
      await reg.close()
    }
  })

  it('a private half a retire could not destroy is destroyed by a later retire; a retire with nothing left to do is the state error it was', async () => {
    const dir = join(tempDir('sshca-retire-again-'), 'ca')
    const {config} = await initCa({dir, name: 'Acme', dnsNames: ['127.0.0.1'], password: PASSWORD})
    const k = JSON.parse(readFileSync(keyringPath(dir), 'utf8')) as Keyring
    k.user[0] = {...k.user[0]!, ref: k.host[0]!.ref, publicKey: k.host[0]!.publicKey}
    writeFileSync(keyringPath(dir), JSON.stringify(k))
    const shared = join(dir, (k.host[0]!.ref as {path: string}).path)
    const step = (s: 'prepare' | 'activate' | 'retire', kind: 'user' | 'host') =>
      rotate({configPath: config, step: s, password: PASSWORD, kinds: [kind]})
    await step('prepare', 'user')
    await step('activate', 'user')
    // user-1's key is host-1's too, which still signs: kept
    assert.equal((await step('retire', 'user')).destroyed[0]!.destroyed, false)
    const entry = (kind: 'user' | 'host', id: string) =>
      (JSON.parse(readFileSync(keyringPath(dir), 'utf8')) as Keyring)[kind].find((e) => e.id === id)!
    assert.equal(entry('user', 'user-1').destroyedAt, undefined)
    // the host CA moves to a key of its own and retires host-1: the retire also finishes user-1's
    await step('prepare', 'host')
    await step('activate', 'host')
    const r = await step('retire', 'host')
    assert.deepEqual(
      r.changed.map((c) => c.key),
      ['host-1'],
    )
    assert.deepEqual(
      r.destroyed.map((d) => [d.kind, d.key, d.destroyed]),
      [['host', 'host-1', true]],
    )
    assert.ok(!existsSync(shared))
    // user-1 is a leftover of the user kind: a user retire, with no previous user key, finishes it
    const again = await step('retire', 'user')
    assert.deepEqual(again.changed, [])
    assert.deepEqual(
      again.destroyed.map((d) => [d.kind, d.key, d.destroyed]),
      [['user', 'user-1', true]],
    )
    assert.match(entry('user', 'user-1').destroyedAt!, /^\d{4}-/)
    assert.match(entry('host', 'host-1').destroyedAt!, /^\d{4}-/)
    // nothing left to destroy and no previous key: the state error, as before
    await assert.rejects(step('retire', 'user'), {code: 'ERR_ROTATION_STATE', message: /no previous user CA key/})
  })
})
