/**
 * `npm run bench -- hsm`: HTTPS POST /ssh/sign throughput of a CA whose SSH CA keys are in a PKCS#11
 * token (SoftHSM 2, Debian's softhsm2), served by `sshca ca serve --workers 0`, `1` and `2`: the main
 * thread alone, and worker threads whose signatures the main thread's one token process makes.
 * 16 keep-alive connections, a unique ES256 token per request, the CA's default durability. Taking
 * turns (0 1 2, 0 1 2, …), so load from elsewhere falls on all three; medians and the range.
 * On the 2-core box the load generator (this process) shares the cores with the CA and its token
 * process, so `--workers 2` has no core of its own: judge the scaling on a quiet, larger machine.
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {Agent, request} from 'undici'
import {writePolicy} from '../src/demo/policy-file.ts'
import {generatePrivateKey} from '../src/ssh/private-key.ts'
import {sshca} from '../test/helpers/cli.ts'
import {deployProvisioner, startGithubIssuer} from '../test/helpers/github-issuer.ts'
import {stopAll} from '../test/helpers/proc.ts'
import {initSoftHsmToken, serveCa, SOFTHSM_MODULE, softHsmPresent} from '../test/helpers/softhsm.ts'
import {removeTempDirs, tempDir} from '../test/helpers/tmp.ts'
import {median, print} from './lib.ts'

const ROUNDS = Number(process.env.SSHCA_BENCH_ROUNDS ?? 3)
const AMOUNT = Number(process.env.SSHCA_BENCH_AMOUNT ?? 4000)
const WARMUP = 500
const CONNECTIONS = 16
const WORKERS = [0, 1, 2]

export async function benchHsm(): Promise<void> {
  if (!softHsmPresent()) {
    console.log(`\nhsm: ${SOFTHSM_MODULE} is missing; install it with: npm run test:deps (Debian's softhsm2)`)
    return
  }
  const base = tempDir('sshca-bench-hsm-')
  const dir = join(base, 'ca')
  const gh = await startGithubIssuer('sshca-ci', 'ES256')
  try {
    const {env, pinFile, passwordFile} = await initSoftHsmToken(base, 'bench')
    const kms = `pkcs11:token=bench?module-path=${SOFTHSM_MODULE}&pin-source=file:${pinFile}`
    const init = await sshca(
      ['ca', 'init', '--dir', dir, '--dns', '127.0.0.1', '--kms', kms, '--password-file', passwordFile, '--json'],
      {env},
    )
    if (init.code !== 0) throw new Error(`ca init --kms failed: ${init.stderr}`)
    await writePolicy(join(dir, 'ca.yaml'), {
      audit: {file: join(dir, 'audit.log')},
      keys: {kms},
      ...(process.env.SSHCA_BENCH_DURABILITY === 'normal'
        ? {db: {type: 'sqlite', path: 'db/sshca.sqlite', durability: 'normal'}}
        : {}),
      // every request comes from one address: the per-address limit would measure the limiter
      limits: {rate: false},
      provisioners: [deployProvisioner(gh.issuer, ['deploy'])],
    })
    const rootPem = readFileSync(join(dir, 'certs', 'root_ca.crt'), 'utf8')
    const publicKey = generatePrivateKey('ed25519').publicKey.blob.toString('base64')
    const rates = new Map<number, number[]>(WORKERS.map((w) => [w, []]))
    for (let round = 1; round <= ROUNDS; round++) {
      for (const workers of WORKERS) {
        const tokens = await Promise.all(Array.from({length: WARMUP + AMOUNT}, () => gh.mint()))
        const ca = await serveCa(dir, passwordFile, env, ['--workers', String(workers)])
        const agent = new Agent({connect: {ca: rootPem}, connections: CONNECTIONS})
        /** `n` requests over the connections, each with a token of its own; throws on any answer but 201. */
        const load = async (n: number): Promise<void> => {
          let sent = 0
          await Promise.all(
            Array.from({length: CONNECTIONS}, async () => {
              while (sent < n) {
                sent++
                const res = await request(`${ca.url}/ssh/sign`, {
                  method: 'POST',
                  dispatcher: agent,
                  headers: {'content-type': 'application/json'},
                  body: JSON.stringify({publicKey, ott: tokens.pop(), certType: 'user'}),
                })
                const body = await res.body.text()
                if (res.statusCode !== 201) throw new Error(`--workers ${workers}: HTTP ${res.statusCode}: ${body}`)
              }
            }),
          )
        }
        try {
          await load(WARMUP)
          const t0 = performance.now()
          await load(AMOUNT)
          const rate = AMOUNT / ((performance.now() - t0) / 1000)
          rates.get(workers)!.push(rate)
          console.log(`  round ${round}: --workers ${workers} ${rate.toFixed(0)}/s`)
        } finally {
          await agent.close()
          await ca.stop()
        }
      }
    }
    const main = median(rates.get(0)!)
    print(
      `CA keys in a PKCS#11 token (SoftHSM 2): POST /ssh/sign, ${CONNECTIONS} connections, median of ${ROUNDS} rounds of ${AMOUNT}`,
      WORKERS.map((w) => {
        const all = rates.get(w)!
        const m = median(all)
        return {
          name: w === 0 ? '--workers 0 (the main thread)' : `--workers ${w}`,
          value: `${m.toFixed(0)}/s (${Math.min(...all).toFixed(0)}–${Math.max(...all).toFixed(0)})${w === 0 ? '' : ` = ${(m / main).toFixed(2)}× the main thread alone`}`,
        }
      }),
    )
  } finally {
    await gh.stop()
    await stopAll()
    removeTempDirs()
  }
}
