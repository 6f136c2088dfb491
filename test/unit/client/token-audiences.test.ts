/**
 * Whose token this is (src/client/login/token-audiences.ts), driven directly: contexts written to a
 * temporary $SSHCA_HOME as `sshca bootstrap` and login leave them (context.json and root_ca.crt in
 * contexts/NAME), tokens as unsigned JWTs (only their claims are read). The end-to-end refusal with two
 * real CAs is test/integration/client-token-audience.test.ts.
 */
import assert from 'node:assert/strict'
import {mkdirSync, unlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {contextDir, ROOT_FILE, saveContext, type Context, type ContextSettings} from '../../../src/client/home/home.ts'
import {audiencesOf, refuseTokenOfAnotherCa, rememberAudiences} from '../../../src/client/login/token-audiences.ts'
import {rejectsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

const jwt = (claims: unknown) =>
  `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`
const IDP = 'https://idp.example.com'
const GH = 'https://token.actions.githubusercontent.com'
const PROD_ROOT = '-----BEGIN CERTIFICATE-----\nPROD\n-----END CERTIFICATE-----\n'
const STAGING_ROOT = '-----BEGIN CERTIFICATE-----\nSTAGING\n-----END CERTIFICATE-----\n'

const settings = (name: string, tokenAudiences?: {issuer: string; audience: string}[]): ContextSettings => ({
  name,
  caUrl: `https://${name}.example.com`,
  rootFingerprint: 'ab'.repeat(32),
  userCaKeys: [],
  hostCaKeys: [],
  hostPattern: '!*',
  bootstrappedAt: '2026-11-27T00:00:00.000Z',
  ...(tokenAudiences ? {tokenAudiences} : {}),
})

describe('ID token audiences: no context sends its CA a token another CA is sent', () => {
  let home: string
  beforeEach(() => {
    home = tempDir('sshca-aud-')
  })

  /** A context as bootstrap writes it: its folder, root_ca.crt, and context.json. */
  const write = async (
    name: string,
    rootPem: string,
    tokenAudiences?: {issuer: string; audience: string}[],
  ): Promise<Context> => {
    const dir = contextDir(home, name)
    mkdirSync(dir, {recursive: true, mode: 0o700})
    writeFileSync(join(dir, ROOT_FILE), rootPem, {mode: 0o600})
    const ctx = {...settings(name, tokenAudiences), rootPem, dir}
    await saveContext(ctx)
    return ctx
  }

  describe('audiencesOf', () => {
    it('one pair per string audience, the issuer with each', () => {
      assert.deepEqual(audiencesOf(jwt({iss: IDP, aud: 'sshca'})), [{issuer: IDP, audience: 'sshca'}])
      assert.deepEqual(audiencesOf(jwt({iss: IDP, aud: ['a', 7, null, 'b', {x: 1}]})), [
        {issuer: IDP, audience: 'a'},
        {issuer: IDP, audience: 'b'},
      ])
      assert.deepEqual(audiencesOf(` ${jwt({iss: IDP, aud: 'sshca'})}\n`), [{issuer: IDP, audience: 'sshca'}])
    })

    it('none without a string issuer or any string audience, and none for what is not a JWT', () => {
      for (const claims of [
        {aud: 'sshca'},
        {iss: 7, aud: 'sshca'},
        {iss: [IDP], aud: 'sshca'},
        {iss: IDP},
        {iss: IDP, aud: 7},
        {iss: IDP, aud: {0: 'sshca'}},
        {iss: IDP, aud: []},
      ])
        assert.deepEqual(audiencesOf(jwt(claims)), [], JSON.stringify(claims))
      for (const token of ['', 'garbage', 'a.b', jwt(['sshca']), jwt(null), 'a.!!!.c'])
        assert.deepEqual(audiencesOf(token), [], token)
    })
  })

  describe('refuseTokenOfAnotherCa', () => {
    it("refuses a token for a pair another root's context remembers, naming the pair; sends one for a pair no other context has", async () => {
      await write('prod', PROD_ROOT, [
        {issuer: IDP, audience: 'other'},
        {issuer: GH, audience: 'sshca-prod'},
      ])
      const staging = await write('staging', STAGING_ROOT)
      // only one of the other context's pairs matches: one is enough
      await rejectsCode(
        refuseTokenOfAnotherCa(home, staging, jwt({iss: GH, aud: 'sshca-prod'})),
        'ERR_TRUST_TOKEN_AUDIENCE',
        {},
        /issuer https:\/\/token\.actions\.githubusercontent\.com, audience sshca-prod.*"prod"/,
      )
      // one of the token's audiences matches: refused too
      await rejectsCode(
        refuseTokenOfAnotherCa(home, staging, jwt({iss: GH, aud: ['sshca-staging', 'sshca-prod']})),
        'ERR_TRUST_TOKEN_AUDIENCE',
      )
      const err = await refuseTokenOfAnotherCa(home, staging, jwt({iss: GH, aud: 'sshca-prod'})).catch((e) => e)
      assert.match((err as {hint?: string}).hint ?? '', /sshca context remove prod$/)

      // the issuer and the audience must both match: another audience of the same issuer, or the same
      // audience of another issuer, is another token
      await refuseTokenOfAnotherCa(home, staging, jwt({iss: GH, aud: 'sshca-staging'}))
      await refuseTokenOfAnotherCa(home, staging, jwt({iss: IDP, aud: 'sshca-prod'}))
      await refuseTokenOfAnotherCa(home, staging, jwt({iss: 'https://elsewhere', aud: 'other'}))
      // a token with no pair (nothing to spend it for) is not refused
      await refuseTokenOfAnotherCa(home, staging, jwt({aud: 'sshca-prod'}))
      await refuseTokenOfAnotherCa(home, staging, 'not a token')
    })

    it('never refuses a context for its own pairs, though its saved root may have changed since it was read (a root refresh)', async () => {
      await write('prod', PROD_ROOT, [{issuer: GH, audience: 'sshca-prod'}])
      const prod = {...settings('prod', [{issuer: GH, audience: 'sshca-prod'}]), rootPem: STAGING_ROOT, dir: ''}
      await refuseTokenOfAnotherCa(home, prod, jwt({iss: GH, aud: 'sshca-prod'}))
    })

    it("the same root under another name is the same CA: its pairs are this one's (line ends and blanks around the PEM aside)", async () => {
      await write('prod', PROD_ROOT, [{issuer: GH, audience: 'sshca-prod'}])
      const again = await write('prod-again', `\n${PROD_ROOT.trimEnd()}\r\n\n`)
      await refuseTokenOfAnotherCa(home, again, jwt({iss: GH, aud: 'sshca-prod'}))
      const againFromMemory = {...again, rootPem: `  ${PROD_ROOT}  `}
      await refuseTokenOfAnotherCa(home, againFromMemory, jwt({iss: GH, aud: 'sshca-prod'}))
    })

    it('looks past contexts that remember nothing, a stray folder and a damaged context to the one that refuses', async () => {
      // a context saved before contexts remembered pairs, a folder without context.json, a context whose
      // root_ca.crt is gone (readContext: ERR_INPUT): none of them stops the check or is a refusal
      await write('a-old', STAGING_ROOT)
      mkdirSync(contextDir(home, 'b-stray'), {recursive: true})
      await write('c-damaged', PROD_ROOT.replace('PROD', 'DAMAGED'), [{issuer: GH, audience: 'sshca-prod'}])
      unlinkSync(join(contextDir(home, 'c-damaged'), ROOT_FILE))
      const staging = await write('d-staging', STAGING_ROOT.replace('STAGING', 'D'))
      await refuseTokenOfAnotherCa(home, staging, jwt({iss: GH, aud: 'sshca-prod'}))

      await write('e-prod', PROD_ROOT, [{issuer: GH, audience: 'sshca-prod'}])
      await rejectsCode(
        refuseTokenOfAnotherCa(home, staging, jwt({iss: GH, aud: 'sshca-prod'})),
        'ERR_TRUST_TOKEN_AUDIENCE',
        {},
        /"e-prod"/,
      )
    })

    it('a home without contexts refuses nothing', async () => {
      const ctx = {...settings('prod'), rootPem: PROD_ROOT, dir: ''}
      await refuseTokenOfAnotherCa(home, ctx, jwt({iss: GH, aud: 'sshca-prod'}))
    })
  })

  describe('rememberAudiences', () => {
    it("the context's pairs with the token's new ones after them, in the token's order", () => {
      assert.deepEqual(rememberAudiences(settings('prod'), jwt({iss: GH, aud: ['x', 'y']})), [
        {issuer: GH, audience: 'x'},
        {issuer: GH, audience: 'y'},
      ])
      const saved = settings('prod', [
        {issuer: GH, audience: 'x'},
        {issuer: IDP, audience: 'y'},
      ])
      // (GH, x) is known; (GH, y) and (IDP, x) are not: either half alone is another pair
      assert.deepEqual(rememberAudiences(saved, jwt({iss: GH, aud: ['y', 'x']})), [
        {issuer: GH, audience: 'x'},
        {issuer: IDP, audience: 'y'},
        {issuer: GH, audience: 'y'},
      ])
      assert.deepEqual(rememberAudiences(saved, jwt({iss: IDP, aud: 'x'})), [
        {issuer: GH, audience: 'x'},
        {issuer: IDP, audience: 'y'},
        {issuer: IDP, audience: 'x'},
      ])
      // the settings given are not changed
      assert.deepEqual(saved.tokenAudiences, [
        {issuer: GH, audience: 'x'},
        {issuer: IDP, audience: 'y'},
      ])
    })

    it('undefined (nothing to write) when every pair is remembered or the token has none', () => {
      const saved = settings('prod', [
        {issuer: GH, audience: 'x'},
        {issuer: GH, audience: 'y'},
      ])
      assert.equal(rememberAudiences(saved, jwt({iss: GH, aud: ['y', 'x']})), undefined)
      assert.equal(rememberAudiences(saved, jwt({iss: GH, aud: 'x'})), undefined)
      assert.equal(rememberAudiences(settings('prod'), jwt({iss: GH})), undefined)
      assert.equal(rememberAudiences(settings('prod'), 'garbage'), undefined)
    })
  })
})
