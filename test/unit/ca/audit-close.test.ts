/**
 * src/ca/observe/audit.ts after close(): a descriptor's number is handed to the next file opened, so a
 * line written through a closed log would land in that file (a database, another CA's log).
 */
import assert from 'node:assert/strict'
import {closeSync, openSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {createAuditLog} from '../../../src/ca/observe/audit.ts'
import {throwsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

describe('audit: a closed log', () => {
  it('refuses a line (ERR_STORE_UNAVAILABLE) and writes it nowhere, not even to the file that took its descriptor', async () => {
    const dir = tempDir()
    // the number the log's file will get: the lowest free one, as the next file's after close()
    const probe = openSync(join(dir, 'probe'), 'w')
    closeSync(probe)
    const log = createAuditLog(join(dir, 'audit.log'))
    log.write('server_started', {url: 'https://127.0.0.1:1'})
    await log.close()
    const other = join(dir, 'other')
    const fd = openSync(other, 'w')
    try {
      assert.equal(fd, probe, 'the next file took the closed log’s descriptor')
      throwsCode(() => log.write('server_stopped', {url: 'https://127.0.0.1:1'}), 'ERR_STORE_UNAVAILABLE')
    } finally {
      closeSync(fd)
    }
    assert.equal(readFileSync(other, 'utf8'), '')
    const lines = readFileSync(join(dir, 'audit.log'), 'utf8').trim().split('\n')
    assert.deepEqual(
      lines.map((l) => (JSON.parse(l) as {event: string}).event),
      ['server_started'],
    )
    await log.close() // twice: nothing more
  })
})
