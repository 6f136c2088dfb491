/** The pure parts of `sshca host audit`: sshd -T output, passwd lines, AuthorizedKeysFile tokens, authorized_keys lines. */
import assert from 'node:assert/strict'
import {expandAuthorizedKeysPath, parseAuthorizedKeys, parsePasswd} from '../../../src/client/host/host-audit.ts'
import {parseSshdT} from '../../../src/client/local/sshd-effective.ts'
import {spawnSync} from 'node:child_process'
import {generateKeyPairSync, randomBytes} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {SshWriter} from '../../../src/ssh/wire.ts'
import {tempDir} from '../../helpers/tmp.ts'

/** An uncompressed P-256 point (0x04 || x || y) of a fresh key. */
function p256Point(): Buffer {
  const jwk = generateKeyPairSync('ec', {namedCurve: 'P-256'}).publicKey.export({format: 'jwk'})
  return Buffer.concat([Buffer.of(4), Buffer.from(jwk.x!, 'base64url'), Buffer.from(jwk.y!, 'base64url')])
}

describe('host audit parsers', () => {
  it('sshd -T: keywords lower-cased, repeatable ones kept in order, others dropped', () => {
    const s = parseSshdT(
      'port 22\nhostkey /a\nHostKey /b\npasswordauthentication no\nauthorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2\n\n',
    )
    assert.deepEqual(s, {
      hostkey: ['/a', '/b'],
      passwordauthentication: ['no'],
      authorizedkeysfile: ['.ssh/authorized_keys .ssh/authorized_keys2'],
    })
  })

  it('passwd: skips comments, NIS markers and malformed lines', () => {
    const a = parsePasswd(
      '# x\nroot:x:0:0:root:/root:/bin/bash\n+@netgroup\nbroken:x\nbad:x:notanumber:1::/h:/bin/sh\nsvc:x:5:5::/nonexistent:/usr/sbin/nologin\n',
    )
    assert.deepEqual(
      a.map((e) => [e.user, e.uid, e.home, e.shell]),
      [
        ['root', 0, '/root', '/bin/bash'],
        ['svc', 5, '/nonexistent', '/usr/sbin/nologin'],
      ],
    )
  })

  it('AuthorizedKeysFile tokens: %h %u %U %%, relative to the home directory', () => {
    const a = {user: 'ann', uid: 1001, gid: 1001, home: '/home/ann', shell: '/bin/sh'}
    assert.equal(expandAuthorizedKeysPath('.ssh/authorized_keys', a), '/home/ann/.ssh/authorized_keys')
    assert.equal(expandAuthorizedKeysPath('/etc/ssh/keys/%u', a), '/etc/ssh/keys/ann')
    assert.equal(expandAuthorizedKeysPath('%h/k-%U-%%u', a), '/home/ann/k-1001-%u')
  })

  it('authorized_keys: options with quoted spaces, cert-authority for a trusted CA or not, garbage counted', () => {
    const k = generatePrivateKey('ed25519').publicKey
    const ca = generatePrivateKey('ed25519').publicKey
    const text = [
      '# comment',
      k.toLine('plain'),
      `command="echo \\"a b\\"",no-pty ${k.toLine('opts')}`,
      `cert-authority,principals="x" ${ca.toLine('ca')}`,
      'not a key at all',
      '',
    ].join('\n')
    const {keys, unparsed} = parseAuthorizedKeys(text, new Set([ca.fingerprint()]))
    assert.equal(unparsed, 1)
    assert.deepEqual(
      keys.map((x) => [x.line, x.options, x.certAuthority, x.trustedCa, x.comment]),
      [
        [2, '', false, false, 'plain'],
        [3, 'command="echo \\"a b\\"",no-pty', false, false, 'opts'],
        [4, 'cert-authority,principals="x"', true, true, 'ca'],
      ],
    )
    assert.equal(parseAuthorizedKeys(text, new Set()).keys[2]!.trustedCa, false)
  })

  it('authorized_keys: security keys (FIDO) and comments with a CR count as keys, as sshd takes them; ssh-keygen agrees on the fingerprints', () => {
    // both once went uncounted: an account that logs in with a security key looked like one without keys
    const sk = (type: string) => {
      const w = new SshWriter().string(type)
      if (type.startsWith('sk-ecdsa')) w.string('nistp256').string(p256Point())
      else w.string(randomBytes(32))
      return `${type} ${w.string('ssh:').toBuffer().toString('base64')}`
    }
    const ed = sk('sk-ssh-ed25519@openssh.com')
    const ec = sk('sk-ecdsa-sha2-nistp256@openssh.com')
    const k = generatePrivateKey('ed25519').publicKey
    const offCurve = sk('sk-ecdsa-sha2-nistp256@openssh.com').replace(/^\S+ /, '')
    const offCurveLine = `sk-ecdsa-sha2-nistp256@openssh.com ${(() => {
      const b = Buffer.from(offCurve, 'base64')
      b[b.length - 10] = b[b.length - 10]! ^ 1 // a bit of y: off the curve
      return b.toString('base64')
    })()}`
    const broken = `sk-ssh-ed25519@openssh.com ${new SshWriter().string('sk-ssh-ed25519@openssh.com').string(randomBytes(31)).string('ssh:').toBuffer().toString('base64')}`
    const text = [
      `${ed} yubikey`,
      `no-pty ${ec}`,
      `${k.toLine('laptop')}\r(copied from Windows)`,
      broken,
      offCurveLine,
    ].join('\n')
    const {keys, unparsed} = parseAuthorizedKeys(text, new Set())
    assert.equal(unparsed, 2, 'a security key blob without its fields, or off its curve, is no key')
    const dir = tempDir()
    const keygen = (line: string): string => {
      const f = join(dir, 'k.pub')
      writeFileSync(f, `${line}\n`)
      const r = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', f], {encoding: 'utf8'})
      assert.equal(r.status, 0, r.stderr)
      return r.stdout.split(' ')[1]!
    }
    assert.deepEqual(
      keys.map((x) => [x.line, x.type, x.fingerprint, x.options, x.comment]),
      [
        [1, 'sk-ssh-ed25519@openssh.com', keygen(ed), '', 'yubikey'],
        [2, 'sk-ecdsa-sha2-nistp256@openssh.com', keygen(ec), 'no-pty', ''],
        [3, 'ssh-ed25519', k.fingerprint(), '', 'laptop\r(copied from Windows)'],
      ],
    )
  })
})
