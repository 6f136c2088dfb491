/**
 * A real CA for tests: `initCa` into a temp dir, the policy written into its ca.yaml, served over
 * HTTPS on 127.0.0.1 at a port the OS picked. Requests go through undici, trusting only its root.
 */
import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Agent, request} from 'undici'
import {initCa, type InitResult} from '../../src/ca/init.ts'
import {writePolicy} from '../../src/demo/policy-file.ts'
import {startCa, type RunningCa, type StartOptions} from '../../src/ca/server.ts'
import {tempDir} from './tmp.ts'
import {readAuditLines} from './audit.ts'

export const PASSWORD = 'correct horse battery staple'

export interface TestCa {
  init: InitResult
  ca: RunningCa
  url: string
  rootPem: string
  auditFile: string
  passwordFile: string
  dispatcher: Agent
  audit(): Record<string, unknown>[]
  /** The audit lines written since the last call to `mark()`. */
  since(mark: number): Record<string, unknown>[]
  mark(): number
  call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
    headers?: Record<string, string>,
  ): Promise<{status: number; headers: Record<string, string | string[] | undefined>; text: string; json: unknown}>
  setPolicy(settings: Record<string, unknown>): Promise<void>
  stop(): Promise<void>
}

/** A CA directory with `settings` (provisioners, ssh, disabled …) merged into its ca.yaml. */
export async function makeCaDir(
  settings: Record<string, unknown>,
  name = 'Test',
): Promise<{init: InitResult; passwordFile: string}> {
  const base = tempDir('sshca-ca-')
  const init = await initCa({dir: join(base, 'ca'), name, dnsNames: ['127.0.0.1'], password: PASSWORD})
  await writePolicy(init.config, settings)
  const passwordFile = join(base, 'password.txt')
  writeFileSync(passwordFile, `${PASSWORD}\n`, {mode: 0o600})
  return {init, passwordFile}
}

export {writePolicy} from '../../src/demo/policy-file.ts'

export async function startTestCa(
  settings: Record<string, unknown>,
  opts: Partial<StartOptions> = {},
): Promise<TestCa> {
  const {init, passwordFile} = await makeCaDir(settings)
  // in ca.yaml, as an operator would set it: `ca revoke` appends to the same file as the server
  const auditFile = join(init.dir, 'audit.log')
  await writePolicy(init.config, {audit: {file: auditFile}, ...settings})
  // a test's clock or verifier (functions) cannot reach worker threads: such a CA serves on this thread
  const workers = opts.workers ?? (opts.clock || opts.verifier ? 0 : undefined)
  const ca = await startCa({
    configPath: init.config,
    password: PASSWORD,
    address: '127.0.0.1:0',
    ...opts,
    ...(workers === undefined ? {} : {workers}),
  })
  const rootPem = readFileSync(join(init.dir, 'certs', 'root_ca.crt'), 'utf8')
  const dispatcher = new Agent({connect: {ca: rootPem}})
  const audit = () => readAuditLines(auditFile)
  return {
    init,
    ca,
    url: ca.url,
    rootPem,
    auditFile,
    passwordFile,
    dispatcher,
    audit,
    mark: () => audit().length,
    since: (m) => audit().slice(m),
    async call(method, path, body, headers = {}) {
      const res = await request(`${ca.url}${path}`, {
        method,
        dispatcher,
        headers: {...(body === undefined ? {} : {'content-type': 'application/json'}), ...headers},
        body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      })
      const text = await res.body.text()
      let json: unknown
      try {
        json = JSON.parse(text)
      } catch {
        json = undefined
      }
      return {status: res.statusCode, headers: res.headers, text, json}
    },
    setPolicy: (s) => writePolicy(init.config, s),
    async stop() {
      await ca.close()
      await dispatcher.close()
    },
  }
}
