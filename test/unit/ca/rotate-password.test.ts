/**
 * `ca rotate prepare` seals the next SSH CA key with the password it is given, and takes the salt of
 * the CA's other keys from secrets/enrollment.key. Two attacks on that, performed here:
 *   - a password that is not the CA's (a typo on the terminal, the wrong --password-file): the next key
 *     would be sealed under it, published, and activated — and then no `ca serve` could open it;
 *   - someone who can write the CA directory but does not know the password plants a salt of their
 *     choosing in enrollment.key: the next key would be sealed with that salt (chosen in advance, so
 *     guesses against it could be computed before the key even exists, and shared across CAs).
 * Both must be refused before any key is made or published.
 */
import assert from 'node:assert/strict'
import {readdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {caPaths} from '../../../src/ca/config/layout.ts'
import {initCa} from '../../../src/ca/init.ts'
import {keyringPath} from '../../../src/ca/keys/keyring.ts'
import {rotate} from '../../../src/ca/rotate.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

const PASSWORD = 'correct horse battery staple'

describe('ca rotate prepare: the next key is sealed only under the CA password, with the CA salt', function () {
  this.timeout(120_000)

  async function ca(): Promise<{dir: string; config: string}> {
    const dir = join(tempDir('sshca-rotate-pw-'), 'ca')
    const r = await initCa({dir, name: 'Acme', dnsNames: ['127.0.0.1'], password: PASSWORD})
    return {dir, config: r.config}
  }
  const secrets = (dir: string) => readdirSync(caPaths(dir).secrets).sort()

  it('refuses a password that is not the CA password: no key is sealed or published', async () => {
    const {dir, config} = await ca()
    const keyring = readFileSync(keyringPath(dir), 'utf8')
    const before = secrets(dir)
    await rejectsCode(
      rotate({configPath: config, step: 'prepare', password: 'correct horse battery stapel', kinds: ['user']}),
      'ERR_CA_PASSWORD',
    )
    assert.equal(readFileSync(keyringPath(dir), 'utf8'), keyring, 'keys.json must be unchanged')
    assert.deepEqual(secrets(dir), before, 'no key file may be written')
  })

  it('refuses a salt planted in enrollment.key by someone without the password; with the true file it seals with the CA salt', async () => {
    const {dir, config} = await ca()
    const p = caPaths(dir)
    const genuine = readFileSync(p.enrollmentKey, 'utf8')
    const caSalt = (JSON.parse(genuine) as {kdf: {salt: string}}).kdf.salt
    const planted = Buffer.alloc(16, 0x41).toString('base64')
    const env = JSON.parse(genuine) as {kdf: {salt: string}}
    env.kdf.salt = planted
    writeFileSync(p.enrollmentKey, JSON.stringify(env), {mode: 0o600})
    const keyring = readFileSync(keyringPath(dir), 'utf8')
    const before = secrets(dir)
    const made = await rotate({configPath: config, step: 'prepare', password: PASSWORD, kinds: ['user']}).then(
      () => undefined,
      (err: {code?: string}) => err,
    )
    const fresh = secrets(dir).filter((f) => !before.includes(f))
    for (const f of fresh) {
      const salt = (JSON.parse(readFileSync(join(p.secrets, f), 'utf8')) as {kdf: {salt: string}}).kdf.salt
      assert.notEqual(salt, planted, `${f} was sealed with the salt the attacker planted`)
    }
    assert.equal(made?.code, 'ERR_CA_PASSWORD', 'an enrollment key that does not open must stop the rotation')
    assert.equal(readFileSync(keyringPath(dir), 'utf8'), keyring)
    // the genuine file back: prepare seals the next key with the CA's own salt
    writeFileSync(p.enrollmentKey, genuine, {mode: 0o600})
    const r = await rotate({configPath: config, step: 'prepare', password: PASSWORD, kinds: ['user']})
    const file = r.keys.user.find((k) => k.state === 'next')!
    assert.ok(file)
    const next = secrets(dir).filter((f) => !before.includes(f))
    assert.equal(next.length, 1)
    assert.equal(
      (JSON.parse(readFileSync(join(p.secrets, next[0]!), 'utf8')) as {kdf: {salt: string}}).kdf.salt,
      caSalt,
    )
  })
})
