/**
 * The replay records of `ca explain --since`: user certificates the CA issued since then, with the
 * claim values kept beside each (store migration 3). Certificates issued before claims were kept
 * cannot be replayed and are counted as skipped.
 */
import {parseCertificate} from '../ssh/cert.ts'
import {grantedTtl, type ReplayRecord} from './authority/whatif.ts'
import {loadConfig} from './config/config.ts'
import {withStore} from './store/open.ts'

export async function storeRecords(
  caConfigPath: string,
  since: number,
): Promise<{records: ReplayRecord[]; skipped: number}> {
  const {config} = await loadConfig(caConfigPath)
  return withStore(config, 'admin', async (store) => {
    const records: ReplayRecord[] = []
    let skipped = 0
    for (const c of await store.certificates({certType: 'user', since, limit: 1_000_000})) {
      if (!c.claims) {
        skipped++
        continue
      }
      let criticalOptions: Record<string, string>
      let extensions: string[]
      try {
        const cert = parseCertificate(Buffer.from(c.certificate, 'base64'))
        criticalOptions = Object.fromEntries(
          Object.entries(cert.criticalOptions).map(([k, v]) => [k, typeof v === 'string' ? v : '']),
        )
        extensions = Object.keys(cert.extensions)
      } catch {
        skipped++
        continue
      }
      records.push({
        at: new Date(c.issuedAt * 1000).toISOString(),
        subject: c.subject,
        provisioner: c.provisioner,
        claims: c.claims,
        issued: {
          principals: c.principals,
          ttl: grantedTtl(c.validAfter, c.validBefore),
          criticalOptions,
          extensions,
          rule: c.rule,
        },
      })
    }
    return {records, skipped}
  })
}
