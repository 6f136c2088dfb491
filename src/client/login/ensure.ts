/**
 * `login --ensure`'s question, answered without a network request and without loading the sign-in
 * machinery: does the context have a valid certificate at hand? ssh asks it before every
 * connection (Match exec), so this path stays small (src/cli/login-run.ts tries it first).
 */
import {readFile} from 'node:fs/promises'
import {AgentClient} from '../../ssh/agent.ts'
import {nowSeconds, parseCertificateLine, type Certificate} from '../../ssh/cert.ts'
import {exists} from '../../util/fs.ts'
import {
  expiredOf,
  fromContext,
  removeAll,
  signedByOneOf,
  userCaKeys,
  type RemovedCertificate,
} from '../local/agent-hygiene.ts'
import {certificateView} from '../local/certificates.ts'
import {agentlessFiles, type Context} from '../home/home.ts'
import type {LoginDeps, LoginOptions, LoginResult} from './login-types.ts'

/** `--ensure` is satisfied by a certificate with more than this left. */
export const ENSURE_MARGIN_SECONDS = 60

/** The certificate in login's result (--json): `list`'s view of it (open ends null), in login's shape. */
export function loginCertificateView(cert: Certificate, now: bigint): LoginResult['certificate'] {
  const {keyId, principals, serial, validAfter, validBefore, secondsLeft, publicKey} = certificateView(cert, now)
  return {
    keyId,
    principals,
    serial,
    validAfter,
    validBefore,
    secondsLeft,
    // hashed when read (--json): the held certificate's answer never loads node:crypto
    get fingerprint() {
      return publicKey.fingerprint
    },
  }
}

/**
 * A valid certificate of the context at hand, without any network request: in the agent (any of
 * the context's, valid for more than a minute, naming the identity if one was given), or in the
 * context's agentless files, or in --out's files. The agent's expired certificates of this context
 * are removed on the way.
 */
export async function heldCertificate(
  ctx: Context,
  o: Pick<LoginOptions, 'identity' | 'out'>,
  deps: Pick<LoginDeps, 'agent' | 'clock'>,
): Promise<LoginResult | undefined> {
  const now = nowSeconds(deps.clock)
  const cas = userCaKeys(ctx)
  const usable = (c: Certificate): boolean =>
    c.type === 'user' &&
    signedByOneOf(c, cas) &&
    c.validAfter <= now &&
    c.validBefore - now > BigInt(ENSURE_MARGIN_SECONDS) &&
    (!o.identity || c.principals.includes(o.identity) || c.keyId === o.identity)
  const result = (
    c: Certificate,
    socket: string | null,
    files: {key: string; certificate: string} | null,
    removed: RemovedCertificate[],
  ): LoginResult => ({
    context: ctx.name,
    caUrl: ctx.caUrl,
    provisioner: null,
    method: 'existing',
    skipped: true,
    certificate: loginCertificateView(c, now),
    agent: {added: false, socket, lifetimeSeconds: null, removed, fallback: null},
    files,
    refreshTokenStore: null,
    krl: null,
    caKeys: null,
  })
  if (o.out === undefined) {
    const agent = await AgentClient.connect(deps.agent).catch(() => undefined)
    if (agent) {
      try {
        const ids = await agent.list()
        const removed = await removeAll(agent, expiredOf(ids, cas, now), 'expired')
        const found = ids.find((id) => fromContext(id, cas) && usable(id.certificate))
        if (found?.certificate) return result(found.certificate, agent.socketPath, null, removed)
      } finally {
        agent.close()
      }
    }
  }
  const files =
    o.out !== undefined
      ? {key: o.out, certificate: `${o.out}-cert.pub`}
      : ctx.agentless
        ? agentlessFiles(ctx)
        : undefined
  if (files && (await exists(files.key))) {
    try {
      const {cert} = parseCertificateLine(await readFile(files.certificate, 'utf8'))
      if (usable(cert)) return result(cert, null, files, [])
    } catch {
      // no certificate there, or not one that parses: sign in
    }
  }
  return undefined
}
