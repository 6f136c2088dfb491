#!/usr/bin/env node
// sshca entry point. Daily commands take a path that skips importing @oclif/core (see src/cli/fast.ts):
// one bundle each in dist/fast/ (scripts/bundle-fast.ts).
// No static imports: the Node.js version is checked before anything that a too-old Node cannot load.
const major = Number(process.versions.node.split('.')[0])
if (major < 22) {
  const message = `sshca needs Node.js 22 or newer; this is ${process.version} (${process.execPath})`
  const hint = 'install Node.js 22 or 24 (nodejs.org, your package manager, or `nvm install 24`) and run sshca again'
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify({error: {code: 'ERR_NODE_VERSION', message, hint}}, null, 2)}\n`)
  else process.stderr.write(`Error [ERR_NODE_VERSION]: ${message}\n  → ${hint}\n`)
  process.exit(9)
}
const {enableCompileCache} = await import('node:module')
enableCompileCache?.()
const argv = process.argv.slice(2)
const fast = argv[0] === 'list' || argv[0] === 'login' || argv[0] === 'proxycommand' ? argv[0] : undefined
if (!fast || !(await (await import(`../dist/fast/${fast}.js`)).tryFastPath(argv.slice(1)))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
