/**
 * `sshca config` on a person's machine, in process (src/client/setup/config.ts): the known_hosts block, the
 * context's KRL, sshca's ssh_config and its Include in ~/.ssh/config, against a CA whose every answer
 * the test sets. $HOME is a temp folder for the whole file: ~/.ssh is never the real one.
 */
import assert from 'node:assert/strict'
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {dirname, join, resolve} from 'node:path'
import {bootstrap} from '../../../src/client/setup/bootstrap.ts'
import {
  broadPatternWarning,
  caKeys,
  chosenPattern,
  configureClient,
  configureKnownHosts,
  overlappingContexts,
  replaceWithBackup,
  type ClientConfigOptions,
} from '../../../src/client/setup/config.ts'
import type {InstalledSshca} from '../../../src/client/local/exec-path.ts'
import {refreshContextKrl} from '../../../src/client/ca-api/krl.ts'
import {fetchSshRoots, syncKnownHosts} from '../../../src/client/ca-api/ca-keys.ts'
import {CaClient} from '../../../src/client/ca-api/ca-client.ts'
import {contextRemove} from '../../../src/client/setup/contexts.ts'
import {loadContext} from '../../../src/client/home/home.ts'
import type {TokenStore} from '../../../src/client/home/token-store.ts'
import {updateContext, withSettingsLock} from '../../../src/client/home/settings-lock.ts'
import {localSshVersion, supportsMatchFinal} from '../../../src/client/local/ssh-config.ts'
import {buildKrl} from '../../../src/ssh/krl.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import type {PublicKey} from '../../../src/ssh/keys.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'
import {json, startScriptedCa, type ScriptedCa} from '../../helpers/scripted-server.ts'
import {snapshot} from '../../helpers/snapshot.ts'
import {waitFor} from '../../helpers/proc.ts'
import {tempDir} from '../../helpers/tmp.ts'

const b64 = (k: PublicKey): string => k.blob.toString('base64')
const mode = (p: string): number => statSync(p).mode & 0o777
const BEGIN = (ctx: string) =>
  `# >>> sshca ${ctx} (managed by \`sshca config\`; changes inside this block are replaced)`
const END = (ctx: string) => `# <<< sshca ${ctx}`
/** Temp files writeFileAtomic leaves behind when it fails halfway. */
const temps = (dir: string): string[] => readdirSync(dir).filter((n) => /^\..*\.tmp$/.test(n))

const HEADER =
  "# sshca's ssh_config (written by `sshca config`; included from ~/.ssh/config): one block per context,\n" +
  '# each replaced in place. ssh keeps the first value it reads for a setting, and these are `Match final`\n' +
  "# sections, read in ssh's last pass: a Host or Match section elsewhere that sets the same comes first\n" +
  '# (sshca config warns of a RevokedHostKeys). Put your own settings in ~/.ssh/config, not here.\n'
const INCLUDE_MARKER = '# Added by `sshca config`: its per-context settings (RevokedHostKeys …); keep this line first.'

const SSHCA: InstalledSshca = {
  node: '/opt/node/bin/node',
  script: '/opt/sshca/bin/run.js',
  packageRoot: '/opt/sshca',
  command: '/opt/node/bin/node /opt/sshca/bin/run.js',
}

describe('sshca config on a client, in process', function () {
  this.timeout(60_000)
  let ca: ScriptedCa
  let savedHome: string | undefined
  /** $HOME, a temp folder: ~/.ssh/known_hosts and ~/.ssh/config live in it. */
  let HOME: string
  /** $SSHCA_HOME */
  let home: string
  const hostCa = generatePrivateKey('ed25519').publicKey
  const hostCa2 = generatePrivateKey('ed25519').publicKey
  const userCa = generatePrivateKey('ed25519').publicKey
  const krl = buildKrl({version: 7n, generatedAt: 1_700_000_000n, comment: '', sections: []})

  before(async () => {
    savedHome = process.env.HOME
    ca = await startScriptedCa()
  })
  after(async () => {
    process.env.HOME = savedHome
    await ca?.server.stop()
  })
  beforeEach(() => {
    HOME = tempDir('sshca-config-home-')
    process.env.HOME = HOME
    home = join(tempDir('sshca-config-'), 'sshca')
    ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa)], hostPattern: '*.example.com'})
    ca.krl = {status: 200, body: krl}
  })

  const boot = (context = 'demo', into = home) =>
    bootstrap(into, {caUrl: ca.server.url, fingerprint: ca.fingerprint, context})
  const knownHosts = () => join(HOME, '.ssh', 'known_hosts')
  const ctxDir = (name = 'demo', into = home) => join(into, 'contexts', name)
  const settings = (name = 'demo') => JSON.parse(readFileSync(join(ctxDir(name), 'context.json'), 'utf8'))
  const block = (ctx: string, pattern: string, keys: PublicKey[]) =>
    `${BEGIN(ctx)}\n${keys.map((k) => `@cert-authority ${pattern} ${k.toLine(`${ctx} host CA`)}\n`).join('')}${END(ctx)}\n`

  describe('configureKnownHosts', () => {
    it("writes the CA's block into ~/.ssh/known_hosts (0644), one @cert-authority line per host CA key, and says so", async () => {
      await boot()
      ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa), b64(hostCa2)], hostPattern: '*.example.com'})
      const r = await configureKnownHosts(home, {})
      const text = block('demo', '*.example.com', [hostCa, hostCa2])
      assert.equal(readFileSync(knownHosts(), 'utf8'), text)
      assert.equal(mode(knownHosts()), 0o644)
      assert.deepEqual(r, {
        context: 'demo',
        file: knownHosts(),
        pattern: '*.example.com',
        caPattern: '*.example.com',
        block: text,
        changed: true,
        written: true,
        backup: null,
        warnings: [],
        diff: `--- ${knownHosts()}\n+++ ${knownHosts()}\n@@ -0,0 +1,4 @@\n${text
          .split('\n')
          .slice(0, -1)
          .map((l) => `+${l}\n`)
          .join('')}`,
      })
    })

    it("keeps every other byte and the file's own mode, saving the old file beside it; the same block again writes nothing", async () => {
      await boot()
      mkdirSync(join(HOME, '.ssh'))
      const mine = '# mine\ngit.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGH1\n'
      writeFileSync(knownHosts(), mine, {mode: 0o600})
      const r = await configureKnownHosts(home, {})
      const text = mine + block('demo', '*.example.com', [hostCa])
      assert.equal(readFileSync(knownHosts(), 'utf8'), text)
      assert.equal(mode(knownHosts()), 0o600)
      assert.equal(r.backup, `${knownHosts()}.sshca-backup`)
      assert.equal(readFileSync(r.backup, 'utf8'), mine)
      assert.equal(mode(r.backup), 0o600)
      assert.equal(r.written, true)
      assert.match(
        r.diff,
        /^--- \S+\n\+\+\+ \S+\n@@ -1,2 \+1,5 @@\n # mine\n git\.example\.org [^\n]*\n\+# >>> sshca demo /,
      )

      const ino = statSync(knownHosts()).ino
      const again = await configureKnownHosts(home, {})
      assert.deepEqual(
        {changed: again.changed, written: again.written, backup: again.backup, diff: again.diff, block: again.block},
        {changed: false, written: false, backup: null, diff: '', block: block('demo', '*.example.com', [hostCa])},
      )
      assert.equal(statSync(knownHosts()).ino, ino, 'not rewritten')
    })

    it("--pattern narrows the hosts (the CA's exclusions kept); one wider than the CA's is refused and nothing is written", async () => {
      ca.roots = json({userKey: [], hostKey: [b64(hostCa)], hostPattern: '*.example.com,!bad.example.com'})
      await boot()
      const file = join(tempDir(), 'kh')
      const r = await configureKnownHosts(home, {pattern: 'web*.example.com', file})
      assert.equal(r.pattern, 'web*.example.com,!bad.example.com')
      assert.equal(r.caPattern, '*.example.com,!bad.example.com')
      assert.equal(readFileSync(file, 'utf8'), block('demo', 'web*.example.com,!bad.example.com', [hostCa]))
      const before = snapshot(HOME)
      await rejectsCode(configureKnownHosts(home, {pattern: '*.org', file}), 'ERR_USAGE')
      assert.equal(readFileSync(file, 'utf8'), block('demo', 'web*.example.com,!bad.example.com', [hostCa]))
      assert.deepEqual(snapshot(HOME), before)
    })

    it('a CA that names no hosts needs --pattern; one that publishes no host CA key is refused (ERR_CA_BAD_RESPONSE)', async () => {
      ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa)]})
      await boot()
      await rejectsCode(configureKnownHosts(home, {}), 'ERR_USAGE')
      assert.equal(existsSync(knownHosts()), false)
      const r = await configureKnownHosts(home, {pattern: '10.0.0.*'})
      assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', '10.0.0.*', [hostCa]))
      assert.equal(r.caPattern, '!*')

      ca.roots = json({userKey: [b64(userCa)], hostKey: [], hostPattern: '*.example.com'})
      await rejectsCode(configureKnownHosts(home, {pattern: '10.0.0.*'}), 'ERR_CA_BAD_RESPONSE')
      assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', '10.0.0.*', [hostCa]))
    })

    it('--dry-run returns the change and writes nothing, to a new file or an old one', async () => {
      await boot()
      const dry = await configureKnownHosts(home, {dryRun: true})
      assert.deepEqual([dry.changed, dry.written, dry.backup], [true, false, null])
      assert.match(dry.diff, /^--- \S+known_hosts\n\+\+\+ \S+known_hosts\n@@ -0,0 \+1,3 @@\n/)
      assert.equal(existsSync(knownHosts()), false)
      assert.equal(existsSync(join(HOME, '.ssh')), false)

      mkdirSync(join(HOME, '.ssh'))
      writeFileSync(knownHosts(), 'old\n', {mode: 0o644})
      const dry2 = await configureKnownHosts(home, {dryRun: true})
      assert.deepEqual([dry2.changed, dry2.written, dry2.backup], [true, false, null])
      assert.equal(readFileSync(knownHosts(), 'utf8'), 'old\n')
      assert.equal(existsSync(`${knownHosts()}.sshca-backup`), false)
    })

    it('--context names the context; without it, the current one', async () => {
      await boot('first')
      await boot('second')
      const file = join(tempDir(), 'kh')
      assert.equal((await configureKnownHosts(home, {file})).context, 'second')
      const r = await configureKnownHosts(home, {context: 'first', file})
      assert.equal(r.context, 'first')
      assert.equal(
        readFileSync(file, 'utf8'),
        block('second', '*.example.com', [hostCa]) + block('first', '*.example.com', [hostCa]),
      )
    })
  })

  describe('caKeys', () => {
    it('prints the user CA keys, or with host the host CA keys, as the CA publishes them now', async () => {
      await boot()
      ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa), b64(hostCa2)], hostPattern: '*.example.com'})
      assert.deepEqual(await caKeys(home, {}), {
        context: 'demo',
        kind: 'user',
        keys: [userCa.toLine('demo user CA')],
      })
      assert.deepEqual(await caKeys(home, {host: true}), {
        context: 'demo',
        kind: 'host',
        keys: [hostCa.toLine('demo host CA'), hostCa2.toLine('demo host CA')],
      })
      await boot('other')
      assert.equal((await caKeys(home, {context: 'demo'})).context, 'demo')
      assert.equal((await caKeys(home, {})).context, 'other')
    })
  })

  describe('overlappingContexts', () => {
    const context = (name: string, s: Record<string, unknown>) => {
      mkdirSync(ctxDir(name), {recursive: true})
      // what bootstrap writes, the pattern (and anything else) as the test says
      const settings = {name, caUrl: 'https://ca.example.com', rootFingerprint: 'ab'.repeat(32), userCaKeys: []}
      const more = {hostCaKeys: [], bootstrappedAt: '2026-11-26T00:00:00.000Z'}
      writeFileSync(join(ctxDir(name), 'context.json'), JSON.stringify({...settings, ...more, ...s}))
      writeFileSync(join(ctxDir(name), 'root_ca.crt'), ca.rootPem)
    }

    it('names the other contexts whose pattern (the configured one first) may match the same hosts, in name order', async () => {
      context('self', {hostPattern: '*.example.com'})
      context('b-web', {hostPattern: 'web.example.com'})
      context('a-all', {hostPattern: '*'})
      // configured narrower than the CA's: the configured one counts
      context('narrowed', {hostPattern: '*', configuredPattern: '*.example.org'})
      context('widened', {hostPattern: '*.example.org', configuredPattern: 'db.example.com'})
      context('none', {hostPattern: '!*'})
      context('elsewhere', {hostPattern: '*.example.net'})
      assert.deepEqual(await overlappingContexts(home, 'self', '*.example.com'), [
        {context: 'a-all', pattern: '*'},
        {context: 'b-web', pattern: 'web.example.com'},
        {context: 'widened', pattern: 'db.example.com'},
      ])
      // itself only when asked for as another
      assert.deepEqual(await overlappingContexts(home, 'x', 'self.example.com'), [
        {context: 'a-all', pattern: '*'},
        {context: 'self', pattern: '*.example.com'},
      ])
    })

    it('skips a damaged context, one without a pattern and one whose pattern does not parse, and goes on', async () => {
      mkdirSync(ctxDir('a-damaged'), {recursive: true})
      writeFileSync(join(ctxDir('a-damaged'), 'context.json'), '{not json')
      writeFileSync(join(ctxDir('a-damaged'), 'root_ca.crt'), ca.rootPem)
      context('b-nopattern', {})
      context('c-empty', {hostPattern: ''})
      context('d-unreadable', {hostPattern: '*.example.com\n@cert-authority *'})
      context('e-ok', {hostPattern: '*.example.com'})
      assert.deepEqual(await overlappingContexts(home, 'self', 'a.example.com'), [
        {context: 'e-ok', pattern: '*.example.com'},
      ])
      assert.deepEqual(await overlappingContexts(join(tempDir(), 'nothing'), 'self', '*'), [])
    })
  })

  describe('configureClient', () => {
    const opts = (o: ClientConfigOptions = {}): ClientConfigOptions => ({sshca: SSHCA, matchFinal: true, ...o})

    describe('taking turns with login and context remove (the settings lock)', () => {
      /** context remove, for real: no agent there, and a token store that takes `ms` to answer (a keyring can). */
      const remove = (
        ms = 0,
        store: TokenStore = {
          kind: 'file',
          get: async () => undefined,
          set: async () => undefined,
          delete: async () => undefined,
          keys: async () => [],
        },
      ) => {
        return contextRemove(home, 'demo', {
          agent: {socketPath: join(HOME, 'no-agent.sock')},
          tokenStore: async () => (await new Promise((r) => setTimeout(r, ms)), store),
        })
      }
      /** What a removed context must not leave: its blocks (one naming its deleted KRL) and its folder. */
      const assertGone = () => {
        assert.doesNotMatch(readFileSync(sshConfig(), 'utf8'), /sshca demo/, 'no ssh_config block')
        assert.doesNotMatch(readFileSync(knownHosts(), 'utf8'), /sshca demo/, 'no known_hosts block')
        assert.ok(!existsSync(ctxDir()), 'no folder')
      }

      it('config while context remove waits on the agent and the keyring: nothing of the context is left', async () => {
        await boot()
        await configureClient(home, opts())
        const removing = remove(500)
        // config moves the block to another known_hosts meanwhile: remove takes it from there
        const other = join(HOME, 'other_known_hosts')
        await configureClient(home, opts({pattern: 'web.example.com', file: other}))
        await removing
        assertGone()
        assert.doesNotMatch(readFileSync(other, 'utf8'), /sshca demo/, 'nor in the file config moved it to')
      })

      it('a refresh token saved while remove waited on the agent and the keyring goes too', async () => {
        await boot()
        const saved = new Set<string>()
        let asked = 0
        const store: TokenStore = {
          kind: 'file',
          get: async () => undefined,
          set: async () => undefined,
          delete: async (k) => void saved.delete(k),
          // a login saves one right after remove first asked
          keys: async (prefix) => {
            if (asked++ === 0) saved.add(`${prefix}people`)
            return asked === 1 ? [] : [...saved]
          },
        }
        const r = await remove(0, store)
        assert.equal(saved.size, 0)
        assert.equal(r.forgottenRefreshTokens, 1)
      })

      it('config and context remove waiting for the same lock: either order leaves nothing of the context', async () => {
        for (const first of ['config', 'remove']) {
          await boot()
          await configureClient(home, opts())
          let krlServed = false
          const answer = ca.server.answer
          ca.server.answer = (path, body) => {
            if (path === '/ssh/krl') krlServed = true
            return answer(path, body)
          }
          try {
            let configuring: Promise<unknown> | undefined
            let removing: Promise<unknown> | undefined
            await withSettingsLock(home, async () => {
              const startConfig = async () => {
                configuring = configureClient(home, opts({pattern: 'web.example.com'})).catch((e: Error) => e)
                await waitFor('config to fetch the KRL', () => krlServed, 10_000)
              }
              if (first === 'config') await startConfig()
              removing = remove()
              if (first === 'remove') await startConfig()
              await new Promise((r) => setTimeout(r, 200))
            })
            const outcome = await configuring
            await removing
            if (outcome instanceof Error)
              assert.equal((outcome as Error & {code?: string}).code, 'ERR_CONTEXT_NOT_FOUND')
            assertGone()
          } finally {
            ca.server.answer = answer
          }
        }
      })

      it("a login that began before config narrowed the pattern keeps config's settings and known_hosts block", async () => {
        await boot()
        const atLoginStart = await loadContext(home, 'demo')
        await configureClient(home, opts({pattern: 'web.example.com'}))
        // the login saves its own fields over what is saved now
        await updateContext(atLoginStart, (saved) => ({...saved, provisioner: 'people'}))
        assert.equal(settings().configuredPattern, 'web.example.com')
        assert.equal(settings().provisioner, 'people')
        // a host key rotation reaches known_hosts through that login: with config's pattern, not the old one
        const rotated = {...atLoginStart, hostCaKeys: [hostCa, hostCa2].map((k) => k.toLine('demo host CA'))}
        await updateContext(rotated, (saved) => ({...saved, hostCaKeys: rotated.hostCaKeys}))
        assert.equal(await syncKnownHosts(rotated), knownHosts())
        assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', 'web.example.com', [hostCa, hostCa2]))
      })

      it('a config without --pattern that read the context before a config --pattern narrowed it keeps the narrowing', async () => {
        await boot()
        await configureClient(home, opts())
        const answer = ca.server.answer
        try {
          // while config fetches the KRL (the context read, the lock not yet taken), another config narrows
          ca.server.answer = async (path, body) => {
            if (path === '/ssh/krl') {
              ca.server.answer = answer
              await configureClient(home, opts({pattern: 'web.example.com'}))
            }
            return answer(path, body)
          }
          const r = await configureClient(home, opts())
          assert.equal(r.pattern, 'web.example.com')
        } finally {
          ca.server.answer = answer
        }
        assert.equal(settings().configuredPattern, 'web.example.com')
        assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', 'web.example.com', [hostCa]))
      })

      it('config that read the context before it was bootstrapped again for another CA writes nothing (ERR_CONTEXT_NOT_FOUND)', async () => {
        await boot()
        await configureClient(home, opts())
        const other = await startScriptedCa()
        const answer = ca.server.answer
        try {
          other.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa2)], hostPattern: '*.other.example'})
          let before: unknown
          // while config fetches the old CA's list (its keys fetched already), the name is bootstrapped again
          ca.server.answer = async (path, body) => {
            if (path === '/ssh/krl') {
              ca.server.answer = answer
              await bootstrap(home, {
                caUrl: other.server.url,
                fingerprint: other.fingerprint,
                context: 'demo',
                force: true,
              })
              before = {home: snapshot(home), HOME: snapshot(HOME)}
            }
            return answer(path, body)
          }
          ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa), b64(hostCa2)], hostPattern: '*.example.com'})
          await rejectsCode(configureClient(home, opts()), 'ERR_CONTEXT_NOT_FOUND', {}, /bootstrapped again/)
          assert.deepEqual({home: snapshot(home), HOME: snapshot(HOME)}, before)
        } finally {
          ca.server.answer = answer
          await other.server.stop()
        }
      })

      it('config moving the block to another known_hosts (--known-hosts) takes it out of the file it was in', async () => {
        await boot()
        await configureClient(home, opts())
        assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', '*.example.com', [hostCa]))
        const other = join(HOME, 'other_known_hosts')
        const dry = await configureClient(home, opts({pattern: 'web.example.com', file: other, dryRun: true}))
        assert.ok(
          dry.warnings.includes(
            `the block of "demo" would be removed from ${knownHosts()}, where sshca config wrote it before`,
          ),
        )
        assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', '*.example.com', [hostCa]))
        const r = await configureClient(home, opts({pattern: 'web.example.com', file: other}))
        assert.equal(readFileSync(other, 'utf8'), block('demo', 'web.example.com', [hostCa]))
        // the wider pattern is not left trusting the CA in the file before
        assert.equal(readFileSync(knownHosts(), 'utf8'), '')
        assert.equal(readFileSync(`${knownHosts()}.sshca-backup`, 'utf8'), block('demo', '*.example.com', [hostCa]))
        assert.ok(
          r.warnings.includes(
            `the block of "demo" was removed from ${knownHosts()}, where sshca config wrote it before (backup: ${knownHosts()}.sshca-backup)`,
          ),
          r.warnings.join('\n'),
        )
        assert.equal(settings().knownHostsFile, other)
        // again into the same file: nothing else to take out
        const again = await configureClient(home, opts({pattern: 'web.example.com', file: other}))
        assert.ok(!again.warnings.some((w) => w.includes('was removed from')))
      })

      it('a login that began before the context was bootstrapped again for another CA writes nothing of the old CA into it', async () => {
        await boot()
        await configureClient(home, opts())
        const atLoginStart = await loadContext(home, 'demo')
        // the same name, bootstrapped again (--force) for another CA, with its own keys and list
        const other = await startScriptedCa()
        const client = new CaClient(atLoginStart.caUrl, atLoginStart.rootPem)
        try {
          const otherHostCa = generatePrivateKey('ed25519').publicKey
          other.roots = json({userKey: [b64(userCa)], hostKey: [b64(otherHostCa)], hostPattern: '*.other.example'})
          other.krl = {
            status: 200,
            body: buildKrl({version: 9n, generatedAt: 1_700_000_009n, comment: '', sections: []}),
          }
          await bootstrap(home, {caUrl: other.server.url, fingerprint: other.fingerprint, context: 'demo', force: true})
          const before = {home: snapshot(home), HOME: snapshot(HOME)}
          // the old CA publishes another host key and another list meanwhile: what that login learns
          ca.roots = json({userKey: [b64(userCa)], hostKey: [b64(hostCa), b64(hostCa2)], hostPattern: '*.example.com'})
          ca.krl = {status: 200, body: buildKrl({version: 8n, generatedAt: 1_700_000_008n, comment: '', sections: []})}
          const refreshed = await fetchSshRoots(atLoginStart, client)
          assert.ok(refreshed.changed, 'the login saw new keys')
          const krlNow = await refreshContextKrl(atLoginStart, client)
          assert.equal(krlNow.status, 'failed')
          assert.match(krlNow.note!, /"demo" was removed or bootstrapped again meanwhile; this list was not written/)
          assert.equal(await syncKnownHosts(atLoginStart), null)
          // its own fields, and the root it would pin after a rotation, go nowhere either
          assert.equal(await updateContext(atLoginStart, (saved) => ({...saved, provisioner: 'people'})), undefined)
          assert.equal(
            await updateContext(atLoginStart, (saved) => ({...saved, rootPem: atLoginStart.rootPem})),
            undefined,
          )
          assert.deepEqual({home: snapshot(home), HOME: snapshot(HOME)}, before)
          assert.equal(readFileSync(join(ctxDir(), 'root_ca.crt'), 'utf8'), other.rootPem)
          // the context it began with, still in place, takes the same writes
          await boot('kept')
          const kept = await loadContext(home, 'kept')
          assert.equal((await refreshContextKrl(kept, client)).status, 'refreshed')
          // a change of its own fields only: the root is not written again, nor the settings when nothing changed
          const inode = (f: string) => statSync(join(ctxDir('kept'), f)).ino
          const inodes = [inode('root_ca.crt'), inode('context.json')]
          await updateContext(kept, (saved) => ({...saved}))
          assert.deepEqual([inode('root_ca.crt'), inode('context.json')], inodes)
          await updateContext(kept, (saved) => ({...saved, provisioner: 'people'}))
          assert.equal(inode('root_ca.crt'), inodes[0])
          assert.notEqual(inode('context.json'), inodes[1])
          const rotated = `${kept.rootPem}${other.rootPem}`
          assert.equal((await updateContext(kept, (saved) => ({...saved, rootPem: rotated})))?.rootPem, rotated)
          assert.equal(readFileSync(join(ctxDir('kept'), 'root_ca.crt'), 'utf8'), rotated)
        } finally {
          client.close()
          await other.server.stop()
        }
      })
    })
    const sshConfig = () => join(home, 'ssh_config')
    const userConfig = () => join(HOME, '.ssh', 'config')
    const krlFile = (name = 'demo') => join(ctxDir(name), 'revoked_host_keys.krl')
    const loginCommand = (name = 'demo', extra = '') =>
      `env SSHCA_HOME=${home} /opt/node/bin/node /opt/sshca/bin/run.js login --ensure --quiet --context ${name}${extra}`
    const sshBlock = (o: {
      name?: string
      match?: string
      krl?: string | null
      extra?: string[]
      login?: string | null
    }) => {
      const name = o.name ?? 'demo'
      const match = o.match ?? 'Match final host *.example.com'
      const lines = [
        BEGIN(name),
        match,
        ...(o.krl === null
          ? []
          : [
              "  # the CA's revocation list: ssh refuses the host certificates it revoked (refreshed by sshca config and sshca login)",
              `  RevokedHostKeys ${o.krl ?? krlFile(name)}`,
            ]),
        ...(o.extra ?? []),
        ...(o.login === null
          ? []
          : [
              `${match} exec "${o.login ?? loginCommand(name)}"`,
              `  # ssh runs this before connecting: it returns at once while a valid certificate of "${name}" is at hand, else signs in`,
            ]),
        "  # used when the ssh-agent cannot hold this context's certificate (login then writes these 0600 files)",
        `  IdentityFile ${join(ctxDir(name), 'id_sshca')}`,
        `  CertificateFile ${join(ctxDir(name), 'id_sshca-cert.pub')}`,
        END(name),
      ]
      return lines.map((l) => `${l}\n`).join('')
    }
    const includeText = () => `${INCLUDE_MARKER}\nInclude ${sshConfig()}\n`

    it("writes known_hosts, the KRL, sshca's ssh_config (0600) and its Include (0600), and remembers what it configured", async () => {
      await boot()
      // a newer list than bootstrap fetched: config refreshes it
      const newer = buildKrl({version: 8n, generatedAt: 1_700_000_001n, comment: '', sections: []})
      ca.krl = {status: 200, body: newer}
      const r = await configureClient(home, opts())
      assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', '*.example.com', [hostCa]))
      assert.deepEqual(readFileSync(krlFile()), newer)
      assert.equal(readFileSync(sshConfig(), 'utf8'), HEADER + sshBlock({}))
      assert.equal(mode(sshConfig()), 0o600)
      assert.equal(readFileSync(userConfig(), 'utf8'), includeText())
      assert.equal(mode(userConfig()), 0o600)
      assert.equal(r.krl.status, 'refreshed')
      assert.deepEqual(r.warnings, [])
      assert.deepEqual(r.sshConfig, {
        file: sshConfig(),
        block: sshBlock({}),
        changed: true,
        diff: `--- ${sshConfig()}\n+++ ${sshConfig()}\n@@ -0,0 +1,14 @@\n${(HEADER + sshBlock({}))
          .split('\n')
          .slice(0, -1)
          .map((l) => `+${l}\n`)
          .join('')}`,
        loginCommand: loginCommand(),
        include: {
          file: userConfig(),
          line: `Include ${sshConfig()}`,
          changed: true,
          backup: null,
          diff: `--- ${userConfig()}\n+++ ${userConfig()}\n@@ -0,0 +1,2 @@\n+${INCLUDE_MARKER}\n+Include ${sshConfig()}\n`,
        },
      })
      const s = settings()
      assert.equal(s.configuredPattern, '*.example.com')
      assert.equal(s.acceptedCaPattern, '*.example.com')
      assert.equal(s.knownHostsFile, knownHosts())
      assert.deepEqual(s.sshConfig, {
        pattern: '*.example.com',
        krlFile: krlFile(),
        krlNote: null,
        matchFinal: true,
        loginCommand: loginCommand(),
      })
      assert.deepEqual(temps(home), [])
      assert.deepEqual(temps(join(HOME, '.ssh')), [])
    })

    it('run again with nothing new, writes nothing: no file is replaced, the context is not saved', async () => {
      await boot()
      await configureClient(home, opts())
      const files = [knownHosts(), sshConfig(), userConfig(), join(ctxDir(), 'context.json')]
      const inodes = files.map((f) => statSync(f).ino)
      const r = await configureClient(home, opts())
      assert.deepEqual(
        files.map((f) => statSync(f).ino),
        inodes,
      )
      assert.deepEqual([r.changed, r.written, r.diff], [false, false, ''])
      assert.deepEqual(
        [r.sshConfig?.changed, r.sshConfig?.diff, r.sshConfig?.include.changed, r.sshConfig?.include.diff],
        [false, '', false, ''],
      )
      assert.equal(r.sshConfig?.include.backup, null)
      assert.equal(existsSync(`${userConfig()}.sshca-backup`), false)
    })

    it("another context's block and the person's own ~/.ssh/config lines are kept; the old config is saved with its mode", async () => {
      await boot('one')
      await boot('demo')
      await configureClient(home, opts({context: 'one'}))
      const mine = 'Host *\n  ServerAliveInterval 30\n'
      writeFileSync(userConfig(), mine)
      chmodSync(userConfig(), 0o644)
      const r = await configureClient(home, opts())
      assert.equal(readFileSync(sshConfig(), 'utf8'), HEADER + sshBlock({name: 'one'}) + sshBlock({}))
      assert.equal(readFileSync(userConfig(), 'utf8'), includeText() + mine)
      assert.equal(mode(userConfig()), 0o644)
      assert.equal(r.sshConfig?.include.backup, `${userConfig()}.sshca-backup`)
      assert.equal(readFileSync(`${userConfig()}.sshca-backup`, 'utf8'), mine)
      assert.equal(mode(`${userConfig()}.sshca-backup`), 0o644)
      // both contexts vouch for *.example.com: each is told of the other
      assert.equal(r.warnings.length, 1)
      assert.ok(r.warnings[0]!.includes('"one"') && r.warnings[0]!.includes('"demo"'), r.warnings[0])
    })

    it('a ~/.ssh/config or known_hosts that is not UTF-8 is refused (ERR_INPUT) and kept byte for byte', async () => {
      // read as UTF-8 and written back, a Latin-1 `Host jos\xe9` became U+FFFD and ssh no longer matched it
      await boot()
      const latin1 = Buffer.from('Host jos\xe9\n  User jos\xe9\n', 'latin1')
      mkdirSync(dirname(userConfig()), {recursive: true})
      writeFileSync(userConfig(), latin1)
      await rejectsCode(configureClient(home, opts()), 'ERR_INPUT')
      assert.deepEqual(readFileSync(userConfig()), latin1)
      writeFileSync(userConfig(), 'Host *\n')
      const kh = join(tempDir(), 'known_hosts')
      const khBytes = Buffer.from('h\xf4te.example.com ssh-ed25519 AAAA\n', 'latin1')
      writeFileSync(kh, khBytes)
      await rejectsCode(configureClient(home, opts({file: kh})), 'ERR_INPUT')
      assert.deepEqual(readFileSync(kh), khBytes)
    })

    it('a ~/.ssh/config that is a link (a dotfiles repository): the file it points to gets the Include, the link stays', async () => {
      await boot()
      const dotfiles = tempDir()
      writeFileSync(join(dotfiles, 'ssh_config'), 'Host x\n', {mode: 0o600})
      mkdirSync(join(HOME, '.ssh'))
      symlinkSync(join(dotfiles, 'ssh_config'), userConfig())
      const r = await configureClient(home, opts())
      assert.equal(readlinkSync(userConfig()), join(dotfiles, 'ssh_config'))
      assert.equal(readFileSync(join(dotfiles, 'ssh_config'), 'utf8'), `${includeText()}Host x\n`)
      assert.equal(r.sshConfig?.include.file, join(dotfiles, 'ssh_config'))
      assert.equal(r.sshConfig?.include.backup, join(dotfiles, 'ssh_config.sshca-backup'))
    })

    it("sshDir puts the Include into that folder's config, not ~/.ssh/config", async () => {
      await boot()
      const dir = tempDir()
      const r = await configureClient(home, opts({sshDir: dir}))
      assert.equal(readFileSync(join(dir, 'config'), 'utf8'), includeText())
      assert.equal(r.sshConfig?.include.file, join(dir, 'config'))
      assert.equal(existsSync(userConfig()), false)
    })

    it("--no-ssh-config leaves both ssh_configs alone, and a previous run's settings stay remembered", async () => {
      await boot()
      const r = await configureClient(home, opts({sshConfig: false}))
      assert.equal(r.sshConfig, null)
      assert.equal(existsSync(sshConfig()), false)
      assert.equal(existsSync(userConfig()), false)
      assert.equal(readFileSync(knownHosts(), 'utf8'), block('demo', '*.example.com', [hostCa]))
      assert.equal(settings().configuredPattern, '*.example.com')
      assert.equal('sshConfig' in settings(), false)

      await configureClient(home, opts())
      const remembered = settings().sshConfig
      const r2 = await configureClient(home, opts({sshConfig: false, pattern: 'web.example.com'}))
      assert.equal(r2.sshConfig, null)
      assert.equal(settings().configuredPattern, 'web.example.com')
      assert.deepEqual(settings().sshConfig, remembered)
      assert.equal(readFileSync(sshConfig(), 'utf8'), HEADER + sshBlock({}))
    })

    it('--no-auto-login: no Match exec section and no login command', async () => {
      await boot()
      const r = await configureClient(home, opts({autoLogin: false}))
      assert.equal(r.sshConfig?.loginCommand, null)
      assert.equal(readFileSync(sshConfig(), 'utf8'), HEADER + sshBlock({login: null}))
      assert.equal(settings().sshConfig.loginCommand, null)
    })

    it('the login command: this sshca by its paths, SSHCA_HOME only when not the default, a token file by its full path', async () => {
      const defaultHome = join(HOME, '.sshca')
      await boot('demo', defaultHome)
      const r = await configureClient(defaultHome, opts({identityTokenFile: 'token'}))
      assert.equal(
        r.sshConfig?.loginCommand,
        `/opt/node/bin/node /opt/sshca/bin/run.js login --ensure --quiet --context demo --identity-token-file ${resolve('token')}`,
      )
      // a single executable: node and sshca are one file
      const single = {node: '/opt/sshca/sshca', script: undefined, packageRoot: undefined, command: '/opt/sshca/sshca'}
      const r2 = await configureClient(defaultHome, opts({sshca: single, dryRun: true}))
      assert.equal(r2.sshConfig?.loginCommand, '/opt/sshca/sshca login --ensure --quiet --context demo')
      assert.deepEqual(r2.warnings, [])
    })

    it("warns when ssh would run sshca from npx's cache, unless it runs no sshca (--no-auto-login)", async () => {
      await boot()
      const npx = {
        node: '/usr/bin/node',
        script: '/root/.npm/_npx/0123abcd/node_modules/sshca/bin/run.js',
        packageRoot: '/root/.npm/_npx/0123abcd/node_modules/sshca',
        command: '/usr/bin/node /root/.npm/_npx/0123abcd/node_modules/sshca/bin/run.js',
      }
      const r = await configureClient(home, opts({sshca: npx, dryRun: true}))
      assert.equal(r.warnings.length, 1)
      assert.ok(r.warnings[0]!.includes(npx.script), r.warnings[0])
      assert.deepEqual((await configureClient(home, opts({sshca: npx, dryRun: true, autoLogin: false}))).warnings, [])
      // a folder whose name only contains "_npx" is not npx's cache
      const mine = {
        ...npx,
        script: '/opt/my_npx/sshca/bin/run.js',
        command: '/usr/bin/node /opt/my_npx/sshca/bin/run.js',
      }
      assert.deepEqual((await configureClient(home, opts({sshca: mine, dryRun: true}))).warnings, [])
    })

    it('a known_hosts ssh does not read by default gets a UserKnownHostsFile line; the default one does not', async () => {
      await boot()
      const file = join(tempDir(), 'known_hosts')
      const r = await configureClient(home, opts({file}))
      assert.equal(r.file, file)
      assert.equal(
        readFileSync(sshConfig(), 'utf8'),
        HEADER +
          sshBlock({
            extra: [
              '  # the @cert-authority lines of this context are in a file ssh does not read by default',
              `  UserKnownHostsFile ${file} ~/.ssh/known_hosts ~/.ssh/known_hosts2`,
            ],
          }),
      )
      assert.equal(settings().knownHostsFile, file)
      assert.equal(settings().sshConfig.knownHostsFile, file)
      await configureClient(home, opts({file: knownHosts()}))
      assert.equal(readFileSync(sshConfig(), 'utf8'), HEADER + sshBlock({}))
      assert.equal('knownHostsFile' in settings().sshConfig, false)
    })

    it('Match final only for an ssh that knows it: as told, else as `ssh -V` says', async () => {
      await boot()
      const r = await configureClient(home, opts({matchFinal: false, dryRun: true}))
      assert.equal(r.sshConfig?.block, sshBlock({match: 'Match host *.example.com'}))
      const asked = await configureClient(home, {sshca: SSHCA, dryRun: true})
      const local = supportsMatchFinal(localSshVersion())
      assert.equal(
        asked.sshConfig?.block,
        sshBlock({match: local ? 'Match final host *.example.com' : 'Match host *.example.com'}),
      )
    })

    it('a CA without a KRL: said in a warning and in the block, which names no RevokedHostKeys', async () => {
      ca.krl = {status: 404, body: ''}
      await boot()
      const r = await configureClient(home, opts())
      assert.equal(r.krl.status, 'unavailable')
      assert.deepEqual(r.warnings, [r.krl.note])
      assert.ok(r.krl.note)
      assert.equal(
        readFileSync(sshConfig(), 'utf8'),
        HEADER + sshBlock({krl: null, extra: [`  # no RevokedHostKeys: ${r.krl.note}`]}),
      )
      assert.deepEqual(settings().sshConfig.krlFile, null)
      assert.deepEqual(settings().sshConfig.krlNote, r.krl.note)
    })

    it('--dry-run writes nothing anywhere (not even the KRL) and returns the changes', async () => {
      await boot()
      const before = {home: snapshot(home), HOME: snapshot(HOME)}
      ca.krl = {status: 200, body: buildKrl({version: 9n, generatedAt: 2n, comment: '', sections: []})}
      const r = await configureClient(home, opts({dryRun: true}))
      assert.deepEqual({home: snapshot(home), HOME: snapshot(HOME)}, before)
      assert.deepEqual(readFileSync(krlFile()), krl)
      assert.deepEqual([r.changed, r.written], [true, false])
      assert.equal(r.sshConfig?.changed, true)
      assert.equal(r.sshConfig?.include.changed, true)
      assert.notEqual(r.sshConfig?.diff, '')
      assert.notEqual(r.sshConfig?.include.diff, '')
    })

    it('a write that fails stops there: the file keeps its old bytes, no temp file is left, the context is not saved', async () => {
      await boot()
      mkdirSync(join(HOME, '.ssh'))
      writeFileSync(userConfig(), 'Host old\n', {mode: 0o600})
      // the backup cannot be written: a folder stands where it goes
      mkdirSync(`${userConfig()}.sshca-backup`)
      const saved = readFileSync(join(ctxDir(), 'context.json'), 'utf8')
      await assert.rejects(configureClient(home, opts()), {code: 'EISDIR'})
      assert.equal(readFileSync(userConfig(), 'utf8'), 'Host old\n')
      assert.deepEqual(temps(join(HOME, '.ssh')), [])
      assert.deepEqual(temps(home), [])
      // what came before it in the documented order is complete
      assert.equal(readFileSync(sshConfig(), 'utf8'), HEADER + sshBlock({}))
      assert.equal(readFileSync(join(ctxDir(), 'context.json'), 'utf8'), saved)
    })

    it('closes its connections to the CA, also when it fails', async () => {
      await boot()
      await ca.server.allClosed()
      await configureClient(home, opts())
      await ca.server.allClosed()
      mkdirSync(join(HOME, '.ssh', 'config.sshca-backup'), {recursive: true})
      writeFileSync(userConfig(), 'Host old\n')
      await assert.rejects(configureClient(home, opts({pattern: 'web.example.com'})))
      await ca.server.allClosed()
    })
  })
})

describe("chosenPattern: what config writes, and what it adopts of a change of the CA's host pattern", () => {
  type Accepted = Parameters<typeof chosenPattern>[0]
  const ctx = (o: Partial<Accepted>): Accepted => ({name: 'corp', hostPattern: '*.example.com', ...o})
  /** The error chosenPattern throws. */
  const refusal = (c: Accepted): Error & {code?: string; hint?: string} => {
    try {
      chosenPattern(c)
    } catch (err) {
      return err as Error
    }
    throw new Error('not refused')
  }

  it("--pattern: the person's choice within the CA's pattern (its exclusions kept), which is then what they accepted; one matching every host is taken, with bootstrap's warning", () => {
    const c = ctx({
      hostPattern: '*.example.com,!bad.example.com',
      acceptedCaPattern: '*.old.example',
      configuredPattern: 'x.old.example',
    })
    assert.deepEqual(chosenPattern(c, 'web.example.com'), {
      pattern: 'web.example.com,!bad.example.com',
      acceptedCaPattern: '*.example.com,!bad.example.com',
      warnings: [],
    })
    throwsCode(() => chosenPattern(ctx({}), '*'), 'ERR_USAGE', {}, /wider than the CA's host pattern/)
    assert.deepEqual(chosenPattern(ctx({hostPattern: '*', acceptedCaPattern: '*.evil.test'}), '*'), {
      pattern: '*',
      acceptedCaPattern: '*',
      warnings: [broadPatternWarning('corp', '*')],
    })
  })

  it("without --pattern, the CA's pattern unchanged: the configured pattern, else the CA's as bootstrap showed it", () => {
    assert.deepEqual(chosenPattern(ctx({acceptedCaPattern: '*.example.com'})), {
      pattern: '*.example.com',
      acceptedCaPattern: '*.example.com',
      warnings: [],
    })
    assert.deepEqual(chosenPattern(ctx({acceptedCaPattern: '*.example.com', configuredPattern: 'web.example.com'})), {
      pattern: 'web.example.com',
      acceptedCaPattern: '*.example.com',
      warnings: [],
    })
    // a CA that names no hosts: the person chooses, and their choice then stays
    throwsCode(
      () => chosenPattern(ctx({hostPattern: '!*', acceptedCaPattern: '!*'})),
      'ERR_USAGE',
      {},
      /names no hosts/,
    )
    assert.equal(
      chosenPattern(ctx({hostPattern: '!*', acceptedCaPattern: '!*', configuredPattern: '10.0.0.*'})).pattern,
      '10.0.0.*',
    )
    // a context of an older sshca (no acceptedCaPattern): the CA's as saved
    assert.deepEqual(chosenPattern(ctx({})), {
      pattern: '*.example.com',
      acceptedCaPattern: '*.example.com',
      warnings: [],
    })
    assert.deepEqual(chosenPattern(ctx({configuredPattern: 'db.example.com'})), {
      pattern: 'db.example.com',
      acceptedCaPattern: '*.example.com',
      warnings: [],
    })
  })

  it('the CA widened its pattern ("*.evil.test" → "*"): what was accepted is kept and said, with the command that adopts the new one', () => {
    assert.deepEqual(chosenPattern(ctx({name: 'evil', hostPattern: '*', acceptedCaPattern: '*.evil.test'})), {
      pattern: '*.evil.test',
      acceptedCaPattern: '*.evil.test',
      warnings: [
        `the CA "evil" changed its host pattern from "*.evil.test" to "*" ("*" matches hosts in any domain: every host you connect to) since you accepted "*.evil.test": sshca config wrote "*.evil.test", no host beyond what you accepted; to trust its host certificates for "*", say so: sshca config --context evil --pattern '*'`,
      ],
    })
    // a narrowing of the person's survives it
    const narrowed = chosenPattern(
      ctx({name: 'evil', hostPattern: '*', acceptedCaPattern: '*.evil.test', configuredPattern: 'web.evil.test'}),
    )
    assert.deepEqual([narrowed.pattern, narrowed.acceptedCaPattern], ['web.evil.test', '*.evil.test'])
    assert.match(narrowed.warnings.join('\n'), /since you accepted "web\.evil\.test"/)
    // another domain added: kept, said, and no word of "any domain"
    const more = chosenPattern(ctx({hostPattern: '*.example.com,*.example.org', acceptedCaPattern: '*.example.com'}))
    assert.equal(more.pattern, '*.example.com')
    assert.equal(more.warnings.length, 1)
    assert.doesNotMatch(more.warnings[0]!, /any domain/)
    // an exclusion the CA dropped stays
    const dropped = chosenPattern(ctx({acceptedCaPattern: '*.example.com,!bastion.example.com'}))
    assert.equal(dropped.pattern, '*.example.com,!bastion.example.com')
    assert.equal(dropped.warnings.length, 1)
  })

  it("the CA narrowed its pattern: followed, the person's exclusions kept, and said", () => {
    const r = chosenPattern(
      ctx({
        hostPattern: '*.prod.example.com',
        acceptedCaPattern: '*.example.com',
        configuredPattern: '*.example.com,!db.prod.example.com',
      }),
    )
    assert.deepEqual([r.pattern, r.acceptedCaPattern], ['*.prod.example.com,!db.prod.example.com', '*.example.com'])
    assert.equal(r.warnings.length, 1)
    assert.match(r.warnings[0]!, /from "\*\.example\.com" to "\*\.prod\.example\.com"/)
  })

  it('any other change is refused (ERR_TRUST_HOST_PATTERN), with the command that chooses', () => {
    const other = refusal(ctx({hostPattern: '*.other.example', acceptedCaPattern: '*.example.com'}))
    assert.equal(other.code, 'ERR_TRUST_HOST_PATTERN')
    assert.match(
      other.message,
      /from "\*\.example\.com" to "\*\.other\.example", which does not cover the hosts you accepted \("\*\.example\.com"\)/,
    )
    assert.match(other.hint ?? '', /sshca config --context corp --pattern '\*\.other\.example'/)
    // a CA that named no hosts when bootstrapped names some now: none were ever accepted
    const none = refusal(ctx({hostPattern: '*', acceptedCaPattern: '!*'}))
    assert.equal(none.code, 'ERR_TRUST_HOST_PATTERN')
    assert.match(none.message, /"\*" matches hosts in any domain[^]*\(none yet\)/)
  })

  it('a pattern matching hosts in any domain, never configured, is refused without --pattern; once configured it stays, with the warning', () => {
    for (const p of ['*', '?*', '**', '*,!x.invalid', '*example.com']) {
      const err = refusal(ctx({hostPattern: p, acceptedCaPattern: p}))
      assert.equal(err.code, 'ERR_TRUST_HOST_PATTERN', p)
      assert.match(err.message, /matches hosts in any domain/, p)
      assert.match(err.hint ?? '', new RegExp(`--pattern '${p.replace(/[*?]/g, '\\$&')}'`), p)
    }
    // a context of an older sshca whose CA says "*" (maybe since bootstrap, maybe not)
    assert.equal(refusal(ctx({hostPattern: '*'})).code, 'ERR_TRUST_HOST_PATTERN')
    // "*.com" reads as "*.corp" does: not one of them
    assert.equal(chosenPattern(ctx({hostPattern: '*.com', acceptedCaPattern: '*.com'})).pattern, '*.com')
    assert.deepEqual(chosenPattern(ctx({hostPattern: '*', acceptedCaPattern: '*', configuredPattern: '*'})), {
      pattern: '*',
      acceptedCaPattern: '*',
      warnings: [broadPatternWarning('corp', '*')],
    })
    // a change of the CA's and a pattern matching every host: both said, the change first
    const both = chosenPattern(ctx({hostPattern: '*,!x.test', acceptedCaPattern: '*', configuredPattern: '*'}))
    assert.equal(both.pattern, '*,!x.test')
    assert.deepEqual(both.warnings.slice(1), [broadPatternWarning('corp', '*,!x.test')])
    assert.match(both.warnings[0]!, /changed its host pattern from "\*" to "\*,!x\.test"/)
  })

  it('broadPatternWarning: only for a pattern with an entry that matches hosts in any domain, naming each', () => {
    assert.equal(broadPatternWarning('corp', '*.example.com,10.0.*'), undefined)
    assert.equal(
      broadPatternWarning('corp', '*,?*.example.com,**'),
      `the host pattern of "corp" is "*,?*.example.com,**": "*", "**" matches hosts in any domain, so the CA's host certificates vouch for every host you connect to; narrow it: sshca config --context corp --pattern "*.your-domain"`,
    )
  })
})

describe('replaceWithBackup', () => {
  it('writes the backup as a new file: a link planted at its name is replaced, not followed', async () => {
    // a known_hosts in a folder someone else can write (--known-hosts FILE), and their link at the
    // backup's name to a file of ours: copying onto that name overwrote and re-moded the file linked to
    const d = tempDir()
    const file = join(d, 'known_hosts')
    const victim = join(d, 'authorized_keys')
    writeFileSync(file, 'old known hosts\n', {mode: 0o644})
    writeFileSync(victim, 'ssh-ed25519 AAAA mine\n', {mode: 0o600})
    symlinkSync(victim, `${file}.sshca-backup`)
    assert.equal(await replaceWithBackup(file, 'new known hosts\n', 0o644), `${file}.sshca-backup`)
    assert.equal(readFileSync(victim, 'utf8'), 'ssh-ed25519 AAAA mine\n')
    assert.equal(mode(victim), 0o600)
    assert.equal(lstatSync(`${file}.sshca-backup`).isSymbolicLink(), false)
    assert.equal(readFileSync(`${file}.sshca-backup`, 'utf8'), 'old known hosts\n')
    assert.equal(mode(`${file}.sshca-backup`), 0o644)
    assert.equal(readFileSync(file, 'utf8'), 'new known hosts\n')
  })
})
