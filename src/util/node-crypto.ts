/**
 * node:crypto, loaded on first use. Loading it sets up OpenSSL: a quarter of `sshca list`'s run, and
 * `list` never needs it for its table (it hashes keys for --json only and writes no file). Modules that
 * the start-up fast path bundles (src/cli/fast.ts) call this instead of importing node:crypto;
 * test/integration/cli-fast-path.test.ts fails when one imports it again.
 */
import type * as Crypto from 'node:crypto'

let loaded: typeof Crypto | undefined
export const nodeCrypto = (): typeof Crypto => (loaded ??= process.getBuiltinModule('node:crypto'))
