/**
 * A small validator for the HTTP API's JSON shapes, with zod's safeParse() interface. The shapes are
 * few and flat, and zod costs ~80 ms to import: more than the whole rest of `sshca login`.
 */

export interface Issue {
  path: PropertyKey[]
  message: string
}
export type SafeParse<T> = {success: true; data: T} | {success: false; error: {issues: Issue[]}}

export interface Schema<T> {
  safeParse(v: unknown): SafeParse<T>
  /** Internal: checks `v` at `path`, pushing problems to `issues`. */
  check(v: unknown, path: PropertyKey[], issues: Issue[]): T | undefined
}

export type Infer<S> = S extends Schema<infer T> ? T : never

function schema<T>(check: Schema<T>['check']): Schema<T> {
  return {
    check,
    safeParse(v) {
      const issues: Issue[] = []
      const data = check(v, [], issues)
      return issues.length === 0 ? {success: true, data: data as T} : {success: false, error: {issues}}
    },
  }
}

export const string = (o: {min?: number; max?: number} = {}): Schema<string> =>
  schema((v, path, issues) => {
    if (typeof v !== 'string') return void issues.push({path, message: 'expected a string'})
    if (v.length < (o.min ?? 0)) return void issues.push({path, message: `must have at least ${o.min} character(s)`})
    if (o.max !== undefined && v.length > o.max)
      return void issues.push({path, message: `must have at most ${o.max} characters`})
    return v
  })

export const boolean = (): Schema<boolean> =>
  schema((v, path, issues) =>
    typeof v === 'boolean' ? v : void issues.push({path, message: 'expected true or false'}),
  )

export const oneOf = <const T extends string>(...values: T[]): Schema<T> =>
  schema((v, path, issues) =>
    values.includes(v as T) ? (v as T) : void issues.push({path, message: `expected one of ${values.join(', ')}`}),
  )

export const unknown = (): Schema<unknown> => schema((v) => v)

export const array = <T>(item: Schema<T>): Schema<T[]> =>
  schema((v, path, issues) => {
    if (!Array.isArray(v)) return void issues.push({path, message: 'expected a list'})
    return v.map((x, i) => item.check(x, [...path, i], issues) as T)
  })

/** A field that may be absent: `{optional: true}` marks it so for object()'s type. */
export const optional = <T>(s: Schema<T>): Schema<T | undefined> & {readonly optional: true} => ({
  ...schema<T | undefined>((v, path, issues) => (v === undefined ? undefined : s.check(v, path, issues))),
  optional: true as const,
})

/** With a default when absent. */
export const withDefault = <T>(s: Schema<T>, d: T): Schema<T> =>
  schema<T>((v, path, issues) => (v === undefined ? d : s.check(v, path, issues)))

type Shape = Record<string, Schema<unknown>>
type ObjectOf<S extends Shape> = {[K in keyof S as S[K] extends {optional: true} ? never : K]: Infer<S[K]>} & {
  [K in keyof S as S[K] extends {optional: true} ? K : never]?: Infer<S[K]>
}

/** An object with these fields; other fields are kept, not checked (clients send and servers add more). */
export const object = <S extends Shape>(shape: S): Schema<ObjectOf<S> & Record<string, unknown>> =>
  schema((v, path, issues) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      return void issues.push({path, message: 'expected an object'})
    const out: Record<string, unknown> = {...(v as Record<string, unknown>)}
    for (const [k, s] of Object.entries(shape)) {
      const r = s.check((v as Record<string, unknown>)[k], [...path, k], issues)
      if (r !== undefined) out[k] = r
    }
    return out as ObjectOf<S> & Record<string, unknown>
  })
