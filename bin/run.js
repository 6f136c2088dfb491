#!/usr/bin/env node
// sshca entry point. Daily commands take a path that skips importing @oclif/core (see src/cli/fast.ts):
// one bundle each in dist/fast/ (scripts/bundle-fast.ts).
// No static imports: the Node.js version is checked before anything that a too-old Node cannot load.
// 22.16: node:sqlite unflagged with DatabaseSync#isTransaction (the CA's store); package.json's engines says the same
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 22 || (major === 22 && minor < 16)) {
  const message = `sshca needs Node.js 22.16 or newer; this is ${process.version} (${process.execPath})`
  const hint = 'install Node.js 22 or 24 (nodejs.org, your package manager, or `nvm install 24`) and run sshca again'
  if (process.argv.includes('--json'))
    process.stdout.write(`${JSON.stringify({error: {code: 'ERR_NODE_VERSION', message, hint}}, null, 2)}\n`)
  else process.stderr.write(`Error [ERR_NODE_VERSION]: ${message}\n  → ${hint}\n`)
  process.exit(9)
}
// a reader that stops early (`sshca ca --help | head -1`) closes the pipe: that ends the command, quietly
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})
// built-in modules through getBuiltinModule: an ES import of one builds a facade that loads all of it
const {enableCompileCache, createRequire} = process.getBuiltinModule('node:module')
enableCompileCache?.()
const argv = process.argv.slice(2)
// list, login, proxycommand: their bundle (CommonJS, scripts/bundle-fast.ts says why); anything else (--version): src/cli/fast.ts
const bundled = argv[0] === 'list' || argv[0] === 'login' || argv[0] === 'proxycommand'
const {tryFastPath} = bundled
  ? createRequire(import.meta.url)(`../dist/fast/${argv[0]}.cjs`)
  : await import('../dist/cli/fast.js')
if (!(await tryFastPath(argv))) {
  const {execute} = await import('@oclif/core')
  await execute({dir: import.meta.url})
}
