/**
 * (e) `sshca login --identity-token-file` from process start to certificate in the agent, against a
 * local CA over HTTPS, against bare `node -e 0`; medians, each run with a fresh token.
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
        ['bin/run.js', 'bootstrap', '--ca-url', t.url, '--fingerprint', t.init.rootFingerprint, '--context', 'bench'],
        env,
      )
      if (boot.code !== 0) throw new Error(boot.stderr)
      const runs = 15
      const files: string[] = []
      for (let i = 0; i < runs + 2; i++) {
        const f = join(dir, `token-${i}`)
        writeFileSync(f, await gh.mint())
        files.push(f)
      }
      const bare = wallMs(process.execPath, ['-e', '0'], env)
      const times: number[] = []
      for (const [i, f] of files.entries()) {
        const r = await timedRun(process.execPath, ['bin/run.js', 'login', '--identity-token-file', f], env)
        if (r.code !== 0) throw new Error(`login failed: ${r.stderr}`)
        if (i >= 2) times.push(r.ms) // two warm-up runs (compile cache, page cache)
      }
      const m = median(times)
      print('Login start-up (median of 15; fresh token each run; local CA over HTTPS; real ssh-agent)', [
        {name: 'node -e 0', value: `${bare.median.toFixed(0)} ms`},
        {
          name: 'sshca login --identity-token-file',
          value: `${m.toFixed(0)} ms = ${(m / bare.median).toFixed(2)}× bare node (start → certificate in the agent)`,
          target: '≤ 2× (issue 14)',
          ok: m / bare.median <= 2,
        },
      ])
    })
  } finally {
    await t.stop()
    await gh.stop()
    rmSync(dir, {recursive: true, force: true})
  }
}
