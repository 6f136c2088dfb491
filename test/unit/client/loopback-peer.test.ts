/**
 * Whose program sent a request to the loopback listener: /proc/net/tcp and tcp6 as the kernel prints
 * them (lines taken from a real listener, a connection from uid 65534, and one that sender closed).
 */
import assert from 'node:assert/strict'
import {createServer, connect, type Server, type Socket} from 'node:net'
import {
  connectionOfUser,
  LOOKUPS,
  loopbackPeerCheck,
  parseProcNetTcp,
  peerUid,
  type Connection,
} from '../../../src/client/login/loopback-peer.ts'

const HEADER =
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     '
/** The listener on 127.0.0.1:38443, a connection to it from 127.0.0.1:45748 by uid 65534, and the listener's side of it. */
const TCP = [
  HEADER,
  '   0: 0100007F:962B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1222102 1 000000009209a961 100 0 0 10 0                   ',
  '   2: 0100007F:B2B4 0100007F:962B 01 00000000:00000000 02:00001751 00000000 65534        0 1222108 2 0000000033e329ab 20 0 0 11 -1                   ',
  '   3: 0100007F:962B 0100007F:B2B4 01 00000000:00000000 00:00000000 00000000     0        0 1223040 1 00000000ab9fdff8 20 4 30 10 -1                  ',
  // a sender that closed its socket at once: TIME_WAIT, listed as uid 0 (root's) with no inode
  '   4: 0100007F:83CA 0100007F:962B 06 00000000:00000000 03:00001752 00000000     0        0 0 3 00000000fac70550                                      ',
].join('\n')
/** ::1:631 listening, and a dual-stack socket of uid 65534 connected to ::ffff:127.0.0.1:38443. */
const TCP6 = [
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
  '   0: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 100 0 0 10 0',
  '   1: 0000000000000000FFFF00000100007F:83DA 0000000000000000FFFF00000100007F:962B 01 00000000:00000000 02:00001751 00000000 65534        0 1222230 2 0000000009cb9b13 20 0 0 11 -1',
].join('\n')

const LISTENER = {localAddress: '127.0.0.1', localPort: 38443}

describe('whose program sent a request to the loopback listener (/proc/net/tcp)', () => {
  it('reads each socket: addresses as little-endian words, ports as numbers, the uid and inode columns; the header skipped', () => {
    assert.deepEqual(parseProcNetTcp(TCP, 'LE'), [
      {local: '127.0.0.1:38443', remote: '0.0.0.0:0', uid: 0, inode: 1222102},
      {local: '127.0.0.1:45748', remote: '127.0.0.1:38443', uid: 65534, inode: 1222108},
      {local: '127.0.0.1:38443', remote: '127.0.0.1:45748', uid: 0, inode: 1223040},
      {local: '127.0.0.1:33738', remote: '127.0.0.1:38443', uid: 0, inode: 0},
    ])
  })

  it('the byte order is the machine’s: 10.1.2.3 is 0302010A on little-endian machines, 0A010203 on big-endian ones', () => {
    const line = (a: string, b: string) =>
      `   7: ${a}:0016 ${b}:D431 01 00000000:00000000 00:00000000 00000000  1000        0 99 1 0 20 4 30 10 -1`
    assert.deepEqual(parseProcNetTcp(line('0302010A', '0100007F'), 'LE'), [
      {local: '10.1.2.3:22', remote: '127.0.0.1:54321', uid: 1000, inode: 99},
    ])
    assert.deepEqual(parseProcNetTcp(line('0A010203', '7F000001'), 'BE'), [
      {local: '10.1.2.3:22', remote: '127.0.0.1:54321', uid: 1000, inode: 99},
    ])
    assert.equal(parseProcNetTcp(line('0302010A', '0100007F'), 'BE')[0]!.local, '3.2.1.10:22')
    const mapped = (w: string) => `0000000000000000${w}`
    assert.deepEqual(
      parseProcNetTcp(line(mapped('0000FFFF0A010203'), mapped('0000FFFF7F000001')), 'BE').map((s) => s.local),
      ['10.1.2.3:22'],
    )
  })

  it('tcp6: an IPv4-mapped socket reads as its IPv4 address; other IPv6 sockets are left out (none can be connected to 127.0.0.1)', () => {
    assert.deepEqual(parseProcNetTcp(TCP6, 'LE'), [
      {local: '127.0.0.1:33754', remote: '127.0.0.1:38443', uid: 65534, inode: 1222230},
    ])
    // almost mapped: one byte off in the prefix
    const near = TCP6.split('\n')[2]!.replace('0000000000000000FFFF0000', '0000000000000001FFFF0000')
    assert.deepEqual(parseProcNetTcp(near, 'LE'), [])
  })

  it('a line of another shape is skipped, not misread', () => {
    const good = TCP.split('\n')[2]!
    for (const bad of [
      good.replace('   2:', '   x:'),
      good.replace('0100007F:B2B4', '0100007F:B2B'),
      good.replace('0100007F:B2B4', '100007F:B2B4'),
      good.replace('0100007F:B2B4', '0100007G:B2B4'),
      good.replace('0100007F:B2B4', '0100007F00:B2B4'),
      good.replace('0100007F:962B 01', '0100007F962B 01'),
      good.replace(' 65534 ', ' -x '),
      good.replace(' 1222108 ', ' ? '),
      good.split(/\s+/).slice(0, 10).join(' '),
      '',
    ])
      assert.deepEqual(parseProcNetTcp(bad, 'LE'), [], bad)
    // ten fields are enough; upper and lower case hex alike
    assert.equal(parseProcNetTcp(good.trim().split(/\s+/).slice(0, 10).join(' '), 'LE').length, 1)
    assert.equal(parseProcNetTcp(good.replace('0100007F:B2B4', '0100007f:b2b4'), 'LE')[0]!.local, '127.0.0.1:45748')
  })

  it("the sender is the socket whose ends are the connection's the other way round, never the listener's own side", () => {
    const sockets = parseProcNetTcp(`${TCP}\n${TCP6}`, 'LE')
    assert.equal(peerUid(sockets, {...LISTENER, remoteAddress: '127.0.0.1', remotePort: 45748}), 65534)
    assert.equal(peerUid(sockets, {...LISTENER, remoteAddress: '127.0.0.1', remotePort: 33754}), 65534)
    // seen from the sender's end, the other end is the listener's side, uid 0
    assert.equal(
      peerUid(sockets, {localAddress: '127.0.0.1', localPort: 45748, remoteAddress: '127.0.0.1', remotePort: 38443}),
      0,
    )
    // no such connection; another address
    assert.equal(peerUid(sockets, {...LISTENER, remoteAddress: '127.0.0.1', remotePort: 1}), undefined)
    assert.equal(peerUid(sockets, {...LISTENER, remoteAddress: '127.0.0.2', remotePort: 45748}), undefined)
    assert.equal(
      peerUid(sockets, {...LISTENER, localPort: 1, remoteAddress: '127.0.0.1', remotePort: 45748}),
      undefined,
    )
    // node no longer knows the ends of a closed connection
    assert.equal(peerUid(sockets, {}), undefined)
  })

  it("a sender that closed its socket (TIME_WAIT: uid 0, inode 0) is no one, not root: root's sshca does not take it", () => {
    const sockets = parseProcNetTcp(TCP, 'LE')
    assert.equal(peerUid(sockets, {...LISTENER, remoteAddress: '127.0.0.1', remotePort: 33738}), undefined)
  })

  it('compares the owner with the uid; a connection not found is looked for again, then refused', async () => {
    const c: Connection = {...LISTENER, remoteAddress: '127.0.0.1', remotePort: 45748}
    let reads = 0
    const tables =
      (...texts: string[]) =>
      async () =>
        texts[Math.min(reads++, texts.length - 1)]!
    assert.equal(await connectionOfUser(c, 65534, tables(TCP)), true)
    assert.equal(reads, 1)
    reads = 0
    assert.equal(await connectionOfUser(c, 1000, tables(TCP)), false)
    assert.equal(reads, 1)
    // missed on the first reads (the table changed while the kernel listed it), found on the last
    reads = 0
    assert.equal(await connectionOfUser(c, 65534, tables(...Array<string>(LOOKUPS - 1).fill(HEADER), TCP)), true)
    assert.equal(reads, LOOKUPS)
    // never found, or nothing to read: refused after LOOKUPS reads
    reads = 0
    assert.equal(await connectionOfUser(c, 65534, tables('')), false)
    assert.equal(reads, LOOKUPS)
    assert.equal(LOOKUPS, 3)
  })

  it('applies on Linux only: not on macOS or Windows, nor on WSL (whose browser is a Windows program)', () => {
    assert.equal(loopbackPeerCheck('darwin', '24.1.0'), null)
    assert.equal(loopbackPeerCheck('win32', '10.0.22631'), null)
    assert.equal(loopbackPeerCheck('linux', '5.15.167.4-microsoft-standard-WSL2'), null)
    assert.equal(loopbackPeerCheck('linux', '4.4.0-19041-Microsoft'), null)
    assert.equal(typeof loopbackPeerCheck('linux', '6.18.44'), 'function')
  })

  describe('on this machine (Linux)', () => {
    let server: Server
    const accepted: Socket[] = []
    before(async function () {
      if (process.platform !== 'linux') this.skip()
      server = createServer((s) => accepted.push(s))
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    })
    after(() => {
      for (const s of accepted) s.destroy()
      server?.close()
    })

    it("finds this process's own connection in the real tables, as this user's; a made-up one is refused", async () => {
      const check = loopbackPeerCheck()!
      const {port} = server.address() as {port: number}
      const client = connect(port, '127.0.0.1')
      try {
        await new Promise((r) => client.once('connect', r))
        while (accepted.length === 0) await new Promise((r) => setImmediate(r))
        const s = accepted[0]!
        const c = {
          localAddress: s.localAddress,
          localPort: s.localPort,
          remoteAddress: s.remoteAddress,
          remotePort: s.remotePort,
        }
        assert.equal(await check(c), true)
        assert.equal(await connectionOfUser(c, process.getuid!() + 1), false)
        assert.equal(await check({...c, remotePort: c.localPort}), false)
      } finally {
        client.destroy()
      }
    })

    it('a dual-stack IPv6 socket connected to ::ffff:127.0.0.1 is found in /proc/net/tcp6', async () => {
      const check = loopbackPeerCheck()!
      const {port} = server.address() as {port: number}
      const before = accepted.length
      const client = connect({port, host: '::ffff:127.0.0.1'})
      try {
        await new Promise((r) => client.once('connect', r))
        assert.equal(client.remoteFamily, 'IPv6')
        while (accepted.length === before) await new Promise((r) => setImmediate(r))
        const s = accepted.at(-1)!
        assert.equal(s.remoteAddress, '127.0.0.1')
        const c = {
          localAddress: s.localAddress,
          localPort: s.localPort,
          remoteAddress: '127.0.0.1',
          remotePort: s.remotePort,
        }
        assert.equal(await check(c), true)
      } finally {
        client.destroy()
      }
    })
  })
})
