/**
 * Refresh tokens in a real Secret Service (dbus-run-session + an unlocked gnome-keyring-daemon), and
 * the 0600 file fallback where no keyring is reachable.
 */
import assert from 'node:assert/strict'
import {existsSync, statSync} from 'node:fs'
import {join} from 'node:path'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'
import {BIN, ROOT, sshca} from '../helpers/cli.ts'
import {spawn} from 'node:child_process'
import {run, waitFor} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'
import {startWorld, type World} from '../helpers/world.ts'

const FIXTURE = join(ROOT, 'test', 'fixtures', 'token-store-check.ts')

/** argv that runs `argv` inside a fresh D-Bus session with gnome-keyring unlocked for $HOME. */
function inKeyringSession(argv: string[]): string[] {
  const quoted = argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')
  return [
    'dbus-run-session',
    '--',
    'bash',
    '-c',
    `echo -n keyring-test-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null 2>&1; exec ${quoted}`,
  ]
}

describe('refresh tokens: OS keyring and file fallback', function () {
  this.timeout(90_000)

  it('uses the Secret Service when one answers: set, get, list, delete; nothing written to disk', async () => {
    const home = tempDir('sshca-kr-')
    const argv = inKeyringSession([process.execPath, FIXTURE, join(home, 'sshca')])
    const r = await run(argv[0]!, argv.slice(1), {env: {...process.env, HOME: home}})
    assert.equal(r.code, 0, r.stderr)
    const {pickMs: _ms, ...doc} = JSON.parse(r.stdout.trim().split('\n').pop()!)
    assert.deepEqual(doc, {kind: 'keyring', roundTrip: true, keys: ['ctx/sso'], gone: true})
    assert.equal(existsSync(join(home, 'sshca', 'tokens')), false)
  })

  it('falls back to a 0600 file under $SSHCA_HOME when no keyring is reachable', async () => {
    const home = tempDir('sshca-kr-')
    const env: NodeJS.ProcessEnv = {...process.env, HOME: home}
    delete env.DBUS_SESSION_BUS_ADDRESS
    const r = await run(process.execPath, [FIXTURE, join(home, 'sshca')], {env})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.kind, 'file')
    assert.equal(doc.roundTrip, true)
    assert.equal(statSync(join(home, 'sshca', 'tokens')).mode & 0o777, 0o700)
  })

  describe('sshca login with gnome-keyring', () => {
    let w: World
    before(async () => {
      w = await startWorld()
    })
    after(async () => w?.stop())

    it('keeps the refresh token in the keyring; a login in a new session needs no browser', async () => {
      const home = tempDir('sshca-kr-home-')
      const env = {...w.env, HOME: home, SSHCA_HOME: join(home, '.sshca'), SSHCA_KEYRING: 'keyring'}
      assert.equal(
        (
          await sshca(
            ['bootstrap', '--ca-url', w.t.url, '--fingerprint', w.t.init.rootFingerprint, '--context', 'kr'],
            {env},
          )
        ).code,
        0,
      )
      const argv = inKeyringSession([process.execPath, BIN, 'login', '--provisioner', 'sso', '--json'])

      const child = spawn(argv[0]!, argv.slice(1), {env: {...process.env, ...env}})
      let out = ''
      let err = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (err += d))
      const exited = new Promise<number | null>((r) => child.on('close', r))
      await waitFor(
        'the authorization URL',
        () => /http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/.test(err) || child.exitCode !== null,
        60_000,
      )
      await driveDevSignIn(/http:\/\/127\.0\.0\.1:\d+\/auth\?\S+/.exec(err)![0], {login: 'frank@example.com'})
      assert.equal(await exited, 0, err)
      assert.equal(JSON.parse(out).refreshTokenStore, 'keyring')
      assert.equal(existsSync(join(env.SSHCA_HOME, 'tokens')), false, 'the refresh token must not be on disk')

      const again = inKeyringSession([process.execPath, BIN, 'login', '--provisioner', 'sso', '--force', '--json'])
      const r = await run(again[0]!, again.slice(1), {env: {...process.env, ...env}})
      assert.equal(r.code, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout).method, 'refresh')
      assert.doesNotMatch(r.stderr, /\/auth\?/)
    })
  })
})
