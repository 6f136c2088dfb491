/** Real ID tokens from the dev IdP (oidc-provider): authorization code + PKCE, signed in over HTTP. */
import {createHash, randomBytes} from 'node:crypto'
import {driveDevSignIn} from '../../src/demo/idp-driver.ts'

export async function idToken(
  issuer: string,
  o: {clientId: string; login: string; scope?: string},
): Promise<{idToken: string; refreshToken?: string}> {
  const meta = (await (await fetch(`${issuer}/.well-known/openid-configuration`)).json()) as {
    authorization_endpoint: string
    token_endpoint: string
  }
  const verifier = randomBytes(32).toString('base64url')
  const redirectUri = 'http://127.0.0.1:1/callback'
  const state = randomBytes(16).toString('base64url')
  const auth = new URL(meta.authorization_endpoint)
  auth.search = new URLSearchParams({
    client_id: o.clientId,
    response_type: 'code',
    scope: o.scope ?? 'openid email profile',
    redirect_uri: redirectUri,
    state,
    nonce: randomBytes(16).toString('base64url'),
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    prompt: 'consent',
  }).toString()
  const callback = new URL(await driveDevSignIn(auth.toString(), {login: o.login, stopAt: redirectUri}))
  if (callback.searchParams.get('state') !== state) throw new Error('state mismatch')
  const code = callback.searchParams.get('code')
  if (!code) throw new Error(`no code: ${callback}`)
  const res = await fetch(meta.token_endpoint, {
    method: 'POST',
    headers: {'content-type': 'application/x-www-form-urlencoded'},
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri,
      client_id: o.clientId,
      code_verifier: verifier,
    }),
  })
  const body = (await res.json()) as {id_token?: string; refresh_token?: string; error?: string}
  if (!body.id_token) throw new Error(`token endpoint: ${JSON.stringify(body)}`)
  return {idToken: body.id_token, ...(body.refresh_token ? {refreshToken: body.refresh_token} : {})}
}
