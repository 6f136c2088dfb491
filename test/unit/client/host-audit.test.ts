/** The pure parts of `sshca host audit`: sshd -T output, passwd lines, AuthorizedKeysFile tokens, authorized_keys lines. */
import assert from 'node:assert/strict'
import {expandAuthorizedKeysPath, parseAuthorizedKeys, parsePasswd, parseSshdT} from '../../../src/client/host-audit.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'

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
    const a = {user: 'ann', uid: 1001, home: '/home/ann', shell: '/bin/sh'}
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
})
