/** `sshca list`: the certificates an ssh-agent holds, and how long each has left. */
import {nowSeconds} from '../../ssh/cert.ts'
import {AgentClient, type AgentOptions} from '../../ssh/agent.ts'
import {certificateLine} from '../../ssh/cert.ts'
import {certificateView, type CertificateView} from './certificates.ts'

export interface ListedCertificate extends CertificateView {
  /** The agent's comment for the identity. */
  comment: string
  /** The certificate as `ssh-add -L` prints it. */
  line: string
  /** The bootstrapped context whose CA signed it, or null when none did. */
  context: string | null
}

export interface ListResult {
  agent: string
  certificates: ListedCertificate[]
  /** Identities that are not certificates (plain keys, keys this tool cannot read). */
  otherIdentities: number
}

export interface ListDeps {
  agent?: AgentOptions
  clock?: () => number
  /** Maps a CA public key (its wire blob in base64, see knownUserCas) to the name of the context that trusts it. */
  knownCas?: ReadonlyMap<string, string>
}

export async function listCertificates(deps: ListDeps = {}): Promise<ListResult> {
  const now = nowSeconds(deps.clock)
  return AgentClient.with(deps.agent ?? {}, async (agent) => {
    const identities = await agent.list()
    const certificates: ListedCertificate[] = []
    for (const id of identities) {
      if (!id.certificate) continue
      const view = certificateView(id.certificate, now)
      certificates.push({
        ...view,
        comment: id.comment,
        line: certificateLine(id.certificate, id.comment),
        context: deps.knownCas?.get(id.certificate.signatureKey.blob.toString('base64')) ?? null,
      })
    }
    return {agent: agent.socketPath, certificates, otherIdentities: identities.length - certificates.length}
  })
}
