/**
 * An ID token in a file another local user can read is a token they can spend first (SECURITY.md
 * row 1's reasoning, for enrollment tokens): `login`, `proxycommand` and `config --identity-token-file`
 * refuse such a file, as `certificate --host --sign --token-file` does, and a file that is not a
 * regular file (a FIFO nobody writes to would hang ssh's Match exec). Standard input ("-") stays
 * allowed. The built CLI as a process (fast path and oclif), a real CA over HTTPS.
 */
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {chmodSync, existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {sshca} from '../helpers/cli.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

describe('an ID token file others can read is refused', function () {
  this.timeout(120_000)
  let w: World

  before(async () => {
    w = await startWorld()
    await w.bootstrap()
  })
  after(async () => w?.stop())

  /** A file holding a fresh token, with `mode`. */
  async function tokenFile(mode: number): Promise<string> {
    const f = join(tempDir('sshca-idtoken-'), 'token')
    writeFileSync(f, `${await w.gh.mint()}\n`)
    chmodSync(f, mode) // the mode exactly, whatever the umask
    return f
  }

  const issued = () => w.t.audit().filter((l) => l.event === 'certificate_issued').length

  for (const [path, extra] of [
    ['the fast path', []],
    ['oclif', ['--timeout', '300']],
  ] as const) {
    for (const mode of [0o644, 0o640, 0o604, 0o620]) {
      it(`login --identity-token-file FILE (mode 0${mode.toString(8)}), through ${path}: ERR_FILE_PERMISSIONS, nothing sent`, async () => {
        const f = await tokenFile(mode)
        const before = issued()
        const r = await sshca(['login', '--identity-token-file', f, '--force', ...extra], {env: w.env})
        assert.notEqual(r.code, 0, r.stdout)
        assert.match(r.stderr, /ERR_FILE_PERMISSIONS/)
        assert.ok(r.stderr.includes(`chmod 600 ${f}`), r.stderr)
        assert.equal(issued(), before, 'the CA issued a certificate for a token others could read')
      })
    }
  }

  it('the same token file at 0600 signs in (and was not spent by the refusal)', async () => {
    const f = await tokenFile(0o644)
    assert.notEqual((await sshca(['login', '--identity-token-file', f, '--force'], {env: w.env})).code, 0)
    spawnSync('chmod', ['600', f])
    const r = await sshca(['login', '--identity-token-file', f, '--force', '--json'], {env: w.env})
    assert.equal(r.code, 0, r.stderr)
  })

  it('a FIFO as the token file is refused at once (ERR_INPUT), not waited on', async () => {
    const fifo = join(tempDir('sshca-fifo-'), 'token')
    assert.equal(spawnSync('mkfifo', ['-m', '600', fifo]).status, 0)
    // the test's timeout is the bound: nobody ever writes to the FIFO
    const r = await sshca(['login', '--identity-token-file', fifo, '--force'], {env: w.env})
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /ERR_INPUT[^\n]*not a regular file/)
  })

  it('standard input stays allowed: --identity-token-file -', async () => {
    const r = await sshca(['login', '--identity-token-file', '-', '--force', '--json'], {
      env: w.env,
      input: await w.gh.mint(),
    })
    assert.equal(r.code, 0, r.stderr)
  })

  it('proxycommand --identity-token-file FILE (mode 0644): ERR_FILE_PERMISSIONS before any connection', async () => {
    const f = await tokenFile(0o644)
    const before = issued()
    const r = await sshca(
      ['proxycommand', '--context', 'test', '--identity-token-file', f, 'deploy', '127.0.0.1', '9'],
      {env: w.env, input: ''},
    )
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /ERR_FILE_PERMISSIONS/)
    assert.equal(issued(), before)
  })

  it('config --identity-token-file FILE (mode 0644) is refused with "chmod 600 FILE", and writes nothing', async () => {
    const f = await tokenFile(0o644)
    const managed = join(w.env.SSHCA_HOME!, 'ssh_config')
    const before = existsSync(managed) ? readFileSync(managed, 'utf8') : null
    const r = await sshca(['config', '--pattern', '*.example.com', '--identity-token-file', f], {env: w.env})
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /ERR_FILE_PERMISSIONS/)
    assert.ok(r.stderr.includes(`chmod 600 ${f}`), r.stderr)
    assert.equal(existsSync(managed) ? readFileSync(managed, 'utf8') : null, before)
    // at 0600 the same command records it
    spawnSync('chmod', ['600', f])
    const ok = await sshca(['config', '--pattern', '*.example.com', '--identity-token-file', f], {env: w.env})
    assert.equal(ok.code, 0, ok.stderr)
    assert.ok(readFileSync(managed, 'utf8').includes(f))
  })
})
