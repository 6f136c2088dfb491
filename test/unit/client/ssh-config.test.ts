import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {
  configArg,
  configWord,
  enableRevokedHostKeys,
  ensureCommand,
  execWord,
  hasSshConfigBlock,
  INCLUDE_MARKER,
  includeLine,
  localSshVersion,
  managedSshConfigPath,
  mergeInclude,
  mergeSshConfig,
  removeSshConfigBlock,
  revokedHostKeysOf,
  shadowingRevokedHostKeys,
  sshConfigBlock,
  sshConfigBlockLines,
  sshConfigInstalled,
  supportsMatchFinal,
} from '../../../src/client/local/ssh-config.ts'
import {withSettingsLock} from '../../../src/client/home/settings-lock.ts'
import {readContext, saveContext} from '../../../src/client/home/home.ts'
import {throwsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

const INC = '/home/a/.sshca/ssh_config'
const ctxSettings = {
  name: 'prod',
  caUrl: 'https://ca.example.com',
  rootFingerprint: 'ab'.repeat(32),
  userCaKeys: [],
  hostCaKeys: [],
  hostPattern: '*.example.com',
  bootstrappedAt: '2026-11-27T00:00:00.000Z',
}
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

    it("quotes a path with a ' (ssh would open a quote); refuses the backslashes ssh 8.7+ reads as escapes", () => {
      assert.equal(configArg("/home/o'brien/.sshca/k"), `"/home/o'brien/.sshca/k"`)
      assert.equal(configWord(configArg("/home/o'brien/.sshca/k")), "/home/o'brien/.sshca/k")
      // a backslash before anything else is read as it is, by old and new ssh alike (Windows paths)
      assert.equal(configArg('C:\\Users\\me\\k'), 'C:\\Users\\me\\k')
      assert.equal(configWord(configArg('C:\\Users\\me\\k')), 'C:\\Users\\me\\k')
      for (const bad of ['/a\\\\b', "/a\\'b", '/a\\ b', '/a\\']) throwsCode(() => configArg(bad), 'ERR_INPUT')
      // what ssh expands in IdentityFile, CertificateFile and UserKnownHostsFile: %h, ${HOME}
      for (const bad of ['/srv/100%/sshca', '/srv/${HOME}/sshca']) throwsCode(() => configArg(bad), 'ERR_INPUT')
      assert.equal(configArg('/srv/$x/sshca'), '/srv/$x/sshca')
      // an Include is a pattern to ssh
      for (const bad of ['/h/g[1]/ssh_config', '/h/*/ssh_config', '/h/?/ssh_config'])
        throwsCode(() => includeLine(bad), 'ERR_INPUT')
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

describe('the managed ssh_config: the bytes written, the Include reader, ssh -V, whether ssh reads the block', () => {
  const KRL = '/h/.sshca/contexts/prod/revoked_host_keys.krl'
  const full = {
    context: 'prod',
    pattern: '*.example.com',
    krlFile: KRL,
    knownHostsFile: '/h/kh',
    matchFinal: true,
    loginCommand: '/usr/bin/sshca login --ensure --quiet --context prod',
    identityFiles: {key: '/h/k', certificate: '/h/k-cert.pub'},
  }
  const BEGIN = '# >>> sshca prod (managed by `sshca config`; changes inside this block are replaced)'

  it('a new managed file: the header that says what it is, then the block, byte for byte', () => {
    const block = [
      BEGIN,
      'Match final host *.example.com',
      "  # the CA's revocation list: ssh refuses the host certificates it revoked (refreshed by sshca config and sshca login)",
      '  RevokedHostKeys /h/.sshca/contexts/prod/revoked_host_keys.krl',
      '  # the @cert-authority lines of this context are in a file ssh does not read by default',
      '  UserKnownHostsFile /h/kh ~/.ssh/known_hosts ~/.ssh/known_hosts2',
      'Match final host *.example.com exec "/usr/bin/sshca login --ensure --quiet --context prod"',
      '  # ssh runs this before connecting: it returns at once while a valid certificate of "prod" is at hand, else signs in',
      "  # used when the ssh-agent cannot hold this context's certificate (login then writes these 0600 files)",
      '  IdentityFile /h/k',
      '  CertificateFile /h/k-cert.pub',
      '# <<< sshca prod',
      '',
    ].join('\n')
    const header = [
      "# sshca's ssh_config (written by `sshca config`; included from ~/.ssh/config): one block per context,",
      '# each replaced in place. ssh keeps the first value it reads for a setting, and these are `Match final`',
      "# sections, read in ssh's last pass: a Host or Match section elsewhere that sets the same comes first",
      '# (sshca config warns of a RevokedHostKeys). Put your own settings in ~/.ssh/config, not here.',
      '',
    ].join('\n')
    assert.deepEqual(mergeSshConfig('', full), {text: header + block, changed: true, block})
    // an existing file gets no second header
    assert.equal(mergeSshConfig('# mine\n', full).text, `# mine\n${block}`)
  })

  it('without login or files: nothing after the first section; a note loses its line breaks, each run one space', () => {
    assert.deepEqual(
      sshConfigBlockLines({...full, krlFile: null, krlNote: 'a\r\nb\n\nc', identityFiles: null, loginCommand: null}),
      [
        BEGIN,
        'Match final host *.example.com',
        '  # no RevokedHostKeys: a b c',
        '  # the @cert-authority lines of this context are in a file ssh does not read by default',
        '  UserKnownHostsFile /h/kh ~/.ssh/known_hosts ~/.ssh/known_hosts2',
        '# <<< sshca prod',
      ],
    )
    assert.equal(
      sshConfigBlockLines({...full, krlFile: null, knownHostsFile: undefined, loginCommand: null})[2],
      '  # no RevokedHostKeys: the CA publishes no revocation list',
    )
  })

  it('the names an earlier sshca wrote stay the same: $SSHCA_HOME/ssh_config and the Include marker', () => {
    assert.equal(managedSshConfigPath('/home/a/.sshca'), '/home/a/.sshca/ssh_config')
    assert.equal(
      mergeInclude('', INC).text,
      `# Added by \`sshca config\`: its per-context settings (RevokedHostKeys …); keep this line first.\nInclude ${INC}\n`,
    )
  })

  describe('mergeInclude: which lines count as our Include', () => {
    const unchanged = (text: string) => assert.deepEqual(mergeInclude(text, INC), {text, changed: false}, text)
    const added = (text: string) => assert.equal(mergeInclude(text, INC).text, `${top}${text}`, text)

    it('ssh_config spellings of the same Include: "=", spaces around it, several blanks, quotes, any case', () => {
      for (const line of [
        `Include=${INC}`,
        `Include = ${INC}`,
        `Include =${INC}`,
        `Include= ${INC}`,
        `Include  ${INC}`,
        `\tinclude\t"${INC}"  `,
        `INCLUDE ${INC}`,
      ])
        unchanged(`${line}\nUser x\nHost y\n`)
    })

    it('not ours: a comment, another file, another keyword naming the file, a half-quoted path', () => {
      added(`#Include ${INC}\nHost y\n`)
      added(`# Include ${INC}\n`)
      added('Include ~/.ssh/other\n')
      added(`CertificateFile ${INC}\n`)
      added(`Include x${INC}"\n`)
      added(`Include "${INC}x\n`)
    })

    it('an Include after a Match section (not only Host) is moved on top; blank lines and comments are kept', () => {
      assert.equal(mergeInclude(`Match all\nInclude ${INC}\n`, INC).text, `${top}Match all\n`)
      const mine = `\n# my settings\n\nHost *\n  User me`
      assert.deepEqual(mergeInclude(mine, INC), {text: top + mine, changed: true})
      // a last line without a newline is kept whole
      assert.equal(mergeInclude('Host x\n  User bob', INC).text, `${top}Host x\n  User bob`)
    })
  })

  describe('ssh -V (a stand-in ssh first on PATH)', () => {
    let dir: string
    let savedPath: string | undefined
    const version = (stdout: string, stderr: string) => {
      writeFileSync(join(dir, 'out'), stdout)
      writeFileSync(join(dir, 'err'), stderr)
    }
    beforeEach(() => {
      dir = tempDir()
      // answers only `ssh -V`, as ssh does
      writeFileSync(
        join(dir, 'ssh'),
        `#!/bin/sh\n[ "$#" = 1 ] && [ "$1" = -V ] || exit 255\ncat "${dir}/out"\ncat "${dir}/err" >&2\n`,
        {mode: 0o755},
      )
      savedPath = process.env.PATH
      process.env.PATH = `${dir}:${savedPath}`
    })
    afterEach(() => {
      process.env.PATH = savedPath
    })

    it('reads the version ssh prints on stderr (or stdout), Windows builds too, numbers of any width', () => {
      version('', 'OpenSSH_9.6p1 Ubuntu-3ubuntu13.5, OpenSSL 3.0.13 30 Jan 2024\n')
      assert.deepEqual(localSshVersion(), {major: 9, minor: 6})
      version('', 'OpenSSH_10.12p2 Debian-5, OpenSSL 3.5.1 1 Jul 2025\n')
      assert.deepEqual(localSshVersion(), {major: 10, minor: 12})
      version('OpenSSH_for_Windows_8.1p1, LibreSSL 3.0.2\n', '')
      assert.deepEqual(localSshVersion(), {major: 8, minor: 1})
      version('', 'OpenSSH_7.4p1, OpenSSL 1.0.2k-fips  26 Jan 2017\n')
      assert.equal(supportsMatchFinal(localSshVersion()), false)
    })

    it('no version when ssh says something else, or there is no ssh', () => {
      version('', 'Dropbear v2022.83\n')
      assert.equal(localSshVersion(), undefined)
      process.env.PATH = tempDir()
      assert.equal(localSshVersion(), undefined)
    })
  })

  describe('the RevokedHostKeys a block names (what status checks)', () => {
    it('configWord reads the first word as ssh 8.7+ does', () => {
      const cases: [string, string | null][] = [
        ['   /a b', '/a'],
        ['', null],
        ['   ', null],
        ['#x', null],
        ['  # x', null],
        ['a#', 'a#'],
        ['a\tb', 'a'],
        ['a\\', 'a\\'],
        ['a\\"b', 'a"b'],
        ["a\\'b", "a'b"],
        ['a\\\\b', 'a\\b'],
        ['a\\ b', 'a b'],
        ['a\\qb', 'a\\qb'],
        ['"a\\ b"', 'a\\ b'],
        ['"a b"c', 'a bc'],
        ["'a \"b'", 'a "b'],
        ['"open', null],
      ]
      for (const [input, word] of cases) assert.equal(configWord(input), word, JSON.stringify(input))
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys = /k']), '/k')
    })

    it("the block's own lines only, the first RevokedHostKeys in any spelling ssh accepts, null when it names none", () => {
      const text = mergeSshConfig(mergeSshConfig('', {...full, context: 'lab', krlFile: '/lab.krl'}).text, {
        ...full,
        krlFile: null,
      }).text
      assert.equal(revokedHostKeysOf(sshConfigBlock(text, 'prod')!), null, "the next block's line is not this one's")
      assert.equal(revokedHostKeysOf(sshConfigBlock(text, 'lab')!), '/lab.krl')
      assert.equal(sshConfigBlock(text, 'staging'), undefined)
      const lines = sshConfigBlock(mergeSshConfig('', full).text, 'prod')!
      assert.equal(lines[0], 'Match final host *.example.com')
      assert.ok(!lines.some((l) => l.startsWith('# ')), 'without its markers')
      assert.equal(revokedHostKeysOf(['  revokedhostkeys="/a b/k.krl"', '  RevokedHostKeys /second']), '/a b/k.krl')
      assert.equal(revokedHostKeysOf(['  # RevokedHostKeys /commented']), null)
      // as ssh -G reads them: single quotes, a comment after the word, none, an escaped space
      assert.equal(revokedHostKeysOf(["  RevokedHostKeys '/k/krl'"]), '/k/krl')
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys /k/krl # refreshed by login']), '/k/krl')
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys none']), null)
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys NONE']), null)
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys /a\\ b/k']), '/a b/k')
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys "/a b/k"x']), '/a b/kx')
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys "/open']), null, 'an open quote is no word')
      assert.equal(revokedHostKeysOf(['  RevokedHostKeys']), null)
      // a block cut short (its end marker lost) ends where the next block begins, else at the end of the file
      const cut = mergeSshConfig('', {...full, context: 'lab', krlFile: '/lab.krl'}).text
      assert.equal(revokedHostKeysOf(sshConfigBlock(`${BEGIN}\nMatch host x\n${cut}`, 'prod')!), null)
      assert.deepEqual(sshConfigBlock(`${BEGIN}\nMatch host x\n  RevokedHostKeys /k\n`, 'prod'), [
        'Match host x',
        '  RevokedHostKeys /k',
        '',
      ])
    })
  })

  describe('login adding the revocation list to a block (enableRevokedHostKeys)', () => {
    let home: string
    let dir: string
    let krl: string
    const file = () => join(home, 'ssh_config')
    beforeEach(async () => {
      home = tempDir()
      dir = join(home, 'contexts', 'prod')
      mkdirSync(dir, {recursive: true, mode: 0o700})
      writeFileSync(join(dir, 'root_ca.crt'), 'ROOT PEM')
      krl = join(dir, 'revoked_host_keys.krl')
      const sshConfig = {pattern: '*.example.com', krlFile: null, matchFinal: true, loginCommand: null}
      await saveContext({...ctxSettings, sshConfig, rootPem: 'ROOT PEM', dir})
      writeFileSync(file(), mergeSshConfig('', {context: 'prod', ...sshConfig}).text)
    })
    const ctx = async () => (await readContext(home, 'prod'))!

    it('names the list once it is on disk, in the block and the saved settings; never a missing file', async () => {
      assert.equal(await enableRevokedHostKeys(home, await ctx(), krl), null, 'no file yet')
      assert.equal(revokedHostKeysOf(sshConfigBlock(readFileSync(file(), 'utf8'), 'prod')!), null)
      writeFileSync(krl, 'KRL')
      assert.equal(await enableRevokedHostKeys(home, await ctx(), krl), file())
      assert.equal(revokedHostKeysOf(sshConfigBlock(readFileSync(file(), 'utf8'), 'prod')!), krl)
      assert.equal((await ctx()).sshConfig?.krlFile, krl)
      assert.equal(await enableRevokedHostKeys(home, await ctx(), krl), null, 'already named')
    })

    it('waits for the ssh_config lock and reads again: a block removed meanwhile (context remove) stays removed', async () => {
      writeFileSync(krl, 'KRL')
      const c = await ctx()
      let enabled: Promise<string | null> | undefined
      await withSettingsLock(home, async () => {
        enabled = enableRevokedHostKeys(home, c, krl)
        await new Promise((r) => setTimeout(r, 150))
        writeFileSync(file(), removeSshConfigBlock(readFileSync(file(), 'utf8'), 'prod').text)
      })
      assert.equal(await enabled, null)
      assert.equal(hasSshConfigBlock(readFileSync(file(), 'utf8'), 'prod'), false, 'not written back')
    })

    it('nothing when the context is gone or was never configured', async () => {
      writeFileSync(krl, 'KRL')
      const c = await ctx()
      await saveContext({...c, sshConfig: undefined})
      assert.equal(await enableRevokedHostKeys(home, c, krl), null)
      rmSync(join(dir, 'context.json'))
      assert.equal(await enableRevokedHostKeys(home, c, krl), null)
      assert.equal(revokedHostKeysOf(sshConfigBlock(readFileSync(file(), 'utf8'), 'prod')!), null)
    })
  })

  describe('sshConfigInstalled', () => {
    let home: string
    let sshDir: string
    beforeEach(() => {
      const base = tempDir()
      home = join(base, 'sshca')
      sshDir = join(base, '.ssh')
      mkdirSync(home, {mode: 0o700})
      mkdirSync(sshDir, {mode: 0o700})
    })

    it('the block in the managed file and the Include on top of ~/.ssh/config, each on its own', async () => {
      const file = join(home, 'ssh_config')
      const userConfig = join(sshDir, 'config')
      const none = {block: false, include: false, file, userConfig, revokedHostKeys: null}
      assert.deepEqual(await sshConfigInstalled(home, 'prod', sshDir), none)
      writeFileSync(file, mergeSshConfig('', {...full, loginCommand: null}).text)
      assert.deepEqual(await sshConfigInstalled(home, 'prod', sshDir), {...none, block: true, revokedHostKeys: KRL})
      assert.equal((await sshConfigInstalled(home, 'staging', sshDir)).block, false)
      writeFileSync(userConfig, '')
      assert.equal((await sshConfigInstalled(home, 'prod', sshDir)).include, false)
      writeFileSync(userConfig, `Host web\nInclude ${file}\n`)
      assert.equal((await sshConfigInstalled(home, 'prod', sshDir)).include, false, 'inside a Host section')
      writeFileSync(userConfig, mergeInclude('Host web\n', file).text)
      assert.deepEqual(await sshConfigInstalled(home, 'prod', sshDir), {
        block: true,
        include: true,
        file,
        userConfig,
        revokedHostKeys: KRL,
      })
    })

    it('~/.ssh by default, found through $HOME (a made-up one here)', async () => {
      const fakeHome = dirname(sshDir)
      const saved = process.env.HOME
      process.env.HOME = fakeHome
      try {
        const file = join(home, 'ssh_config')
        writeFileSync(join(sshDir, 'config'), mergeInclude('', file).text)
        assert.deepEqual(await sshConfigInstalled(home, 'prod'), {
          block: false,
          revokedHostKeys: null,
          include: true,
          file,
          userConfig: join(fakeHome, '.ssh', 'config'),
        })
      } finally {
        process.env.HOME = saved
      }
    })
  })

  describe("shadowingRevokedHostKeys: a RevokedHostKeys that ssh reads before sshca's Match final block", () => {
    it("reports every one outside a Match final section, following Include lines, sshca's own file aside", async () => {
      const home = tempDir('sshca-shadow-')
      const sshDir = join(home, '.ssh')
      const managed = join(home, '.sshca', 'ssh_config')
      mkdirSync(join(sshDir, 'conf.d'), {recursive: true})
      mkdirSync(dirname(managed), {recursive: true})
      mkdirSync(join(home, 'etc', 'ssh_config.d'), {recursive: true})
      const userConfig = join(sshDir, 'config')
      writeFileSync(
        userConfig,
        [
          `Include ${managed}`,
          'RevokedHostKeys /top/level',
          'Host web',
          '  HostName 10.0.0.1',
          'Include conf.d/*.conf ~/.ssh/config',
          'Match final host *',
          '  RevokedHostKeys /read/after/sshca',
          'Match user alice',
          '  revokedhostkeys=/any/section',
          '',
        ].join('\n'),
      )
      // sshca's own block names the CA's list: never its own shadow
      writeFileSync(managed, 'Match final host *.example.com\n  RevokedHostKeys /the/ca.krl\n')
      writeFileSync(join(sshDir, 'conf.d', 'b.conf'), 'Host *\n  RevokedHostKeys "/in b"\n')
      writeFileSync(join(sshDir, 'conf.d', 'a.conf'), '# nothing\n')
      writeFileSync(join(sshDir, 'conf.d', 'c.txt'), 'RevokedHostKeys /not/included\n')
      const system = join(home, 'etc', 'ssh_config')
      writeFileSync(system, 'Include ssh_config.d/*.conf\nHost *\n  SendEnv LANG\n')
      writeFileSync(
        join(home, 'etc', 'ssh_config.d', 'corp.conf'),
        // a Match canonical section is read in ssh's last pass, after sshca's block: not reported
        'Match canonical all\n  RevokedHostKeys /corp.krl\nMatch all\n  RevokedHostKeys /corp2.krl\n',
      )
      const found = await shadowingRevokedHostKeys({userConfig, sshDir, managedFile: managed, systemConfig: system})
      assert.deepEqual(found, [
        {file: userConfig, line: 2, section: null},
        {file: join(sshDir, 'conf.d', 'b.conf'), line: 2, section: 'Host *'},
        {file: userConfig, line: 9, section: 'Match user alice'},
        {file: join(home, 'etc', 'ssh_config.d', 'corp.conf'), line: 4, section: 'Match all'},
      ])
      // nothing to report: no file, or only Match final sections
      writeFileSync(userConfig, 'Match final host *\n  RevokedHostKeys /x\n')
      assert.deepEqual(
        await shadowingRevokedHostKeys({userConfig, sshDir, managedFile: managed, systemConfig: join(home, 'none')}),
        [],
      )
    })

    it("reports a line exactly when the real ssh (ssh -G) takes its RevokedHostKeys over the CA's: Include as ssh reads it, Match final above sshca's Include, quotes, globs", async function () {
      if (spawnSync('ssh', ['-V']).status !== 0) this.skip()
      const home = tempDir('sshca-shadow-ssh-')
      const sshDir = join(home, '.ssh')
      const managed = join(home, 'sshca', 'ssh_config')
      const d = join(home, 'd')
      mkdirSync(join(d, 'sub'), {recursive: true})
      mkdirSync(join(d, 'sp ace'), {recursive: true})
      mkdirSync(sshDir, {recursive: true})
      mkdirSync(dirname(managed), {recursive: true})
      writeFileSync(managed, 'Match final host *.example.com\n  RevokedHostKeys /the/ca.krl\n')
      const ours = `Include ${managed}`
      const put = (name: string, text: string): string => {
        writeFileSync(join(d, name), text)
        return join(d, name)
      }
      const hostStar = (krl: string) => `Host *\n  RevokedHostKeys ${krl}\n`
      put('sub/c', hostStar('/dirglob.krl'))
      put('sp ace/x.conf', hostStar('/space.krl'))
      put('b.x', 'Match host *\n  RevokedHostKeys /bracket.krl\n')
      put('final.conf', 'Match final host *\n  RevokedHostKeys /user-final.krl\n')
      put('top.conf', 'RevokedHostKeys /top.krl\nHost *\n  RevokedHostKeys /top2.krl\n')
      const cases: Record<string, string> = {
        // ssh: shadows
        "a Match final section in a file included above sshca's Include": `Include ${d}/final.conf\n${ours}\n`,
        'a quoted keyword': `${ours}\nHost *\n  "RevokedHostKeys" /quoted.krl\n`,
        'a [...] glob': `${ours}\nInclude ${d}/[b].x\n`,
        'a glob in a directory part': `${ours}\nInclude ${d}/s*/c\n`,
        'a quoted path with a space': `${ours}\nInclude "${d}/sp ace/x.conf"\n`,
        'two quoted paths': `${ours}\nInclude "${d}/none" "${d}/sub/c"\n`,
        '`host final` is a host pattern, not the final criterion': `${ours}\nMatch host *,final\n  RevokedHostKeys /hostfinal.krl\n`,
        'a Host section': `${ours}\nHost *\n  RevokedHostKeys /host.krl\n`,
        // ssh: sshca's list wins
        'a Match canonical section below': `${ours}\nMatch canonical all\n  RevokedHostKeys /canon.krl\n`,
        'a Match final section below': `${ours}\nMatch final host *\n  RevokedHostKeys /final.krl\n`,
        'a file included from a Match final section': `${ours}\nMatch final host *\n  Include ${d}/top.conf\n`,
      }
      const problems: string[] = []
      for (const [name, text] of Object.entries(cases)) {
        const userConfig = join(sshDir, 'config')
        writeFileSync(userConfig, text)
        const g = spawnSync('ssh', ['-G', '-F', userConfig, 'web.example.com'], {encoding: 'utf8'})
        assert.equal(g.status, 0, `${name}: ${g.stderr}`)
        const sshTakes = /^revokedhostkeys (.*)$/m.exec(g.stdout)?.[1]
        const found = await shadowingRevokedHostKeys({
          userConfig,
          sshDir,
          managedFile: managed,
          systemConfig: join(home, 'none'),
        })
        if ((sshTakes !== '/the/ca.krl') !== found.length > 0)
          problems.push(`${name}: ssh takes ${sshTakes}, the scan reports ${JSON.stringify(found)}`)
      }
      assert.deepEqual(problems, [])
    })

    it('reads no FIFO or device an Include names (it would block, or never end), and with a `Match host` block (ssh before 8.0) only what comes before its Include', async () => {
      const home = tempDir('sshca-shadow-fifo-')
      const sshDir = join(home, '.ssh')
      const managed = join(home, 'sshca', 'ssh_config')
      mkdirSync(sshDir, {recursive: true})
      mkdirSync(dirname(managed), {recursive: true})
      const fifo = join(home, 'fifo')
      assert.equal(spawnSync('mkfifo', [fifo]).status, 0)
      const userConfig = join(sshDir, 'config')
      writeFileSync(
        userConfig,
        `RevokedHostKeys /before.krl\nInclude ${managed}\nInclude ${fifo} /dev/zero\nHost *\n  RevokedHostKeys /after.krl\n`,
      )
      const found = await shadowingRevokedHostKeys({
        userConfig,
        sshDir,
        managedFile: managed,
        systemConfig: join(home, 'none'),
        matchFinal: false,
      })
      assert.deepEqual(found, [{file: userConfig, line: 1, section: null}])
    })
  })
})
