/** `sshca list` on the fast path (src/cli/fast.ts): every argument list it can take. */
import {runFast} from './fast-run.ts'
import {runList} from './list.ts'

/** `argv`: the whole argument list, the command's name first. */
export const tryFastPath = (argv: readonly string[]): Promise<boolean> =>
  runFast(
    {
      options: {raw: {type: 'boolean'}, json: {type: 'boolean'}},
      accepts: () => true,
      run: async (v) => runList({raw: v.raw === true}),
    },
    argv.slice(1),
  )
