/**
 * The messages a newcomer meets (issue 17), asserted as they are printed: usage errors under --json
 * and without, an unknown command, a port in use, a Node.js that is too old, the server's process
 * name.
 */
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {parseConfig} from '../../src/ca/config/config.ts'
import {makeCaDir} from '../helpers/ca.ts'
import {BIN, ROOT, sshca} from '../helpers/cli.ts'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {spawnSshca, startWorld, type World} from '../helpers/world.ts'

describe('what a newcomer reads', function () {
  this.timeout(60_000)

  describe('usage errors', () => {
    it('--json with required flags missing: one small error document, exit 2', async () => {
      const r = await sshca(['bootstrap', '--json'])
      assert.equal(r.code, 2)
      assert.ok(r.stdout.length < 1024, `${r.stdout.length} bytes on stdout`)
      assert.deepEqual(JSON.parse(r.stdout), {
        error: {
          code: 'ERR_USAGE',
          message: 'Missing required flag ca-url; Missing required flag fingerprint',
          hint: 'usage: sshca bootstrap --ca-url <value> --fingerprint <value> [options]   (sshca bootstrap --help for examples)',
        },
      })
    })

    it('a bad option value and an unknown flag have a code too', async () => {
      const kty = await sshca(['login', '--kty', 'foo', '--json'])
      assert.equal(kty.code, 2)
      assert.deepEqual(JSON.parse(kty.stdout).error, {
        code: 'ERR_USAGE',
        message: 'Expected --kty=foo to be one of: ed25519, ecdsa',
        hint: 'usage: sshca login [IDENTITY] [options]   (sshca login --help for examples)',
      })
      const nope = await sshca(['bootstrap', '--nope', '--json'])
      assert.equal(nope.code, 2)
      assert.equal(JSON.parse(nope.stdout).error.message, 'Nonexistent flag: --nope')
      const ttl = await sshca(['ca', 'token', '--host', 'web1', '--ttl', '5q', '--json'])
      assert.equal(ttl.code, 2)
      assert.deepEqual(JSON.parse(ttl.stdout).error, {
        code: 'ERR_USAGE',
        message: '--ttl "5q" is not a duration (90s, 15m, 8h, 30d)',
        hint: 'usage: sshca ca token --host <value> [options]   (sshca ca token --help for examples)',
      })
    })

    it('without --json: one short message and the usage line on stderr, nothing on stdout', async () => {
      const r = await sshca(['bootstrap'])
      assert.equal(r.code, 2)
      assert.equal(r.stdout, '')
      assert.equal(
        r.stderr,
        'Error [ERR_USAGE]: Missing required flag ca-url; Missing required flag fingerprint\n  → usage: sshca bootstrap --ca-url <value> --fingerprint <value> [options]   (sshca bootstrap --help for examples)\n',
      )
      const args = await sshca(['certificate', '--host', '--sign', '--token', 'x', '--principal', 'a'])
      assert.equal(args.code, 2)
      assert.match(
        args.stderr,
        /^Error \[ERR_USAGE\]: missing arguments HOSTNAME PUBKEYFILE \(give them before --principal, or after --\)\n/,
      )
    })

    it('an unknown command suggests the closest one', async () => {
      const r = await sshca(['bootsrap', '--json'])
      assert.equal(r.code, 2)
      assert.deepEqual(JSON.parse(r.stdout).error, {
        code: 'ERR_USAGE',
        message: '"bootsrap" is not an sshca command',
        hint: 'did you mean `sshca bootstrap`? sshca --help lists the commands',
      })
      const ca = await sshca(['ca', 'revok'])
      assert.equal(ca.code, 2)
      assert.equal(
        ca.stderr,
        'Error [ERR_USAGE]: "ca revok" is not an sshca command\n  → did you mean `sshca ca revoke`? sshca --help lists the commands\n',
      )
    })
    it('an unknown command with --help is the same usage error, its name escaped (oclif printed it raw)', async () => {
      const plain = await sshca(['ca', 'revok'])
      for (const help of ['--help', '-h']) assert.deepEqual(await sshca(['ca', 'revok', help]), plain)
      const r = await sshca(['bootsrap\x1b]0;owned\x07\u202e', '--help'])
      assert.equal(r.code, 2)
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /^Error \[ERR_USAGE\]: "bootsrap\\x1b\]0;owned\\x07\\u\{202e\}" is not an sshca command\n/)
      assert.equal(JSON.parse((await sshca(['bootsrap', '--help', '--json'])).stdout).error.code, 'ERR_USAGE')
    })
  })

  describe('output to a reader that stops early', () => {
    it('`sshca ca --help | head -1` ends quietly, exit 0 (no unsettled-await warning, no EPIPE)', async () => {
      for (const args of ['ca --help', 'list --help']) {
        const r = await run('bash', [
          '-c',
          `"${process.execPath}" "${BIN}" ${args} | head -1 >/dev/null; echo "rc=\${PIPESTATUS[0]}"`,
        ])
        assert.equal(r.stdout.trim(), 'rc=0', `${args}: ${r.stderr}`)
        assert.equal(r.stderr, '', args)
      }
    })
  })

  describe('token errors name the likely cause and the next step of the flow', () => {
    let w: World
    before(async () => {
      w = await startWorld()
      await w.bootstrap()
    })
    after(async () => w?.stop())
    const tokenLogin = async (token: string) => {
      const out = join(tempDir(), 'k')
      const r = await sshca(['login', '--identity-token-file', '-', '--no-agent', '--out', out, '--json'], {
        env: w.env,
        input: token,
      })
      return {
        code: r.code,
        error: r.stdout
          ? (JSON.parse(r.stdout).error as {code: string; message: string; hint: string} | undefined)
          : undefined,
      }
    }

    it('CI tokens: expired, not a JWT, another audience, replayed', async () => {
      const now = Math.floor(Date.now() / 1000)
      const expired = await tokenLogin(await w.gh.mint({}, {iat: now - 900, nbf: now - 900, exp: now - 600}))
      assert.equal(expired.code, 7)
      assert.equal(expired.error!.code, 'ERR_TOKEN_INVALID')
      assert.match(
        expired.error!.message,
        /^the CA refused the token: the token expired at \S+Z \(10 min ago\) \(request id [0-9a-f-]+\)$/,
      )
      assert.match(expired.error!.hint, /get a fresh token from the issuer/)
      const garbage = await tokenLogin('not-a-token')
      assert.match(garbage.error!.message, /the token is not a JWT/)
      const aud = await tokenLogin(await w.gh.mint({aud: 'nobody'}))
      assert.match(
        aud.error!.message,
        /the token is for audience "nobody", but the CA's provisioners want "sshca-cli" or "sshca-ci"/,
      )
      const token = await w.gh.mint()
      assert.equal((await tokenLogin(token)).code, 0)
      const again = await tokenLogin(token)
      assert.equal(again.code, 7)
      assert.equal(again.error!.code, 'ERR_TOKEN_REPLAYED')
      assert.match(again.error!.message, /already used at \d{4}-/)
      assert.doesNotMatch(again.error!.hint, /sshca login --force/)
    })

    it('host enrollment: a token for another host, and a token used twice, point at ca token', async () => {
      const key = join(tempDir(), 'ssh_host_ed25519_key')
      await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
      const t = await sshca([
        'ca',
        'token',
        '--host',
        'web-x',
        '--config',
        w.t.init.config,
        '--password-file',
        w.t.passwordFile,
      ])
      const token = t.stdout.trim().split('\n').pop()!
      const wrong = await sshca(
        ['certificate', '--host', '--sign', '--token-file', '-', 'web-y', `${key}.pub`, '--json'],
        {env: w.env, input: token},
      )
      assert.equal(wrong.code, 7)
      const e = JSON.parse(wrong.stdout).error
      assert.equal(e.code, 'ERR_CA_DENIED')
      assert.equal(e.message, 'the CA refused the enrollment: the token was issued for web-x, not for web-y')
      assert.match(e.hint, /sshca ca token --host NAME --key KEY\.pub/)
      assert.equal(
        (
          await sshca(['certificate', '--host', '--sign', '--token-file', '-', 'web-x', `${key}.pub`], {
            env: w.env,
            input: token,
          })
        ).code,
        0,
      )
      const twice = JSON.parse(
        (
          await sshca(['certificate', '--host', '--sign', '--token-file', '-', 'web-x', `${key}.pub`, '--json'], {
            env: w.env,
            input: token,
          })
        ).stdout,
      ).error
      assert.equal(twice.code, 'ERR_TOKEN_REPLAYED')
      assert.match(twice.message, /already used at/)
      assert.match(twice.hint, /sshca ca token --host/)
    })
  })

  describe('the CA server', () => {
    let blocker: Server
    before(async () => {
      blocker = createServer()
      await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r))
    })
    after(() => blocker?.close())

    it('a port in use names the address and suggests --address (exit 9)', async () => {
      const {init, passwordFile} = await makeCaDir({})
      const port = (blocker.address() as {port: number}).port
      const r = await sshca([
        'ca',
        'serve',
        '--config',
        init.config,
        '--password-file',
        passwordFile,
        '--address',
        `127.0.0.1:${port}`,
        '--json',
      ])
      assert.equal(r.code, 9)
      const e = JSON.parse(r.stdout).error
      assert.equal(e.code, 'ERR_LISTEN')
      assert.equal(
        e.message,
        `cannot listen on 127.0.0.1:${port}: another process is using it (another sshca ca serve?)`,
      )
      assert.match(e.hint, /--address HOST:PORT/)
    })

    it('is titled sshca, so pidof sshca finds it (and kill -HUP reloads it)', async () => {
      const {init, passwordFile} = await makeCaDir({})
      const serve = spawnSshca(
        ['ca', 'serve', '--config', init.config, '--password-file', passwordFile, '--address', '127.0.0.1:0'],
        {},
      )
      try {
        await serve.waitFor(/listening on/, 60_000)
        const pid = serve.child.pid!
        assert.equal(readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'sshca')
        const pidof = await run('pidof', ['sshca'])
        assert.ok(pidof.stdout.trim().split(/\s+/).includes(String(pid)), `pidof sshca: ${pidof.stdout}`)
      } finally {
        serve.child.kill('SIGTERM')
        await serve.exit()
      }
    })
  })

  describe("the CA's first steps", () => {
    it('ca.yaml\'s commented examples become a valid policy when their "#" is removed', async () => {
      const dir = join(tempDir(), 'ca')
      const {passwordFile} = await makeCaDir({})
      const r = await sshca(['ca', 'init', '--dir', dir, '--password-file', passwordFile, '--dns', 'ca.example.com'])
      assert.equal(r.code, 0, r.stderr)
      const text = readFileSync(join(dir, 'ca.yaml'), 'utf8')
      // as written: valid, no provisioner yet
      assert.deepEqual(parseConfig(text, 'ca.yaml').config.provisioners, [])
      // uncommented as a person would: the lines of the examples, "#" removed, indentation kept
      const start = text.indexOf('provisioners:')
      const uncommented = text.slice(0, start) + text.slice(start).replace(/^#( {2}.*)$/gm, '$1')
      const {config} = parseConfig(uncommented, 'ca.yaml')
      assert.deepEqual(
        config.provisioners.map((p) => p.name),
        ['sso', 'ci'],
      )
    })

    it('ca token prints the exact command for the host: sudo, the token from a file, every bound name', async () => {
      const {init, passwordFile} = await makeCaDir({})
      const r = await sshca([
        'ca',
        'token',
        '--host',
        'web1.example.com',
        '--principal',
        '10.0.0.7',
        '--config',
        init.config,
        '--password-file',
        passwordFile,
      ])
      assert.equal(r.code, 0, r.stderr)
      assert.match(
        r.stdout,
        /^On the host: sudo sshca certificate --host --sign --token-file FILE web1\.example\.com \/etc\/ssh\/ssh_host_ed25519_key\.pub --principal 10\.0\.0\.7 {3}\(FILE holds the token; - reads it from stdin\)$/m,
      )
    })

    it('a missing password file says how to create one', async () => {
      const r = await sshca(['ca', 'token', '--host', 'web1', '--password-file', '/nonexistent/ca-pw', '--json'])
      assert.equal(r.code, 2)
      assert.deepEqual(JSON.parse(r.stdout).error, {
        code: 'ERR_CA_PASSWORD',
        message: 'the password file /nonexistent/ca-pw does not exist',
        hint: 'create /nonexistent/ca-pw with the CA password (12+ characters) on its first line, mode 0600: (umask 077; cat > /nonexistent/ca-pw)',
      })
    })

    it('a short or mistyped password at the prompt asks again', async () => {
      const dir = join(tempDir(), 'ca')
      // a terminal for the prompt: script(1) gives the CLI a pty
      const p = spawn('script', ['-qec', `${process.execPath} ${BIN} ca init --dir ${dir}`, '/dev/null'], {
        env: {...process.env, NO_COLOR: '1'},
        stdio: ['pipe', 'pipe', 'pipe'],
      })
      let out = ''
      p.stdout.on('data', (d: Buffer) => (out += d.toString()))
      const exited = new Promise<number | null>((r) => p.on('close', r))
      const answer = async (prompt: string, nth: number, text: string) => {
        await waitFor(`prompt ${nth} "${prompt}"`, () => out.split(prompt).length > nth, 60_000)
        p.stdin.write(`${text}\r`)
      }
      await answer('CA password: ', 1, 'short')
      await answer('CA password: ', 2, 'correct horse battery')
      await answer('Repeat the password: ', 1, 'correct horse battery!')
      await answer('CA password: ', 3, 'correct horse battery')
      await answer('Repeat the password: ', 2, 'correct horse battery')
      assert.equal(await exited, 0, out)
      assert.match(out, /the CA password must have at least 12 characters; try again/)
      assert.match(out, /the two passwords differ; try again/)
      assert.match(out, /Created CA "sshca"/)
    })
  })

  describe('Node.js too old', () => {
    it('says what is needed before loading anything (exit 9), under --json too', async function () {
      const old = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
        const v = spawnSync(p, ['--version'], {encoding: 'utf8'})
        return v.status === 0 && Number(v.stdout.trim().slice(1).split('.')[0]) < 22
      })
      if (!old) return this.skip() // no Node older than 22 on this machine to try it with
      const text = await run(old, [BIN, 'list'], {cwd: ROOT})
      assert.equal(text.code, 9)
      assert.match(
        text.stderr,
        /^Error \[ERR_NODE_VERSION\]: sshca needs Node\.js 22\.16 or newer; this is v\d+\.\d+\.\d+ \(.+\)\n {2}→ install Node\.js 22 or 24/,
      )
      assert.doesNotMatch(text.stderr, /SyntaxError/)
      const json = await run(old, [BIN, 'login', '--json'], {cwd: ROOT})
      assert.equal(json.code, 9)
      assert.equal(JSON.parse(json.stdout).error.code, 'ERR_NODE_VERSION')
    })
  })
})
