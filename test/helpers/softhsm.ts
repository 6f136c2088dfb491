/**
 * CA keys in a real PKCS#11 token for the tests: a SoftHSM 2 token in a temp dir of its own, and a
 * `ca serve` process of the CA made in it, with the API reached through its pinned root.
 */
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {Agent as HttpAgent, request} from 'undici'
import {PASSWORD} from './ca.ts'
import {sshca} from './cli.ts'
import {onCleanup, runOk} from './proc.ts'
import {spawnSshca, type Running} from './world.ts'

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so'
export const TOKEN_PIN = '12345678'

/**
 * A token labelled `label` in `base`/tokens (SOFTHSM2_CONF in the returned env, with `env` added),
 * its user PIN in a 0600 file, and the CA password file `ca init` and `ca serve` read.
 */
export async function initSoftHsmToken(
  base: string,
  label: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{env: NodeJS.ProcessEnv; pinFile: string; passwordFile: string}> {
  const all = {SOFTHSM2_CONF: join(base, 'softhsm2.conf'), ...env}
  writeFileSync(
    all.SOFTHSM2_CONF,
    `directories.tokendir = ${join(base, 'tokens')}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  )
  await runOk('mkdir', ['-p', join(base, 'tokens')])
  await runOk(
    'softhsm2-util',
    ['--init-token', '--free', '--label', label, '--so-pin', '87654321', '--pin', TOKEN_PIN],
    {
      env: {...process.env, ...all},
    },
  )
  const pinFile = join(base, 'hsm-pin')
  const passwordFile = join(base, 'password')
  writeFileSync(pinFile, `${TOKEN_PIN}\n`, {mode: 0o600})
  writeFileSync(passwordFile, `${PASSWORD}\n`, {mode: 0o600})
  return {env: all, pinFile, passwordFile}
}

/** `sshca ca rotate STEP --kind user` on the CA in `dir`, the token's environment in `env`; asserts it succeeded. */
export async function rotateUserKey(
  dir: string,
  step: 'prepare' | 'activate',
  env: NodeJS.ProcessEnv,
  passwordFile: string,
): Promise<void> {
  const r = await sshca(
    [
      'ca',
      'rotate',
      step,
      '--kind',
      'user',
      '--config',
      join(dir, 'ca.yaml'),
      '--password-file',
      passwordFile,
      '--json',
    ],
    {env},
  )
  if (r.code !== 0) throw new Error(`ca rotate ${step} exited ${r.code}: ${r.stderr}`)
}

export const softHsmPresent = (): boolean => existsSync(SOFTHSM_MODULE)

export interface ServedCa {
  serve: Running
  url: string
  /** One API call through the CA's pinned root: its status and JSON body, and how long it took. */
  call(
    method: 'GET' | 'POST',
    path: string,
    body?: unknown,
  ): Promise<{status: number; json: Record<string, unknown>; ms: number}>
  stop(): Promise<void>
}

/** `ca serve` of the CA in `dir` (its ca.yaml) with `args` (--workers), on a port the OS picks; stopped at the test's cleanup too. */
export async function serveCa(
  dir: string,
  passwordFile: string,
  env: NodeJS.ProcessEnv,
  args: string[] = [],
): Promise<ServedCa> {
  const serve = spawnSshca(
    [
      'ca',
      'serve',
      '--config',
      join(dir, 'ca.yaml'),
      '--password-file',
      passwordFile,
      '--address',
      '127.0.0.1:0',
      '--json',
      ...args,
    ],
    env,
  )
  const stop = async () => {
    serve.child.kill('SIGTERM')
    await serve.exit()
  }
  onCleanup(stop)
  const [, url] = await serve.waitFor(/"url": "(https:\/\/127\.0\.0\.1:\d+)"/, 60_000)
  const http = new HttpAgent({connect: {ca: readFileSync(join(dir, 'certs', 'root_ca.crt'), 'utf8')}})
  return {
    serve,
    url: url!,
    async call(method, path, body) {
      const t0 = performance.now()
      const res = await request(`${url}${path}`, {
        method,
        dispatcher: http,
        headers: body ? {'content-type': 'application/json'} : {},
        body: body ? JSON.stringify(body) : undefined,
        headersTimeout: 60_000,
      })
      const json = JSON.parse(await res.body.text()) as Record<string, unknown>
      return {status: res.statusCode, json, ms: performance.now() - t0}
    },
    async stop() {
      await stop()
      await http.close()
    },
  }
}
