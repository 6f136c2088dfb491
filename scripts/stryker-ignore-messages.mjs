// A Stryker "ignorer" (stryker.config.mjs → ignorers: ['message-text']): mutants that can only change
// the words of an error message are reported as ignored, with the reason below, instead of surviving.
// Tests assert an error's code and what did or did not happen, never its wording (CONTRIBUTING.md), so
// no test should kill these, and a survivor list full of them hides the ones that matter.
//
// What counts as message text, and nothing else:
// - the message of `new TypeError/RangeError/Error(…)` and of `formatError(…)` (its first argument);
// - the message (second argument) of `new SshcaError(code, message, options)`, and the `hint` in its
//   options (the code, `details` and `cause` stay mutated: callers and tests rely on them);
// - "what" labels, which only name the field in a message: the label argument of SshReader's readers
//   (`r.bytes('nonce')`, `take(n, 'uint32')`; not a path like CaClient's `ca.bytes('/ssh/krl')`), their
//   `what = '…'` defaults, and the `what` argument of the local helpers listed in LABEL_ARGUMENT;
// - the message (third argument) of the CA's `denial(code, reason, message, details)`: its code,
//   reason and details stay mutated (they are what the API, the audit log and the tests rely on);
// - config check texts: a string pushed onto a list named `problems` or `warnings` (ca.yaml's checks:
//   that a problem or warning is pushed stays mutated, only its words are not), and zod's custom
//   messages (`.regex(re, 'message')`, `.min(n, 'message')`, `ctx.addIssue({message})`);
// - and anything inside one of these (the expressions a template literal interpolates, a ternary
//   that picks words): their only effect is on the text.
import {declareValuePlugin, PluginKind} from '@stryker-mutator/api/plugin'

const ERROR_CLASSES = new Set(['Error', 'TypeError', 'RangeError'])
/** SshReader methods → index of their `what` argument. */
const READER_LABEL = {bytes: 0, text: 0, cstring: 0, mpint: 0, end: 0, take: 1}
/** Functions (by name, in the file being mutated) → index of their `what` argument. */
const LABEL_ARGUMENT = {
  checkText: 1,
  decodeOptions: 1,
  fixedWidth: 2,
  formatError: 0,
  denial: 2,
  assertSecureUrl: 1,
  tokenError: 1,
  // the file's name in the messages of a damaged managed block (known_hosts, the sshca ssh_config)
  mergeManagedBlock: 3,
  // the kind of file in a not-found or permission message (host.ts, possession.ts, cert-tools.ts)
  readText: 1,
  // the flag (--key) a host key argument came from, in admin.ts's refusals
  keyFingerprintArg: 1,
}

const REASON = 'message text only: tests assert error codes and effects, never wording'

function argumentIndex(path) {
  const parent = path.parentPath
  if (!parent || !(parent.isCallExpression() || parent.isNewExpression())) return -1
  return parent.node.arguments.indexOf(path.node)
}

function calleeName(call) {
  const c = call.node.callee
  if (c.type === 'Identifier') return {kind: 'function', name: c.name}
  if (c.type === 'MemberExpression' && !c.computed && c.property.type === 'Identifier')
    return {kind: 'method', name: c.property.name}
  return undefined
}

/** A message argument, or anything inside one. */
function withinMessage(path) {
  for (let p = path; p && !p.isStatement(); p = p.parentPath) {
    if (isMessage(p) || isHint(p) || isLabelDefault(p) || isCheckText(p) || isZodMessage(p)) return true
  }
  return false
}

const CHECK_LISTS = new Set(['problems', 'warnings'])

/** `problems.push('…')` / `warnings.push(`…`)`: the text of a config problem or warning. */
function isCheckText(path) {
  if (argumentIndex(path) !== 0 || !(path.isStringLiteral() || path.isTemplateLiteral())) return false
  const c = path.parentPath.node.callee
  return (
    c.type === 'MemberExpression' &&
    !c.computed &&
    c.property.type === 'Identifier' &&
    c.property.name === 'push' &&
    c.object.type === 'Identifier' &&
    CHECK_LISTS.has(c.object.name)
  )
}

/** zod's custom messages: `.regex(re, '…')`, `.min(n, '…')`, and `message:` in `ctx.addIssue({…})`. */
function isZodMessage(path) {
  if (path.isStringLiteral() || path.isTemplateLiteral()) {
    if (argumentIndex(path) === 1 && path.parentPath.isCallExpression()) {
      const callee = calleeName(path.parentPath)
      if (callee?.kind === 'method' && (callee.name === 'regex' || callee.name === 'min')) return true
    }
  }
  const prop = path.parentPath
  if (
    !prop?.isObjectProperty() ||
    prop.node.value !== path.node ||
    prop.node.key.type !== 'Identifier' ||
    prop.node.key.name !== 'message'
  )
    return false
  const call = prop.parentPath?.parentPath
  return !!call?.isCallExpression() && calleeName(call)?.kind === 'method' && calleeName(call)?.name === 'addIssue'
}

function isMessage(path) {
  const i = argumentIndex(path)
  if (i < 0) return false
  const call = path.parentPath
  const callee = calleeName(call)
  if (!callee) return false
  if (call.isNewExpression() && callee.kind === 'function') {
    if (ERROR_CLASSES.has(callee.name)) return true
    if (callee.name === 'SshcaError') return i === 1 || (i === 2 && onlyHint(path.node))
  }
  if (call.isCallExpression() && callee.kind === 'function' && Object.hasOwn(LABEL_ARGUMENT, callee.name))
    return LABEL_ARGUMENT[callee.name] === i
  if (call.isCallExpression() && callee.kind === 'method' && Object.hasOwn(READER_LABEL, callee.name)) {
    // a string that starts with "/" is a request path (CaClient's `ca.bytes('/ssh/krl')`), never a label
    if (path.isStringLiteral() && path.node.value.startsWith('/')) return false
    return READER_LABEL[callee.name] === i && (path.isStringLiteral() || path.isTemplateLiteral())
  }
  return false
}

/** `{hint: …}` and nothing else. */
function onlyHint(node) {
  return (
    node.type === 'ObjectExpression' &&
    node.properties.length > 0 &&
    node.properties.every(
      (p) => p.type === 'ObjectProperty' && !p.computed && p.key.type === 'Identifier' && p.key.name === 'hint',
    )
  )
}

/** The value of `hint:` in the options of `new SshcaError(…)`. */
function isHint(path) {
  const prop = path.parentPath
  if (!prop?.isObjectProperty() || prop.node.value !== path.node || prop.node.computed) return false
  if (prop.node.key.type !== 'Identifier' || prop.node.key.name !== 'hint') return false
  const options = prop.parentPath
  const call = options?.parentPath
  return !!call?.isNewExpression() && calleeName(call)?.name === 'SshcaError' && call.node.arguments[2] === options.node
}

/** `what = 'string'` in a parameter list. */
function isLabelDefault(path) {
  const p = path.parentPath
  return (
    !!p?.isAssignmentPattern() &&
    p.node.right === path.node &&
    p.node.left.type === 'Identifier' &&
    p.node.left.name === 'what' &&
    p.parentPath.isFunction()
  )
}

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'message-text', {
    shouldIgnore(path) {
      if (withinMessage(path)) return REASON
      return undefined
    },
  }),
]
