/** One login per context at a time: the lock waits for its holder, takes over a dead or stale one. */
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {lockSite, withLock} from '../../../src/client/home/lock.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {waitFor} from '../../helpers/proc.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('the login lock', () => {
  it('runs one holder at a time; the second waits and is told it waited', async () => {
    const path = join(tempDir('sshca-lock-'), 'login.lock')
    const order: string[] = []
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const first = withLock(path, {timeoutMs: 5000, staleMs: 60_000, pollMs: 10}, async (waited) => {
      order.push(`first:${waited}`)
      await gate
      order.push('first:done')
    })
    await waitFor('the first holder to take the lock', () => order.length === 1)
    const second = withLock(
      path,
      {timeoutMs: 5000, staleMs: 60_000, pollMs: 10},
      async (waited) => void order.push(`second:${waited}`),
    )
    // while the first holds it, the second waits (it polls every 10 ms: a few rounds pass here)
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(order, ['first:false'])
    release()
    await Promise.all([first, second])
    assert.deepEqual(order, ['first:false', 'first:done', 'second:true'])
    assert.equal(existsSync(path), false)
  })

  it('takes over a lock whose process is gone, and one older than the longest sign-in', async () => {
    const dir = tempDir('sshca-lock-')
    const dead = join(dir, 'dead.lock')
    writeFileSync(dead, '4000000\n')
    assert.equal(
      await withLock(dead, {timeoutMs: 1000, staleMs: 60_000, pollMs: 10, alive: () => false}, async () => 'ran'),
      'ran',
    )
    const old = join(dir, 'old.lock')
    writeFileSync(old, `${process.pid}\n`)
    utimesSync(old, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000))
    assert.equal(await withLock(old, {timeoutMs: 1000, staleMs: 60_000, pollMs: 10}, async () => 'ran'), 'ran')
  })

  it('gives up after the timeout while a live holder keeps it', async () => {
    const path = join(tempDir('sshca-lock-'), 'busy.lock')
    writeFileSync(path, `${process.pid}\n`)
    await rejectsCode(
      withLock(path, {timeoutMs: 100, staleMs: 60_000, pollMs: 10}, async () => 'never'),
      'ERR_LOGIN_TIMEOUT',
      {},
      /lock \S+busy\.lock/,
    )
    assert.ok(existsSync(path), "someone else's lock is left alone")
    // another kind of holder names itself, with its own code
    await rejectsCode(
      withLock(
        path,
        {timeoutMs: 50, staleMs: 60_000, pollMs: 10, holder: 'another sshca writing its ssh_config', code: 'ERR_BUSY'},
        async () => 'never',
      ),
      'ERR_BUSY',
      {},
      /^another sshca writing its ssh_config \(lock \S+busy\.lock\) did not finish in time$/,
    )
  })
  it('three waiters at a lock left by a crash: one holder at a time, every round', async () => {
    const path = join(tempDir('sshca-lock-'), 'race.lock')
    const o = {timeoutMs: 5000, staleMs: 60_000, pollMs: 1}
    for (let round = 0; round < 60; round++) {
      writeFileSync(path, '999999999\n') // no such process
      let inside = 0
      let most = 0
      const hold = async () => {
        inside++
        most = Math.max(most, inside)
        await new Promise((r) => setTimeout(r, 3))
        inside--
      }
      await Promise.all([withLock(path, o, hold), withLock(path, o, hold), withLock(path, o, hold)])
      assert.equal(most, 1, `round ${round}: two holders at once`)
      assert.ok(!existsSync(path) && !existsSync(`${path}.takeover`), 'nothing left behind')
    }
  })

  it("a holder whose lock was taken over (it ran past staleMs) leaves the new holder's lock alone", async () => {
    const path = join(tempDir('sshca-lock-'), 'slow.lock')
    let second: Promise<string> | undefined
    await withLock(path, {timeoutMs: 1000, staleMs: 60_000}, async () => {
      // another process judges this lock stale (too old) and takes it
      second = withLock(path, {timeoutMs: 1000, staleMs: 0, pollMs: 10}, async () => {
        await new Promise((r) => setTimeout(r, 300))
        return readFileSync(path, 'utf8')
      })
      await new Promise((r) => setTimeout(r, 100))
    })
    assert.ok(existsSync(path), "the first holder's release did not remove the second's lock")
    assert.match(await second!, /^\d+ [0-9a-f-]{36} \S+\n$/)
    assert.ok(!existsSync(path))
  })
  it('an empty lock (its holder died before writing it) is taken over once stale; until then it is waited for', async () => {
    const path = join(tempDir('sshca-lock-'), 'empty.lock')
    writeFileSync(path, '')
    await rejectsCode(
      withLock(path, {timeoutMs: 100, staleMs: 60_000, pollMs: 10}, async () => 'never'),
      'ERR_LOGIN_TIMEOUT',
    )
    utimesSync(path, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000))
    assert.equal(await withLock(path, {timeoutMs: 1000, staleMs: 60_000, pollMs: 10}, async () => 'ran'), 'ran')
  })

  it('a takeover guard left by a crash: waiters sleep (not spin) and take over once it is 2 s old', async () => {
    const path = join(tempDir('sshca-lock-'), 'guarded.lock')
    writeFileSync(path, '999999999 dead\n')
    writeFileSync(`${path}.takeover`, '')
    const started = Date.now()
    const cpu = process.cpuUsage()
    assert.equal(await withLock(path, {timeoutMs: 10_000, staleMs: 60_000, pollMs: 50}, async () => 'ran'), 'ran')
    const used = process.cpuUsage(cpu)
    assert.ok(Date.now() - started >= 1900, 'the guard is respected while it is fresh')
    assert.ok((used.user + used.system) / 1000 < 1000, `waited without spinning (${used.user + used.system} µs of CPU)`)
  })
  it('a name that exists but cannot be opened (a dangling link): the timeout holds, without spinning', async () => {
    const dir = tempDir('sshca-lock-')
    const path = join(dir, 'dangling.lock')
    symlinkSync(join(dir, 'nowhere'), path)
    const cpu = process.cpuUsage()
    await rejectsCode(
      withLock(path, {timeoutMs: 300, staleMs: 60_000, pollMs: 20}, async () => 'never'),
      'ERR_LOGIN_TIMEOUT',
    )
    const used = process.cpuUsage(cpu)
    assert.ok((used.user + used.system) / 1000 < 250, `waited without spinning (${used.user + used.system} µs of CPU)`)
  })

  it('the lock holds its pid and token from the moment it exists, and nothing is left beside it', async () => {
    const dir = tempDir('sshca-lock-')
    const path = join(dir, 'full.lock')
    const seen = await withLock(path, {timeoutMs: 1000, staleMs: 60_000}, async () => readFileSync(path, 'utf8'))
    assert.match(seen, new RegExp(`^${process.pid} [0-9a-f-]{36} ${lockSite().replace(/[[\]]/g, '\\$&')}\\n$`))
    assert.deepEqual(readdirSync(dir), [])
  })

  it('a lock from another PID namespace or machine is judged by its age alone: its pid cannot be asked here', async () => {
    const dir = tempDir('sshca-lock-')
    // a pid that is dead here, from a container sharing this home, or from another machine over NFS
    const elsewhere = join(dir, 'elsewhere.lock')
    writeFileSync(elsewhere, `4000000 ${'0'.repeat(36)} other-host/pid:[4026531836]\n`)
    await rejectsCode(
      withLock(elsewhere, {timeoutMs: 100, staleMs: 60_000, pollMs: 10, alive: () => false}, async () => 'never'),
      'ERR_LOGIN_TIMEOUT',
    )
    utimesSync(elsewhere, new Date(Date.now() - 120_000), new Date(Date.now() - 120_000))
    assert.equal(
      await withLock(elsewhere, {timeoutMs: 1000, staleMs: 60_000, pollMs: 10, alive: () => false}, async () => 'ran'),
      'ran',
    )
    // this site's lock, and an older sshca's (no site): the pid decides, as before
    for (const text of [`4000000 ${'0'.repeat(36)} ${lockSite()}\n`, `4000000 ${'0'.repeat(36)}\n`]) {
      const here = join(dir, 'here.lock')
      writeFileSync(here, text)
      assert.equal(
        await withLock(here, {timeoutMs: 1000, staleMs: 60_000, pollMs: 10, alive: () => false}, async () => 'ran'),
        'ran',
      )
    }
  })

  it('a login in a container (a PID namespace of its own) waits for a live holder outside, whose pid it cannot see', async function () {
    if (process.getuid?.() !== 0 || !existsSync('/usr/bin/unshare')) this.skip() // CI runs as root: the namespace needs it
    const path = join(tempDir('sshca-lock-'), 'login.lock')
    let held = false
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    const holding = withLock(path, {timeoutMs: 5000, staleMs: 60_000, pollMs: 10}, async () => {
      held = true
      await gate
    })
    await waitFor('this process to hold the lock', () => held)
    const lockModule = new URL('../../../src/client/home/lock.ts', import.meta.url).href
    const script = `import {withLock} from ${JSON.stringify(lockModule)}
try {
  await withLock(${JSON.stringify(path)}, {timeoutMs: 1500, staleMs: 60000, pollMs: 20}, async () => console.log('took it'))
} catch (err) {
  console.log(err.code)
}`
    // --mount-proc: the waiter's /proc is its namespace's, as in a container
    const child = spawn(
      'unshare',
      ['--pid', '--fork', '--mount-proc', process.execPath, '--input-type=module', '-e', script],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    )
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d))
    child.stderr.on('data', (d: Buffer) => (err += d))
    const code = await new Promise<number | null>((r) => child.on('exit', r))
    assert.equal(out.trim(), 'ERR_LOGIN_TIMEOUT', `the waiter in the namespace: ${out}${err} (exit ${code})`)
    assert.equal(readFileSync(path, 'utf8').split(' ')[0], String(process.pid), 'the holder keeps its lock')
    release()
    await holding
  })
})
