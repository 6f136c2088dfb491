import assert from 'node:assert/strict'
import {SshcaError} from '../../../src/errors.ts'
import {diagnoseToken, explainTokenRefusal} from '../../../src/client/login/token-diagnosis.ts'

const NOW = 1_800_000_000
const jwt = (claims: Record<string, unknown>) =>
  `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
const ok = {iss: 'https://idp', aud: 'sshca', iat: NOW - 10, exp: NOW + 300}

describe('why the CA refused a token, from its claims', () => {
  it('names each likely cause', () => {
    assert.match(diagnoseToken('garbage', {now: NOW})!, /^the token is not a JWT/)
    assert.match(diagnoseToken(jwt({...ok, exp: undefined}), {now: NOW})!, /no expiry/)
    assert.equal(
      diagnoseToken(jwt({...ok, exp: NOW - 3600}), {now: NOW}),
      'the token expired at 2027-01-15T07:00:00Z (60 min ago)',
    )
    assert.match(
      diagnoseToken(jwt({...ok, nbf: NOW + 600}), {now: NOW})!,
      /^the token is not valid before .* \(in 10 min\): is this machine's clock right\?$/,
    )
    assert.match(diagnoseToken(jwt({...ok, iat: NOW + 600}), {now: NOW})!, /issued at .*, in the future/)
    assert.equal(
      diagnoseToken(jwt({...ok, iss: 'sshca:other'}), {now: NOW, issuer: 'sshca:mine'}),
      'the token was issued by "sshca:other", not by this CA (sshca:mine): it is another CA\'s token',
    )
    assert.match(
      diagnoseToken(jwt({...ok, exp: NOW + 86400}), {now: NOW, maxLifetime: 3600})!,
      /lives 86410 s .* at most 3600 s/,
    )
    assert.equal(
      diagnoseToken(jwt({...ok, aud: 'other'}), {now: NOW, audiences: ['sshca', 'sshca-ci']}),
      'the token is for audience "other", but the CA\'s provisioners want "sshca" or "sshca-ci"',
    )
    assert.match(
      diagnoseToken(jwt({...ok, aud: ['sshca', 'x']}), {now: NOW, audiences: ['sshca']})!,
      /several audiences .* no authorized party/,
    )
    assert.equal(
      diagnoseToken(jwt({...ok, principals: ['web1']}), {now: NOW, hostnames: ['web1', 'web2']}),
      'the token was issued for web1, not for web2',
    )
    assert.equal(
      diagnoseToken(jwt({...ok, cnf: {kid: 'SHA256:a'}}), {now: NOW, keyFingerprint: 'SHA256:b'}),
      'the token is bound to the host key SHA256:a, not to this one (SHA256:b)',
    )
  })

  it("says nothing when nothing stands out; the leeway is the CA's 60 s", () => {
    assert.equal(diagnoseToken(jwt(ok), {now: NOW, audiences: ['sshca'], maxLifetime: 3600}), undefined)
    assert.equal(diagnoseToken(jwt({...ok, exp: NOW - 59}), {now: NOW}), undefined)
    assert.match(diagnoseToken(jwt({...ok, exp: NOW - 60}), {now: NOW})!, /expired/)
  })

  it("turns the CA's 401 into ERR_TOKEN_REPLAYED or ERR_TOKEN_INVALID with the flow's next step", () => {
    const ca = (message: string) =>
      new SshcaError('ERR_CA_UNAUTHORIZED', `the CA rejected the identity token: ${message} (request id r-1)`, {
        details: {status: 401, requestId: 'r-1', caMessage: message},
      })
    const replay = explainTokenRefusal(
      ca('the token was already used at 2026-01-01T00:00:00.000Z; each token gets one certificate'),
      jwt(ok),
      'host-enrollment',
      {now: NOW},
    ) as SshcaError
    assert.equal(replay.code, 'ERR_TOKEN_REPLAYED')
    assert.match(replay.message, /already used at 2026-01-01T00:00:00\.000Z.*\(request id r-1\)$/)
    assert.match(replay.hint!, /sshca ca token --host/)
    const expired = explainTokenRefusal(
      ca('the token was rejected: …'),
      jwt({...ok, exp: NOW - 3600}),
      'github-actions',
      {now: NOW},
    ) as SshcaError
    assert.equal(expired.code, 'ERR_TOKEN_INVALID')
    assert.match(expired.message, /^the CA refused the token: the token expired at .* \(request id r-1\)$/)
    assert.match(expired.hint!, /id-token: write/)
    assert.doesNotMatch(expired.hint!, /sshca login --force/)
    // step-ca: no request id, and its own words are the best clue there is
    const step = new SshcaError(
      'ERR_CA_UNAUTHORIZED',
      'the CA rejected the identity token: sshpop token has invalid audience',
      {details: {status: 401, caMessage: 'sshpop.authorizeToken; sshpop token has invalid audience'}},
    )
    const fromStep = explainTokenRefusal(step, jwt(ok), 'host-renewal', {now: NOW}) as SshcaError
    assert.match(fromStep.message, /the CA said: sshpop\.authorizeToken; sshpop token has invalid audience$/)
    assert.doesNotMatch(fromStep.message, /request id/)
    const other = new SshcaError('ERR_CA_UNREACHABLE', 'down')
    assert.equal(explainTokenRefusal(other, 'x', 'interactive', {now: NOW}), other)
  })
})
