/**
 * The signer seam: async, fallible signers; the registry that opens them by reference and makes new
 * keys where ca.yaml says; CA keys as sets (active + published) read from the manifest; the
 * rotation state machine; the kms setting.
 */
import assert from 'node:assert/strict'
import {sign as cryptoSign} from 'node:crypto'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {SshcaError} from '../../../src/errors.ts'
import {parseKms} from '../../../src/ca/config/kms.ts'
import {
  keyringProblems,
  nextKeyId,
  publishedEntries,
  withActivated,
  withPrepared,
  withRetired,
  type Keyring,
} from '../../../src/ca/keys/keyring.ts'
import {loadKeySets, publishedKeys} from '../../../src/ca/keys/material.ts'
import {SignerRegistry, type KeyBackend} from '../../../src/ca/keys/signers.ts'
import {signCertificate, verifyCertificate} from '../../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner, sshSignatureFromRaw, verifySignature} from '../../../src/ssh/signature.ts'
import {tempDir} from '../../helpers/tmp.ts'

const PASSWORD = 'correct horse battery staple'
const now = new Date('2026-11-01T00:00:00Z')

function caDir(): string {
  const dir = tempDir('sshca-signers-')
  mkdirSync(join(dir, 'secrets'), {mode: 0o700})
  mkdirSync(join(dir, 'ssh'), {mode: 0o700})
  return dir
}

const entry = (id: string, state: 'next' | 'active' | 'previous' | 'retired', key = generatePrivateKey('ed25519')) => ({
  id,
  publicKey: key.publicKey.toLine(),
  state,
  ref: {type: 'file' as const, path: `secrets/${id}.key`},
  createdAt: now.toISOString(),
})

describe('signers: async, fallible, from a registry', () => {
  it('keySigner signs asynchronously; signCertificate awaits it', async () => {
    const ca = generatePrivateKey('ed25519')
    const pending = keySigner(ca.keyObject).sign(Buffer.from('x'))
    assert.ok(pending instanceof Promise)
    const subject = generatePrivateKey('ed25519')
    const cert = await signCertificate(
      {
        type: 'user',
        publicKey: subject.publicKey,
        serial: 1n,
        keyId: 'k',
        principals: ['a'],
        validAfter: 0n,
        validBefore: 10n,
      },
      keySigner(ca.keyObject),
    )
    assert.equal(verifyCertificate(cert).valid, true)
  })

  it('a signer that fails (a token pulled out) rejects signCertificate with its own error', async () => {
    const subject = generatePrivateKey('ed25519')
    const failing = {
      publicKey: generatePrivateKey('ed25519').publicKey,
      sign: async () => Promise.reject(new SshcaError('ERR_KEY_STORE', 'PKCS#11: token removed')),
    }
    await assert.rejects(
      signCertificate(
        {
          type: 'user',
          publicKey: subject.publicKey,
          serial: 1n,
          keyId: 'k',
          principals: ['a'],
          validAfter: 0n,
          validBefore: 10n,
        },
        failing,
      ),
      {code: 'ERR_KEY_STORE', message: /token removed/},
    )
  })

  it('the file backend makes a sealed key, reopens it with the password, and refuses a wrong one', async () => {
    const dir = caDir()
    const reg = new SignerRegistry({dir, password: PASSWORD, kms: {type: 'file'}})
    const made = await reg.create('user', 'user-2')
    assert.deepEqual(made.ref, {type: 'file', path: 'secrets/ssh_user_ca.user-2.key'})
    const signer = await reg.open(made.ref)
    assert.ok(signer.publicKey.equals(made.publicKey))
    const data = Buffer.from('body')
    assert.equal(verifySignature(made.publicKey, data, await signer.sign(data)).valid, true)
    // the same key is never made twice under one name
    await assert.rejects(reg.create('user', 'user-2'), {code: 'ERR_FILE_EXISTS'})
    const wrong = new SignerRegistry({dir, password: 'another password entirely', kms: {type: 'file'}})
    await assert.rejects(wrong.open(made.ref), {code: 'ERR_CA_PASSWORD'})
    await reg.close()
  })

  it("the file backend destroys a key's sealed file, and no file outside the CA's secrets folder", async () => {
    const dir = caDir()
    const reg = new SignerRegistry({dir, password: PASSWORD, kms: {type: 'file'}})
    const made = await reg.create('user', 'user-2')
    const file = join(dir, 'secrets', 'ssh_user_ca.user-2.key')
    assert.ok(existsSync(file))
    await reg.destroy(made.ref)
    assert.ok(!existsSync(file))
    // gone already: no error
    await reg.destroy(made.ref)
    // a manifest naming a file elsewhere (edited, or planted by someone who can write the CA directory)
    const elsewhere = join(dir, 'ca.yaml')
    writeFileSync(elsewhere, 'name: Test\n')
    const before = readFileSync(elsewhere)
    writeFileSync(join(dir, 'secrets', 'root_ca.key'), 'the root key\n')
    for (const path of ['ca.yaml', 'secrets/../ca.yaml', elsewhere, '/etc/passwd', 'secrets/root_ca.key'])
      await assert.rejects(reg.destroy({type: 'file', path}), {code: 'ERR_KEY_STORE'})
    assert.deepEqual(readFileSync(elsewhere), before)
    assert.ok(existsSync(join(dir, 'secrets', 'root_ca.key')), 'the root key beside the SSH CA keys is kept')
    await reg.close()
  })

  it('opens each reference with its own backend, makes new keys in the configured one, and starts a backend once', async () => {
    let started = 0
    let made = 0
    const fake = async (): Promise<KeyBackend> => {
      started++
      const key = generatePrivateKey('ecdsa')
      return {
        create: async () => {
          made++
          return {ref: {type: 'pkcs11', label: 'l', id: '01'}, publicKey: key.publicKey}
        },
        open: async () => keySigner(key.keyObject),
        destroy: async () => undefined,
        close: async () => undefined,
      }
    }
    const reg = new SignerRegistry(
      {
        dir: caDir(),
        password: PASSWORD,
        kms: {type: 'pkcs11', token: 't', module: '/m.so', pinFile: '/p', uri: 'pkcs11:token=t'},
      },
      {pkcs11: fake},
    )
    const a = await reg.create('host', 'host-2')
    assert.equal(a.ref.type, 'pkcs11')
    await reg.open(a.ref)
    await reg.open(a.ref)
    assert.equal(started, 1)
    assert.equal(made, 1)
    await reg.close()
  })

  it('a pkcs11 key with no token configured is a config error, not a silent fallback to files', async () => {
    const reg = new SignerRegistry({dir: caDir(), password: PASSWORD, kms: {type: 'file'}})
    await assert.rejects(reg.open({type: 'pkcs11', label: 'x', id: '00'}), {
      code: 'ERR_CA_CONFIG',
      message: /keys\.kms/,
    })
  })
})

describe('CA key sets: the active key signs, every published key is trusted', () => {
  it('loads active, previous and next, active first; opens only the active key, once', async () => {
    const [a, p, n, r] = [
      generatePrivateKey('ed25519'),
      generatePrivateKey('ed25519'),
      generatePrivateKey('ed25519'),
      generatePrivateKey('ed25519'),
    ]
    const keyring: Keyring = {
      version: 1,
      user: [
        entry('user-1', 'retired', r),
        entry('user-2', 'previous', p),
        entry('user-4', 'next', n),
        entry('user-3', 'active', a),
      ],
      host: [entry('host-1', 'active', a)],
    }
    assert.deepEqual(keyringProblems(keyring), [])
    const opened: string[] = []
    const keys = new Map([
      [`secrets/user-3.key`, a],
      [`secrets/host-1.key`, a],
    ])
    const reg = new SignerRegistry(
      {dir: caDir(), password: PASSWORD, kms: {type: 'file'}},
      {
        file: async () => ({
          create: async () => assert.fail('nothing is made'),
          open: async (ref) => {
            opened.push((ref as {path: string}).path)
            return keySigner(keys.get((ref as {path: string}).path)!.keyObject)
          },
          destroy: async () => assert.fail('nothing is destroyed'),
          close: async () => undefined,
        }),
      },
    )
    const sets = await loadKeySets(keyring, reg)
    assert.equal(sets.userCa.activeId, 'user-3')
    assert.deepEqual(
      sets.userCa.published.map((x) => [x.id, x.state]),
      [
        ['user-3', 'active'],
        ['user-2', 'previous'],
        ['user-4', 'next'],
      ],
    )
    assert.deepEqual(
      publishedKeys(sets.userCa).map((k) => k.fingerprint()),
      [a, p, n].map((k) => k.publicKey.fingerprint()),
    )
    assert.deepEqual(opened.sort(), ['secrets/host-1.key', 'secrets/user-3.key'])
    // a reload whose active keys did not change opens nothing
    await loadKeySets(keyring, reg, sets)
    assert.equal(opened.length, 2)
  })

  it('refuses a key store whose key is not the one the manifest publishes', async () => {
    const keyring: Keyring = {version: 1, user: [entry('user-1', 'active')], host: [entry('host-1', 'active')]}
    const impostor = generatePrivateKey('ed25519')
    const reg = new SignerRegistry(
      {dir: caDir(), password: PASSWORD, kms: {type: 'file'}},
      {
        file: async () => ({
          create: async () => assert.fail(),
          open: async () => keySigner(impostor.keyObject),
          destroy: async () => assert.fail(),
          close: async () => undefined,
        }),
      },
    )
    await assert.rejects(loadKeySets(keyring, reg), {
      code: 'ERR_KEY_STORE',
      message: /not the key the manifest publishes/,
    })
  })
})

describe('rotation states: prepare → activate → retire', () => {
  const start = (): Keyring => ({version: 1, user: [entry('user-1', 'active')], host: [entry('host-1', 'active')]})

  it('walks a key through next, active, previous, retired', () => {
    let k = start()
    const id = nextKeyId(k, 'user')
    assert.equal(id, 'user-2')
    k = withPrepared(k, 'user', {...entry(id, 'next')})
    assert.deepEqual(
      publishedEntries(k.user).map((e) => [e.id, e.state]),
      [
        ['user-1', 'active'],
        ['user-2', 'next'],
      ],
    )
    k = withActivated(k, 'user', now)
    assert.deepEqual(
      publishedEntries(k.user).map((e) => [e.id, e.state]),
      [
        ['user-2', 'active'],
        ['user-1', 'previous'],
      ],
    )
    assert.equal(k.user.find((e) => e.id === 'user-1')!.deactivatedAt, now.toISOString())
    assert.equal(k.user.find((e) => e.id === 'user-2')!.activatedAt, now.toISOString())
    const r = withRetired(k, 'user', now)
    assert.equal(r.retired.id, 'user-1')
    assert.deepEqual(
      publishedEntries(r.keyring.user).map((e) => e.id),
      ['user-2'],
    )
    assert.equal(nextKeyId(r.keyring, 'user'), 'user-3')
    // the host CA was never touched
    assert.deepEqual(
      r.keyring.host,
      start().host.map((e) => ({...e, publicKey: r.keyring.host[0]!.publicKey})),
    )
  })

  it('refuses steps out of order', () => {
    const k = start()
    assert.throws(() => withActivated(k, 'user', now), {code: 'ERR_ROTATION_STATE', message: /no next user CA key/})
    assert.throws(() => withRetired(k, 'host', now), {code: 'ERR_ROTATION_STATE', message: /no previous host CA key/})
    const prepared = withPrepared(k, 'user', entry('user-2', 'next'))
    assert.throws(() => withPrepared(prepared, 'user', entry('user-3', 'next')), {
      code: 'ERR_ROTATION_STATE',
      message: /already prepared/,
    })
    // a second activation before the first previous key is retired would publish three keys
    const twice = withPrepared(withActivated(prepared, 'user', now), 'user', entry('user-3', 'next'))
    assert.throws(() => withActivated(twice, 'user', now), {code: 'ERR_ROTATION_STATE', message: /still published/})
  })

  it('a manifest with two active keys, or a key store it does not know, is invalid', () => {
    assert.match(
      keyringProblems({
        version: 1,
        user: [entry('u1', 'active'), entry('u2', 'active')],
        host: [entry('h1', 'active')],
      }).join(),
      /exactly one active key/,
    )
    assert.match(
      keyringProblems({
        version: 1,
        user: [{...entry('u1', 'active'), ref: {type: 'kms'} as never}],
        host: [entry('h1', 'active')],
      }).join(),
      /names no key store/,
    )
    assert.match(
      keyringProblems({version: 1, user: [entry('x', 'active')], host: [entry('x', 'active')]}).join(),
      /used twice/,
    )
  })
})

describe('keys.kms: file or an RFC 7512 pkcs11 URI', () => {
  it('parses token, module and PIN file', () => {
    assert.deepEqual(parseKms('file'), {type: 'file'})
    const uri = 'pkcs11:token=sshca%20prod?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/sshca/pin'
    assert.deepEqual(parseKms(uri), {
      type: 'pkcs11',
      token: 'sshca prod',
      module: '/usr/lib/softhsm/libsofthsm2.so',
      pinFile: '/etc/sshca/pin',
      uri,
    })
  })

  it('refuses a PIN in the URI, and URIs missing what the CA needs', () => {
    assert.throws(() => parseKms('pkcs11:token=a?module-path=/m.so&pin-value=1234'), /pin-value/)
    assert.throws(() => parseKms('pkcs11:?module-path=/m.so&pin-source=file:/p'), /no token/)
    assert.throws(() => parseKms('pkcs11:token=a?pin-source=file:/p'), /no module/)
    assert.throws(() => parseKms('pkcs11:token=a?module-path=/m.so'), /no PIN source/)
    assert.throws(() => parseKms('pkcs11:token=a?module-path=/m.so&pin-source=file:relative'), /absolute/)
    assert.throws(() => parseKms('kms://x'), /neither/)
  })
})

describe('raw signatures from a token → SSH signature blobs', () => {
  it('ECDSA r || s (with leading zero bytes) verifies as an SSH signature', () => {
    const key = generatePrivateKey('ecdsa')
    for (let i = 0; i < 64; i++) {
      const data = Buffer.from(`data ${i}`)
      const raw = cryptoSign('sha256', data, {key: key.keyObject, dsaEncoding: 'ieee-p1363'})
      assert.equal(verifySignature(key.publicKey, data, sshSignatureFromRaw(key.publicKey, raw)).valid, true)
    }
    assert.throws(() => sshSignatureFromRaw(key.publicKey, Buffer.alloc(63)), {code: 'ERR_SSH_FORMAT'})
  })

  it('ed25519 raw signatures, and nothing but 64 bytes', () => {
    const key = generatePrivateKey('ed25519')
    const data = Buffer.from('x')
    assert.equal(
      verifySignature(key.publicKey, data, sshSignatureFromRaw(key.publicKey, cryptoSign(null, data, key.keyObject)))
        .valid,
      true,
    )
    assert.throws(() => sshSignatureFromRaw(key.publicKey, Buffer.alloc(65)), {code: 'ERR_SSH_FORMAT'})
  })
})
