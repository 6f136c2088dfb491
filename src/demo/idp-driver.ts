/**
 * Signs in on the dev IdP's own pages with plain HTTP, as a person would with a browser: follows
 * redirects, keeps cookies, fills in the login form and confirms consent. `sshca demo --auto` uses
 * it where no browser can be opened; tests use it for flows the browser test does not cover.
 */
export interface DriveOptions {
  login: string
  /** Stop when a redirect goes here (the client's loopback callback); returns that URL. */
  stopAt?: string
  /** For the device flow's code page. */
  userCode?: string
}

class Jar {
  private readonly cookies = new Map<string, string>()
  take(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';')
      const i = pair!.indexOf('=')
      const name = pair!.slice(0, i).trim()
      const value = pair!.slice(i + 1).trim()
      if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
  }
  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ')
  }
}

interface Form {
  action: string
  fields: Record<string, string>
}

function firstForm(html: string): Form | undefined {
  const m = /<form\b([^>]*)>([\s\S]*?)<\/form>/i.exec(html)
  if (!m) return undefined
  const action = /action="([^"]*)"/i.exec(m[1]!)?.[1] ?? ''
  const fields: Record<string, string> = {}
  for (const input of m[2]!.matchAll(/<input\b([^>]*)>/gi)) {
    const name = /name="([^"]*)"/i.exec(input[1]!)?.[1]
    if (name) fields[name] = (/value="([^"]*)"/i.exec(input[1]!)?.[1] ?? '').replace(/&amp;/g, '&')
  }
  return {action: action.replace(/&amp;/g, '&'), fields}
}

/** Walks from `startUrl` through sign-in and consent. Returns the final URL (the callback, or the success page). */
export async function driveDevSignIn(startUrl: string, o: DriveOptions): Promise<string> {
  const jar = new Jar()
  let url = startUrl
  let method = 'GET'
  let body: URLSearchParams | undefined
  for (let step = 0; step < 20; step++) {
    if (o.stopAt && url.startsWith(o.stopAt)) return url
    const res = await fetch(url, {
      method,
      redirect: 'manual',
      headers: {cookie: jar.header(), ...(body ? {'content-type': 'application/x-www-form-urlencoded'} : {})},
      body,
    })
    jar.take(res)
    if (res.status >= 300 && res.status < 400) {
      url = new URL(res.headers.get('location')!, url).toString()
      method = 'GET'
      body = undefined
      continue
    }
    const html = await res.text()
    if (res.status >= 400)
      throw new Error(
        `the IdP answered ${res.status} at ${url}: ${html
          .replace(/<[^>]+>/g, ' ')
          .trim()
          .slice(0, 300)}`,
      )
    const form = firstForm(html)
    if (!form) return url
    if ('login' in form.fields) form.fields.login = o.login
    if ('password' in form.fields) form.fields.password = 'demo'
    if ('user_code' in form.fields && o.userCode && !form.fields.user_code) form.fields.user_code = o.userCode
    delete form.fields.abort
    url = new URL(form.action || url, url).toString()
    method = 'POST'
    body = new URLSearchParams(form.fields)
  }
  throw new Error('the sign-in did not finish within 20 steps')
}
