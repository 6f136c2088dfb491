/** Address helpers: CIDR validation (certificate source-address) and loopback checks. */
import {isIP} from 'node:net'

/** True for `10.0.0.0/8`, `192.0.2.1`, `2001:db8::/32` — what OpenSSH's source-address accepts. */
export function isCidr(s: string): boolean {
  const [addr, prefix, ...rest] = s.split('/')
  if (rest.length > 0 || !addr) return false
  const family = isIP(addr)
  if (family === 0) return false
  if (prefix === undefined) return true
  if (!/^\d{1,3}$/.test(prefix)) return false
  return Number(prefix) <= (family === 4 ? 32 : 128)
}

/** True when `host` is a loopback IP literal (127.0.0.0/8 or ::1). Names, `localhost` included, are not. */
export function isLoopbackAddress(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '')
  if (isIP(h) === 4) return h.startsWith('127.')
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1'
  return false
}

/** `host:port` or `[v6]:port` → parts; undefined when malformed. */
export function parseHostPort(s: string): {host: string; port: number} | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s)
  if (!m) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return {host: m[1] ?? m[2] ?? '', port}
}
