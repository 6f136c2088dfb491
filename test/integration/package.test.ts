/**
 * The npm package, checked on every `npm test` without installing it (the install itself, on Node 22
 * and 24, is `npm run test:dist`: test/distribution/npm-install.dist.ts): the prepublishOnly check passes on
 * the checkout and catches what would break an installed sshca; `--version` says how sshca was
 * installed; `completion` prints what completions/ holds.
 */
import assert from 'node:assert/strict'
import {cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {checkPackage, importsIn, packageOf} from '../../scripts/check-package.ts'
import {installKind} from '../../src/cli/version.ts'
import {ROOT, sshca} from '../helpers/cli.ts'
import {startAgent} from '../helpers/openssh.ts'
import {tempDir} from '../helpers/tmp.ts'

/** A copy of what `npm pack` reads, with node_modules linked, to break on purpose. */
function copyOfCheckout(): string {
  const dir = tempDir('sshca-pkg-')
  for (const f of [
    'package.json',
    'bin',
    'dist',
    'completions',
    'oclif.manifest.json',
    'README.md',
    'CHANGELOG.md',
    'SECURITY.md',
    'LICENSE',
  ]) {
    cpSync(join(ROOT, f), join(dir, f), {recursive: true})
  }
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  return dir
}

describe('the npm package', function () {
  this.timeout(120_000)

  it('the checkout passes the prepublishOnly check', () => {
    assert.deepEqual(checkPackage(ROOT), [])
  })

  it('the check refuses a private package, a runtime import of a dev dependency, a stale manifest and a missing command file', () => {
    const dir = copyOfCheckout()
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
    pkg.private = true
    pkg.devDependencies.jose = pkg.dependencies.jose // jose needed at run time, moved to dev
    delete pkg.dependencies.jose
    pkg.files.push('!dist/commands/list.js', '!dist/fast/list.cjs')
    writeFileSync(join(dir, 'package.json'), JSON.stringify(pkg, null, 2))
    const manifest = JSON.parse(readFileSync(join(dir, 'oclif.manifest.json'), 'utf8'))
    manifest.commands.list.flags.raw.summary = 'something else'
    writeFileSync(join(dir, 'oclif.manifest.json'), JSON.stringify(manifest))
    const problems = checkPackage(dir).join('\n')
    assert.match(problems, /"private": true/)
    assert.match(problems, /imports jose, and jose is not in dependencies/)
    assert.match(problems, /oclif\.manifest\.json does not match the commands in dist/)
    assert.match(problems, /the tarball lacks dist\/commands\/list\.js/)
    assert.match(problems, /the tarball lacks dist\/fast\/list\.cjs/)
  })

  it('reads the imports of built modules and names their packages', () => {
    const js = `import 'reflect-metadata';\nimport { a } from "./x.js";\nexport * from '@scope/p/sub';\nconst k = await import('pg');\nimport x from 'node:fs';\nvar y = require("yaml");`
    assert.deepEqual(importsIn(js).sort(), ['./x.js', '@scope/p/sub', 'node:fs', 'pg', 'reflect-metadata', 'yaml'])
    assert.deepEqual(['./x.js', '@scope/p/sub', 'node:fs', 'fs/promises', 'pg', 'yaml/util'].map(packageOf), [
      undefined,
      '@scope/p',
      undefined,
      undefined,
      'pg',
      'yaml',
    ])
  })

  it('tells the installations apart by where the package sits', () => {
    const none = () => false
    assert.equal(installKind('/usr/local/lib/node_modules/sshca', {exists: none, platform: 'linux'}).kind, 'npm-global')
    assert.equal(
      installKind('/usr/local/lib/node_modules/sshca', {exists: none, platform: 'linux'}).upgrade,
      'npm install -g --prefix /usr/local sshca@latest',
    )
    assert.equal(installKind('/home/a/.npm/_npx/1a2b/node_modules/sshca', {exists: none}).kind, 'npx')
    assert.equal(installKind('/srv/app/node_modules/sshca', {exists: none, platform: 'linux'}).kind, 'npm-local')
    assert.equal(
      installKind('C:\\npm\\node_modules\\sshca', {exists: (p) => p.endsWith('sshca.cmd'), platform: 'win32'}).kind,
      'npm-global',
    )
    assert.equal(installKind('/work/sshca', {exists: (p) => p.endsWith('.git')}).kind, 'checkout')
    assert.equal(installKind('/opt/sshca', {exists: none}).kind, 'unpacked')
  })

  it('sshca --version says the version, how it was installed and how to upgrade it', async () => {
    const {version} = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
    const text = await sshca(['--version'])
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout, new RegExp(`^sshca ${version.replace(/\./g, '\\.')}\n {2}installed: +a checkout at `))
    assert.match(text.stdout, /\n {2}upgrade: +git -C .* pull/)
    const json = await sshca(['--version', '--json'])
    assert.equal(json.code, 0, json.stderr)
    const doc = JSON.parse(json.stdout)
    assert.equal(doc.version, version)
    assert.equal(doc.installed.kind, 'checkout')
    assert.equal(doc.node.version, process.version)
  })

  it('SSHCA_KEYRING=keyring where no keyring answers (no D-Bus session) is refused plainly, exit 9', async () => {
    const home = tempDir('sshca-nokeyring-')
    const agent = await startAgent()
    const r = await sshca(['logout', '--all', '--json'], {
      env: {
        HOME: home,
        SSHCA_HOME: join(home, '.sshca'),
        SSHCA_KEYRING: 'keyring',
        DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent',
        SSH_AUTH_SOCK: agent.socket,
      },
    }).finally(() => agent.stop())
    assert.equal(r.code, 9, r.stdout + r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.error.code, 'ERR_KEYRING_UNAVAILABLE')
    assert.match(doc.error.hint, /unset SSHCA_KEYRING/)
  })

  it('a $SSHCA_HOME written by a newer sshca is refused (exit 9, ERR_HOME_LAYOUT) and left as it was', async () => {
    const home = tempDir('sshca-newer-home-')
    const sshcaHome = join(home, '.sshca')
    mkdirSync(join(sshcaHome, 'contexts'), {recursive: true, mode: 0o700})
    writeFileSync(join(sshcaHome, 'layout.json'), '{"layout": 999}\n', {mode: 0o600})
    const r = await sshca(['config', '--dry-run', '--json'], {env: {HOME: home, SSHCA_HOME: sshcaHome}})
    assert.equal(r.code, 9, r.stdout + r.stderr)
    assert.equal(JSON.parse(r.stdout).error.code, 'ERR_HOME_LAYOUT')
    assert.equal(readFileSync(join(sshcaHome, 'layout.json'), 'utf8'), '{"layout": 999}\n')
  })

  it('sshca completion SHELL prints the committed completion file; an unknown shell is a usage error', async () => {
    for (const [shell, file] of [
      ['bash', 'sshca.bash'],
      ['zsh', '_sshca'],
      ['fish', 'sshca.fish'],
    ]) {
      const r = await sshca(['completion', shell!])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout, readFileSync(join(ROOT, 'completions', file!), 'utf8'))
    }
    const bad = await sshca(['completion', 'tcsh'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /ERR_USAGE/)
  })

  it('the bash completion completes commands, subcommands and the completion shells in a real bash', async () => {
    const {runOk} = await import('../helpers/proc.ts')
    const script = `source ${join(ROOT, 'completions', 'sshca.bash')}
comp() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _sshca; echo "\${COMPREPLY[*]}"; }
comp sshca com
comp sshca ca mi
comp sshca completion ''`
    const out = (await runOk('bash', ['--norc', '-c', script])).stdout.split('\n')
    assert.equal(out[0], 'completion')
    assert.equal(out[1], 'migrate')
    assert.match(out[2]!, /^bash zsh fish /)
  })
})
