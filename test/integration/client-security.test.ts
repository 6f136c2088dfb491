/**
 * The client-side attacks of issue 8, performed for real against the CLI as processes, a real CA over
 * HTTPS, OpenSSH's ssh and sshd, and ssh-keygen: each test does what an attacker (or an unlucky
 * setup) does and asserts the refusal.
 *   item 1   the enrollment token read from /proc/PID/cmdline by another local user
 *   item 3   a revoked host certificate still accepted by ssh (no KRL on the client)
 *   item 5   root's renewal units running user-writable code; a failed renewal stopping the KRL
 *   item 11  a CA becoming a host CA for every host (`@cert-authority *`)
 *   item 17  --out through a planted symlink; a home another user can change (the loopback
 *            listener's wrong state is in client-login.test.ts, near its neighbours)
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {createServer, type Server} from 'node:https'
import {join} from 'node:path'
import {request} from 'undici'
import {startTestCa, type TestCa} from '../helpers/ca.ts'
import {BIN, ROOT, sshca} from '../helpers/cli.ts'
import {currentUser, startSshd, type Sshd} from '../helpers/openssh.ts'
import {run, runOk} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

const isRoot = process.getuid?.() === 0
const NOBODY = 65534

describe('client hardening (issue 8): the attacks, refused', function () {
  this.timeout(180_000)
  let w: World
  const ca = () => ['--config', w.t.init.config]

  before(async () => {
    w = await startWorld()
    await w.bootstrap()
  })
  after(async () => w?.stop())

  /** A one-time enrollment token for `host` from the real `ca token`. */
  async function enrollmentToken(host: string): Promise<string> {
    const r = await sshca(['ca', 'token', '--host', host, ...ca(), '--password-file', w.t.passwordFile])
    assert.equal(r.code, 0, r.stderr)
    return r.stdout.trim().split('\n').pop()!
  }

  async function hostKey(): Promise<string> {
    const key = join(tempDir('sshca-hostkey-'), 'ssh_host_ed25519_key')
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'host', '-f', key])
    return key
  }

  /** A 0600 file holding `text`. */
  function secretFile(text: string): string {
    const f = join(tempDir('sshca-secret-'), 'token')
    writeFileSync(f, `${text}\n`, {mode: 0o600})
    return f
  }

  describe('item 1: the enrollment token is not on the command line', () => {
    /**
     * Runs `sshca certificate --host --sign …` while a second process (user nobody when the tests run
     * as root: another local user) reads /proc/PID/cmdline in a loop, as `ps` would; returns what it saw.
     * The watcher is already looping when it learns the pid, so it reads the command line before the
     * CLI can finish.
     */
    async function watched(
      args: string[],
      env: NodeJS.ProcessEnv,
      input?: string,
    ): Promise<{code: number | null; stderr: string; cmdlines: string[]; environ: string}> {
      const script = `
        const fs = require('node:fs')
        let pid = ''
        process.stdin.on('data', (d) => (pid += d))
        process.stdin.on('end', () => {
          const seen = new Set()
          let environ = 'not tried'
          const sleep = new Int32Array(new SharedArrayBuffer(4))
          for (const end = Date.now() + 90000; Date.now() < end; Atomics.wait(sleep, 0, 0, 1)) {
            let c
            try { c = fs.readFileSync('/proc/' + pid.trim() + '/cmdline', 'latin1') } catch { break }
            if (c === '') break
            seen.add(c)
            if (environ === 'not tried' && c.includes('certificate')) {
              try { fs.readFileSync('/proc/' + pid.trim() + '/environ'); environ = 'readable' } catch (e) { environ = e.code }
            }
          }
          process.stdout.write(JSON.stringify({cmdlines: [...seen], environ}))
        })`
      // The watcher runs as another user, who cannot write c8's coverage files: it gets no coverage.
      // Empty, not left out: child_process puts a missing NODE_V8_COVERAGE back from this process's
      const watcher = spawn(process.execPath, ['-e', script], {
        env: {...process.env, NODE_V8_COVERAGE: ''},
        stdio: ['pipe', 'pipe', 'inherit'],
        ...(isRoot ? {uid: NOBODY, gid: NOBODY} : {}),
      })
      let seen = ''
      watcher.stdout!.on('data', (d) => (seen += d))
      const watcherDone = new Promise<void>((r) => watcher.on('close', () => r()))
      const cli = spawn(process.execPath, [BIN, ...args], {
        env: {...process.env, NO_COLOR: '1', ...env},
        stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
        cwd: ROOT,
      })
      watcher.stdin!.end(String(cli.pid))
      let stderr = ''
      cli.stderr!.on('data', (d) => (stderr += d))
      cli.stdout!.resume()
      if (input !== undefined) cli.stdin!.end(input)
      const code = await new Promise<number | null>((r) => cli.on('close', (c) => r(c)))
      await watcherDone
      const got = JSON.parse(seen) as {cmdlines: string[]; environ: string}
      return {code, stderr, cmdlines: got.cmdlines.map((c) => c.split('\0').join(' ')), environ: got.environ}
    }

    it('--token-file, --token-file - and $SSHCA_TOKEN: another user reading /proc/PID/cmdline finds no token; the host is enrolled', async () => {
      const key = await hostKey()
      const cases: {
        name: string
        args: (t: string) => string[]
        env: (t: string) => NodeJS.ProcessEnv
        input?: (t: string) => string
      }[] = [
        {name: '--token-file FILE', args: (t) => ['--token-file', secretFile(t)], env: () => ({})},
        {name: '--token-file -', args: () => ['--token-file', '-'], env: () => ({}), input: (t) => `${t}\n`},
        {name: '$SSHCA_TOKEN', args: () => [], env: (t) => ({SSHCA_TOKEN: t})},
      ]
      for (const c of cases) {
        const token = await enrollmentToken('argv-safe')
        const mark = w.t.mark()
        const r = await watched(
          ['certificate', '--host', '--sign', ...c.args(token), 'argv-safe', `${key}.pub`],
          {...w.env, ...c.env(token)},
          c.input?.(token),
        )
        assert.equal(r.code, 0, `${c.name}: ${r.stderr}`)
        assert.ok(
          r.cmdlines.some((l) => l.includes('certificate --host --sign')),
          `${c.name}: the watcher saw the running command: ${r.cmdlines.join(' | ')}`,
        )
        for (const l of r.cmdlines)
          assert.ok(!l.includes(token) && !l.includes(token.split('.')[1]!), `${c.name}: token on argv: ${l}`)
        assert.doesNotMatch(r.stderr, /Warning/)
        // the environment (where $SSHCA_TOKEN is) is readable by the same user and root only
        if (isRoot) assert.equal(r.environ, 'EACCES', c.name)
        assert.equal(w.t.since(mark).filter((l) => l.event === 'certificate_issued').length, 1, c.name)
      }
    })

    it('--token still works but warns on stderr; the same watcher does read that token (the attack the other ways defeat)', async () => {
      const key = await hostKey()
      const token = await enrollmentToken('argv-visible')
      const r = await watched(
        ['certificate', '--host', '--sign', '--token', token, 'argv-visible', `${key}.pub`],
        w.env,
      )
      assert.equal(r.code, 0, r.stderr)
      assert.ok(
        r.cmdlines.some((l) => l.includes(token)),
        'another user can read --token from /proc/PID/cmdline',
      )
      assert.match(
        r.stderr,
        /^Warning: --token puts the enrollment token on the command line, where every local user can read it/m,
      )
      assert.match(r.stderr, /--token-file FILE \(mode 0600\), --token-file - \(standard input\) or \$SSHCA_TOKEN/)
    })

    it('$SSHCA_TOKEN set on the command line of the process that starts sshca (sudo VAR=value): the token is readable there, and sshca says so', async () => {
      const key = await hostKey()
      const token = await enrollmentToken('argv-parent')
      // sudo SSHCA_TOKEN="$T" sshca …: sudo keeps the assignment in its own argv while it waits for
      // sshca; a shell that runs sshca and waits (the exit after it keeps it from exec'ing) does the same
      const line = `SSHCA_TOKEN='${token}' '${process.execPath}' '${BIN}' certificate --host --sign argv-parent '${key}.pub'; exit $?`
      const sh = spawn('sh', ['-c', line], {
        env: {...process.env, NO_COLOR: '1', ...w.env},
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: ROOT,
      })
      // what every local user can read while it runs
      const seen = readFileSync(`/proc/${sh.pid}/cmdline`, 'latin1')
      let stderr = ''
      sh.stderr!.on('data', (d) => (stderr += d))
      sh.stdout!.resume()
      const code = await new Promise<number | null>((r) => sh.on('close', (c) => r(c)))
      assert.ok(seen.includes(token), 'the token is on the command line of the process above sshca')
      assert.equal(code, 0, stderr)
      assert.match(
        stderr,
        new RegExp(
          `^Warning: the enrollment token in \\$SSHCA_TOKEN is also on the command line of sh \\(pid ${sh.pid}\\), the process that started sshca: every local user can read it there`,
          'm',
        ),
      )
      assert.match(stderr, /printf %s "\$TOKEN" \| sudo sshca certificate \.\.\. --token-file -/)
    })

    it('refuses a token file others may read and two sources at once, before spending the token', async () => {
      const key = await hostKey()
      const token = await enrollmentToken('argv-refused')
      const loose = secretFile(token)
      chmodSync(loose, 0o644)
      const mark = w.t.mark()
      const r = await sshca(['certificate', '--host', '--sign', '--token-file', loose, 'argv-refused', `${key}.pub`], {
        env: w.env,
      })
      assert.equal(r.code, 2)
      assert.match(
        r.stderr,
        /ERR_FILE_PERMISSIONS\]: .*token holds the enrollment token and other users may read or replace it \(mode 0644\)/,
      )
      const both = await sshca(
        ['certificate', '--host', '--sign', '--token-file', secretFile(token), 'argv-refused', `${key}.pub`],
        {env: {...w.env, SSHCA_TOKEN: token}},
      )
      assert.equal(both.code, 2)
      assert.match(both.stderr, /ERR_USAGE\]: the enrollment token was given 2 ways \(--token-file, \$SSHCA_TOKEN\)/)
      const none = await sshca(['certificate', '--host', '--sign', 'argv-refused', `${key}.pub`], {env: w.env})
      assert.equal(none.code, 2)
      assert.match(none.stderr, /ERR_USAGE\]: no enrollment token given[\s\S]*--token-file/)
      assert.deepEqual(
        w.t.since(mark).filter((l) => l.event === 'certificate_issued' || l.event === 'certificate_denied'),
        [],
        'the CA never saw the token',
      )
    })
  })

  describe('item 3: ssh refuses a host certificate the CA revoked', () => {
    let kh: string
    let userConfig: string
    const servers: Sshd[] = []
    after(async () => {
      for (const s of servers) await s.stop()
    })

    /** A real ssh whose only configuration is the generated ~/.ssh/config (never the real one). */
    function ssh(
      port: number,
      host = '127.0.0.1',
      extra: string[] = [],
    ): Promise<{code: number | null; stdout: string; stderr: string}> {
      return run(
        'ssh',
        [
          '-F',
          userConfig,
          '-p',
          String(port),
          '-o',
          'BatchMode=yes',
          '-o',
          'StrictHostKeyChecking=yes',
          '-o',
          'UpdateHostKeys=no',
          '-o',
          'GlobalKnownHostsFile=/dev/null',
          '-o',
          'HostKeyAlgorithms=ssh-ed25519-cert-v01@openssh.com',
          '-o',
          `IdentityAgent=${w.agent.socket}`,
          '-o',
          'ConnectTimeout=10',
          '-o',
          'LogLevel=ERROR',
          ...extra,
          `${currentUser()}@${host}`,
          'true',
        ],
        {env: {...process.env, SSH_AUTH_SOCK: w.agent.socket}},
      )
    }

    /** A host key enrolled for 127.0.0.1 and a real sshd presenting its certificate. */
    async function enrolledSshd(): Promise<{sshd: Sshd; serial: string}> {
      const key = await hostKey()
      const r = await sshca(
        [
          'certificate',
          '--host',
          '--sign',
          '--token-file',
          secretFile(await enrollmentToken('127.0.0.1')),
          '127.0.0.1',
          `${key}.pub`,
          '--json',
        ],
        {env: w.env},
      )
      assert.equal(r.code, 0, r.stderr)
      const sshd = await startSshd({
        userCaKeys: readFileSync(join(w.t.init.dir, 'ssh', 'ssh_user_ca.pub'), 'utf8')
          .trim()
          .split('\n'),
        hostKey: {privateText: readFileSync(key, 'utf8'), publicLine: readFileSync(`${key}.pub`, 'utf8').trim()},
        hostCertificate: readFileSync(`${key}-cert.pub`, 'utf8').trim(),
      })
      servers.push(sshd)
      return {sshd, serial: JSON.parse(r.stdout).serial}
    }

    // --no-auto-login: these tests are about the revocation list (ssh-auto-login.test.ts has the login exec)
    it("sshca config writes the KRL, sshca's ssh_config block and one Include on top of ~/.ssh/config (backed up, idempotent)", async () => {
      kh = join(tempDir('sshca-kh-'), 'known_hosts')
      mkdirSync(join(w.env.HOME!, '.ssh'), {recursive: true, mode: 0o700})
      userConfig = join(w.env.HOME!, '.ssh', 'config')
      // the person's own config, with an alias whose HostName is one of the CA's hosts
      const mine = 'Host web-alias\n  HostName 127.0.0.1\n'
      writeFileSync(userConfig, mine, {mode: 0o600})
      const r = await sshca(['config', '--pattern', '127.0.0.1', '--known-hosts', kh, '--no-auto-login', '--json'], {
        env: w.env,
      })
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      const krl = join(w.home, 'contexts', 'test', 'revoked_host_keys.krl')
      assert.equal(doc.krl.status, 'refreshed')
      assert.equal(doc.krl.file, krl)
      assert.equal(readFileSync(krl).subarray(0, 8).toString('latin1'), 'SSHKRL\n\0')
      const managed = readFileSync(join(w.home, 'ssh_config'), 'utf8')
      assert.match(
        managed,
        new RegExp(
          `^Match final host 127\\.0\\.0\\.1\\n(  #.*\\n)?  RevokedHostKeys ${krl}\\n(  #.*\\n)?  UserKnownHostsFile ${kh} ~/\\.ssh/known_hosts ~/\\.ssh/known_hosts2$`,
          'm',
        ),
      )
      assert.equal(statSync(join(w.home, 'ssh_config')).mode & 0o777, 0o600)
      const cfg = readFileSync(userConfig, 'utf8')
      assert.equal(
        cfg,
        `# Added by \`sshca config\`: its per-context settings (RevokedHostKeys …); keep this line first.\nInclude ${join(w.home, 'ssh_config')}\n${mine}`,
      )
      assert.equal(readFileSync(`${userConfig}.sshca-backup`, 'utf8'), mine)
      const again = await sshca(['config', '--pattern', '127.0.0.1', '--known-hosts', kh, '--no-auto-login'], {
        env: w.env,
      })
      assert.equal(again.code, 0, again.stderr)
      assert.match(again.stdout, /already includes it/)
      assert.equal(readFileSync(userConfig, 'utf8'), cfg)
      // what ssh itself makes of it, for the name as typed and for the alias (Match final: after HostName)
      for (const host of ['127.0.0.1', 'web-alias']) {
        const g = spawnSync('ssh', ['-G', '-F', userConfig, host], {encoding: 'utf8'})
        assert.equal(g.status, 0, g.stderr)
        assert.match(g.stdout, new RegExp(`^revokedhostkeys ${krl}$`, 'm'), host)
      }
      assert.doesNotMatch(
        spawnSync('ssh', ['-G', '-F', userConfig, 'other.example.org'], {encoding: 'utf8'}).stdout,
        /^revokedhostkeys/m,
      )
    })

    it('before: the host certificate verifies; after `ca revoke` and `sshca login` refreshed the KRL, ssh refuses the host (also by alias)', async () => {
      assert.equal(
        (await sshca(['login', '--identity-token-file', '-', '--force'], {env: w.env, input: await w.gh.mint()})).code,
        0,
      )
      const {sshd, serial} = await enrolledSshd()
      const ok = await ssh(sshd.port)
      assert.equal(ok.code, 0, `${ok.stderr}\n${sshd.log().slice(-600)}`)
      assert.equal(ok.stdout.trim(), 'deployed-by-ci')

      const rev = await sshca(['ca', 'revoke', '--serial', serial, '--reason', 'host compromised', ...ca()])
      assert.equal(rev.code, 0, rev.stderr)
      // the client's copy is stale until refreshed: this is the gap the refresh closes
      assert.equal((await ssh(sshd.port)).code, 0)

      const login = await sshca(['login', '--identity-token-file', '-', '--json'], {
        env: w.env,
        input: await w.gh.mint(),
      })
      assert.equal(login.code, 0, login.stderr)
      assert.equal(JSON.parse(login.stdout).krl.status, 'refreshed')
      assert.ok(JSON.parse(login.stdout).krl.revokedSerials >= 1)
      for (const host of ['127.0.0.1', 'web-alias']) {
        const refused = await ssh(sshd.port, host)
        assert.equal(refused.code, 255, `${host}: ${refused.stdout}`)
        assert.match(refused.stderr, /Host key ED25519-CERT SHA256:\S+ revoked by file/, host)
      }
    })

    it('`sshca config` refreshes it too: a second host, revoked, refused after config', async () => {
      const {sshd, serial} = await enrolledSshd()
      assert.equal((await ssh(sshd.port)).code, 0)
      assert.equal((await sshca(['ca', 'revoke', '--serial', serial, ...ca()])).code, 0)
      const r = await sshca(['config', '--pattern', '127.0.0.1', '--known-hosts', kh, '--no-auto-login'], {env: w.env})
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /Revocation list of "test": [1-9]\d* revoked serial/)
      const refused = await ssh(sshd.port)
      assert.equal(refused.code, 255)
      assert.match(refused.stderr, /revoked by file/)
    })

    it("a RevokedHostKeys of the person's own that ssh reads first: ssh accepts the revoked host, and sshca config says so, naming the line", async () => {
      const {sshd, serial} = await enrolledSshd()
      assert.equal((await sshca(['ca', 'revoke', '--serial', serial, ...ca()])).code, 0)
      const config = async (): Promise<string[]> => {
        const r = await sshca(['config', '--pattern', '127.0.0.1', '--known-hosts', kh, '--no-auto-login', '--json'], {
          env: w.env,
        })
        assert.equal(r.code, 0, r.stderr)
        return (JSON.parse(r.stdout).warnings as string[]).filter((x) => x.includes('sets RevokedHostKeys'))
      }
      assert.deepEqual(await config(), [])
      assert.equal((await ssh(sshd.port)).code, 255)
      const before = readFileSync(userConfig, 'utf8')
      const mine = join(tempDir('sshca-own-krl-'), 'revoked')
      writeFileSync(mine, '')
      try {
        // the person's own list for every host, below sshca's Include: a Host section is read in the
        // pass before sshca's Match final block, and ssh keeps the first value it reads
        writeFileSync(userConfig, `${before}Host *\n  RevokedHostKeys ${mine}\n`)
        const accepted = await ssh(sshd.port)
        assert.equal(accepted.code, 0, `ssh checked the other list: ${accepted.stderr}`)
        const warned = await config()
        assert.equal(warned.length, 1, JSON.stringify(warned))
        const line = before.split('\n').length + 1
        assert.ok(warned[0]!.startsWith(`${userConfig}:${line} sets RevokedHostKeys (in "Host *")`), warned[0])
        // as the warning says: a Match final section comes after sshca's, whose list then holds
        writeFileSync(userConfig, `${before}Match final host *\n  RevokedHostKeys ${mine}\n`)
        const refused = await ssh(sshd.port)
        assert.equal(refused.code, 255)
        assert.match(refused.stderr, /revoked by file/)
        assert.deepEqual(await config(), [])
      } finally {
        writeFileSync(userConfig, before)
      }
    })

    it('--dry-run shows the diff and writes nothing; --no-ssh-config leaves ssh_config alone; the Include is added once', async () => {
      const env = {...w.env, SSHCA_HOME: join(tempDir('sshca-dry-'), 'home'), HOME: join(tempDir('sshca-dry-'), 'home')}
      assert.equal(
        (
          await sshca(
            ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'dry'],
            {env},
          )
        ).code,
        0,
      )
      const dry = await sshca(['config', '--pattern', '*.lab.example', '--dry-run'], {env})
      assert.equal(dry.code, 0, dry.stderr)
      assert.match(dry.stdout, /^\+Match final host \*\.lab\.example$/m)
      assert.match(
        dry.stdout,
        /\.ssh\/config: its Include line at the top\n--- \S+\n\+\+\+ \S+\n@@ -0,0 \+1,2 @@\n\+# [^\n]*\n\+Include \S+\/ssh_config\n$/,
      )
      assert.equal(existsSync(join(env.HOME, '.ssh')), false)
      assert.equal(existsSync(join(env.SSHCA_HOME, 'ssh_config')), false)
      const skip = await sshca(['config', '--pattern', '*.lab.example', '--no-ssh-config'], {env})
      assert.equal(skip.code, 0, skip.stderr)
      assert.ok(existsSync(join(env.HOME, '.ssh', 'known_hosts')))
      assert.equal(existsSync(join(env.HOME, '.ssh', 'config')), false)
      assert.equal(existsSync(join(env.SSHCA_HOME, 'ssh_config')), false)
      // a person's own ~/.ssh/config: the dry run's diff is what the real run does to it (GNU patch applies it)
      const mine = 'Host *\n  ServerAliveInterval 30\n'
      writeFileSync(join(env.HOME, '.ssh', 'config'), mine, {mode: 0o600})
      const dry2 = await sshca(['config', '--pattern', '*.lab.example', '--dry-run', '--json'], {env})
      const doc = JSON.parse(dry2.stdout) as {diff: string; sshConfig: {diff: string; include: {diff: string}}}
      assert.equal(doc.diff, '', 'known_hosts already holds the block')
      assert.match(
        doc.sshConfig.include.diff,
        /^@@ -1,2 \+1,4 @@\n\+# [^\n]*\n\+Include \S+\n Host \*\n {3}ServerAliveInterval 30\n$/m,
      )
      const copy = join(tempDir('sshca-dry-patch-'), 'config')
      writeFileSync(copy, mine)
      await runOk('patch', ['--quiet', copy], {input: doc.sshConfig.include.diff})
      assert.equal((await sshca(['config', '--pattern', '*.lab.example'], {env})).code, 0)
      assert.equal(readFileSync(copy, 'utf8'), readFileSync(join(env.HOME, '.ssh', 'config'), 'utf8'))
      assert.equal(
        readFileSync(join(env.HOME, '.ssh', 'config.sshca-backup'), 'utf8'),
        mine,
        'the previous file is backed up',
      )
      assert.equal((await sshca(['config', '--pattern', '*.lab.example'], {env})).code, 0)
      assert.equal(
        readFileSync(join(env.HOME, '.ssh', 'config'), 'utf8').split('Include ').length,
        2,
        'idempotent: one Include',
      )
      const again = JSON.parse(
        (await sshca(['config', '--pattern', '*.lab.example', '--dry-run', '--json'], {env})).stdout,
      ) as {sshConfig: {diff: string; include: {diff: string}}}
      assert.deepEqual([again.sshConfig.diff, again.sshConfig.include.diff], ['', ''])
    })

    it('a CA without /ssh/krl (step-ca) breaks neither login nor config: a note, and no RevokedHostKeys that would refuse every host', async () => {
      const missing = ['/ssh/krl']
      const front = await caFront(w.t, missing)
      try {
        const base = tempDir('sshca-nokrl-')
        const env = {...w.env, SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}
        const b = await sshca(
          ['bootstrap', '--ca-url', front.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'nokrl'],
          {env},
        )
        assert.equal(b.code, 0, b.stderr)
        assert.match(b.stderr, /publishes no revocation list \(GET \/ssh\/krl answered 404\)/)
        const login = await sshca(['login', '--identity-token-file', '-', '--json'], {env, input: await w.gh.mint()})
        assert.equal(login.code, 0, login.stderr)
        assert.equal(JSON.parse(login.stdout).krl.status, 'unavailable')
        assert.match(login.stderr, /^Note: the CA "nokrl" publishes no revocation list/m)
        const cfg = await sshca(['config', '--pattern', '127.0.0.1', '--no-auto-login'], {env})
        assert.equal(cfg.code, 0, cfg.stderr)
        const managed = readFileSync(join(env.SSHCA_HOME, 'ssh_config'), 'utf8')
        assert.doesNotMatch(managed, /^\s*RevokedHostKeys/m)
        assert.match(managed, /# no RevokedHostKeys: the CA "nokrl" publishes no revocation list/)
        const g = spawnSync('ssh', ['-G', '-F', join(env.HOME, '.ssh', 'config'), '127.0.0.1'], {encoding: 'utf8'})
        assert.equal(g.status, 0, g.stderr)
        assert.doesNotMatch(g.stdout, /^revokedhostkeys/m)
        const status = async () => {
          const r = await sshca(['status', '--json'], {env})
          return (
            JSON.parse(r.stdout) as {
              checks: {sshConfig: {state: string; detail: string; revokedHostKeys: string | null}}
            }
          ).checks.sshConfig
        }
        const before = await status()
        assert.deepEqual([before.state, before.revokedHostKeys], ['ok', null])
        assert.match(before.detail, /\(no revocation list\)/)

        // the CA publishes its list later: the next login fetches it and the block names it from then on
        missing.length = 0
        const later = await sshca(['login', '--identity-token-file', '-', '--json'], {env, input: await w.gh.mint()})
        assert.equal(later.code, 0, later.stderr)
        const managedFile = join(env.SSHCA_HOME, 'ssh_config')
        const krlFile = join(env.SSHCA_HOME, 'contexts', 'nokrl', 'revoked_host_keys.krl')
        assert.deepEqual((({status, file, enabledIn}) => ({status, file, enabledIn}))(JSON.parse(later.stdout).krl), {
          status: 'refreshed',
          file: krlFile,
          enabledIn: managedFile,
        })
        assert.match(
          later.stderr,
          /^ssh now checks the revocation list of "nokrl": its block in \S+ssh_config names \S+\.krl\.$/m,
        )
        const named = readFileSync(managedFile, 'utf8')
        assert.match(named, /^ {2}RevokedHostKeys \S+\/contexts\/nokrl\/revoked_host_keys\.krl$/m)
        assert.doesNotMatch(named, /no RevokedHostKeys/)
        const g2 = spawnSync('ssh', ['-G', '-F', join(env.HOME, '.ssh', 'config'), '127.0.0.1'], {encoding: 'utf8'})
        assert.equal(g2.status, 0, g2.stderr)
        assert.match(g2.stdout, new RegExp(`^revokedhostkeys ${krlFile}$`, 'm'))
        const saved = JSON.parse(readFileSync(join(env.SSHCA_HOME, 'contexts', 'nokrl', 'context.json'), 'utf8'))
        assert.equal(saved.sshConfig.krlFile, krlFile, 'sshca config keeps the list from then on')
        assert.deepEqual([(await status()).state, (await status()).revokedHostKeys], ['ok', krlFile])
        const again = await sshca(['login', '--identity-token-file', '-', '--json'], {env, input: await w.gh.mint()})
        assert.equal(JSON.parse(again.stdout).krl.enabledIn, null, 'once is enough')
        assert.equal(readFileSync(managedFile, 'utf8'), named)

        // status tells a block that ignores the list at hand, and one that names a list that is gone
        writeFileSync(managedFile, named.replace(/^ {2}RevokedHostKeys .*\n/m, ''))
        const ignored = await status()
        assert.deepEqual([ignored.state, ignored.revokedHostKeys], ['warn', null])
        assert.match(
          ignored.detail,
          /has no RevokedHostKeys, though the CA's revocation list is \S+revoked_host_keys\.krl/,
        )
        // a block that names another file is brought back to the context's list by the next login
        const old = join(base, 'old.krl')
        writeFileSync(old, readFileSync(krlFile))
        writeFileSync(managedFile, named.replace(/^( {2}RevokedHostKeys ).*$/m, `$1${old}`))
        assert.match((await status()).detail, /names \S+\/old\.krl, though the CA's revocation list is/)
        const relogin = await sshca(['login', '--identity-token-file', '-', '--json'], {env, input: await w.gh.mint()})
        assert.equal(JSON.parse(relogin.stdout).krl.enabledIn, managedFile)
        assert.equal(readFileSync(managedFile, 'utf8'), named)
        writeFileSync(managedFile, named)
        rmSync(krlFile)
        const gone = await status()
        assert.equal(gone.state, 'fail')
        assert.match(gone.detail, /names the revocation list \S+, which is missing: ssh refuses every host it matches/)
      } finally {
        await front.close()
      }
    })
  })

  describe("item 5: root's systemd units", () => {
    it('refuses, naming the path, when node lives in a directory a non-root user can write', async () => {
      const dir = tempDir('sshca-nvm-')
      const node = join(dir, 'node')
      try {
        linkSync(process.execPath, node)
      } catch {
        copyFileSync(process.execPath, node)
        chmodSync(node, 0o755)
      }
      chmodSync(dir, 0o775)
      const units = tempDir('sshca-units-')
      const r = await run(
        node,
        [BIN, 'config', '--host', '--sshd-dir', tempDir('sshca-etc-ssh-'), '--systemd-dir', units, '--json'],
        {env: {...process.env, ...w.env, NO_COLOR: '1'}, cwd: ROOT, timeoutMs: 60_000},
      )
      assert.equal(r.code, 4, r.stderr)
      const err = JSON.parse(r.stdout).error
      assert.equal(err.code, 'ERR_UNSAFE_PATH')
      assert.equal(err.details.path, dir)
      assert.match(
        err.message,
        new RegExp(
          `refusing to write a root service that runs ${node} \\S+: ${dir} is unsafe \\(it (is writable by its group \\(mode 0775\\)|belongs to uid \\d+, not root)\\)`,
        ),
      )
      assert.deepEqual(readdirSync(units), [], 'nothing written')
    })

    it('the KRL unit runs on its own: with the renewal failing (revoked host), the KRL is still refreshed', async function () {
      // writing the units needs a root-owned sshca and home; as another user the refusal above is what happens
      if (!isRoot) this.skip()
      const etc = tempDir('sshca-etc-ssh-')
      const key = join(etc, 'ssh_host_ed25519_key')
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
      // a host certificate already due for renewal: 20 s of validity after 60 s of leeway is under a third
      const original = readFileSync(w.t.init.config, 'utf8')
      let enrolled
      try {
        writeFileSync(w.t.init.config, original.replace('hostTtl: 30d', 'hostTtl: 20s'))
        assert.equal(await w.t.ca.reload(), true)
        enrolled = await sshca(
          [
            'certificate',
            '--host',
            '--sign',
            '--token-file',
            secretFile(await enrollmentToken('unit-host')),
            'unit-host',
            `${key}.pub`,
            '--json',
          ],
          {env: w.env},
        )
      } finally {
        writeFileSync(w.t.init.config, original)
        assert.equal(await w.t.ca.reload(), true)
      }
      assert.equal(enrolled.code, 0, enrolled.stderr)
      const units = tempDir('sshca-units-')
      const r = await sshca(['config', '--host', '--sshd-dir', etc, '--systemd-dir', units], {env: w.env})
      assert.equal(r.code, 0, r.stderr)
      const node = realpathSync(process.execPath)
      const script = realpathSync(BIN)
      assert.match(r.stdout, new RegExp(`^The units run: ${node} ${script}$`, 'm'))
      const unit = (name: string) => readFileSync(join(units, name), 'utf8')
      const krlUnit = unit('sshca-krl.service')
      assert.doesNotMatch(
        krlUnit,
        /sshca-renew|^(Requires|After|BindsTo|PartOf)=.*sshca/m,
        'the KRL depends on no renewal',
      )
      assert.doesNotMatch(unit('sshca-renew@.service'), / krl /)

      // the attack on the old single unit: renewal fails (the host certificate was revoked) …
      assert.equal((await sshca(['ca', 'revoke', '--serial', JSON.parse(enrolled.stdout).serial, ...ca()])).code, 0)
      const exec = (text: string, instance?: string) => {
        const env = Object.fromEntries([...text.matchAll(/^Environment=(\w+)=(.*)$/gm)].map((m) => [m[1]!, m[2]!]))
        const line = /^ExecStart=(.*)$/m.exec(text)![1]!.replaceAll('%i', instance ?? '')
        const [cmd, ...args] = line.split(' ')
        assert.equal(cmd, node, 'ExecStart names the real node')
        assert.equal(args[0], script, 'and the real script')
        return run(cmd!, args, {env: {PATH: process.env.PATH, ...env}, timeoutMs: 60_000})
      }
      const mark = w.t.mark()
      const renew = await exec(unit('sshca-renew@.service'), 'ssh_host_ed25519_key')
      assert.equal(renew.code, 7, renew.stderr)
      // (admin events such as the revocation reach the audit log a moment later: only decisions count here)
      assert.deepEqual(
        w.t
          .since(mark)
          .filter((l) => l.event === 'certificate_denied')
          .map((l) => l.reason),
        ['certificate_revoked'],
      )
      // … and the KRL unit, independent of it, still brings the revocation to sshd
      const krl = await exec(krlUnit)
      assert.equal(krl.code, 0, krl.stderr)
      const q = await run('ssh-keygen', ['-Q', '-f', join(etc, 'sshca_revoked_keys.krl'), `${key}-cert.pub`])
      assert.match(q.stdout, /REVOKED/)
      for (const name of ['sshca-krl.timer', 'sshca-krl.service']) {
        const analyze = spawnSync('systemd-analyze', ['verify', '--man=no', join(units, name)], {encoding: 'utf8'})
        if (analyze.error === undefined) assert.doesNotMatch(analyze.stderr, /sshca-krl\.(service|timer):\d+: /)
      }
    })
  })

  describe('item 11: a CA is a host CA only for the hosts it names', () => {
    it('ca init derives ssh.hostPattern from --dns and prints it; an IP gives no hosts, never "*"', async () => {
      const pw = secretFile('correct horse battery staple')
      const byName = join(tempDir('sshca-init-'), 'ca')
      const r = await sshca(['ca', 'init', '--dir', byName, '--dns', 'ca.example.com,10.0.0.5', '--password-file', pw])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^ {2}Host pattern {6}\*\.example\.com \(from --dns/m)
      assert.match(readFileSync(join(byName, 'ca.yaml'), 'utf8'), /^ {2}hostPattern: "\*\.example\.com"$/m)
      const check = await sshca(['ca', 'check-config', '--config', join(byName, 'ca.yaml')])
      assert.equal(check.code, 0, check.stderr)
      const byIp = join(tempDir('sshca-init-'), 'ca')
      const ip = await sshca(['ca', 'init', '--dir', byIp, '--dns', '10.0.0.5', '--password-file', pw])
      assert.equal(ip.code, 0, ip.stderr)
      assert.match(ip.stdout, /Host pattern {6}!\* \(none/)
      assert.match(readFileSync(join(byIp, 'ca.yaml'), 'utf8'), /^ {2}hostPattern: "!\*"$/m)
    })

    describe('bootstrap and config', () => {
      let corp: TestCa
      let prod: TestCa
      before(async () => {
        corp = await startTestCa({ssh: {hostPattern: '*.example.com'}})
        prod = await startTestCa({ssh: {hostPattern: '*.prod.example.com'}})
      })
      after(async () => {
        await corp?.stop()
        await prod?.stop()
      })

      it('print the pattern they write; --pattern narrows, never widens; a CA naming no hosts needs it', async () => {
        const base = tempDir('sshca-pat-')
        const env = {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}
        const b = await sshca(
          ['bootstrap', '--ca-url', corp.url, '--fingerprint', corp.init.rootFingerprint, '--context', 'corp'],
          {env},
        )
        assert.equal(b.code, 0, b.stderr)
        assert.match(b.stdout, /^ {2}host pattern \*\.example\.com \(the hosts/m)
        const wide = await sshca(['config', '--pattern', '*'], {env})
        assert.equal(wide.code, 2)
        assert.match(wide.stderr, /ERR_USAGE\]: --pattern "\*" is wider than the CA's host pattern "\*\.example\.com"/)
        assert.equal(existsSync(join(env.HOME, '.ssh', 'known_hosts')), false)
        const narrow = await sshca(['config', '--pattern', 'web*.example.com'], {env})
        assert.equal(narrow.code, 0, narrow.stderr)
        assert.match(narrow.stdout, /hosts matching web\*\.example\.com \(narrowed from the CA's "\*\.example\.com"\)/)
        assert.match(
          readFileSync(join(env.HOME, '.ssh', 'known_hosts'), 'utf8'),
          /^@cert-authority web\*\.example\.com ssh-ed25519 /m,
        )
        assert.match(
          readFileSync(join(env.SSHCA_HOME, 'ssh_config'), 'utf8'),
          /^Match final host web\*\.example\.com$/m,
        )

        // w's CA was made by ca init with --dns 127.0.0.1: it names no hosts
        const none = await sshca(
          ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'lab'],
          {env},
        )
        assert.match(none.stdout, /host pattern !\* \(the CA names no hosts/)
        const refused = await sshca(['config', '--context', 'lab'], {env})
        assert.equal(refused.code, 2)
        assert.match(refused.stderr, /ERR_USAGE\]: the CA names no hosts[\s\S]*sshca config --pattern/)
      })

      it("warns when a second context's pattern overlaps another's (bootstrap and config)", async () => {
        const base = tempDir('sshca-overlap-')
        const env = {SSHCA_HOME: join(base, 'sshca'), HOME: join(base, 'home')}
        assert.equal(
          (
            await sshca(
              ['bootstrap', '--ca-url', corp.url, '--fingerprint', corp.init.rootFingerprint, '--context', 'corp'],
              {env},
            )
          ).code,
          0,
        )
        assert.equal((await sshca(['config', '--context', 'corp'], {env})).code, 0)
        const second = await sshca(
          ['bootstrap', '--ca-url', prod.url, '--fingerprint', prod.init.rootFingerprint, '--context', 'prod'],
          {env},
        )
        assert.equal(second.code, 0, second.stderr)
        assert.match(
          second.stderr,
          /^Warning: the host pattern "\*\.prod\.example\.com" of "prod" overlaps "\*\.example\.com" of "corp": hosts matching both are vouched for by two CAs/m,
        )
        const cfg = await sshca(['config', '--context', 'prod', '--json'], {env})
        assert.equal(cfg.code, 0, cfg.stderr)
        assert.match(cfg.stderr, /^Warning: .*overlaps "\*\.example\.com" of "corp"/m)
        assert.equal(JSON.parse(cfg.stdout).warnings.length, 1)
        // narrowed apart, the warning goes
        const apart = await sshca(['config', '--context', 'corp', '--pattern', '*.corp.example.com'], {env})
        assert.equal(apart.code, 0, apart.stderr)
        assert.doesNotMatch(apart.stderr, /overlaps/)
      })
    })
  })

  describe('item 17: --out and $SSHCA_HOME', () => {
    it('--no-agent --out refuses a symlink planted at the key or the certificate; the file it points to is untouched, no token spent', async () => {
      const shared = tempDir('sshca-shared-')
      const victim = join(tempDir('sshca-victim-'), 'authorized_keys')
      writeFileSync(victim, "ssh-ed25519 AAAA the victim's own line\n", {mode: 0o600})
      for (const planted of ['deploy-cert.pub', 'deploy']) {
        const out = join(shared, 'deploy')
        symlinkSync(victim, join(shared, planted))
        const mark = w.t.mark()
        const r = await sshca(['login', '--identity-token-file', '-', '--no-agent', '--out', out], {
          env: {...w.env, SSH_AUTH_SOCK: ''},
          input: await w.gh.mint(),
        })
        assert.equal(r.code, 4, r.stderr)
        assert.match(r.stderr, new RegExp(`ERR_UNSAFE_PATH\\]: ${join(shared, planted)} is a symbolic link`))
        assert.equal(readFileSync(victim, 'utf8'), "ssh-ed25519 AAAA the victim's own line\n")
        assert.deepEqual(
          w.t.since(mark).filter((l) => l.event === 'certificate_issued' || l.event === 'certificate_denied'),
          [],
          'refused before the CA was asked',
        )
        spawnSync('rm', [join(shared, planted)])
      }
      const out = join(shared, 'deploy')
      const ok = await sshca(['login', '--identity-token-file', '-', '--no-agent', '--out', out], {
        env: {...w.env, SSH_AUTH_SOCK: ''},
        input: await w.gh.mint(),
      })
      assert.equal(ok.code, 0, ok.stderr)
      assert.equal(statSync(out).mode & 0o777, 0o600)
      assert.equal(lstatSync(`${out}-cert.pub`).isFile(), true)
      assert.deepEqual(readdirSync(shared).sort(), ['deploy', 'deploy-cert.pub'], 'no temp files left')
    })

    it('refuses a home, context or file another user can change, and a refresh token others can read, naming it', async () => {
      const env = {...w.env, SSHCA_HOME: join(tempDir('sshca-perm-'), 'home')}
      assert.equal(
        (
          await sshca(
            ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'perm'],
            {env},
          )
        ).code,
        0,
      )
      const login = () => sshca(['login', '--identity-token-file', '-'], {env, input: 'not-even-read'})
      const ctxDir = join(env.SSHCA_HOME, 'contexts', 'perm')
      const attempts: [string, () => void, () => void, RegExp, number][] = [
        [
          'home 0777',
          () => chmodSync(env.SSHCA_HOME, 0o777),
          () => chmodSync(env.SSHCA_HOME, 0o700),
          new RegExp(`ERR_UNSAFE_PATH\\]: ${env.SSHCA_HOME} is writable by every user \\(mode 0777\\)`),
          4,
        ],
        [
          'context.json g+w',
          () => chmodSync(join(ctxDir, 'context.json'), 0o620),
          () => chmodSync(join(ctxDir, 'context.json'), 0o600),
          /ERR_UNSAFE_PATH\]: \S+\/contexts\/perm\/context\.json is writable by its group/,
          4,
        ],
        [
          'root_ca.crt a symlink',
          () => {
            copyFileSync(join(ctxDir, 'root_ca.crt'), join(ctxDir, 'real.crt'))
            spawnSync('rm', [join(ctxDir, 'root_ca.crt')])
            symlinkSync(join(ctxDir, 'real.crt'), join(ctxDir, 'root_ca.crt'))
          },
          () => {
            spawnSync('rm', [join(ctxDir, 'root_ca.crt')])
            copyFileSync(join(ctxDir, 'real.crt'), join(ctxDir, 'root_ca.crt'))
            spawnSync('rm', [join(ctxDir, 'real.crt')])
          },
          /ERR_UNSAFE_PATH\]: \S+root_ca\.crt is a symbolic link/,
          4,
        ],
        [
          'a refresh token 0644',
          () => {
            mkdirSync(join(env.SSHCA_HOME, 'tokens'), {mode: 0o700})
            writeFileSync(join(env.SSHCA_HOME, 'tokens', 'perm~sso.json'), '{}', {mode: 0o644})
          },
          () => chmodSync(join(env.SSHCA_HOME, 'tokens', 'perm~sso.json'), 0o600),
          /ERR_FILE_PERMISSIONS\]: \S+perm~sso\.json holds a refresh token and is readable by others \(mode 0644\)[\s\S]*chmod 600/,
          2,
        ],
        ...(isRoot
          ? [
              [
                'a context owned by another user',
                () => chownSync(ctxDir, NOBODY, NOBODY),
                () => chownSync(ctxDir, 0, 0),
                /ERR_UNSAFE_PATH\]: \S+\/contexts\/perm belongs to uid 65534, not to you \(uid 0\)/,
                4,
              ] as [string, () => void, () => void, RegExp, number],
            ]
          : []),
      ]
      for (const [what, breakIt, fix, message, exit] of attempts) {
        breakIt()
        const r = await login()
        assert.equal(r.code, exit, `${what}: ${r.stderr}`)
        assert.match(r.stderr, message, what)
        fix()
      }
      // repaired, the same home works again
      const ok = await sshca(['login', '--identity-token-file', '-'], {env, input: await w.gh.mint()})
      assert.equal(ok.code, 0, ok.stderr)
    })
  })
})

/**
 * A CA without some routes (step-ca has no /ssh/krl): an HTTPS front with the CA's own TLS key and
 * certificate (so the pinned root still vouches for it) that forwards everything else to the real CA.
 */
async function caFront(t: TestCa, missing: string[]): Promise<{url: string; close(): Promise<void>}> {
  const {certPem, keyPem} = t.ca.runtime.material.tls
  const server: Server = createServer({cert: certPem, key: keyPem}, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]!
      if (missing.includes(path)) {
        res
          .writeHead(404, {'content-type': 'application/json'})
          .end(JSON.stringify({status: 404, message: 'Not Found'}))
        return
      }
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(
          ([k]) => !['host', 'connection', 'content-length', 'transfer-encoding'].includes(k),
        ),
      ) as Record<string, string>
      request(`${t.url}${req.url}`, {
        method: req.method as 'GET' | 'POST',
        dispatcher: t.dispatcher,
        headers,
        ...(chunks.length ? {body: Buffer.concat(chunks)} : {}),
      })
        .then(async (up) => {
          const body = Buffer.from(await up.body.arrayBuffer())
          res
            .writeHead(up.statusCode, {
              'content-type': String(up.headers['content-type'] ?? 'application/octet-stream'),
            })
            .end(body)
        })
        .catch(() => res.writeHead(502).end())
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const {port} = server.address() as {port: number}
  return {
    url: `https://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}
