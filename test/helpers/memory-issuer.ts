/**
 * An OIDC issuer that lives in memory, for in-process CA tests: its discovery document and JWKS are
 * answered by the fetch it hands out (pass it as the verifier's fetch), and tokens are signed with its
 * ES256 key (kid k1). Anything else that fetch is asked for is a 404.
 */
import {generateKeyPairSync, type KeyObject} from 'node:crypto'
import {exportJWK} from 'jose'

export async function memoryIssuer(issuer: string): Promise<{privateKey: KeyObject; fetch: typeof fetch}> {
  const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'P-256'})
  const jwk = {...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256'}
  const answer = (async (input: string | URL) => {
    const url = String(input)
    if (url === `${issuer}/.well-known/openid-configuration`) return Response.json({issuer, jwks_uri: `${issuer}/jwks`})
    if (url === `${issuer}/jwks`) return Response.json({keys: [jwk]})
    return new Response('no', {status: 404})
  }) as typeof fetch
  return {privateKey, fetch: answer}
}
