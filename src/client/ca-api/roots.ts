/**
 * Following a CA's root rotation from the root this machine pins: GET /roots (over TLS that already
 * trusts only the pinned roots) lists the CA's published roots and, during a rotation, the old root's
 * certificate of the new one. A new root is pinned only when such a cross-certificate is signed by a
 * root pinned here and certifies exactly that root's subject and key; nothing the CA merely lists is
 * trusted. A pinned root the CA no longer publishes is dropped, as long as another pinned root still
 * is (trust never falls to zero here: that takes `bootstrap --force`).
 */
import {createHash, X509Certificate} from 'node:crypto'
import {join} from 'node:path'
import {SshcaError} from '../../errors.ts'
import {RootsResponse} from '../../protocol/api.ts'
import type {CaClient} from './ca-client.ts'
import {ROOT_FILE, type Context} from '../home/home.ts'

const fp = (c: X509Certificate): string => createHash('sha256').update(c.raw).digest('hex')

/** The certificates of a pinned root file; ERR_INPUT naming `o.what` (and the fix) when a block does not parse. */
export function splitPems(text: string, o: {what: string; hint: string}): X509Certificate[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m, i) => {
    try {
      return new X509Certificate(m[0])
    } catch (err) {
      // a damaged file, not an internal error: its message says which and what fixes it
      throw new SshcaError('ERR_INPUT', `${o.what}: certificate ${i + 1} does not parse (${(err as Error).message})`, {
        hint: o.hint,
      })
    }
  })
}

const samePublicKey = (a: X509Certificate, b: X509Certificate): boolean =>
  a.publicKey.export({type: 'spki', format: 'der'}).equals(b.publicKey.export({type: 'spki', format: 'der'}))

/**
 * The roots to pin after looking at what the CA publishes: `pinned` kept while published, plus every
 * published root vouched for by a pinned one. Pure (the time is a parameter).
 */
export function nextPinnedRoots(
  pinned: readonly X509Certificate[],
  published: readonly X509Certificate[],
  cross: readonly X509Certificate[],
  now: Date,
): {roots: X509Certificate[]; adopted: X509Certificate[]; dropped: X509Certificate[]} {
  const valid = (c: X509Certificate) => new Date(c.validFrom) <= now && now < new Date(c.validTo)
  const adopted: X509Certificate[] = []
  for (const root of published) {
    if (pinned.some((p) => fp(p) === fp(root))) continue
    // a self-signed CA certificate, in its validity…
    if (!root.ca || !root.checkIssued(root) || !root.verify(root.publicKey) || !valid(root)) continue
    // …that a pinned root certified: same subject, same key, signed by the pinned root
    const vouched = cross.some(
      (x) =>
        x.ca &&
        x.subject === root.subject &&
        samePublicKey(x, root) &&
        valid(x) &&
        pinned.some((p) => x.checkIssued(p) && x.verify(p.publicKey)),
    )
    if (vouched) adopted.push(root)
  }
  const publishedFps = new Set(published.map(fp))
  const kept = pinned.filter((p) => publishedFps.has(fp(p)))
  const stillTrusted = kept.length + adopted.length > 0
  const roots = stillTrusted ? [...kept, ...adopted] : [...pinned]
  const dropped = stillTrusted ? pinned.filter((p) => !publishedFps.has(fp(p))) : []
  return {roots, adopted, dropped}
}

/**
 * The context's pinned roots refreshed from GET /roots, the newest pinned root named as its fingerprint
 * (what tokens to this CA name) when they changed; the context unchanged when the CA has no /roots
 * (step-ca has one) or nothing changed. Writes nothing: the caller saves root_ca.crt with the
 * fingerprint, under the settings lock (updateContext), so the two never disagree and a context
 * bootstrapped again meanwhile never gets this CA's roots.
 */
export async function followRootRotation(
  ctx: Context,
  ca: CaClient,
  now = new Date(),
): Promise<{ctx: Context; changed: boolean}> {
  let res: RootsResponse
  try {
    res = await ca.call('GET', '/roots', RootsResponse)
  } catch {
    return {ctx, changed: false}
  }
  let published: X509Certificate[]
  let cross: X509Certificate[]
  try {
    published = res.crts.map((p) => new X509Certificate(p))
    cross = (res.crossSigned ?? []).map((p) => new X509Certificate(p))
  } catch {
    return {ctx, changed: false}
  }
  const pinned = splitPems(ctx.rootPem, {
    what: `${join(ctx.dir, ROOT_FILE)} (the root context "${ctx.name}" pins)`,
    hint: `bootstrap it again: sshca bootstrap --context ${ctx.name} --ca-url ${ctx.caUrl} --fingerprint HEX --force`,
  })
  const next = nextPinnedRoots(pinned, published, cross, now)
  if (next.adopted.length === 0 && next.dropped.length === 0) return {ctx, changed: false}
  const rootPem = next.roots.map((c) => c.toString()).join('')
  // the newest root (latest validFrom) is how this context names the CA from now on; of two from the same
  // second, the one adopted now (roots lists the kept ones first)
  const newest = next.roots.reduce((a, b) => (new Date(b.validFrom) >= new Date(a.validFrom) ? b : a))
  return {ctx: {...ctx, rootPem, rootFingerprint: fp(newest)}, changed: true}
}
