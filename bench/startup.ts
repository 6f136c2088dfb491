/** (b) `sshca list` wall time against bare `node -e 0`, with a real ssh-agent holding a certificate. */
import {spawn} from 'node:child_process'
import {existsSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {AgentClient} from '../src/ssh/agent.ts'
import {signCertificate} from '../src/ssh/cert.ts'
import {generatePrivateKey} from '../src/ssh/private-key.ts'
import {keySigner} from '../src/ssh/signature.ts'
import {print, wallMs} from './lib.ts'

export async function withAgent<T>(fn: (socket: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'sshca-bench-'))
  const socket = join(dir, 'agent.sock')
  const agent = spawn('ssh-agent', ['-D', '-a', socket], {stdio: 'ignore'})
  try {
    for (let i = 0; i < 200 && !existsSync(socket); i++) await sleep(10)
    return await fn(socket)
  } finally {
    agent.kill()
    rmSync(dir, {recursive: true, force: true})
  }
}

export async function benchStartup(): Promise<void> {
  await withAgent(async (socket) => {
    const ca = generatePrivateKey('ed25519')
    const key = generatePrivateKey('ed25519')
    const now = BigInt(Math.floor(Date.now() / 1000))
    const cert = await signCertificate(
      {
        type: 'user',
        publicKey: key.publicKey,
        serial: 1n,
        keyId: 'bench',
        principals: ['alice'],
        validAfter: now - 60n,
        validBefore: now + 3600n,
      },
      keySigner(ca.keyObject),
    )
    await AgentClient.with({socketPath: socket}, (a) => a.addCertificate(key, cert, {lifetimeSeconds: 600}))
    const env = {...process.env, SSH_AUTH_SOCK: socket}
    const [bare, list, listOclif] = wallMs([
      {cmd: process.execPath, args: ['-e', '0'], env},
      {cmd: process.execPath, args: ['bin/run.cjs', 'list'], env},
      {cmd: process.execPath, args: ['bin/run.cjs', 'list'], env: {...env, SSHCA_NO_FAST_PATH: '1'}},
    ])
    const ratio = list.median / bare.median
    print('Start-up (median wall time of 15 runs, taking turns)', [
      {name: 'node -e 0', value: `${bare.median.toFixed(0)} ms`},
      {
        name: 'sshca list',
        value: `${list.median.toFixed(0)} ms = ${ratio.toFixed(2)}× bare node`,
        target: '≤ 1.3× (issue 14)',
        ok: ratio <= 1.3,
      },
      {
        name: 'sshca list through oclif',
        value: `${listOclif.median.toFixed(0)} ms = ${(listOclif.median / bare.median).toFixed(2)}× (without the fast path)`,
      },
    ])
  })
}
