/**
 * (e) `sshca login --identity-token-file` from process start to certificate in the agent, against a
 * local CA over HTTPS, against bare `node -e 0`; medians, each run with a fresh token. Beside it, the
 * floor Node sets: a script that does only what no login can skip (an ed25519 key, one POST /ssh/sign
 * over TLS pinned to the root) — node:tls, node:crypto and the first secure context cost about as much
 * as a bare start-up on the 2-core box — and the same request written by hand over node:tls, without
 * Node's HTTP client.
 */
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {startTestCa} from '../test/helpers/ca.ts'
import {startGithubIssuer} from '../test/helpers/github-issuer.ts'
import {median, print, timedRun, wallMs} from './lib.ts'
import {withAgent} from './startup.ts'

export async function benchLogin(): Promise<void> {
  const gh = await startGithubIssuer('sshca-ci', 'ES256')
  const t = await startTestCa({
    provisioners: [
      {
        name: 'ci',
        type: 'oidc',
        issuer: gh.issuer,
        audience: 'sshca-ci',
        rules: [
          {
            name: 'deploy',
            match: {repository: 'acme/app'},
            certificate: {principals: ['deploy'], ttl: '10m', keyId: 'gha:${repository}:${run_id}'},
          },
        ],
      },
    ],
  })
  const dir = mkdtempSync(join(tmpdir(), 'sshca-bench-login-'))
  try {
    await withAgent(async (socket) => {
      const env = {...process.env, SSHCA_HOME: join(dir, 'home'), SSH_AUTH_SOCK: socket}
      const boot = await timedRun(
        process.execPath,
        ['bin/run.cjs', 'bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'bench'],
        env,
      )
      if (boot.code !== 0) throw new Error(boot.stderr)
      const runs = 15
      const files: string[] = []
      for (let i = 0; i < runs + 2; i++) {
        const f = join(dir, `token-${i}`)
        writeFileSync(f, await gh.mint(), {mode: 0o600}) // login refuses a token file others may read
        files.push(f)
      }
      const floorScript = join(dir, 'floor.cjs')
      writeFileSync(floorScript, FLOOR)
      const rawScript = join(dir, 'raw-floor.cjs')
      writeFileSync(rawScript, RAW_FLOOR)
      const floorEnv = {...env, CA_URL: t.url, ROOT_FILE: join(dir, 'home', 'contexts', 'bench', 'root_ca.crt')}
      // the four interleaved, so each sees the same neighbours
      const bares: number[] = []
      const times: number[] = []
      const floors: number[] = []
      const raws: number[] = []
      for (const [i, f] of files.entries()) {
        const b = await timedRun(process.execPath, ['-e', '0'], env)
        const r = await timedRun(process.execPath, ['bin/run.cjs', 'login', '--identity-token-file', f], env)
        if (r.code !== 0) throw new Error(`login failed: ${r.stderr}`)
        writeFileSync(f, await gh.mint())
        const fl = await timedRun(process.execPath, [floorScript, f], floorEnv)
        if (fl.code !== 0) throw new Error(`the floor script failed: ${fl.stderr}`)
        writeFileSync(f, await gh.mint())
        const raw = await timedRun(process.execPath, [rawScript, f], floorEnv)
        if (raw.code !== 0) throw new Error(`the raw floor script failed: ${raw.stderr}`)
        if (i >= 2) {
          // two warm-up runs (compile cache, page cache)
          bares.push(b.ms)
          times.push(r.ms)
          floors.push(fl.ms)
          raws.push(raw.ms)
        }
      }
      const bare = {median: median(bares)}
      const m = median(times)
      const floor = median(floors)
      const rawFloor = median(raws)
      // what ssh's Match exec runs before every connection, the last login's certificate in the agent
      const [bareAgain, ensure] = wallMs([
        {cmd: process.execPath, args: ['-e', '0'], env},
        {cmd: process.execPath, args: ['bin/run.cjs', 'login', '--ensure'], env},
      ])
      print('Login start-up (median of 15; fresh token each run; local CA over HTTPS; real ssh-agent)', [
        {name: 'node -e 0', value: `${bare.median.toFixed(0)} ms`},
        {
          name: 'sshca login --identity-token-file',
          value: `${m.toFixed(0)} ms = ${(m / bare.median).toFixed(2)}× bare node (start → certificate in the agent)`,
          target: '≤ 2× (issue 14)',
          ok: m / bare.median <= 2,
        },
        {
          name: 'the floor: key + one pinned HTTPS POST',
          value: `${floor.toFixed(0)} ms = ${(floor / bare.median).toFixed(2)}× bare node (sshca login = ${(m / floor).toFixed(2)}× the floor)`,
        },
        {
          name: 'the same over bare TLS, no node:https',
          value: `${rawFloor.toFixed(0)} ms = ${(rawFloor / bare.median).toFixed(2)}× bare node (no agent, no files, no HTTP parser: Node's own cost of this one request)`,
        },
        {
          name: 'sshca login --ensure, certificate held',
          value: `${ensure.median.toFixed(0)} ms = ${(ensure.median / bareAgain.median).toFixed(2)}× bare node (${bareAgain.median.toFixed(0)} ms, taking turns): before every ssh connection`,
        },
      ])
    })
  } finally {
    await t.stop()
    await gh.stop()
    rmSync(dir, {recursive: true, force: true})
  }
}

/**
 * Lower still: the same key and request over node:tls with a hand-written HTTP/1.1 request, its answer
 * judged by the status line alone. No client should work this way (sshca's reads its answer through
 * Node's HTTP parser); it shows what Node's start, node:crypto, node:tls, the first secure context and
 * the CA's answer cost before a login has done anything of its own.
 */
const RAW_FLOOR = `const fs = require('node:fs'), tls = require('node:tls'), crypto = require('node:crypto')
const ott = fs.readFileSync(process.argv[2], 'utf8').trim()
const x = Buffer.from(crypto.generateKeyPairSync('ed25519').publicKey.export({format: 'jwk'}).x, 'base64url')
const type = Buffer.from('ssh-ed25519')
const blob = Buffer.concat([Buffer.from([0, 0, 0, type.length]), type, Buffer.from([0, 0, 0, 32]), x])
const body = JSON.stringify({publicKey: blob.toString('base64'), ott, certType: 'user'})
const url = new URL(process.env.CA_URL)
const s = tls.connect({host: url.hostname, port: Number(url.port), ca: fs.readFileSync(process.env.ROOT_FILE)}, () =>
  s.write('POST /ssh/sign HTTP/1.1\\r\\nhost: ' + url.host + '\\r\\ncontent-type: application/json\\r\\ncontent-length: ' + Buffer.byteLength(body) + '\\r\\nconnection: close\\r\\n\\r\\n' + body))
let head = ''
s.on('data', (d) => {
  head += d
  if (head.includes('\\r\\n')) process.exit(head.startsWith('HTTP/1.1 201 ') ? 0 : 1)
})
s.on('error', (err) => { console.error(err.message); process.exit(1) })
`

/** The floor: Node doing only what every token login must (CommonJS: no ES loader either). */
const FLOOR = `const fs = require('node:fs'), https = require('node:https'), crypto = require('node:crypto')
const ott = fs.readFileSync(process.argv[2], 'utf8').trim()
const x = Buffer.from(crypto.generateKeyPairSync('ed25519').publicKey.export({format: 'jwk'}).x, 'base64url')
const type = Buffer.from('ssh-ed25519')
const blob = Buffer.concat([Buffer.from([0, 0, 0, type.length]), type, Buffer.from([0, 0, 0, 32]), x])
const body = JSON.stringify({publicKey: blob.toString('base64'), ott, certType: 'user'})
const headers = {'content-type': 'application/json', 'content-length': Buffer.byteLength(body)}
const req = https.request(process.env.CA_URL + '/ssh/sign', {method: 'POST', ca: fs.readFileSync(process.env.ROOT_FILE), headers}, (res) => {
  res.resume()
  res.on('end', () => process.exit(res.statusCode === 201 ? 0 : 1))
})
req.on('error', (err) => { console.error(err.message); process.exit(1) })
req.end(body)
`
