/**
 * The contract every Store backend must keep (SQLite, PostgreSQL): what issuance decides in one
 * transaction, what queries return, what moves forward, and what two stores open on one database
 * (two replicas) agree on. A backend's test file calls `storeContract(name, open, replica)` with a
 * function that opens a fresh, empty store and one that opens another store on the same database.
 */
import assert from 'node:assert/strict'
import {
  RESTORE_LEEWAY,
  type IssuedRecord,
  type IssueOutcome,
  type IssueRequest,
  type Revocation,
  type Store,
} from '../../src/ca/store/store.ts'

let serialCounter = 1000n

export function record(over: Partial<IssuedRecord> = {}): IssuedRecord {
  const serial = over.serial ?? ++serialCounter
  return {
    serial,
    certType: 'user',
    keyId: `kid-${serial}`,
    principals: ['alice'],
    validAfter: 1_000n,
    validBefore: 2_000n,
    provisioner: 'sso',
    rule: 'engineers',
    subject: 'sub-alice',
    keyFingerprint: `SHA256:fp-${serial}`,
    issuedAt: 1_500,
    requestId: `req-${serial}`,
    certificate: `blob-${serial}`,
    ...over,
  }
}

const token = (id: string, expiresAt = 3_000) => ({id, expiresAt, issuedAt: expiresAt - 300})

export function storeContract(name: string, open: () => Promise<Store>, replica: (of: Store) => Promise<Store>): void {
  describe(`Store contract: ${name}`, function () {
    this.timeout(30_000)
    let s: Store
    beforeEach(async () => {
      s = await open()
    })
    afterEach(async () => s?.close())

    describe('issue', () => {
      it('records the certificate and spends the token; a second use says when and on which serial', async () => {
        const r = record({issuedAt: 1_234})
        assert.deepEqual(await s.issue({token: token('t1'), record: r}), {ok: true})
        assert.deepEqual(await s.findCertificate(r.serial), r)
        const again = await s.issue({token: token('t1'), record: record()})
        assert.deepEqual(again, {ok: false, reason: 'replayed', usedAt: 1_234, serial: r.serial.toString()})
      })

      it('keeps the claim values a certificate was issued for (what a policy what-if replays), and none when there were none', async () => {
        const r = record({
          subject: 'sub-claims',
          claims: {
            sub: 'u1',
            email: 'ann@example.com',
            groups: ['ssh-ops', 'ssh-web'],
            email_verified: true,
            run_id: 42,
          },
        })
        assert.deepEqual(await s.issue({token: token('claims'), record: r}), {ok: true})
        assert.deepEqual((await s.findCertificate(r.serial))!.claims, r.claims)
        assert.deepEqual((await s.certificates({subject: r.subject!}))[0]!.claims, r.claims)
        const bare = record()
        await s.issue({token: token('bare'), record: bare})
        assert.equal((await s.findCertificate(bare.serial))!.claims, undefined)
      })

      it('of N concurrent issuances with one token, exactly one succeeds and only its certificate exists', async () => {
        const recs = Array.from({length: 8}, () => record())
        const out = await Promise.all(recs.map((r) => s.issue({token: token('same'), record: r})))
        assert.equal(out.filter((o) => o.ok).length, 1)
        const found = await Promise.all(recs.map((r) => s.findCertificate(r.serial)))
        assert.equal(found.filter(Boolean).length, 1)
      })

      it('refuses a revoked key ID, a revoked key, and (renewals) a revoked parent; writes nothing then', async () => {
        const byKeyId = await s.revoke({
          serial: null,
          keyId: 'gha:acme/app',
          keyFingerprint: null,
          reason: 'r',
          revokedAt: 10,
        })
        const r1 = record({keyId: 'gha:acme/app'})
        const o1 = await s.issue({token: token('a'), record: r1})
        assert.equal(o1.ok, false)
        assert.equal(!o1.ok && o1.reason, 'revoked')
        assert.equal(!o1.ok && o1.reason === 'revoked' && o1.revocation.id, byKeyId.id)
        assert.equal(await s.findCertificate(r1.serial), undefined)
        // the token was not spent by the refusal
        assert.deepEqual(await s.issue({token: token('a'), record: record()}), {ok: true})

        await s.revoke({serial: null, keyId: null, keyFingerprint: 'SHA256:leaked', reason: 'r', revokedAt: 11})
        const o2 = await s.issue({token: token('b'), record: record({keyFingerprint: 'SHA256:leaked'})})
        assert.equal(!o2.ok && o2.reason, 'revoked')

        const host = record({certType: 'host', keyFingerprint: 'SHA256:host1'})
        assert.deepEqual(await s.issue({token: token('c'), record: host, lineage: {kind: 'enrol'}}), {ok: true})
        await s.revoke({serial: host.serial, keyId: null, keyFingerprint: null, reason: 'r', revokedAt: 12})
        const o3 = await s.issue({
          token: token('d'),
          record: record({certType: 'host', keyFingerprint: 'SHA256:host1'}),
          lineage: {kind: 'renew', parent: host.serial},
        })
        assert.equal(!o3.ok && o3.reason, 'revoked')
      })

      it("renewal swaps the lineage head once: a second renewal of the parent, also within one batch, gets the first one's certificate; a superseded parent is refused", async () => {
        const fp = 'SHA256:lineage'
        const a = record({certType: 'host', keyFingerprint: fp, keyId: 'host:lineage'})
        await s.issue({token: token('enrol'), record: a, lineage: {kind: 'enrol'}})
        const b = record({certType: 'host', keyFingerprint: fp, keyId: 'host:lineage'})
        const c = record({certType: 'host', keyFingerprint: fp, keyId: 'host:lineage'})
        const [ob, oc] = await Promise.all([
          s.issue({token: token('pop-b'), record: b, lineage: {kind: 'renew', parent: a.serial}}),
          s.issue({token: token('pop-c'), record: c, lineage: {kind: 'renew', parent: a.serial}}),
        ])
        assert.deepEqual(ob, {ok: true})
        assert.deepEqual(oc, {ok: false, reason: 'redelivered', certificate: await s.findCertificate(b.serial)})
        assert.equal(await s.findCertificate(c.serial), undefined)
        // re-enrolment (the same host, so its key ID) restarts the lineage: the old head is superseded
        const d = record({certType: 'host', keyFingerprint: fp, keyId: 'host:lineage'})
        await s.issue({token: token('enrol-2'), record: d, lineage: {kind: 'enrol'}})
        const oe = await s.issue({
          token: token('pop-e'),
          record: record({certType: 'host', keyFingerprint: fp, keyId: 'host:lineage'}),
          lineage: {kind: 'renew', parent: b.serial},
        })
        assert.deepEqual(oe, {ok: false, reason: 'superseded', newest: d.serial.toString()})
        // a key that never enrolled has no lineage to renew
        const of = await s.issue({
          token: token('pop-f'),
          record: record({certType: 'host', keyFingerprint: 'SHA256:never'}),
          lineage: {kind: 'renew', parent: 1n},
        })
        assert.deepEqual(of, {ok: false, reason: 'superseded', newest: null})
      })

      it("rekey moves a lineage to a new key once: the old key's lineage ends, a superseded or revoked parent is refused", async () => {
        const oldKey = 'SHA256:rekey-old'
        const a = record({certType: 'host', keyFingerprint: oldKey, validAfter: 1n, validBefore: 0x7fff_ffffn})
        await s.issue({token: token('rk-enrol'), record: a, lineage: {kind: 'enrol'}})
        const b = record({
          certType: 'host',
          keyFingerprint: 'SHA256:rekey-new-1',
          validAfter: 1n,
          validBefore: 0x7fff_ffffn,
        })
        const c = record({certType: 'host', keyFingerprint: 'SHA256:rekey-new-2'})
        const [ob, oc] = await Promise.all([
          s.issue({token: token('rk-b'), record: b, lineage: {kind: 'rekey', parent: a.serial, parentKey: oldKey}}),
          s.issue({token: token('rk-c'), record: c, lineage: {kind: 'rekey', parent: a.serial, parentKey: oldKey}}),
        ])
        assert.deepEqual(ob, {ok: true})
        assert.deepEqual(oc, {ok: false, reason: 'superseded', newest: null})
        assert.equal(await s.findCertificate(c.serial), undefined)
        // the old key can no longer renew; the new key's lineage starts at b
        const od = await s.issue({
          token: token('rk-d'),
          record: record({certType: 'host', keyFingerprint: oldKey}),
          lineage: {kind: 'renew', parent: a.serial},
        })
        assert.deepEqual(od, {ok: false, reason: 'superseded', newest: null})
        const e = record({certType: 'host', keyFingerprint: b.keyFingerprint})
        assert.deepEqual(await s.issue({token: token('rk-e'), record: e, lineage: {kind: 'renew', parent: b.serial}}), {
          ok: true,
        })
        const hosts = (await s.currentHostCertificates(2)).map((h) => h.keyFingerprint)
        assert.ok(!hosts.includes(oldKey))
        // a revoked parent cannot be rekeyed
        await s.revoke({serial: e.serial, keyId: null, keyFingerprint: null, reason: 'r', revokedAt: 3})
        const of = await s.issue({
          token: token('rk-f'),
          record: record({certType: 'host', keyFingerprint: 'SHA256:rekey-new-3'}),
          lineage: {kind: 'rekey', parent: e.serial, parentKey: b.keyFingerprint},
        })
        assert.equal(!of.ok && of.reason, 'revoked')
      })

      it("no rekey, nor an enrolment the admin did not bind to the key, takes over another host's lineage (key_in_use)", async () => {
        const host = (fp: string, keyId: string) =>
          record({certType: 'host', keyFingerprint: fp, keyId, validAfter: 1n, validBefore: 0x7fff_ffffn})
        const victim = host('SHA256:victim', 'host:victim')
        const attacker = host('SHA256:attacker', 'host:attacker')
        await s.issue({token: token('v-enrol'), record: victim, lineage: {kind: 'enrol'}})
        await s.issue({token: token('a-enrol'), record: attacker, lineage: {kind: 'enrol'}})
        // the attacker's host rekeys onto the victim's public key (ssh-keyscan gives it to anyone)
        const onto = host(victim.keyFingerprint, attacker.keyId)
        const rekeyed = await s.issue({
          token: token('a-rekey'),
          record: onto,
          lineage: {kind: 'rekey', parent: attacker.serial, parentKey: attacker.keyFingerprint},
        })
        assert.deepEqual(rekeyed, {ok: false, reason: 'key_in_use', newest: victim.serial.toString()})
        assert.equal(await s.findCertificate(onto.serial), undefined)
        // an enrolment token for another name, not bound to a key, used with the victim's key
        const enrolled = await s.issue({
          token: token('a-enrol-2'),
          record: host(victim.keyFingerprint, 'host:other'),
          lineage: {kind: 'enrol'},
        })
        assert.deepEqual(enrolled, {ok: false, reason: 'key_in_use', newest: victim.serial.toString()})
        // the tokens were not spent by the refusals, the victim still renews, the attacker's lineage stands
        const renewed = host(victim.keyFingerprint, victim.keyId)
        assert.deepEqual(
          await s.issue({token: token('v-renew'), record: renewed, lineage: {kind: 'renew', parent: victim.serial}}),
          {ok: true},
        )
        const ownRekey = host('SHA256:attacker-new', attacker.keyId)
        assert.deepEqual(
          await s.issue({
            token: token('a-rekey'),
            record: ownRekey,
            lineage: {kind: 'rekey', parent: attacker.serial, parentKey: attacker.keyFingerprint},
          }),
          {ok: true},
        )
        // nor may a host merge its own two keys' lineages (an ed25519 and an RSA host key, one key ID)
        const rsa = host('SHA256:victim-rsa', victim.keyId)
        await s.issue({token: token('v-enrol-rsa'), record: rsa, lineage: {kind: 'enrol'}})
        const merged = await s.issue({
          token: token('v-merge'),
          record: host(rsa.keyFingerprint, victim.keyId),
          lineage: {kind: 'rekey', parent: renewed.serial, parentKey: victim.keyFingerprint},
        })
        assert.deepEqual(merged, {ok: false, reason: 'key_in_use', newest: rsa.serial.toString()})
        // a rekey onto the key it already certifies moves nothing (the route refuses it as a renewal's job)
        const same = host(rsa.keyFingerprint, victim.keyId)
        assert.deepEqual(
          await s.issue({
            token: token('v-same'),
            record: same,
            lineage: {kind: 'rekey', parent: rsa.serial, parentKey: rsa.keyFingerprint},
          }),
          {ok: true},
        )
        // the same host enrolling again with its own key, and an enrolment the admin bound to the key, go on
        const again = host(victim.keyFingerprint, victim.keyId)
        assert.deepEqual(await s.issue({token: token('v-enrol-2'), record: again, lineage: {kind: 'enrol'}}), {
          ok: true,
        })
        const moved = host(victim.keyFingerprint, 'host:renamed')
        assert.deepEqual(
          await s.issue({token: token('bound'), record: moved, lineage: {kind: 'enrol', keyBound: true}}),
          {ok: true},
        )
        const current = (await s.currentHostCertificates(2)).map((h) => [h.keyFingerprint, h.serial])
        assert.deepEqual(
          current.filter(([fp]) => fp === victim.keyFingerprint),
          [[victim.keyFingerprint, moved.serial]],
        )
      })

      it('a head that expired or was revoked holds its key for no one: a squatter cannot keep a key from its host', async () => {
        const host = (fp: string, keyId: string, validBefore = 0x7fff_ffffn) =>
          record({certType: 'host', keyFingerprint: fp, keyId, validAfter: 1n, validBefore, issuedAt: 1_500})
        // a squatter rekeyed onto a new server's key before that server enrolled; then it is revoked
        const squatter = host('SHA256:squatter', 'host:squatter')
        await s.issue({token: token('sq-enrol'), record: squatter, lineage: {kind: 'enrol'}})
        const squat = host('SHA256:newserver', 'host:squatter')
        assert.deepEqual(
          await s.issue({
            token: token('sq-rekey'),
            record: squat,
            lineage: {kind: 'rekey', parent: squatter.serial, parentKey: squatter.keyFingerprint},
          }),
          {ok: true},
        )
        const server = host('SHA256:newserver', 'host:newserver')
        assert.deepEqual(await s.issue({token: token('ns-1'), record: server, lineage: {kind: 'enrol'}}), {
          ok: false,
          reason: 'key_in_use',
          newest: squat.serial.toString(),
        })
        await s.revoke({serial: squat.serial, keyId: null, keyFingerprint: null, reason: 'squatting', revokedAt: 1_501})
        assert.deepEqual(await s.issue({token: token('ns-2'), record: server, lineage: {kind: 'enrol'}}), {ok: true})
        // a host that stayed away past its certificate's end enrols again under another name
        const old = host('SHA256:returning', 'host:web1', 1_400n)
        await s.issue({token: token('rt-1'), record: old, lineage: {kind: 'enrol'}})
        const renamed = host('SHA256:returning', 'host:web1.example.com')
        assert.deepEqual(await s.issue({token: token('rt-2'), record: renamed, lineage: {kind: 'enrol'}}), {ok: true})
      })

      it('a renewal or rekey asked again gets the certificate it made, as recorded, while it is the newest and stands; a grandparent, a revoked or expired one, another key: superseded', async () => {
        const host = (fp: string, over: Partial<IssuedRecord> = {}) =>
          record({
            certType: 'host',
            keyFingerprint: fp,
            keyId: 'host:again',
            validAfter: 1n,
            validBefore: 9_000n,
            ...over,
          })
        const k1 = 'SHA256:again-k1'
        const a = host(k1)
        assert.deepEqual(await s.issue({token: token('ag-enrol'), record: a, lineage: {kind: 'enrol'}}), {ok: true})
        const b = host(k1, {issuedAt: 1_501})
        assert.deepEqual(await s.issue({token: token('ag-b'), record: b, lineage: {kind: 'renew', parent: a.serial}}), {
          ok: true,
        })
        const recordedB = await s.findCertificate(b.serial)
        assert.equal(recordedB!.certificate, b.certificate)
        // the answer was lost: a is presented again, with a new token; b comes back byte for byte
        const lost = host(k1, {issuedAt: 1_600})
        const again = await s.issue({
          token: token('ag-again'),
          record: lost,
          lineage: {kind: 'renew', parent: a.serial},
        })
        assert.deepEqual(again, {ok: false, reason: 'redelivered', certificate: recordedB})
        // no new serial, the lineage unmoved, the token spent on b (a second use is a replay)
        assert.equal(await s.findCertificate(lost.serial), undefined)
        assert.deepEqual(
          (await s.currentHostCertificates(1_600)).filter((h) => h.keyFingerprint === k1).map((h) => h.serial),
          [b.serial],
        )
        assert.deepEqual(await s.spentToken('ag-again'), {usedAt: 1_600, serial: b.serial.toString()})
        assert.deepEqual(
          await s.issue({token: token('ag-again'), record: host(k1), lineage: {kind: 'renew', parent: a.serial}}),
          {ok: false, reason: 'replayed', usedAt: 1_600, serial: b.serial.toString()},
        )
        // b renews to e: b's renewal asked again gets e; a, two steps back, gets nothing
        const e = host(k1, {issuedAt: 1_700})
        assert.deepEqual(await s.issue({token: token('ag-e'), record: e, lineage: {kind: 'renew', parent: b.serial}}), {
          ok: true,
        })
        assert.deepEqual(
          await s.issue({token: token('ag-a2'), record: host(k1), lineage: {kind: 'renew', parent: a.serial}}),
          {ok: false, reason: 'superseded', newest: e.serial.toString()},
        )
        assert.deepEqual(
          await s.issue({token: token('ag-b2'), record: host(k1), lineage: {kind: 'renew', parent: b.serial}}),
          {ok: false, reason: 'redelivered', certificate: await s.findCertificate(e.serial)},
        )
        // past e's end, or e revoked by serial: nothing to give back, and nothing spent
        assert.deepEqual(
          await s.issue({
            token: token('ag-late'),
            record: host(k1, {issuedAt: 9_000}),
            lineage: {kind: 'renew', parent: b.serial},
          }),
          {ok: false, reason: 'superseded', newest: e.serial.toString()},
        )
        await s.revoke({serial: e.serial, keyId: null, keyFingerprint: null, reason: 'stolen', revokedAt: 1_800})
        assert.deepEqual(
          await s.issue({token: token('ag-b3'), record: host(k1), lineage: {kind: 'renew', parent: b.serial}}),
          {ok: false, reason: 'superseded', newest: e.serial.toString()},
        )
        assert.equal(await s.spentToken('ag-b3'), undefined)
        assert.equal(await s.spentToken('ag-late'), undefined)

        // a rekey asked again gets the certificate it made, for the very key it asks for only
        const k2 = 'SHA256:again-k2'
        const p = host('SHA256:again-p')
        await s.issue({token: token('ag-p'), record: p, lineage: {kind: 'enrol'}})
        const rekey = {kind: 'rekey', parent: p.serial, parentKey: p.keyFingerprint} as const
        const q = host(k2)
        assert.deepEqual(await s.issue({token: token('ag-q'), record: q, lineage: rekey}), {ok: true})
        assert.deepEqual(await s.issue({token: token('ag-q2'), record: host(k2), lineage: rekey}), {
          ok: false,
          reason: 'redelivered',
          certificate: await s.findCertificate(q.serial),
        })
        assert.deepEqual(await s.issue({token: token('ag-q3'), record: host('SHA256:again-k3'), lineage: rekey}), {
          ok: false,
          reason: 'superseded',
          newest: null,
        })
        // nor does a renewal of the rekeyed certificate get what the rekey made (another key)
        assert.deepEqual(
          await s.issue({
            token: token('ag-q4'),
            record: host(p.keyFingerprint),
            lineage: {kind: 'renew', parent: p.serial},
          }),
          {ok: false, reason: 'superseded', newest: null},
        )
        // once q renewed, the rekey asked again gets nothing
        await s.issue({token: token('ag-r'), record: host(k2), lineage: {kind: 'renew', parent: q.serial}})
        assert.deepEqual(await s.issue({token: token('ag-q5'), record: host(k2), lineage: rekey}), {
          ok: false,
          reason: 'superseded',
          newest: null,
        })
        // a successor revoked by key ID or key is refused as the issuance would be: revoked
        await s.revoke({serial: null, keyId: null, keyFingerprint: k2, reason: 'leaked', revokedAt: 1_900})
        const byKey = await s.issue({token: token('ag-q6'), record: host(k2), lineage: rekey})
        assert.equal(!byKey.ok && byKey.reason, 'revoked')
      })

      it('keeps a certificate valid "forever" (2^64−1)', async () => {
        const r = record({validBefore: 0xffff_ffff_ffff_ffffn})
        await s.issue({token: token('forever'), record: r})
        assert.ok((await s.findCertificate(r.serial))!.validBefore >= 0x7fff_ffff_ffff_ffffn)
      })
    })

    describe('queries', () => {
      it('certificates filter by subject, key ID, key, provisioner, type, since and active; newest first', async () => {
        const rs = [
          record({subject: 'alice', issuedAt: 100, validAfter: 100n, validBefore: 200n}),
          record({subject: 'alice', issuedAt: 300, validAfter: 300n, validBefore: 400n, provisioner: 'ci'}),
          record({subject: 'bob', issuedAt: 350, validAfter: 300n, validBefore: 400n, certType: 'host'}),
        ]
        for (const [i, r] of rs.entries()) await s.issue({token: token(`q${i}`), record: r})
        const serials = (l: IssuedRecord[]) => l.map((r) => r.serial)
        assert.deepEqual(serials(await s.certificates({subject: 'alice'})), [rs[1]!.serial, rs[0]!.serial])
        assert.deepEqual(serials(await s.certificates({keyId: rs[0]!.keyId})), [rs[0]!.serial])
        assert.deepEqual(serials(await s.certificates({keyFingerprint: rs[2]!.keyFingerprint})), [rs[2]!.serial])
        assert.deepEqual(serials(await s.certificates({provisioner: 'ci'})), [rs[1]!.serial])
        assert.deepEqual(serials(await s.certificates({certType: 'host'})), [rs[2]!.serial])
        assert.deepEqual(serials(await s.certificates({since: 300})), [rs[2]!.serial, rs[1]!.serial])
        assert.deepEqual(serials(await s.certificates({activeAt: 150})), [rs[0]!.serial])
        assert.deepEqual(serials(await s.certificates({activeAt: 400})), [])
        assert.equal((await s.certificates({limit: 2})).length, 2)
      })

      it('current host certificates: one per host key, its lineage head, still valid', async () => {
        const a = record({certType: 'host', keyFingerprint: 'SHA256:h', validBefore: 5_000n, issuedAt: 10})
        await s.issue({token: token('h1'), record: a, lineage: {kind: 'enrol'}})
        const b = record({certType: 'host', keyFingerprint: 'SHA256:h', validBefore: 6_000n, issuedAt: 20})
        await s.issue({token: token('h2'), record: b, lineage: {kind: 'renew', parent: a.serial}})
        const old = record({certType: 'host', keyFingerprint: 'SHA256:old', validBefore: 50n, issuedAt: 5})
        await s.issue({token: token('h3'), record: old, lineage: {kind: 'enrol'}})
        assert.deepEqual(
          (await s.currentHostCertificates(100)).map((r) => r.serial),
          [b.serial],
        )
      })
    })

    describe('revocations', () => {
      it('revoke, list, find, unrevoke; the generation only moves forward', async () => {
        const g0 = await s.revocationGeneration()
        const r1 = await s.revoke({serial: 42n, keyId: null, keyFingerprint: null, reason: 'stolen', revokedAt: 100})
        const r2 = await s.revoke({
          serial: null,
          keyId: 'host:web1',
          keyFingerprint: null,
          reason: 'gone',
          revokedAt: 101,
        })
        assert.ok(r1.id && r2.id && r1.id !== r2.id)
        assert.deepEqual(
          (await s.revocations()).map((r) => r.id),
          [r1.id, r2.id],
        )
        assert.equal((await s.revocationFor({serial: 42n}))?.id, r1.id)
        assert.equal((await s.revocationFor({serial: 43n, keyId: 'host:web1'}))?.id, r2.id)
        assert.equal(await s.revocationFor({serial: 43n, keyId: 'host:web2', keyFingerprint: 'SHA256:x'}), undefined)
        const g2 = await s.revocationGeneration()
        assert.equal(g2, g0 + 2)
        assert.equal((await s.unrevoke(r1.id!))?.reason, 'stolen')
        assert.equal(await s.unrevoke(r1.id!), undefined)
        assert.equal(await s.revocationFor({serial: 42n}), undefined)
        assert.equal(await s.revocationGeneration(), g2 + 1)
      })

      it('revokeAll and unrevokeWith write the revocations and their admin event together, or nothing', async () => {
        const rev = (serial: bigint) => ({serial, keyId: null, keyFingerprint: null, reason: 'r', revokedAt: 5})
        const state = async () => ({
          revocations: (await s.revocations()).map((r) => r.id),
          generation: await s.revocationGeneration(),
          events: (await s.adminEventsAfter(0, 1000)).map((e) => e.id),
        })
        const failing = () => {
          throw new Error('the event cannot be made')
        }
        const g0 = await s.revocationGeneration()
        const saved = await s.revokeAll([rev(7n), rev(8n)], {
          event: 'certificate_revoked',
          at: 50,
          fields: (rs) => ({ids: rs.map((r) => r.id)}),
        })
        assert.equal(saved.length, 2)
        // (listed by time, then id: the same time here, so compared as sets)
        assert.deepEqual((await s.revocations()).map((r) => r.id).sort(), saved.map((r) => r.id).sort())
        assert.ok((await s.revocationGeneration()) > g0)
        const [event] = (await s.adminEventsAfter(0, 1000)).slice(-1)
        assert.deepEqual(
          [event!.event, event!.at, event!.fields],
          ['certificate_revoked', 50, {ids: saved.map((r) => r.id)}],
        )
        // the event fails: no revocation is kept, the generation and the events stay
        const before = await state()
        await assert.rejects(s.revokeAll([rev(9n)], {event: 'certificate_revoked', at: 51, fields: failing}))
        assert.deepEqual(await state(), before)
        await assert.rejects(s.unrevokeWith(saved[0]!.id!, {event: 'certificate_unrevoked', at: 52, fields: failing}))
        assert.deepEqual(await state(), before, 'the revocation is still there')
        // the removal and its event
        const removed = await s.unrevokeWith(saved[0]!.id!, {
          event: 'certificate_unrevoked',
          at: 53,
          fields: (r) => ({id: r.id}),
        })
        assert.equal(removed?.id, saved[0]!.id)
        const [last] = (await s.adminEventsAfter(0, 1000)).slice(-1)
        assert.deepEqual([last!.event, last!.fields], ['certificate_unrevoked', {id: saved[0]!.id}])
        // none such: undefined, and no event
        const after = await state()
        assert.equal(
          await s.unrevokeWith('no-such-id', {event: 'certificate_unrevoked', at: 54, fields: failing}),
          undefined,
        )
        assert.deepEqual(await state(), after)
      })
    })

    describe("a host certificate's descendants", () => {
      const fresh = {validAfter: 1n, validBefore: 0x7fff_ffffn}
      /** enrol (k1) → renew (k1) → rekey (k2) → renew (k2): the lineage an admin must be able to end. */
      async function chain(tag: string) {
        const k1 = `SHA256:${tag}-k1`
        const k2 = `SHA256:${tag}-k2`
        const keyId = `host:${tag}`
        const a = record({certType: 'host', keyFingerprint: k1, keyId, ...fresh})
        const b = record({certType: 'host', keyFingerprint: k1, keyId, ...fresh})
        const c = record({certType: 'host', keyFingerprint: k2, keyId, ...fresh})
        const d = record({certType: 'host', keyFingerprint: k2, keyId, ...fresh})
        assert.deepEqual(await s.issue({token: token(`${tag}-a`), record: a, lineage: {kind: 'enrol'}}), {ok: true})
        assert.deepEqual(
          await s.issue({token: token(`${tag}-b`), record: b, lineage: {kind: 'renew', parent: a.serial}}),
          {ok: true},
        )
        assert.deepEqual(
          await s.issue({
            token: token(`${tag}-c`),
            record: c,
            lineage: {kind: 'rekey', parent: b.serial, parentKey: k1},
          }),
          {ok: true},
        )
        assert.deepEqual(
          await s.issue({token: token(`${tag}-d`), record: d, lineage: {kind: 'renew', parent: c.serial}}),
          {ok: true},
        )
        return {a, b, c, d, k1, k2, keyId}
      }
      const renewD = (d: IssuedRecord, tag: string) =>
        s.issue({
          token: token(`${tag}-e`),
          record: record({certType: 'host', keyFingerprint: d.keyFingerprint, keyId: d.keyId, ...fresh}),
          lineage: {kind: 'renew', parent: d.serial},
        })
      const event = {event: 'certificate_revoked', at: 60, fields: (rs: Revocation[]) => ({n: rs.length})}
      const bySerial = (serial: bigint) => ({
        serial,
        keyId: null,
        keyFingerprint: null,
        reason: 'stolen',
        revokedAt: 60,
      })

      it('records how each host certificate joined its lineage and its parent; none for a user certificate', async () => {
        const {a, b, c, d} = await chain('recorded')
        assert.equal((await s.findCertificate(a.serial))!.lineage, 'enrol')
        assert.equal((await s.findCertificate(a.serial))!.parent, undefined)
        const found = await Promise.all([b, c, d].map((x) => s.findCertificate(x.serial)))
        assert.deepEqual(
          found.map((x) => [x!.lineage, x!.parent]),
          [
            ['renew', a.serial],
            ['rekey', b.serial],
            ['renew', c.serial],
          ],
        )
        const user = record()
        await s.issue({token: token('recorded-user'), record: user})
        assert.deepEqual(await s.findCertificate(user.serial), user)
      })

      it('revokeAll by serial revokes every descendant by serial, in the same write and generation; the newest no longer renews', async () => {
        const {a, b, c, d} = await chain('by-serial')
        const g0 = await s.revocationGeneration()
        const saved = await s.revokeAll([bySerial(a.serial)], event)
        const [root, ...cascade] = saved
        assert.equal(root!.cascadeOf, undefined)
        assert.deepEqual(
          cascade.map((r) => [r.serial, r.cascadeOf, r.reason, r.revokedAt]),
          [b, c, d]
            .map((x) => x.serial)
            .sort((x, y) => (x < y ? -1 : 1))
            .map((serial) => [serial, root!.id, 'stolen', 60]),
        )
        assert.equal(await s.revocationGeneration(), g0 + 1)
        const snap = await s.revocationSnapshot()
        assert.deepEqual(
          new Set(snap.revocations.map((r) => r.serial)),
          new Set([a.serial, b.serial, c.serial, d.serial]),
        )
        const [last] = (await s.adminEventsAfter(0, 1000)).slice(-1)
        assert.deepEqual(last!.fields, {n: 4})
        assert.equal((await s.revocationFor({serial: d.serial}))?.cascadeOf, root!.id)
        const renewed = await renewD(d, 'by-serial')
        assert.equal(!renewed.ok && renewed.reason, 'revoked')
        assert.equal(!renewed.ok && renewed.reason === 'revoked' && renewed.revocation.serial, d.serial)
      })

      it('unrevoke of that revocation removes what it wrote for the descendants; the newest renews again', async () => {
        const {a, b, d} = await chain('undo')
        const [root, ...cascade] = await s.revokeAll([bySerial(b.serial)], event)
        assert.equal(cascade.length, 2)
        const g1 = await s.revocationGeneration()
        const removed = await s.unrevokeWith(root!.id!, {
          event: 'certificate_unrevoked',
          at: 61,
          fields: (r) => ({cascade: r.cascade.map((x) => x.id)}),
        })
        assert.equal(removed?.id, root!.id)
        assert.deepEqual(new Set(removed!.cascade.map((r) => r.id)), new Set(cascade.map((r) => r.id)))
        const [last] = (await s.adminEventsAfter(0, 1000)).slice(-1)
        assert.deepEqual(new Set(last!.fields.cascade as string[]), new Set(cascade.map((r) => r.id)))
        assert.deepEqual(await s.revocations(), [])
        assert.equal(await s.revocationGeneration(), g1 + 1)
        assert.deepEqual(await renewD(d, 'undo'), {ok: true})
        // what descends from a is still a's: a's own revocation is not one of them
        assert.equal(await s.revocationFor({serial: a.serial}), undefined)
      })

      it('revokeAll by key covers what was rekeyed from any certificate of the key; a rekey from a revoked key is refused', async () => {
        const {c, d, k1} = await chain('by-key')
        const [root, ...cascade] = await s.revokeAll(
          [{serial: null, keyId: null, keyFingerprint: k1, reason: 'leaked', revokedAt: 60}],
          event,
        )
        // a and b are the key's own (revoked by key), c and d were rekeyed and renewed from b
        assert.deepEqual(new Set(cascade.map((r) => r.serial)), new Set([c.serial, d.serial]))
        assert.ok(cascade.every((r) => r.cascadeOf === root!.id))
        const renewed = await renewD(d, 'by-key')
        assert.equal(!renewed.ok && renewed.reason, 'revoked')
        // the rekeyed-to key leaks too: its newest certificate (revoked by key, no descendant to follow)
        // may not rekey onto a third key, the parent's key being revoked
        const other = await chain('by-key-2')
        await s.revokeAll(
          [{serial: null, keyId: null, keyFingerprint: other.k2, reason: 'leaked', revokedAt: 60}],
          event,
        )
        const rekeyed = await s.issue({
          token: token('by-key-rekey'),
          record: record({certType: 'host', keyFingerprint: 'SHA256:by-key-k3', keyId: other.keyId, ...fresh}),
          lineage: {kind: 'rekey', parent: other.d.serial, parentKey: other.k2},
        })
        assert.equal(!rekeyed.ok && rekeyed.reason, 'revoked')
        assert.equal(!rekeyed.ok && rekeyed.reason === 'revoked' && rekeyed.revocation.keyFingerprint, other.k2)
      })

      it('lists the descendants in numeric order of serial, whatever order they were issued in and however many digits', async () => {
        // real serials are random: a lineage's later certificates may carry smaller or shorter ones
        const host = (serial: bigint, keyFingerprint: string) =>
          record({serial, certType: 'host', keyFingerprint, keyId: 'host:order', ...fresh})
        const steps: IssueRequest[] = [
          {token: token('order-a'), record: host(5_000n, 'SHA256:order-k1'), lineage: {kind: 'enrol'}},
          {token: token('order-b'), record: host(900n, 'SHA256:order-k1'), lineage: {kind: 'renew', parent: 5_000n}},
          {
            token: token('order-c'),
            record: host(10_000n, 'SHA256:order-k2'),
            lineage: {kind: 'rekey', parent: 900n, parentKey: 'SHA256:order-k1'},
          },
          {token: token('order-d'), record: host(20n, 'SHA256:order-k2'), lineage: {kind: 'renew', parent: 10_000n}},
        ]
        for (const step of steps) assert.deepEqual(await s.issue(step), {ok: true})
        const [, ...cascade] = await s.revokeAll([bySerial(5_000n)], event)
        // not the order of issuance (900, 10000, 20) nor that of the text (10000, 20, 900)
        assert.deepEqual(
          cascade.map((r) => r.serial),
          [20n, 900n, 10_000n],
        )
      })

      it('revokeAll by key ID writes that one revocation: it covers every certificate of the key ID itself', async () => {
        const {d, keyId} = await chain('by-key-id')
        const saved = await s.revokeAll(
          [{serial: null, keyId, keyFingerprint: null, reason: 'retired', revokedAt: 60}],
          event,
        )
        assert.deepEqual(
          saved.map((r) => [r.keyId, r.cascadeOf]),
          [[keyId, undefined]],
        )
        const renewed = await renewD(d, 'by-key-id')
        assert.equal(!renewed.ok && renewed.reason === 'revoked' && renewed.revocation.id, saved[0]!.id)
      })

      it('revokeAll of nothing (a subject with nothing valid) records its event and leaves the generation: the KRL is unchanged', async () => {
        const {a} = await chain('nothing')
        await s.revokeAll([bySerial(a.serial)], event)
        const g1 = await s.revocationGeneration()
        assert.deepEqual(await s.revokeAll([], event), [])
        assert.equal(await s.revocationGeneration(), g1)
        const [last] = (await s.adminEventsAfter(0, 1000)).slice(-1)
        assert.deepEqual(last!.fields, {n: 0})
        assert.equal((await s.revocations()).length, 4)
      })

      it('revokeAll of every certificate of a lineage (ca revoke --subject) writes one revocation each, not one per pair: a host that renewed n times made it write n²/2', async () => {
        const n = 40
        const keyFingerprint = 'SHA256:subject-k'
        const keyId = 'host:subject'
        const certs = [record({certType: 'host', keyFingerprint, keyId, ...fresh})]
        await s.issue({token: token('subject-0'), record: certs[0]!, lineage: {kind: 'enrol'}})
        for (let i = 1; i < n; i++) {
          certs.push(record({certType: 'host', keyFingerprint, keyId, ...fresh}))
          const out = await s.issue({
            token: token(`subject-${i}`),
            record: certs[i]!,
            lineage: {kind: 'renew', parent: certs[i - 1]!.serial},
          })
          assert.deepEqual(out, {ok: true})
        }
        // what admin.revoke asks for with --subject: each current certificate by serial
        const saved = await s.revokeAll(
          certs.map((c) => bySerial(c.serial)),
          event,
        )
        // every descendant is revoked in its own right already: nothing to add for it
        assert.equal(saved.length, n)
        assert.equal((await s.revocations()).length, n)
        // and lifting one of them leaves the others, and what descends from them, revoked
        await s.unrevokeWith(saved[0]!.id!, {event: 'certificate_unrevoked', at: 61, fields: () => ({})})
        assert.equal(await s.revocationFor({serial: certs[0]!.serial}), undefined)
        for (const c of certs.slice(1)) assert.ok(await s.revocationFor({serial: c.serial}))
        const renewed = await renewD(certs.at(-1)!, 'subject')
        assert.equal(!renewed.ok && renewed.reason, 'revoked')
      })

      it('revoke() (a certificate revoking itself) writes that one revocation: what it renewed or rekeyed to stands', async () => {
        const {a, d} = await chain('self')
        await s.revoke(bySerial(a.serial))
        assert.equal((await s.revocations()).length, 1)
        assert.deepEqual(await renewD(d, 'self'), {ok: true})
      })
    })

    describe('spent tokens', () => {
      it('are remembered until they expire, then purged', async () => {
        await s.issue({token: token('p1', 100), record: record()})
        await s.issue({token: token('p2', 200), record: record()})
        assert.equal(await s.purgeExpiredTokens(150), 1)
        assert.equal((await s.issue({token: token('p2', 200), record: record()})).ok, false)
        assert.equal((await s.issue({token: token('p1', 100), record: record()})).ok, true)
      })
    })

    describe("a rule's webhook asked once per token", () => {
      it('records the first ask, says when for the next, says spent for a spent token; forgotten, it asks again; purged with the tokens', async () => {
        assert.deepEqual(await s.askWebhook({id: 'w1', expiresAt: 100}, 50), {first: true})
        assert.deepEqual(await s.askWebhook({id: 'w1', expiresAt: 100}, 51), {first: false, askedAt: 50})
        const r = record({issuedAt: 60})
        await s.issue({token: token('w2', 200), record: r})
        assert.deepEqual(await s.askWebhook({id: 'w2', expiresAt: 200}, 61), {
          first: false,
          askedAt: null,
          spent: {usedAt: 60, serial: r.serial.toString()},
        })
        await s.forgetWebhookAsk('w1')
        assert.deepEqual(await s.askWebhook({id: 'w1', expiresAt: 100}, 52), {first: true})
        await s.purgeExpiredTokens(150)
        assert.deepEqual(
          await s.askWebhook({id: 'w1', expiresAt: 300}, 160),
          {first: true},
          'the expired ask was purged',
        )
      })
    })

    describe('admin events', () => {
      it('are kept in order; the cursor moves only from where the caller saw it', async () => {
        assert.equal(await s.auditCursor(), 0)
        const e1 = await s.recordAdminEvent('enrollment_token_issued', {jti: 'a'}, 10)
        const e2 = await s.recordAdminEvent('certificate_revoked', {serials: ['1']}, 11)
        assert.deepEqual(await s.adminEventsAfter(0, 10), [e1, e2])
        assert.deepEqual(await s.adminEventsAfter(e1.id, 10), [e2])
        assert.equal(await s.advanceAuditCursor(0, e1.id), true)
        assert.equal(await s.advanceAuditCursor(0, e2.id), false, 'another replica moved it first')
        assert.equal(await s.auditCursor(), e1.id)
      })
    })

    describe('the safety net: spent-token lookup, inventory summary, restore mark, emergency stop', () => {
      it('spentToken says when and on which serial a token was spent, and nothing for one never seen', async () => {
        const r = record({issuedAt: 1_777})
        await s.issue({token: token('looked-up'), record: r})
        assert.deepEqual(await s.spentToken('looked-up'), {usedAt: 1_777, serial: r.serial.toString()})
        assert.equal(await s.spentToken('never-seen'), undefined)
      })

      it('inventorySummary counts the certificates valid now per type and the last moment any is valid, revoked ones included', async () => {
        assert.deepEqual(await s.inventorySummary(1_500), {
          user: {active: 0, lastValidBefore: null},
          host: {active: 0, lastValidBefore: null},
        })
        await s.issue({token: token('i1'), record: record({validAfter: 1_000n, validBefore: 2_000n})})
        await s.issue({token: token('i2'), record: record({validAfter: 1_000n, validBefore: 3_000n})})
        const revoked = record({validAfter: 1_400n, validBefore: 5_000n})
        await s.issue({token: token('i3'), record: revoked})
        await s.revoke({serial: revoked.serial, keyId: null, keyFingerprint: null, reason: 'test', revokedAt: 1_450})
        await s.issue({
          token: token('i4'),
          record: record({certType: 'host', validAfter: 1_000n, validBefore: 90_000n}),
        })
        assert.deepEqual(await s.inventorySummary(1_500), {
          user: {active: 3, lastValidBefore: 5_000n},
          host: {active: 1, lastValidBefore: 90_000n},
        })
        assert.deepEqual(await s.inventorySummary(2_500), {
          user: {active: 2, lastValidBefore: 5_000n},
          host: {active: 1, lastValidBefore: 90_000n},
        })
        await s.issue({token: token('i5'), record: record({validAfter: 0n, validBefore: 0xffff_ffff_ffff_ffffn})})
        assert.equal(
          (await s.inventorySummary(2_500)).user.lastValidBefore,
          (1n << 63n) - 1n,
          '"forever" is kept as the largest time',
        )
      })

      it('the restore mark starts unset and only moves forward', async () => {
        assert.equal(await s.restoredAt(), null)
        assert.equal(await s.markRestored(2_000), 2_000)
        assert.equal(await s.markRestored(1_000), 2_000, 'an earlier mark never reopens the window')
        assert.equal(await s.restoredAt(), 2_000)
        assert.equal(await s.markRestored(3_000), 3_000)
        assert.equal(await s.restoredAt(), 3_000)
        await assert.rejects(s.markRestored(0), TypeError)
      })

      it('the emergency stop is set, read and lifted', async () => {
        assert.equal(await s.issuanceStop(), null)
        await s.setIssuanceStop({at: 1_234, reason: 'user CA key on a stolen laptop'})
        assert.deepEqual(await s.issuanceStop(), {at: 1_234, reason: 'user CA key on a stolen laptop'})
        await s.setIssuanceStop({at: 1_300, reason: 'again'})
        assert.deepEqual(await s.issuanceStop(), {at: 1_300, reason: 'again'})
        await s.setIssuanceStop(null)
        assert.equal(await s.issuanceStop(), null)
      })
    })

    describe('health and locks', () => {
      it('ping resolves while the database answers', async () => {
        await s.ping()
      })

      it('exclusive runs one holder at a time and passes on what fn returns or throws', async () => {
        const log: string[] = []
        const hold = (tag: string) => async () => {
          log.push(`${tag}+`)
          await new Promise((r) => setTimeout(r, 30))
          log.push(`${tag}-`)
          return tag
        }
        assert.deepEqual(await Promise.all([s.exclusive('x', hold('a')), s.exclusive('x', hold('b'))]), ['a', 'b'])
        assert.deepEqual(log.slice().sort(), ['a+', 'a-', 'b+', 'b-'])
        assert.ok(
          log.indexOf('a-') === log.indexOf('a+') + 1 && log.indexOf('b-') === log.indexOf('b+') + 1,
          `interleaved: ${log.join(' ')}`,
        )
        await assert.rejects(
          s.exclusive('x', async () => Promise.reject(new Error('boom'))),
          /boom/,
        )
        assert.equal(await s.exclusive('x', async () => 'free again'), 'free again')
      })
    })

    describe('two replicas on one database', () => {
      let r: Store
      beforeEach(async () => {
        r = await replica(s)
      })
      afterEach(async () => r?.close())

      it('a token raced to both, several times each: exactly one certificate, the rest replayed on its serial', async () => {
        const recs = Array.from({length: 16}, () => record({issuedAt: 777}))
        const out = await Promise.all(recs.map((rec, i) => (i % 2 ? r : s).issue({token: token('raced'), record: rec})))
        const winners = out.flatMap((o, i) => (o.ok ? [recs[i]!] : []))
        assert.equal(winners.length, 1, JSON.stringify(out))
        for (const o of out)
          if (!o.ok)
            assert.deepEqual(o, {ok: false, reason: 'replayed', usedAt: 777, serial: winners[0]!.serial.toString()})
        for (const store of [s, r]) {
          const found = await Promise.all(recs.map((rec) => store.findCertificate(rec.serial)))
          assert.equal(found.filter(Boolean).length, 1)
        }
      })

      it("unique tokens on both: every one is recorded once, and each replica sees the other's", async () => {
        const recs = Array.from({length: 40}, () => record())
        const out = await Promise.all(
          recs.map((rec, i) => (i % 2 ? r : s).issue({token: token(`u${rec.serial}`), record: rec})),
        )
        assert.ok(out.every((o) => o.ok))
        assert.equal((await s.certificates({limit: 100})).length, 40)
        assert.equal((await r.certificates({limit: 100})).length, 40)
      })

      it('renewals of one certificate raced on two replicas: one is issued, the others get its certificate again', async () => {
        const fp = 'SHA256:replicated'
        let head = record({certType: 'host', keyFingerprint: fp})
        await s.issue({token: token('enrol-r'), record: head, lineage: {kind: 'enrol'}})
        for (let round = 0; round < 10; round++) {
          const recs = Array.from({length: 8}, () => record({certType: 'host', keyFingerprint: fp}))
          // each in its own event-loop turn, so each is its own transaction, several in flight at once
          const pending: Promise<IssueOutcome>[] = []
          for (const [i, rec] of recs.entries()) {
            pending.push(
              (i % 2 ? r : s).issue({
                token: token(`renew-${round}-${i}`),
                record: rec,
                lineage: {kind: 'renew', parent: head.serial},
              }),
            )
            await new Promise((res) => setImmediate(res))
          }
          const out = await Promise.all(pending)
          const winners = recs.filter((_, i) => out[i]!.ok)
          assert.equal(
            winners.length,
            1,
            JSON.stringify(out, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v)),
          )
          const recorded = await s.findCertificate(winners[0]!.serial)
          for (const o of out) if (!o.ok) assert.deepEqual(o, {ok: false, reason: 'redelivered', certificate: recorded})
          for (const [i, rec] of recs.entries())
            if (!out[i]!.ok) assert.equal(await r.findCertificate(rec.serial), undefined)
          head = winners[0]!
        }
      })

      it('a revocation written through one is in force on the other, and the generation moves for both', async () => {
        const g0 = await r.revocationGeneration()
        const rev = await s.revoke({
          serial: null,
          keyId: 'gha:acme/leaked',
          keyFingerprint: null,
          reason: 'leak',
          revokedAt: 50,
        })
        assert.equal(await r.revocationGeneration(), g0 + 1)
        assert.deepEqual(
          (await r.revocations()).map((x) => x.id),
          [rev.id],
        )
        const o = await r.issue({token: token('after-revoke'), record: record({keyId: 'gha:acme/leaked'})})
        assert.equal(!o.ok && o.reason, 'revoked')
        await r.unrevoke(rev.id!)
        assert.equal(await s.revocationGeneration(), g0 + 2)
        assert.equal(await s.revocationFor({keyId: 'gha:acme/leaked'}), undefined)
      })

      it("the KRL's revocations and generation are read together while the other replica revokes", async () => {
        const g0 = await s.revocationGeneration()
        let revoking = true
        const writes = (async () => {
          for (let i = 0; i < 25; i++)
            await r.revoke({serial: BigInt(i + 1), keyId: null, keyFingerprint: null, reason: 'r', revokedAt: 100 + i})
        })().finally(() => (revoking = false))
        const seen: string[] = []
        while (revoking) {
          const snap = await s.revocationSnapshot()
          if (snap.revocations.length !== snap.generation - g0)
            seen.push(`${snap.generation - g0} vs ${snap.revocations.length}`)
        }
        await writes
        assert.deepEqual(seen, [], 'a generation paired with another revocation set')
        const last = await s.revocationSnapshot()
        assert.equal(last.generation, g0 + 25)
        assert.deepEqual(
          last.revocations.map((x) => x.serial),
          Array.from({length: 25}, (_, i) => BigInt(i + 1)),
        )
      })

      it('admin events written on both while one forwards: the cursor never skips one', async () => {
        const written: number[] = []
        const forwarded: number[] = []
        let writing = true
        const writers = Promise.all(
          [s, r].map(async (store, w) => {
            for (let i = 0; i < 50; i++)
              written.push((await store.recordAdminEvent('certificate_revoked', {w, i}, 1)).id)
          }),
        ).finally(() => (writing = false))
        // forwardAdminEvents' loop, on both replicas at once
        const forwarder = (store: Store) => async () => {
          for (;;) {
            const done = !writing
            const cursor = await store.auditCursor()
            const events = await store.adminEventsAfter(cursor, 7)
            if (events.length === 0) {
              if (done) return
              await new Promise((res) => setTimeout(res, 1))
              continue
            }
            if (await store.advanceAuditCursor(cursor, events[events.length - 1]!.id))
              forwarded.push(...events.map((e) => e.id))
          }
        }
        await Promise.all([writers, forwarder(s)(), forwarder(r)()])
        assert.deepEqual(
          [...forwarded].sort((x, y) => x - y),
          [...written].sort((x, y) => x - y),
        )
      })

      it('one token asked through both at once: exactly one first ask', async () => {
        for (let i = 0; i < 5; i++) {
          const asks = await Promise.all(
            Array.from({length: 6}, (_, k) => (k % 2 ? s : r).askWebhook({id: `raced-${i}`, expiresAt: 1000}, 10)),
          )
          assert.equal(asks.filter((a) => a.first).length, 1, JSON.stringify(asks))
        }
      })

      it('purging on both at once deletes each expired token once', async () => {
        await Promise.all(Array.from({length: 20}, (_, i) => s.issue({token: token(`e${i}`, 100), record: record()})))
        await s.issue({token: token('live', 10_000), record: record()})
        const [a, b] = await Promise.all([s.purgeExpiredTokens(150), r.purgeExpiredTokens(150)])
        assert.equal(a + b, 20)
        assert.equal((await r.issue({token: token('live', 10_000), record: record()})).ok, false)
      })

      it('an emergency stop set through one is seen by the other; the restore mark keeps the later of two', async () => {
        await s.setIssuanceStop({at: 99, reason: 'stop all replicas'})
        assert.deepEqual(await r.issuanceStop(), {at: 99, reason: 'stop all replicas'})
        await r.setIssuanceStop(null)
        assert.equal(await s.issuanceStop(), null)
        const marks = await Promise.all([s.markRestored(5_000), r.markRestored(6_000), s.markRestored(4_000)])
        assert.equal(Math.max(...marks), 6_000)
        assert.equal(await s.restoredAt(), 6_000)
        assert.equal(await r.restoredAt(), 6_000)
      })

      it('a stop written through the other is in force in the next issuance transaction, its batch refused whole and nothing written', async () => {
        // what the server's one-second poll has not read yet: the store itself refuses
        await r.setIssuanceStop({at: 77, reason: 'key compromise'})
        const refused = await Promise.all([
          s.issue({token: token('during-1'), record: record({serial: 701n})}),
          s.issue({token: token('during-2'), record: record({serial: 702n})}),
        ])
        for (const o of refused)
          assert.deepEqual(o, {ok: false, reason: 'stopped', stop: {at: 77, reason: 'key compromise'}})
        assert.equal(await s.findCertificate(701n), undefined)
        assert.equal(await s.spentToken('during-1'), undefined)
        await r.setIssuanceStop(null)
        assert.deepEqual(await s.issue({token: token('during-1'), record: record({serial: 701n})}), {ok: true})
      })

      it('a restore mark written through the other refuses, in the issuance transaction, tokens issued before it plus the leeway', async () => {
        await r.markRestored(5_000)
        const at = (id: string, issuedAt: number) => ({id, expiresAt: 9_000, issuedAt})
        const outcomes = await Promise.all([
          s.issue({token: at('old', 5_000 + RESTORE_LEEWAY - 1), record: record({serial: 801n})}),
          s.issue({token: at('new', 5_000 + RESTORE_LEEWAY), record: record({serial: 802n})}),
          s.issue({token: at('no-time', Number.NaN), record: record({serial: 803n})}),
        ])
        assert.deepEqual(outcomes, [
          {ok: false, reason: 'before_restore', restoredAt: 5_000},
          {ok: true},
          {ok: false, reason: 'before_restore', restoredAt: 5_000},
        ])
        assert.equal(await s.findCertificate(801n), undefined)
        assert.equal(await s.spentToken('old'), undefined)
        assert.ok(await s.findCertificate(802n))
      })

      it('exclusive excludes across replicas', async () => {
        const log: string[] = []
        const hold = (tag: string) => async () => {
          log.push(`${tag}+`)
          await new Promise((res) => setTimeout(res, 50))
          log.push(`${tag}-`)
        }
        await Promise.all([s.exclusive('renew-tls', hold('s')), r.exclusive('renew-tls', hold('r'))])
        assert.ok(
          log.indexOf('s-') === log.indexOf('s+') + 1 && log.indexOf('r-') === log.indexOf('r+') + 1,
          `interleaved: ${log.join(' ')}`,
        )
      })
    })
  })
}
