/**
 * Random bytes from a pooled CSPRNG buffer: the same quality as crypto.randomBytes, without an
 * OpenSSL call per certificate nonce and serial (a quarter of the non-crypto cost of signing one).
 * Each byte is handed out once; callers get copies.
 */
import {nodeCrypto} from './node-crypto.ts'

const POOL_SIZE = 4096
const pool = Buffer.allocUnsafe(POOL_SIZE)
let offset = POOL_SIZE

export function randomBytesPooled(n: number): Buffer {
  if (n > POOL_SIZE) return nodeCrypto().randomFillSync(Buffer.allocUnsafe(n))
  if (offset + n > POOL_SIZE) {
    nodeCrypto().randomFillSync(pool)
    offset = 0
  }
  const out = Buffer.from(pool.subarray(offset, offset + n))
  pool.fill(0, offset, offset + n)
  offset += n
  return out
}
