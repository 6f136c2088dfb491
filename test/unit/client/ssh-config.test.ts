import assert from 'node:assert/strict'
import {
  configArg,
  ensureCommand,
  execWord,
  hasSshConfigBlock,
  INCLUDE_MARKER,
  includeLine,
  mergeInclude,
  mergeSshConfig,
  removeSshConfigBlock,
  sshConfigBlockLines,
  supportsMatchFinal,
} from '../../../src/client/ssh-config.ts'
import {throwsCode} from '../../helpers/assert.ts'

const INC = '/home/a/.sshca/ssh_config'
const top = `${INCLUDE_MARKER}\nInclude ${INC}\n`

describe('the managed ssh_config and its Include', () => {
  describe('mergeInclude (~/.ssh/config)', () => {
    it('puts marker + Include on top of an empty or existing file, every other byte kept', () => {
      assert.deepEqual(mergeInclude('', INC), {text: top, changed: true})
      const mine = 'Host *\n  ServerAliveInterval 30\n'
      assert.equal(mergeInclude(mine, INC).text, top + mine)
      const crlf = 'Host a\r\n  User x\r\n'
      assert.equal(mergeInclude(crlf, INC).text, `${INCLUDE_MARKER}\r\nInclude ${INC}\r\n${crlf}`)
    })

    it("is idempotent, also after the person's own top-level lines", () => {
      const once = mergeInclude('Host *\n  User b\n', INC).text
      assert.deepEqual(mergeInclude(once, INC), {text: once, changed: false})
      const theirs = `ServerAliveInterval 30\nInclude "${INC}"\nHost x\n`
      assert.equal(mergeInclude(theirs, INC).changed, false)
    })

    it('moves an Include that sits inside a Host/Match block (it would apply to those hosts only) and drops duplicates', () => {
      const inside = `Host web\n  User w\nInclude ${INC}\n`
      assert.equal(mergeInclude(inside, INC).text, `${top}Host web\n  User w\n`)
      const twice = `${top}${top}Host x\n`
      assert.equal(mergeInclude(twice, INC).text, `${top}Host x\n`)
    })

    it('quotes a path with spaces; refuses a quote or newline', () => {
      assert.equal(includeLine('/home/a b/.sshca/ssh_config'), 'Include "/home/a b/.sshca/ssh_config"')
      assert.equal(configArg('/plain/path'), '/plain/path')
      throwsCode(() => configArg('/x"y'), 'ERR_INPUT')
      throwsCode(() => configArg('/x\ny'), 'ERR_INPUT')
    })
  })

  describe('the per-context block', () => {
    const base = {
      context: 'prod',
      pattern: '*.example.com',
      krlFile: '/h/.sshca/contexts/prod/revoked_host_keys.krl',
      matchFinal: true,
    }

    it('Match final host <pattern> + RevokedHostKeys; UserKnownHostsFile only for a non-default known_hosts', () => {
      const lines = sshConfigBlockLines(base)
      assert.equal(lines[1], 'Match final host *.example.com')
      assert.ok(lines.includes('  RevokedHostKeys /h/.sshca/contexts/prod/revoked_host_keys.krl'))
      assert.ok(!lines.some((l) => l.includes('UserKnownHostsFile')))
      const custom = sshConfigBlockLines({...base, knownHostsFile: '/h/kh', matchFinal: false})
      assert.equal(custom[1], 'Match host *.example.com')
      assert.ok(custom.includes('  UserKnownHostsFile /h/kh ~/.ssh/known_hosts ~/.ssh/known_hosts2'))
    })

    it('without a KRL: no RevokedHostKeys (ssh would refuse every host for a missing file), a comment why', () => {
      const lines = sshConfigBlockLines({
        ...base,
        krlFile: null,
        krlNote: 'the CA "prod" publishes no revocation list (GET /ssh/krl answered 404)',
      })
      assert.ok(!lines.some((l) => /^\s*RevokedHostKeys/.test(l)))
      assert.ok(lines.some((l) => l.startsWith('  # no RevokedHostKeys: the CA "prod" publishes no revocation list')))
    })

    it('the attack: a note or a login command that would start a line of its own (a ProxyCommand) never does', () => {
      const note = 'no list\nProxyCommand sh -c "id > /tmp/owned"\r\nHost *'
      const lines = sshConfigBlockLines({...base, krlFile: null, krlNote: note})
      assert.ok(
        lines.every((l) => !/^\s*(ProxyCommand|Host)\b/.test(l)),
        lines.join('\n'),
      )
      assert.equal(lines.filter((l) => l.includes('ProxyCommand')).length, 1, 'it stays inside the comment')
      for (const cmd of [
        'sshca login --ensure"; touch /tmp/owned; "',
        'sshca login\nProxyCommand x',
        'sshca\rlogin',
        'sshca\0login',
      ])
        assert.throws(() => sshConfigBlockLines({...base, loginCommand: cmd}), TypeError, JSON.stringify(cmd))
      assert.ok(
        sshConfigBlockLines({...base, loginCommand: 'sshca login --ensure'}).some((l) =>
          l.endsWith('exec "sshca login --ensure"'),
        ),
      )
    })

    it("replaces its own block in place and keeps the other contexts' blocks", () => {
      const a = mergeSshConfig('', base)
      const b = mergeSshConfig(a.text, {...base, context: 'staging', pattern: '*.staging.example.net'})
      const a2 = mergeSshConfig(b.text, {...base, pattern: '*.prod.example.com'})
      assert.equal(a2.text.split('# >>> sshca prod').length, 2)
      assert.ok(a2.text.includes('Match final host *.prod.example.com'))
      assert.ok(a2.text.includes('Match final host *.staging.example.net'))
      assert.ok(a2.text.indexOf('>>> sshca prod') < a2.text.indexOf('>>> sshca staging'), 'replaced in place')
      assert.equal(mergeSshConfig(a2.text, {...base, pattern: '*.prod.example.com'}).changed, false)
    })

    it('Match final from OpenSSH 8.0 on; an unknown ssh is assumed current', () => {
      assert.equal(supportsMatchFinal({major: 7, minor: 9}), false)
      assert.equal(supportsMatchFinal({major: 8, minor: 0}), true)
      assert.equal(supportsMatchFinal(undefined), true)
    })
  })

  describe('logging in when ssh needs it (Match exec)', () => {
    const base = {
      context: 'prod',
      pattern: '*.example.com',
      krlFile: '/h/.sshca/contexts/prod/revoked_host_keys.krl',
      matchFinal: true,
    }
    const files = {key: '/h/.sshca/contexts/prod/id_sshca', certificate: '/h/.sshca/contexts/prod/id_sshca-cert.pub'}

    it('a second section with the exec: the revocation section has none, so a failed login never turns RevokedHostKeys off', () => {
      const lines = sshConfigBlockLines({
        ...base,
        loginCommand: '/usr/bin/node /opt/sshca/bin/run.js login --ensure --quiet --context prod',
        identityFiles: files,
      })
      const execAt = lines.findIndex((l) =>
        l.startsWith(
          'Match final host *.example.com exec "/usr/bin/node /opt/sshca/bin/run.js login --ensure --quiet --context prod"',
        ),
      )
      assert.ok(execAt > lines.findIndex((l) => l.includes('RevokedHostKeys')))
      assert.equal(lines.filter((l) => l.startsWith('Match ')).length, 2)
      assert.ok(lines.slice(execAt).includes(`  IdentityFile ${files.key}`))
      assert.ok(lines.slice(execAt).includes(`  CertificateFile ${files.certificate}`))
      assert.equal(
        sshConfigBlockLines({...base, loginCommand: 'x', matchFinal: false}).find((l) => l.includes(' exec ')),
        'Match host *.example.com exec "x"',
      )
    })

    it('without automatic login: one section, and the files (when given) in it', () => {
      const lines = sshConfigBlockLines({...base, loginCommand: null, identityFiles: files})
      assert.equal(lines.filter((l) => l.startsWith('Match ')).length, 1)
      assert.ok(lines.includes(`  CertificateFile ${files.certificate}`))
    })

    it('the command: real paths, the home only when not the default, % doubled for ssh, spaces single-quoted', () => {
      assert.equal(
        ensureCommand({
          command: ['/usr/bin/node', '/opt/sshca/bin/run.js'],
          home: '/home/a/.sshca',
          defaultHome: '/home/a/.sshca',
          context: 'prod',
        }),
        '/usr/bin/node /opt/sshca/bin/run.js login --ensure --quiet --context prod',
      )
      assert.equal(
        ensureCommand({
          command: ['/usr/bin/node', '/Users/John Smith/sshca/run.js'],
          home: '/tmp/h%1',
          defaultHome: '/home/a/.sshca',
          context: 'lab',
          identityTokenFile: '/run/tok',
        }),
        "env SSHCA_HOME=/tmp/h%%1 /usr/bin/node '/Users/John Smith/sshca/run.js' login --ensure --quiet --context lab --identity-token-file /run/tok",
      )
    })

    it('refuses what neither ssh_config nor the shell would carry plainly: quotes, backslashes, $, backquotes, newlines', () => {
      for (const bad of ['/a"b', "/a'b", '/a\\b', '/a$HOME', '/a`id`', '/a\nb', ''])
        throwsCode(() => execWord(bad), 'ERR_UNSAFE_PATH')
    })

    it("a context's block is found and removed, the others kept byte for byte", () => {
      const a = mergeSshConfig('', base).text
      const both = mergeSshConfig(a, {...base, context: 'lab', pattern: '*.lab'}).text
      assert.ok(hasSshConfigBlock(both, 'prod') && hasSshConfigBlock(both, 'lab'))
      const gone = removeSshConfigBlock(both, 'prod')
      assert.equal(gone.changed, true)
      assert.ok(!hasSshConfigBlock(gone.text, 'prod') && hasSshConfigBlock(gone.text, 'lab'))
      assert.equal(
        gone.text,
        mergeSshConfig(mergeSshConfig('', {...base, context: 'lab', pattern: '*.lab'}).text, base).text.replace(
          /# >>> sshca prod[\s\S]*# <<< sshca prod\n/,
          '',
        ),
      )
      assert.deepEqual(removeSshConfigBlock(gone.text, 'prod'), {text: gone.text, changed: false})
    })
  })
})
