/**
 * `npm run deps:check`: the layers of src/ and the rooms of src/ca and src/client import only downward, and no
 * file imports itself around a circle. Static imports, re-exports, `import type` and dynamic
 * `import()` all count: a type that points upward is still a dependency of meaning. Exits 1 with
 * each offending import named (file:line → target, and the rule it breaks).
 */
import {readdirSync, readFileSync, statSync} from 'node:fs'
import {dirname, join, relative, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SRC = join(ROOT, 'src')

/** Each layer and what it may import (besides itself). Order: top to bottom. */
const LAYERS: Record<string, readonly string[]> = {
  commands: ['cli', 'client', 'ca', 'demo', 'protocol', 'ssh', 'util', 'errors'],
  cli: ['client', 'ca', 'demo', 'protocol', 'ssh', 'util', 'errors'],
  demo: ['client', 'ca', 'protocol', 'ssh', 'util', 'errors'],
  client: ['protocol', 'ssh', 'util', 'errors'],
  ca: ['protocol', 'ssh', 'util', 'errors'],
  protocol: ['ssh', 'util', 'errors'],
  ssh: ['util', 'errors'],
  util: ['errors'],
  errors: [],
}

/**
 * The rooms of a layer and their floors, top (0) to bottom: a room imports rooms on lower floors,
 * never its own floor's others or above. Files directly in src/ca (the process side: server, admin)
 * stand above every room; src/client has none.
 */
const ROOMS: Record<string, Record<string, number>> = {
  ca: {http: 0, authority: 1, provisioner: 2, keys: 2, store: 2, observe: 2, config: 3, policy: 4},
  // the flows a command calls (host above setup and login, which it uses), the CA's API, what this
  // machine's OpenSSH holds and reads, and $SSHCA_HOME
  client: {host: 0, setup: 1, login: 1, 'ca-api': 2, local: 3, home: 4},
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) walk(p, out)
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p)
  }
  return out
}

interface Edge {
  from: string
  to: string
  line: number
}

function importsOf(file: string, known: Set<string>): Edge[] {
  const text = readFileSync(file, 'utf8')
  const edges: Edge[] = []
  const re = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2]!
    let target = resolve(dirname(file), spec).replace(/\.js$/, '.ts')
    if (!target.endsWith('.ts')) target += '.ts'
    if (!known.has(target)) continue
    edges.push({
      from: file,
      to: target,
      line: text.slice(0, m.index).split('\n').length + (m[0].startsWith('\n') ? 1 : 0),
    })
  }
  return edges
}

/** The layer (first folder under src/, or "errors") and, in a layer with rooms, the room ("" for the layer's own files). */
function place(file: string): {layer: string; room?: string} {
  const parts = relative(SRC, file).split('/')
  const layer = parts.length === 1 ? parts[0]!.replace(/\.ts$/, '') : parts[0]!
  return ROOMS[layer] ? {layer, room: parts.length > 2 ? parts[1]! : ''} : {layer}
}

export function check(): string[] {
  const files = walk(SRC)
  const known = new Set(files)
  const problems: string[] = []
  const graph = new Map<string, Edge[]>()
  for (const f of files) graph.set(f, importsOf(f, known))
  const at = (e: Edge) => `${relative(ROOT, e.from)}:${e.line} → ${relative(ROOT, e.to)}`

  for (const edges of graph.values()) {
    for (const e of edges) {
      const a = place(e.from)
      const b = place(e.to)
      if (a.layer !== b.layer) {
        const allowed = LAYERS[a.layer]
        if (!allowed) problems.push(`${at(e)}: src/${a.layer} is not a known layer (add it to scripts/deps-check.ts)`)
        else if (!allowed.includes(b.layer))
          problems.push(`${at(e)}: src/${a.layer} may not import src/${b.layer} (upward or sideways)`)
        continue
      }
      const floors = ROOMS[a.layer]
      if (!floors || a.room === b.room) continue
      // inside a layer with rooms: its own files may import any room; a room only those on lower floors
      if (a.room === '') continue
      const L = `src/${a.layer}`
      if (b.room === '') {
        problems.push(`${at(e)}: room ${L}/${a.room} may not import ${L}'s own files, above every room`)
        continue
      }
      const unknown = [a.room!, b.room!].find((r) => floors[r] === undefined)
      if (unknown !== undefined) {
        problems.push(`${at(e)}: ${L}/${unknown} is not a known room (add it to scripts/deps-check.ts)`)
        continue
      }
      if (floors[b.room!]! <= floors[a.room!]!)
        problems.push(`${at(e)}: room ${L}/${a.room} may not import ${L}/${b.room} (same floor or above)`)
    }
  }

  // cycles (Tarjan's strongly connected components)
  let index = 0
  const stack: string[] = []
  const onStack = new Set<string>()
  const idx = new Map<string, number>()
  const low = new Map<string, number>()
  const visit = (v: string): void => {
    idx.set(v, index)
    low.set(v, index++)
    stack.push(v)
    onStack.add(v)
    for (const {to: w} of graph.get(v)!) {
      if (!idx.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!))
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        scc.push(w)
      } while (w !== v)
      if (scc.length > 1) problems.push(`import cycle: ${scc.map((f) => relative(ROOT, f)).join(' ↔ ')}`)
    }
  }
  for (const f of files) if (!idx.has(f)) visit(f)
  return problems
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = check()
  if (problems.length) {
    console.error(`deps:check: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}`)
    process.exit(1)
  }
  console.log('deps:check: every import goes downward; no cycles')
}
