/** The context's copy of the CA's KRL (ssh's RevokedHostKeys): fetched, parsed, then written; a failure keeps the old copy. */
import assert from 'node:assert/strict'
import {mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import type {CaClient} from '../../../src/client/ca-api/ca-client.ts'
import {ROOT_FILE, saveContext, type Context} from '../../../src/client/home/home.ts'
import {CONTEXT_KRL_FILE, contextKrlPath, refreshContextKrl} from '../../../src/client/ca-api/krl.ts'
import {SshcaError} from '../../../src/errors.ts'
import {buildKrl} from '../../../src/ssh/krl.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {krlOpenSshRefuses} from '../../helpers/forge.ts'
import {tempDir} from '../../helpers/tmp.ts'

const LONG_AGO = new Date('2001-02-03T04:05:06.000Z')

describe("a context's revocation list on disk", () => {
  let dir: string
  let ctx: Context
  let krl: Buffer
  let asked: string[]
  const ca = (answer: () => Buffer): CaClient =>
    ({
      bytes: async (path: string) => {
        asked.push(path)
        return answer()
      },
    }) as unknown as CaClient
  const failing = (err: unknown): CaClient =>
    ca(() => {
      throw err
    })

  beforeEach(async () => {
    // a context saved in a home ($SSHCA_HOME/contexts/prod): a new list is written only for it
    dir = join(tempDir(), 'contexts', 'prod')
    mkdirSync(dir, {recursive: true})
    asked = []
    ctx = {
      name: 'prod',
      caUrl: 'https://ca.example.com',
      rootFingerprint: 'a'.repeat(64),
      userCaKeys: [],
      hostCaKeys: [],
      hostPattern: '!*',
      bootstrappedAt: '2026-11-27T09:00:00.000Z',
      rootPem: 'the pinned root',
      dir,
    }
    await saveContext(ctx)
    writeFileSync(join(dir, ROOT_FILE), ctx.rootPem)
    const a = generatePrivateKey('ed25519').publicKey
    const b = generatePrivateKey('ed25519').publicKey
    krl = buildKrl({
      version: 3n,
      generatedAt: 1_700_000_000n,
      comment: '',
      // the same serial and key ID under two CA keys count once
      sections: [
        {caKey: a, serials: [5n, 7n], keyIds: ['alice', 'bob']},
        {caKey: b, serials: [7n, 9n], keyIds: ['alice']},
      ],
    })
  })

  it('is fetched from GET /ssh/krl and written 0600 beside the settings, with what it revokes counted', async () => {
    const r = await refreshContextKrl(
      ctx,
      ca(() => krl),
    )
    assert.deepEqual(asked, ['/ssh/krl'])
    const file = join(dir, CONTEXT_KRL_FILE)
    assert.equal(contextKrlPath(dir), file)
    assert.deepEqual(
      {...r, fetchedAt: typeof r.fetchedAt},
      {
        file,
        status: 'refreshed',
        fetchedAt: 'string',
        revokedSerials: 3,
        revokedKeyIds: 2,
        note: null,
      },
    )
    assert.equal(new Date(r.fetchedAt!).toISOString(), r.fetchedAt)
    assert.deepEqual(readFileSync(file), krl)
    assert.equal(statSync(file).mode & 0o777, 0o600)
  })

  it('the same list again is not rewritten, only its time brought forward; a new list replaces it', async () => {
    const file = contextKrlPath(dir)
    await refreshContextKrl(
      ctx,
      ca(() => krl),
    )
    utimesSync(file, LONG_AGO, LONG_AGO)
    const ino = statSync(file).ino
    await refreshContextKrl(
      ctx,
      ca(() => krl),
    )
    assert.equal(statSync(file).ino, ino, 'the same file, not a new one renamed over it')
    assert.ok(statSync(file).mtimeMs > LONG_AGO.getTime())
    const other = buildKrl({version: 4n, generatedAt: 1n, comment: '', sections: []})
    const r = await refreshContextKrl(
      ctx,
      ca(() => other),
    )
    assert.deepEqual(readFileSync(file), other)
    assert.deepEqual([r.revokedSerials, r.revokedKeyIds], [0, 0])
  })

  it('write: false (--dry-run) fetches and checks, and writes nothing', async () => {
    const r = await refreshContextKrl(
      ctx,
      ca(() => krl),
      dir,
      {write: false},
    )
    assert.equal(r.status, 'refreshed')
    assert.throws(() => statSync(contextKrlPath(dir)), {code: 'ENOENT'})
  })

  it("into bootstrap's staged folder when told, for a context not saved yet", async () => {
    const staged = tempDir()
    const bootstrapping = {...ctx, bootstrappedAt: '2026-11-27T10:00:00.000Z', dir: staged}
    const r = await refreshContextKrl(
      bootstrapping,
      ca(() => krl),
      staged,
      {staged: true},
    )
    assert.equal(r.file, contextKrlPath(staged))
    assert.deepEqual(readFileSync(contextKrlPath(staged)), krl)
    assert.throws(() => statSync(contextKrlPath(dir)), {code: 'ENOENT'})
  })

  it('not for a context removed or bootstrapped again since it was read: the list there stays', async () => {
    const file = contextKrlPath(dir)
    const older = {...ctx, bootstrappedAt: '2026-11-26T09:00:00.000Z'}
    const theirs = buildKrl({version: 9n, generatedAt: 9n, comment: '', sections: []})
    writeFileSync(file, theirs)
    const r = await refreshContextKrl(
      older,
      ca(() => krl),
    )
    assert.equal(r.status, 'failed')
    assert.match(
      r.note!,
      /^the context "prod" was removed or bootstrapped again meanwhile; this list was not written; ssh keeps using the copy from /,
    )
    assert.deepEqual(readFileSync(file), theirs)
    rmSync(join(dir, 'context.json'))
    const removed = await refreshContextKrl(
      ctx,
      ca(() => krl),
    )
    assert.equal(removed.status, 'failed')
    assert.match(removed.note!, /^the context "prod" was removed or bootstrapped again meanwhile/)
    assert.deepEqual(readFileSync(file), theirs)
  })

  it("a list this machine's OpenSSH cannot load (ssh would refuse every host key): failed, the copy at hand kept", async () => {
    const file = contextKrlPath(dir)
    writeFileSync(file, krl)
    const r = await refreshContextKrl(
      ctx,
      ca(() => krlOpenSshRefuses()),
    )
    assert.equal(r.status, 'failed')
    assert.match(
      r.note!,
      /^the CA "prod" sent a revocation list that OpenSSH here cannot load \(ssh-keygen -Q: .*Invalid key length\); it was not written; ssh keeps using the copy from /,
    )
    assert.deepEqual(readFileSync(file), krl)
  })

  it('a CA that publishes none (404): unavailable, no file for ssh to read (a missing one would refuse every host)', async () => {
    const r = await refreshContextKrl(
      ctx,
      failing(new SshcaError('ERR_CA_BAD_RESPONSE', 'x', {details: {status: 404}})),
    )
    assert.deepEqual(
      {...r, note: typeof r.note},
      {
        file: null,
        status: 'unavailable',
        fetchedAt: null,
        revokedSerials: null,
        revokedKeyIds: null,
        note: 'string',
      },
    )
  })

  it('a failure keeps the previous copy and says how old it is: network, another status, a list that does not parse', async () => {
    const file = contextKrlPath(dir)
    writeFileSync(file, krl, {mode: 0o600})
    utimesSync(file, LONG_AGO, LONG_AGO)
    const garbage = Buffer.from('not a krl at all')
    for (const [status, client] of [
      ['unavailable', failing(new SshcaError('ERR_CA_BAD_RESPONSE', 'x', {details: {status: 404}}))],
      ['failed', failing(new SshcaError('ERR_CA_BAD_RESPONSE', 'x', {details: {status: 500}}))],
      ['failed', failing(new Error('ECONNREFUSED'))],
      ['failed', failing(new SshcaError('ERR_CA_UNREACHABLE', 'x'))],
      ['failed', ca(() => garbage)],
    ] as const) {
      const r = await refreshContextKrl(ctx, client)
      assert.deepEqual(
        {...r, note: typeof r.note},
        {
          file,
          status,
          fetchedAt: LONG_AGO.toISOString(),
          revokedSerials: null,
          revokedKeyIds: null,
          note: 'string',
        },
        status,
      )
      // the note names the CA and says how old the copy ssh keeps using is
      assert.ok(r.note!.includes('"prod"') && r.note!.includes(LONG_AGO.toISOString()), r.note!)
      assert.deepEqual(readFileSync(file), krl, 'the previous copy is kept')
    }
  })

  it('a list that cannot be written (no such folder): failed, nothing for ssh to read', async () => {
    const r = await refreshContextKrl(
      ctx,
      ca(() => krl),
      join(dir, 'missing'),
    )
    assert.equal(r.status, 'failed')
    assert.ok(r.note!.includes(contextKrlPath(join(dir, 'missing'))), 'the note names the file')
    assert.equal(r.file, null)
    assert.equal(r.fetchedAt, null)
  })
})
