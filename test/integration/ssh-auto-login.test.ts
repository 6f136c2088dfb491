/**
 * Issue 12, item 1: the managed ssh_config logs in when ssh needs it. A real `ssh` whose only
 * configuration is a file that Includes the generated ~/.ssh/config (never the real one), a real
 * sshd presenting a host certificate from the CA, a real ssh-agent, and the CLI as ssh runs it from
 * `Match exec` (with a token file, as `sshca config --identity-token-file` sets up for a machine):
 * the first ssh signs in, the second does not, a ControlMaster connection is reused, and a
 * certificate that expired in the agent makes ssh sign in again by itself.
 */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {dirname as tempDirOf, join} from 'node:path'
import {caPaths} from '../../src/ca/config/layout.ts'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {readSealedKey} from '../../src/ca/keys/keystore.ts'
import {AgentClient} from '../../src/ssh/agent.ts'
import {signCertificate} from '../../src/ssh/cert.ts'
import {generatePrivateKey} from '../../src/ssh/private-key.ts'
import {keySigner} from '../../src/ssh/signature.ts'
import {PASSWORD} from '../helpers/ca.ts'
import {BIN, sshca} from '../helpers/cli.ts'
import {idToken} from '../helpers/idp-token.ts'
import {MemoryAgent} from '../helpers/memory-agent.ts'
import {currentUser, startSshd, type Sshd} from '../helpers/openssh.ts'
import {run, runOk, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

describe('ssh_config integration: ssh logs in by itself (issue 12)', function () {
  this.timeout(180_000)
  let w: World
  let sshd: Sshd
  let tokenFile: string
  let testConfig: string
  let controlDir: string
  const issued = (mark: number): number => w.t.since(mark).filter((e) => e.event === 'certificate_issued').length

  /** A fresh ID token in the file the managed ssh_config names (what a token refresher does). */
  async function freshToken(): Promise<void> {
    const {idToken: t} = await idToken(w.idp.issuer, {clientId: 'sshca-cli', login: 'alice@example.com'})
    writeFileSync(tokenFile, `${t}\n`, {mode: 0o600})
  }

  /** ssh as a person runs it: `ssh web true`, the config being the generated one (through an Include). */
  function ssh(args: string[] = []): ReturnType<typeof run> {
    return run('ssh', ['-F', testConfig, ...args, 'web', 'echo', 'ran-on-$(hostname)'], {
      env: {...process.env, ...w.env},
      timeoutMs: 60_000,
    })
  }

  before(async () => {
    w = await startWorld()
    await w.bootstrap()
    const base = tempDir('sshca-autologin-')
    tokenFile = join(base, 'id-token')
    controlDir = join(base, 'cm')
    mkdirSync(controlDir, {mode: 0o700})
    // a host key enrolled for 127.0.0.1, and sshd presenting its certificate
    const key = join(base, 'ssh_host_ed25519_key')
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
    const tok = await sshca([
      'ca',
      'token',
      '--host',
      '127.0.0.1',
      '--config',
      w.t.init.config,
      '--password-file',
      w.t.passwordFile,
    ])
    assert.equal(tok.code, 0, tok.stderr)
    writeFileSync(join(base, 'enroll'), tok.stdout.trim().split('\n').pop()!, {mode: 0o600})
    const cert = await sshca(
      ['certificate', '--host', '--sign', '--token-file', join(base, 'enroll'), '127.0.0.1', `${key}.pub`],
      {env: w.env},
    )
    assert.equal(cert.code, 0, cert.stderr)
    sshd = await startSshd({
      userCaKeys: readFileSync(caPaths(w.t.init.dir).userCaPub, 'utf8').trim().split('\n'),
      hostKey: {privateText: readFileSync(key, 'utf8'), publicLine: readFileSync(`${key}.pub`, 'utf8').trim()},
      hostCertificate: readFileSync(`${key}-cert.pub`, 'utf8').trim(),
    })
    // the person's machine: sshca config (known_hosts, KRL, managed ssh_config with the login exec, Include)
    const r = await sshca(
      [
        'config',
        '--pattern',
        '127.0.0.1',
        '--known-hosts',
        join(base, 'known_hosts'),
        '--identity-token-file',
        tokenFile,
        '--json',
      ],
      {env: w.env},
    )
    assert.equal(r.code, 0, r.stderr)
    // what this test adds around it: an alias for the host, no interaction, and multiplexing
    testConfig = join(base, 'ssh_config')
    writeFileSync(
      testConfig,
      [
        `Include ${join(w.env.HOME!, '.ssh', 'config')}`,
        'Host web',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        `  User ${currentUser()}`,
        'Host *',
        '  BatchMode yes',
        '  StrictHostKeyChecking yes',
        '  UpdateHostKeys no',
        '  GlobalKnownHostsFile /dev/null',
        '  HostKeyAlgorithms ssh-ed25519-cert-v01@openssh.com',
        '  ConnectTimeout 10',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    )
  })
  after(async () => {
    await run('ssh', ['-F', testConfig, '-o', `ControlPath=${controlDir}/%C`, '-O', 'exit', 'web']).catch(
      () => undefined,
    )
    await sshd?.stop()
    await w?.stop()
  })

  it('sshca config writes the Match exec section: this sshca by its real paths, the home, the context, the token file', () => {
    const managed = readFileSync(join(w.home, 'ssh_config'), 'utf8')
    const exec = /^Match final host 127\.0\.0\.1 exec "(.+)"$/m.exec(managed)
    assert.ok(exec, managed)
    assert.match(
      exec[1]!,
      new RegExp(
        `^env SSHCA_HOME=${w.home} \\S+/node \\S+/bin/run\\.cjs login --ensure --quiet --context test --identity-token-file ${tokenFile}$`,
      ),
    )
    // the revocation section comes first and has no exec: a failed login never switches it off
    assert.ok(managed.indexOf('RevokedHostKeys') < managed.indexOf(' exec '))
  })

  it('the first ssh signs in before connecting; the second reuses the certificate without signing in', async () => {
    await freshToken()
    const mark = w.t.mark()
    const first = await ssh()
    assert.equal(first.code, 0, `${first.stderr}\n${sshd.log().slice(-800)}`)
    assert.match(first.stdout, /^ran-on-/)
    // nothing but the command's own output on ssh's stdout
    assert.equal(first.stdout.trim().split('\n').length, 1)
    assert.equal(issued(mark), 1)
    const list = JSON.parse((await sshca(['list', '--json'], {env: w.env})).stdout)
    assert.equal(list.certificates.length, 1)
    assert.equal(list.certificates[0].context, 'test')

    // the token file is spent; a second sign-in would fail, so this proves none is tried
    const second = await ssh()
    assert.equal(second.code, 0, second.stderr)
    assert.equal(issued(mark), 1)
  })

  it('a ControlMaster connection is reused: one TCP connection, one authentication, for two ssh commands', async () => {
    const mux = ['-o', 'ControlMaster=auto', '-o', `ControlPath=${controlDir}/%C`, '-o', 'ControlPersist=60']
    const accepted = (): number => (sshd.log().match(/Accepted publickey/g) ?? []).length
    const before = accepted()
    const a = await ssh(mux)
    assert.equal(a.code, 0, a.stderr)
    const check = await run('ssh', ['-F', testConfig, ...mux, '-O', 'check', 'web'], {env: {...process.env, ...w.env}})
    assert.equal(check.code, 0, check.stderr)
    assert.match(check.stderr, /Master running/)
    const b = await ssh(mux)
    assert.equal(b.code, 0, b.stderr)
    assert.equal(accepted() - before, 1, 'the second command went through the master')
    await run('ssh', ['-F', testConfig, ...mux, '-O', 'exit', 'web'], {env: {...process.env, ...w.env}})
  })

  it('with only an expired certificate in the agent, ssh signs in again by itself (and the expired one is removed)', async () => {
    // what a laptop that slept through the lifetime has: a certificate of this CA, expired, still in the agent
    const userCa = await readSealedKey(caPaths(w.t.init.dir).userCaKey, PASSWORD)
    const stale = generatePrivateKey('ed25519')
    const now = BigInt(Math.floor(Date.now() / 1000))
    const expired = await signCertificate(
      {
        type: 'user',
        publicKey: stale.publicKey,
        serial: 4242n,
        keyId: 'alice@example.com',
        principals: ['alice', currentUser()],
        validAfter: now - 7200n,
        validBefore: now - 60n,
        extensions: {'permit-pty': true},
      },
      keySigner(userCa),
    )
    await AgentClient.with({socketPath: w.agent.socket}, async (a) => {
      await a.removeAll()
      await a.addCertificate(stale, expired, {comment: 'sshca:test:token'})
    })
    await freshToken()
    const mark = w.t.mark()
    const r = await ssh()
    assert.equal(r.code, 0, `${r.stderr}\n${sshd.log().slice(-800)}`)
    assert.equal(issued(mark), 1)
    const list = JSON.parse((await sshca(['list', '--json'], {env: w.env})).stdout)
    assert.deepEqual(
      list.certificates.map((c: {serial: string; state: string}) => c.state),
      ['valid'],
    )
    assert.notEqual(list.certificates[0].serial, '4242')
  })

  it('an agent that cannot hold certificates (gpg-agent-like): the first ssh signs in into 0600 files the managed block names, and connects; the next one does not sign in', async () => {
    const mem = new MemoryAgent({certificates: 'drop'})
    const sock = join(tempDir('sshca-memagent-'), 'agent.sock')
    const server = createServer((c) => mem.serve(c))
    await new Promise<void>((r) => server.listen(sock, r))
    try {
      await freshToken()
      const mark = w.t.mark()
      const env = {...process.env, ...w.env, SSH_AUTH_SOCK: sock}
      const r = await run('ssh', ['-F', testConfig, 'web', 'echo', 'via-files'], {env, timeoutMs: 60_000})
      assert.equal(r.code, 0, `${r.stderr}\n${sshd.log().slice(-800)}`)
      assert.equal(r.stdout.trim(), 'via-files')
      assert.match(r.stderr, /does not hold it .*the managed ssh_config names them/s)
      assert.equal(issued(mark), 1)
      const files = {
        key: join(w.home, 'contexts', 'test', 'id_sshca'),
        cert: join(w.home, 'contexts', 'test', 'id_sshca-cert.pub'),
      }
      assert.equal(statSync(files.key).mode & 0o777, 0o600)
      assert.equal(mem.live().length, 0, 'the key the agent kept without its certificate was removed')
      const settings = JSON.parse(readFileSync(join(w.home, 'contexts', 'test', 'context.json'), 'utf8'))
      assert.match(settings.agentless.reason, /does not hold it/)
      const again = await run('ssh', ['-F', testConfig, 'web', 'true'], {env, timeoutMs: 60_000})
      assert.equal(again.code, 0, again.stderr)
      assert.equal(issued(mark), 1, "the files' certificate satisfied --ensure")
      // back on OpenSSH's agent: the certificate goes there again and the files are removed
      await freshToken()
      const back = await sshca(['login', '--identity-token-file', tokenFile, '--json'], {env: w.env})
      assert.equal(back.code, 0, back.stderr)
      assert.equal(JSON.parse(back.stdout).agent.added, true)
      assert.equal(existsSync(files.key), false)
      assert.equal(
        JSON.parse(readFileSync(join(w.home, 'contexts', 'test', 'context.json'), 'utf8')).agentless,
        undefined,
      )
    } finally {
      server.close()
    }
  })

  it('four ssh connections at once (parallel-ssh, Ansible): one sign-in, the others wait for it and use its certificate', async () => {
    await AgentClient.with({socketPath: w.agent.socket}, (a) => a.removeAll())
    await freshToken()
    const mark = w.t.mark()
    // the token file holds one single-use token: a second sign-in would be refused (a replay)
    const runs = await Promise.all([0, 1, 2, 3].map(() => ssh()))
    for (const r of runs) assert.equal(r.code, 0, r.stderr)
    assert.equal(issued(mark), 1)
    assert.equal(w.t.since(mark).filter((e) => e.event === 'certificate_denied').length, 0)
  })

  it('proxycommand: ssh through `sshca proxycommand %r %h %p` signs in on the first connection only, and its stdout carries nothing but the SSH stream', async () => {
    await AgentClient.with({socketPath: w.agent.socket}, (a) => a.removeAll())
    const base = tempDir('sshca-proxy-')
    const cfg = join(base, 'ssh_config')
    writeFileSync(
      cfg,
      [
        'Host web',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        `  User ${currentUser()}`,
        `  ProxyCommand ${process.execPath} ${BIN} proxycommand --identity-token-file ${tokenFile} %r %h %p`,
        `  UserKnownHostsFile ${join(tempDirOf(testConfig), 'known_hosts')}`,
        '  GlobalKnownHostsFile /dev/null',
        '  StrictHostKeyChecking yes',
        '  HostKeyAlgorithms ssh-ed25519-cert-v01@openssh.com',
        '  BatchMode yes',
        '  UpdateHostKeys no',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    )
    await freshToken()
    const mark = w.t.mark()
    const env = {...process.env, ...w.env}
    const first = await run('ssh', ['-F', cfg, 'web', 'echo', 'through-the-proxy'], {env, timeoutMs: 60_000})
    assert.equal(first.code, 0, `${first.stderr}\n${sshd.log().slice(-600)}`)
    assert.equal(first.stdout, 'through-the-proxy\n')
    assert.equal(issued(mark), 1)
    const second = await run('ssh', ['-F', cfg, 'web', 'true'], {env, timeoutMs: 60_000})
    assert.equal(second.code, 0, second.stderr)
    assert.equal(issued(mark), 1)
    // a host nobody listens on: a clear error on stderr, not a hang
    const closed = await run(process.execPath, [BIN, 'proxycommand', currentUser(), '127.0.0.1', '1'], {env, input: ''})
    assert.equal(closed.code, 6)
    assert.match(closed.stderr, /ERR_HOST_UNREACHABLE.*127\.0\.0\.1:1/)
    assert.equal(closed.stdout, '')
  })

  it("a person's sign-in started with stdout and stderr sent elsewhere (as under ssh): the URL reaches the terminal, stdout stays empty", async () => {
    await AgentClient.with({socketPath: w.agent.socket}, (a) => a.removeAll())
    const base = tempDir('sshca-tty-')
    const out = join(base, 'stdout')
    const err = join(base, 'stderr')
    // script(1) gives the command a terminal; its stdout and stderr go to files, as ssh's Match exec sends them to /dev/null
    const cmd = `${process.execPath} ${BIN} login --ensure --quiet --context test --timeout 60 >${out} 2>${err}`
    const p = spawn('script', ['-qec', cmd, '/dev/null'], {
      env: {...process.env, ...w.env, NO_COLOR: '1'},
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let tty = ''
    p.stdout.on('data', (d: Buffer) => (tty += d.toString()))
    const exited = new Promise<number | null>((r) => p.on('close', r))
    const URL_RE = /(http:\/\/127\.0\.0\.1:\d+\/\S*auth\?[^\s\r]+)/
    await waitFor('the sign-in URL on the terminal', () => URL_RE.test(tty) || p.exitCode !== null, 60_000)
    const url = URL_RE.exec(tty)?.[1]
    assert.ok(url, `${tty}\n${existsSync(err) ? readFileSync(err, 'utf8') : ''}`)
    await driveDevSignIn(url, {login: 'alice@example.com'})
    assert.equal(await exited, 0, `${tty}\n${readFileSync(err, 'utf8')}`)
    assert.match(tty, /Open this URL in a browser to sign in/)
    assert.equal(readFileSync(out, 'utf8'), '')
    assert.doesNotMatch(readFileSync(err, 'utf8'), /http:/)
    const list = JSON.parse((await sshca(['list', '--json'], {env: w.env})).stdout)
    assert.equal(list.certificates[0].keyId, 'alice@example.com')
  })

  it('a login that fails (a spent token) fails the Match, not the revocation list: ssh still reads RevokedHostKeys', async () => {
    await AgentClient.with({socketPath: w.agent.socket}, (a) => a.removeAll())
    // the token file still holds the token spent above
    const g = await run('ssh', ['-G', '-F', testConfig, 'web'], {env: {...process.env, ...w.env}})
    assert.equal(g.code, 0, g.stderr)
    assert.match(g.stdout, /^revokedhostkeys \S+revoked_host_keys\.krl$/m)
    assert.match(g.stderr, /ERR_CA_UNAUTHORIZED|ERR_TOKEN/)
  })
})
