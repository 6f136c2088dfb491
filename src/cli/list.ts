/**
 * `sshca list`, shared by the oclif command and the start-up fast path (bin/run.cjs), so both print
 * the same bytes. Kept free of @oclif/core: importing it costs more than the whole command.
 */
import {knownUserCas, sshcaHome} from '../client/home/home.ts'
import {listCertificates, type ListResult} from '../client/local/list.ts'
import {renderList} from './render.ts'

export type ListOutput = ListResult

export async function runList(opts: {raw: boolean}): Promise<{result: ListOutput; text: string}> {
  const result = await listCertificates({knownCas: await knownUserCas(sshcaHome())})
  return {result, text: renderList(result, opts.raw)}
}
