import assert from 'node:assert/strict'
import {
  caHostPattern,
  derivePattern,
  effectivePattern,
  globCovers,
  globsIntersect,
  broadEntries,
  listMatches,
  listsOverlap,
  namesNoHosts,
  NO_HOSTS,
  parsePatternList,
} from '../../../src/ssh/host-pattern.ts'
import {throwsCode} from '../../helpers/assert.ts'

describe('host patterns (ssh_config PATTERNS)', () => {
  describe('derivePattern: what ca init writes into ssh.hostPattern from --dns', () => {
    it('the parent domain of a host name: ca.example.com → *.example.com', () => {
      assert.equal(derivePattern(['ca.example.com']), '*.example.com')
      assert.equal(derivePattern(['CA.Corp.Example.com.']), '*.corp.example.com')
      assert.equal(derivePattern(['ca.acme.co.uk']), '*.acme.co.uk')
      assert.equal(
        derivePattern(['ca.example.com', '10.0.0.5', 'ca2.example.com', 'ssh.example.org']),
        '*.example.com,*.example.org',
      )
    })

    it('no pattern at any public second level under a country code (co.uk, com.au, gov.br …), a private one alike elsewhere', () => {
      // written out, not imported from host-pattern.ts: a name dropped from (or emptied in) that list must fail here
      const publicSecond = [
        'ac',
        'co',
        'com',
        'edu',
        'gob',
        'gov',
        'govt',
        'ltd',
        'me',
        'mil',
        'net',
        'nic',
        'or',
        'org',
        'plc',
        'sch',
        'ne',
        'go',
        'gen',
        'nom',
        'ind',
        'res',
      ]
      for (const second of publicSecond) {
        assert.equal(derivePattern([`ca.${second}.uk`]), NO_HOSTS, `ca.${second}.uk`)
        // under a three-letter top-level domain, or one level deeper, it is a private domain
        assert.equal(derivePattern([`ca.${second}.com`]), `*.${second}.com`)
        assert.equal(derivePattern([`ca.acme.${second}.uk`]), `*.acme.${second}.uk`)
      }
      assert.equal(derivePattern(['ca.acme.uk']), '*.acme.uk')
    })

    it('never "*": IPs, single labels, a bare domain and public second-level parents give no hosts', () => {
      for (const dns of [
        ['10.0.0.5'],
        ['::1'],
        ['127.0.0.1'],
        ['sshca'],
        ['localhost'],
        ['example.com'],
        ['acme.co.uk'],
        ['ca.local'],
        ['*.example.com'],
        [],
      ]) {
        assert.equal(derivePattern(dns), NO_HOSTS, dns.join())
      }
      assert.equal(namesNoHosts(NO_HOSTS), true)
      assert.equal(listMatches(NO_HOSTS, 'anything.example.com'), false)
    })
  })

  describe('effectivePattern: config --pattern narrows, never widens', () => {
    it("the CA's pattern when none is asked; a narrower one keeps the CA's exclusions", () => {
      assert.equal(effectivePattern('*.example.com'), '*.example.com')
      assert.equal(
        effectivePattern('*.example.com,!bastion.example.com', '*.prod.example.com'),
        '*.prod.example.com,!bastion.example.com',
      )
      assert.equal(effectivePattern('*', 'web?.example.com'), 'web?.example.com')
      assert.equal(effectivePattern('*.example.com', 'WEB1.example.com'), 'web1.example.com')
    })

    it("refuses a pattern wider than the CA's (ERR_USAGE naming the entry)", () => {
      throwsCode(
        () => effectivePattern('*.example.com', '*'),
        'ERR_USAGE',
        {},
        /wider than the CA's host pattern "\*\.example\.com": \* lies outside it/,
      )
      throwsCode(
        () => effectivePattern('*.example.com', '*.example.com,*.evil.com'),
        'ERR_USAGE',
        {},
        /\*\.evil\.com lies outside/,
      )
      throwsCode(() => effectivePattern('web?.example.com', 'web*.example.com'), 'ERR_USAGE')
    })

    it('a CA that names no hosts needs --pattern, which then decides alone', () => {
      throwsCode(() => effectivePattern(NO_HOSTS), 'ERR_USAGE', {}, /names no hosts/)
      assert.equal(effectivePattern(NO_HOSTS, '10.0.0.*,*.lab'), '10.0.0.*,*.lab')
      throwsCode(() => effectivePattern('*.example.com', '!web.example.com'), 'ERR_USAGE', {}, /names no hosts/)
    })

    it("a CA's pattern that would inject a line into ssh_config (or none at all) names no hosts", () => {
      assert.equal(caHostPattern('*.example.com\nMatch all\n  ProxyCommand sh -c evil'), NO_HOSTS)
      assert.equal(caHostPattern('* "x"'), NO_HOSTS)
      assert.equal(caHostPattern(undefined), NO_HOSTS)
      assert.equal(caHostPattern('*.Example.COM,!Bastion.example.com'), '*.example.com,!bastion.example.com')
    })

    it('refuses what known_hosts and ssh_config would read differently: spaces, quotes, [host]:port', () => {
      for (const bad of ['a b', '"x"', '[web]:2222', '', 'a,,b', 'x;y'])
        throwsCode(() => parsePatternList(bad), 'ERR_USAGE')
    })
  })

  describe('glob algebra', () => {
    it('globCovers: inner ⊆ outer', () => {
      const yes: [string, string][] = [
        ['*', 'a.b'],
        ['*.example.com', 'web1.example.com'],
        ['*.example.com', '*.prod.example.com'],
        ['web?.example.com', 'web1.example.com'],
        ['*', '*'],
        ['*.com', '?*.com'],
        ['a*', 'a*a'],
      ]
      const no: [string, string][] = [
        ['*.example.com', '*'],
        ['*.example.com', 'example.com'],
        ['web?.x', 'web*.x'],
        ['?', '*'],
        ['a.com', 'b.com'],
        ['*.a.com', '*.com'],
      ]
      for (const [o, i] of yes) assert.equal(globCovers(o, i), true, `${i} ⊆ ${o}`)
      for (const [o, i] of no) assert.equal(globCovers(o, i), false, `${i} ⊄ ${o}`)
    })

    it('globsIntersect and listsOverlap', () => {
      assert.equal(globsIntersect('*.example.com', 'web*'), true)
      assert.equal(globsIntersect('*.example.com', '*.example.org'), false)
      assert.equal(globsIntersect('10.0.0.*', '10.0.*'), true)
      assert.equal(globsIntersect('a?c', 'ab*'), true)
      assert.equal(globsIntersect('a?c', 'ab'), false)
      assert.equal(listsOverlap('*.example.com', '*.prod.example.com'), true)
      assert.equal(
        listsOverlap('*.example.com,!x.example.com', 'x.example.com'),
        true,
        'negations are ignored: a warning may err towards yes',
      )
      assert.equal(listsOverlap('*.a.com', '*.b.com,10.0.0.?'), false)
      assert.equal(listsOverlap('*.a.com', '10.*'), true, '10.x.a.com matches both')
      assert.equal(listsOverlap(NO_HOSTS, '*'), false)
    })

    it('namesNoHosts, listsOverlap over any pair of entries, and derived patterns only from whole DNS names', () => {
      assert.equal(namesNoHosts('*.corp'), false)
      assert.equal(namesNoHosts('!*'), true)
      assert.equal(listsOverlap('*.a.com', '*.b.com,*.a.com'), true, 'one overlapping pair is enough')
      for (const bad of ['ca.example.com_', '_ca.example.com', 'ca..example.com', 'ca.example.com/x'])
        assert.equal(derivePattern([bad]), NO_HOSTS, bad)
      // only a two-label parent under a country code can be a public suffix
      assert.equal(derivePattern(['ca.gov.co.uk']), '*.gov.co.uk')
    })

    it("--pattern: negations beside names are kept; any one CA entry may cover a name; the CA's exclusions are added once", () => {
      assert.equal(effectivePattern('*.corp', '*.prod.corp,!db.prod.corp'), '*.prod.corp,!db.prod.corp')
      assert.equal(effectivePattern('*.a.com,*.b.com', 'web.a.com'), 'web.a.com')
      assert.equal(effectivePattern('*.corp,!bastion.corp', 'web.corp'), 'web.corp,!bastion.corp')
      assert.equal(effectivePattern('*.corp,!bastion.corp', 'web.corp,!bastion.corp'), 'web.corp,!bastion.corp')
      assert.equal(effectivePattern('*.corp,!bastion.corp', 'web.corp,!bastion.*'), 'web.corp,!bastion.*,!bastion.corp')
    })

    it('listMatches follows ssh: a matching negation wins, case-insensitive', () => {
      assert.equal(listMatches('*.example.com,!bastion.example.com', 'WEB.example.com'), true)
      assert.equal(listMatches('*.example.com,!bastion.example.com', 'bastion.example.com'), false)
      assert.equal(listMatches('*.example.com', 'example.com'), false)
      // ssh lowers A-Z only: the Kelvin sign (U+212A) is no "k" here either
      assert.equal(listMatches('kernel.org', '\u212Aernel.org'), false)
      assert.equal(listMatches('!kernel.org,*', '\u212Aernel.org'), true)
    })
  })

  it('broadEntries: a wildcard not followed by a dot and a domain matches hosts anywhere', () => {
    for (const [list, broad] of [
      ['*', ['*']],
      ['?*', ['?*']],
      ['**', ['**']],
      ['*,!x.invalid', ['*']],
      ['*example.com', ['*example.com']],
      ['*.example.*', ['*.example.*']],
      ['*.corp,web?.example.com,*.example.com', []],
      ['10.0.*,host1', []],
      ['!*', []],
    ] as const)
      assert.deepEqual(broadEntries(list), broad, list)
  })
})
