/**
 * GET /ssh/krl answers anyone, with no token and no rate limit: it must not cost the CA a read of
 * every revocation and a new list each time. The list is kept while the store's revocation
 * generation and the CA keys stand, and rebuilt at once when either moves.
 */
import assert from 'node:assert/strict'
import {Authority} from '../../../src/ca/authority/authority.ts'
import type {CaRuntime} from '../../../src/ca/authority/runtime.ts'
import {parseConfig} from '../../../src/ca/config/config.ts'
import {buildApp} from '../../../src/ca/http/app.ts'
import {memoryAuditLog} from '../../../src/ca/observe/audit.ts'
import {noopMeter} from '../../../src/ca/observe/meter.ts'
import {TokenVerifier} from '../../../src/ca/provisioner/oidc.ts'
import {SqliteStore} from '../../../src/ca/store/sqlite.ts'
import {parseKrl} from '../../../src/ssh/krl.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {keySigner} from '../../../src/ssh/signature.ts'
import {testMaterial} from '../../helpers/material.ts'

describe('GET /ssh/krl: what anyone may ask for often is not rebuilt for each request', function () {
  this.timeout(60_000)

  it('500 requests read the revocations once; a revocation, or a new CA key, shows in the very next answer', async () => {
    let now = Date.now()
    const {config} = parseConfig('provisioners: []\n', '/nonexistent/ca.yaml')
    const material = await testMaterial('Krl')
    const store = new SqliteStore(':memory:', {background: false})
    const rt: CaRuntime = {
      policy: {config, verifier: new TokenVerifier([], {})},
      material,
      store,
      audit: memoryAuditLog(),
      meter: noopMeter,
      // the cache's second is the runtime's clock: still here unless the test moves it
      clock: () => now,
    }
    const app = buildApp(new Authority(rt), undefined)
    try {
      // thousands of revocations are a few years of a large CA: ~9 ms of the store's thread per read
      for (let i = 1; i <= 2000; i++)
        await store.revoke({
          serial: BigInt(i),
          keyId: null,
          keyFingerprint: null,
          reason: 'x',
          revokedAt: 1_700_000_000 + i,
        })
      let reads = 0
      const snapshot = store.revocationSnapshot.bind(store)
      store.revocationSnapshot = () => (reads++, snapshot())
      const krl = async () => {
        const r = await app.inject({method: 'GET', url: '/ssh/krl'})
        assert.equal(r.statusCode, 200)
        return parseKrl(r.rawPayload)
      }
      const first = await krl()
      await Promise.all(Array.from({length: 499}, () => app.inject({method: 'GET', url: '/ssh/krl'})))
      assert.ok(reads <= 2, `${reads} reads of every revocation for 500 requests`)
      // a revocation: the next answer has it
      await store.revoke({serial: 99_999n, keyId: null, keyFingerprint: null, reason: 'x', revokedAt: 1_800_000_000})
      const second = await krl()
      assert.equal(second.version, first.version + 1n)
      assert.ok(second.sections[0]!.serials.includes(99_999n))
      // a new CA key (a rotation's prepare): the next answer has its section
      const next = keySigner(generatePrivateKey('ed25519').keyObject).publicKey
      material.userCa = {
        ...material.userCa,
        published: [
          ...material.userCa.published,
          {...material.userCa.published[0]!, id: 'next', state: 'next', publicKey: next},
        ],
      }
      const third = await krl()
      assert.ok(
        third.sections.some((s) => s.caKeyBlob.equals(next.blob)),
        'the new key has its section',
      )
      // nothing moved for a second: built again (a store restored under the CA may repeat a generation)
      const before = reads
      await krl()
      assert.equal(reads, before, 'within the second, the list kept')
      now += 1000
      await krl()
      assert.equal(reads, before + 1, 'a second later, the list built again')
      // the clock stepped back (NTP): not served from a moment that has not come yet
      now -= 5000
      await krl()
      assert.equal(reads, before + 2, 'after the clock stepped back, the list built again')
    } finally {
      await app.close()
      await store.close()
    }
  })
})
