/**
 * `npm run test:dist` (not part of `npm test`: a minute or more): the tarball `npm pack` makes,
 * installed with `npm install -g --prefix` into an empty folder, as a user would, on Node.js 24 (the
 * project's) and 22 (the oldest line sshca supports, fetched once from the registry into
 * .cache/node-22 by scripts/node22.sh). Only `dependencies` get installed: the runs below prove that
 * nothing the CLI needs is a dev dependency. Prints the installed size.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {ROOT} from '../helpers/cli.ts'
import {startAgent} from '../helpers/openssh.ts'
import {run, runOk} from '../helpers/proc.ts'
import {tempDir} from '../helpers/tmp.ts'

const NODE_24 = join(ROOT, 'node_modules', 'node', 'bin', 'node')
const NODE_22 = join(ROOT, '.cache', 'node-22', 'node_modules', 'node', 'bin', 'node')
const {version} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {version: string}

/** PATH with this node first and the system's tools (npm, ssh-keygen, ssh-agent, sshd) after it; no checkout's node_modules/.bin. */
const pathFor = (node: string): string => [dirname(node), '/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin'].join(':')

let tarball = ''

before(async function () {
  this.timeout(120_000)
  if (!existsSync(join(ROOT, 'dist', 'cli', 'fast.js')))
    throw new Error('dist/ is missing: `npm run test:dist` builds it')
  const out = tempDir('sshca-pack-')
  // --ignore-scripts: dist/ is built already (prepare would build it again)
  const r = await runOk('npm', ['pack', '--ignore-scripts', '--pack-destination', out], {
    cwd: ROOT,
    env: {...process.env, PATH: pathFor(NODE_24)},
    timeoutMs: 120_000,
  })
  tarball = join(out, r.stdout.trim().split('\n').pop()!)
  assert.ok(existsSync(tarball), r.stdout)
})

for (const [line, node] of [
  ['24', NODE_24],
  ['22', NODE_22],
] as const) {
  describe(`npm install -g of the packed tarball, on Node.js ${line}`, function () {
    this.timeout(300_000)
    let prefix = ''
    let env: NodeJS.ProcessEnv = {}
    let bin = ''

    before(async function () {
      if (!existsSync(node))
        throw new Error(`${node} is missing: run \`bash scripts/node22.sh\` (npm run test:dist does)`)
      assert.match(execFileSync(node, ['--version'], {encoding: 'utf8'}), new RegExp(`^v${line}\\.`))
      prefix = tempDir(`sshca-prefix-${line}-`)
      const home = tempDir('sshca-home-')
      env = {HOME: home, PATH: pathFor(node), NO_COLOR: '1', SSHCA_HOME: join(home, '.sshca')}
      const started = Date.now()
      // npm keeps the user's HOME (their npmrc: registry, proxy, cache); sshca runs get the empty one
      await runOk(
        'npm',
        ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', tarball],
        {env: {...process.env, PATH: pathFor(node)}, timeoutMs: 240_000},
      )
      process.stderr.write(
        `      (npm install -g on Node.js ${line}: ${((Date.now() - started) / 1000).toFixed(1)} s; installed size ${du(prefix)})\n`,
      )
      bin = join(prefix, 'bin', 'sshca')
    })

    it('installs only the runtime dependencies, none of the dev ones', () => {
      const installed = new Set(readdirSync(join(prefix, 'lib', 'node_modules', 'sshca', 'node_modules')))
      for (const dev of ['typescript', 'mocha', 'oclif', 'eslint', 'esbuild', 'postject', 'undici', 'playwright-core'])
        assert.equal(installed.has(dev), false, `${dev} was installed`)
      assert.ok(installed.has('oidc-provider'), 'sshca demo needs oidc-provider')
    })

    it('sshca --version names this version, this Node.js and the npm global install', async () => {
      const r = await run(bin, ['--version'], {env})
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, new RegExp(`^sshca ${version.replace(/\./g, '\\.')}\n`))
      assert.match(r.stdout, new RegExp(`installed: +the npm global package in ${prefix}\n`))
      assert.match(r.stdout, new RegExp(`node: +v${line}\\.`))
      assert.match(r.stdout, new RegExp(`upgrade: +npm install -g --prefix ${prefix} sshca@latest`))
    })

    it('sshca list --help and sshca completion bash work from the prefix', async () => {
      const help = await run(bin, ['list', '--help'], {env})
      assert.equal(help.code, 0, help.stderr)
      assert.match(help.stdout, /USAGE\n {2}\$ sshca list/)
      const comp = await run(bin, ['completion', 'bash'], {env})
      assert.equal(comp.code, 0, comp.stderr)
      assert.match(comp.stdout, /complete -F _sshca sshca/)
    })

    it('sshca demo --auto runs the whole flow from the prefix', async () => {
      const r = await run(bin, ['demo', '--auto', '--json'], {
        env: {...env, SSH_AUTH_SOCK: '', DISPLAY: ''},
        timeoutMs: 180_000,
      })
      assert.equal(r.code, 0, r.stderr)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.list.certificates.length, 1)
      assert.ok(doc.steps.some((s: {title: string}) => /Signed in as demo@example.com/.test(s.title)))
    })

    it('sshca list reads an agent from the prefix', async () => {
      const agent = await startAgent()
      try {
        const r = await run(bin, ['list', '--json'], {env: {...env, SSH_AUTH_SOCK: agent.socket}})
        assert.equal(r.code, 0, r.stderr)
        assert.deepEqual(JSON.parse(r.stdout).certificates, [])
      } finally {
        await agent.stop()
      }
    })
  })
}

function du(dir: string): string {
  const kb = Number(execFileSync('du', ['-sk', dir], {encoding: 'utf8'}).split('\t')[0])
  return `${(kb / 1024).toFixed(1)} MB on disk`
}
