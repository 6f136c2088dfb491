/**
 * The client's HTTP to identity providers goes through a fetch passed in (openid-client's customFetch
 * for discovery and the grants; the GitHub Actions token request): here every request is seen and
 * answered by the test, with no server.
 */
import assert from 'node:assert/strict'
import {githubActionsToken, supportsDeviceFlow, type HttpFetch} from '../../../src/client/login/oidc.ts'
import {rejectsCode} from '../../helpers/assert.ts'

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), {status, headers: {'content-type': 'application/json'}})

function recorder(answer: (url: string, init: RequestInit) => Response | Promise<Response>): {
  http: HttpFetch
  seen: {url: string; init: RequestInit}[]
} {
  const seen: {url: string; init: RequestInit}[] = []
  return {
    seen,
    http: async (url, init) => {
      seen.push({url: String(url), init})
      return answer(String(url), init)
    },
  }
}

describe('client HTTP seams', () => {
  describe('githubActionsToken', () => {
    const env = {
      ACTIONS_ID_TOKEN_REQUEST_URL: 'https://pipelines.example/token?api-version=2.0',
      ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'request-secret',
    }

    it("asks for the audience with the runner's bearer, and returns the token", async () => {
      const r = recorder(() => json(200, {value: 'eyJ.job.token'}))
      assert.equal(await githubActionsToken(env, 'sshca-ci', r.http), 'eyJ.job.token')
      assert.equal(r.seen.length, 1)
      const u = new URL(r.seen[0]!.url)
      assert.equal(u.searchParams.get('audience'), 'sshca-ci')
      assert.equal(u.searchParams.get('api-version'), '2.0')
      assert.equal((r.seen[0]!.init.headers as Record<string, string>).authorization, 'Bearer request-secret')
      assert.ok(r.seen[0]!.init.signal, 'the request has a timeout')
    })

    it('a refusal, an answer without a token and an unreachable endpoint are errors with codes', async () => {
      await rejectsCode(
        githubActionsToken(env, 'a', recorder(() => json(403, {message: 'no id-token permission'})).http),
        'ERR_IDP_ERROR',
        {},
        /answered 403 without a token/,
      )
      await rejectsCode(
        githubActionsToken(env, 'a', recorder(() => new Response('<html>', {status: 200})).http),
        'ERR_IDP_ERROR',
      )
      await rejectsCode(
        githubActionsToken(env, 'a', recorder(() => Promise.reject(new TypeError('fetch failed'))).http),
        'ERR_IDP_UNREACHABLE',
        {},
        /fetch failed/,
      )
      await rejectsCode(
        githubActionsToken({}, 'a', recorder(() => json(200, {value: 'x'})).http),
        'ERR_GITHUB_ACTIONS_ENV',
      )
    })
  })

  describe('discovery through the fetch passed in', () => {
    const issuer = 'http://127.0.0.1:9/realms/corp'
    const discovery = (extra: Record<string, unknown>) =>
      recorder((url) =>
        url === `${issuer}/.well-known/openid-configuration`
          ? json(200, {
              issuer,
              authorization_endpoint: `${issuer}/auth`,
              token_endpoint: `${issuer}/token`,
              jwks_uri: `${issuer}/jwks`,
              ...extra,
            })
          : json(404, {}),
      )

    it('the device flow is offered only when discovery names its endpoint', async () => {
      const p = {name: 'sso', issuer, clientId: 'sshca-cli'}
      const yes = discovery({device_authorization_endpoint: `${issuer}/device`})
      assert.equal(await supportsDeviceFlow(p, yes.http), true)
      assert.deepEqual(
        yes.seen.map((s) => s.url),
        [`${issuer}/.well-known/openid-configuration`],
      )
      const no = discovery({})
      assert.equal(await supportsDeviceFlow(p, no.http), false)
      assert.equal(no.seen.length, 1)
    })

    it('a discovery document for another issuer is refused (no device flow assumed)', async () => {
      const p = {name: 'sso', issuer, clientId: 'sshca-cli'}
      const other = recorder(() =>
        json(200, {
          issuer: 'http://127.0.0.1:9/realms/evil',
          device_authorization_endpoint: 'http://127.0.0.1:9/device',
        }),
      )
      assert.equal(await supportsDeviceFlow(p, other.http), false)
    })
  })
})
