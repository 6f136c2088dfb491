/** `sshca list` on the fast path (src/cli/fast.ts): every argument list it can take. */
import {runFast} from './fast.ts'
import {runList} from './list.ts'

export const tryFastPath = (args: readonly string[]): Promise<boolean> =>
  runFast({options: {raw: {type: 'boolean'}, json: {type: 'boolean'}}, accepts: () => true, run: async (v) => runList({raw: v.raw === true})}, args)
