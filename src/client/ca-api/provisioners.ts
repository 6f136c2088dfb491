/**
 * The CA's provisioners, every page of them: step-ca pages GET /provisioners (20 a page) and names
 * the next page in `nextCursor` ("" on the last); sshca's CA does the same.
 */
import {SshcaError} from '../../errors.ts'
import {ProvisionersResponse, SSHPOP_TYPE, type Provisioner} from '../../protocol/api.ts'
import type {CaClient} from './ca-client.ts'

/** More pages than any CA has provisioners for: a CA that never ends its list is answering nonsense. */
const MAX_PAGES = 50

export async function listProvisioners(ca: CaClient): Promise<Provisioner[]> {
  const all: Provisioner[] = []
  const seen = new Set<string>()
  let cursor = ''
  for (let page = 0; page < MAX_PAGES; page++) {
    const r = await ca.call(
      'GET',
      `/provisioners${cursor ? `?cursor=${encodeURIComponent(cursor)}` : ''}`,
      ProvisionersResponse,
    )
    all.push(...r.provisioners)
    cursor = r.nextCursor ?? ''
    if (!cursor || r.provisioners.length === 0) return all
    if (seen.has(cursor)) break
    seen.add(cursor)
  }
  throw new SshcaError('ERR_CA_BAD_RESPONSE', `the CA at ${ca.caUrl} pages its provisioners without end`)
}

/** The CA's SSHPOP provisioner (renewal by proof of possession), by the name the CA gave it. */
export async function sshpopProvisioner(ca: CaClient): Promise<string> {
  const p = (await listProvisioners(ca)).find((x) => x.type.toUpperCase() === SSHPOP_TYPE)
  if (!p) {
    throw new SshcaError(
      'ERR_CA_UNSUPPORTED',
      `the CA at ${ca.caUrl} has no SSHPOP provisioner, so it cannot renew a certificate by proof of possession`,
      {
        hint: 'on step-ca, add one: step ca provisioner add sshpop --type SSHPOP (then restart step-ca); or enroll the host again with a new token',
      },
    )
  }
  return p.name
}
