/** The $SSHCA_HOME owner/mode check, on made-up trees. */
import assert from 'node:assert/strict'
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import {homedir, tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {
  agentlessFiles,
  checkHome,
  checkHomeTree,
  CONTEXT_FILE,
  contextDir,
  currentContextName,
  knownUserCas,
  listContexts,
  loadContext,
  readContext,
  ROOT_FILE,
  saveContext,
  settingsProblem,
  sshcaHome,
  validContextName,
  type HomeCheckDeps,
  type PathInfo,
} from '../../../src/client/home/home.ts'
import {HOME_LAYOUT, LAYOUT_FILE} from '../../../src/client/home/home-layout.ts'
import {generatePrivateKey} from '../../../src/ssh/private-key.ts'
import {rejectsCode, throwsCode} from '../../helpers/assert.ts'
import {tempDir} from '../../helpers/tmp.ts'

function tree(entries: Record<string, Partial<PathInfo>>, uid = 1000): HomeCheckDeps {
  const map = new Map(Object.entries(entries))
  const isDir = (p: string) => map.get(p)?.isDirectory ?? [...map.keys()].some((k) => dirname(k) === p && k !== p)
  return {
    uid,
    lstat: (p) =>
      map.has(p)
        ? {uid, mode: isDir(p) ? 0o40700 : 0o100600, isDirectory: isDir(p), isSymbolicLink: false, ...map.get(p)}
        : undefined,
    readdir: (p) => [...map.keys()].filter((k) => k !== p && dirname(k) === p).map((k) => k.slice(p.length + 1)),
    realpath: (p) => p,
  }
}

const H = '/home/a/.sshca'
const good = {
  [H]: {},
  [`${H}/current`]: {},
  [`${H}/contexts`]: {},
  [`${H}/contexts/prod`]: {},
  [`${H}/contexts/prod/context.json`]: {},
  [`${H}/contexts/prod/root_ca.crt`]: {},
  [`${H}/tokens`]: {},
  [`${H}/tokens/prod~sso.json`]: {},
}

describe('$SSHCA_HOME before use', () => {
  it("passes a home of the user's own, 0700/0600; and a home that does not exist yet", () => {
    checkHomeTree(H, tree(good))
    checkHomeTree(H, tree({}))
    checkHomeTree(H, tree({...good, [`${H}/contexts/prod/revoked_host_keys.krl`]: {mode: 0o100644}}))
    checkHomeTree(H, tree({...good, [`${H}/contexts/prod/root_ca.crt`]: {uid: 0}})) // root may own entries
  })

  it('refuses an entry another user owns or can write, naming it (ERR_UNSAFE_PATH)', () => {
    throwsCode(
      () => checkHomeTree(H, tree({...good, [H]: {mode: 0o40777}})),
      'ERR_UNSAFE_PATH',
      {},
      /^\/home\/a\/\.sshca is writable by every user \(mode 0777\)/,
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/contexts/prod/context.json`]: {mode: 0o100620}})),
      'ERR_UNSAFE_PATH',
      {},
      /context\.json is writable by its group/,
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/current`]: {uid: 1001}})),
      'ERR_UNSAFE_PATH',
      {},
      /current belongs to uid 1001, not to you \(uid 1000\)/,
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/contexts/prod/root_ca.crt`]: {isSymbolicLink: true}})),
      'ERR_UNSAFE_PATH',
      {},
      /root_ca\.crt is a symbolic link/,
    )
  })

  it('refuses a refresh token readable by others (ERR_FILE_PERMISSIONS); other files may be readable', () => {
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/tokens/prod~sso.json`]: {mode: 0o100644}})),
      'ERR_FILE_PERMISSIONS',
      {},
      /prod~sso\.json holds a refresh token and is readable by others \(mode 0644\)/,
    )
  })

  it('does nothing where there are no uids (Windows)', () => {
    assert.doesNotThrow(() => checkHomeTree(H, {...tree({...good, [H]: {mode: 0o40777}}), uid: undefined}))
  })
})

describe('$SSHCA_HOME: the checks the tree walk makes beyond owners and modes', () => {
  it('a home that is a symlink is followed (checked where it leads, named as given); one inside it is refused', () => {
    const real = '/data/sshca'
    const deps: HomeCheckDeps = {
      ...tree({[real]: {}, [`${real}/current`]: {}, [`${real}/contexts`]: {}}),
      realpath: (p) => (p === H ? real : p),
    }
    const lstat = deps.lstat
    deps.lstat = (p) => (p === H ? {uid: 1000, mode: 0o120777, isDirectory: false, isSymbolicLink: true} : lstat(p))
    assert.doesNotThrow(() => checkHomeTree(H, deps))
    const bad = {
      ...deps,
      lstat: (p: string) =>
        p === `${real}/current`
          ? {uid: 1001, mode: 0o100600, isDirectory: false, isSymbolicLink: false}
          : deps.lstat(p),
    }
    throwsCode(() => checkHomeTree(H, bad), 'ERR_UNSAFE_PATH', {}, new RegExp(`^${H}/current belongs to uid 1001`))
  })

  it('refresh tokens are secret only under tokens/ at the top; the walk goes four levels deep', () => {
    const deep = {...good, [`${H}/a`]: {}, [`${H}/a/b`]: {}, [`${H}/a/b/c`]: {}, [`${H}/a/b/c/d`]: {}}
    // a world-readable file named like a token elsewhere is no refresh token
    assert.doesNotThrow(() =>
      checkHomeTree(
        H,
        tree({...good, [`${H}/contexts/tokens`]: {}, [`${H}/contexts/tokens/x.json`]: {mode: 0o100644}}),
      ),
    )
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/tokens/sub`]: {}, [`${H}/tokens/sub/x.json`]: {mode: 0o100644}})),
      'ERR_FILE_PERMISSIONS',
    )
    // four levels below the home are looked at, not five
    throwsCode(() => checkHomeTree(H, tree({...deep, [`${H}/a/b/c/d`]: {uid: 1001}})), 'ERR_UNSAFE_PATH')
    assert.doesNotThrow(() => checkHomeTree(H, tree({...deep, [`${H}/a/b/c/d/e`]: {uid: 1001}})))
    // a directory under tokens/ may be readable (only files hold tokens); a group-writable one may not
    assert.doesNotThrow(() => checkHomeTree(H, tree({...good, [`${H}/tokens/d`]: {isDirectory: true, mode: 0o40755}})))
    throwsCode(
      () => checkHomeTree(H, tree({...good, [`${H}/tokens`]: {isDirectory: true, mode: 0o40770}})),
      'ERR_UNSAFE_PATH',
    )
  })
})

describe('contexts on disk', () => {
  let home: string
  beforeEach(() => {
    home = join(mkdtempSync(join(tmpdir(), 'sshca-home-')), 'sshca')
    mkdirSync(home, {mode: 0o700})
  })
  const settings = (name: string, userCaKeys: string[] = []) => ({
    name,
    caUrl: `https://${name}.example.com`,
    rootFingerprint: 'ab'.repeat(32),
    userCaKeys,
    hostCaKeys: [],
    hostPattern: '!*',
    bootstrappedAt: '2026-11-26T00:00:00.000Z',
  })
  const write = async (name: string, userCaKeys: string[] = []) => {
    const dir = contextDir(home, name)
    mkdirSync(dir, {recursive: true, mode: 0o700})
    writeFileSync(join(dir, ROOT_FILE), 'ROOT PEM', {mode: 0o600})
    await saveContext({...settings(name, userCaKeys), rootPem: 'ROOT PEM', dir})
  }

  it('names: a letter or digit first, then letters, digits, ".", "_", "-", 64 at most', () => {
    for (const ok of ['prod', 'ca.example.com', 'a', '0-x_y', 'a'.repeat(64)])
      assert.equal(validContextName(ok), true, ok)
    for (const bad of ['', '.hidden', '-x', '_x', 'a b', 'a/b', '..', 'a'.repeat(65), 'é'])
      assert.equal(validContextName(bad), false, bad)
  })

  it('saved and read back whole (the root beside the settings), listed by name, the current one by its file', async () => {
    await write('prod')
    await write('dev')
    mkdirSync(join(home, 'contexts', '.staged.1234'))
    assert.deepEqual(
      await listContexts(home),
      ['dev', 'prod'],
      'names that are not context names (staging folders) are left out',
    )
    const ctx = await readContext(home, 'prod')
    assert.deepEqual(ctx, {...settings('prod'), rootPem: 'ROOT PEM', dir: contextDir(home, 'prod')})
    assert.equal(JSON.parse(readFileSync(join(contextDir(home, 'prod'), CONTEXT_FILE), 'utf8')).rootPem, undefined)
    assert.equal(await readContext(home, 'missing'), undefined)
    assert.equal(await currentContextName(home), undefined)
    writeFileSync(join(home, 'current'), 'prod\n', {mode: 0o600})
    assert.equal(await currentContextName(home), 'prod')
    writeFileSync(join(home, 'current'), '  \n', {mode: 0o600})
    assert.equal(await currentContextName(home), undefined)
    assert.deepEqual(await listContexts(join(home, 'nowhere')), [])
  })

  it('a damaged context is ERR_INPUT naming it; loadContext says what to do when there is none, or not that one', async () => {
    await write('prod')
    writeFileSync(join(contextDir(home, 'prod'), CONTEXT_FILE), '{', {mode: 0o600})
    await rejectsCode(readContext(home, 'prod'), 'ERR_INPUT', {}, /"prod"/)
    const empty = join(mkdtempSync(join(tmpdir(), 'sshca-home-')), 'sshca')
    await rejectsCode(loadContext(empty), 'ERR_NOT_BOOTSTRAPPED')
    await write('dev')
    await rejectsCode(loadContext(home, 'staging'), 'ERR_CONTEXT_NOT_FOUND')
    assert.equal((await loadContext(home, 'dev')).name, 'dev')
    writeFileSync(join(home, 'current'), 'dev\n', {mode: 0o600})
    assert.equal((await loadContext(home)).caUrl, 'https://dev.example.com')
  })

  it("knownUserCas: each context's user CA keys by their blob; a damaged line or context names nothing", async () => {
    const a = generatePrivateKey('ed25519').publicKey
    const b = generatePrivateKey('ed25519').publicKey
    await write('prod', [a.toLine('prod user CA'), 'ssh-ed25519 not-base64!'])
    await write('dev', [b.toLine('dev user CA')])
    await write('broken')
    writeFileSync(join(contextDir(home, 'broken'), CONTEXT_FILE), '{', {mode: 0o600})
    const cas = await knownUserCas(home)
    assert.deepEqual(
      [...cas].sort(),
      [
        [a.blob.toString('base64'), 'prod'],
        [b.blob.toString('base64'), 'dev'],
      ].sort(),
    )
  })

  it('sshcaHome: $SSHCA_HOME made absolute, else ~/.sshca (also when it is set empty)', () => {
    assert.equal(sshcaHome({SSHCA_HOME: '/srv/h'}), '/srv/h')
    // made absolute: its paths go into ssh_config, which ssh reads from wherever it runs
    assert.equal(sshcaHome({SSHCA_HOME: 'rel/h'}), join(process.cwd(), 'rel', 'h'))
    assert.equal(sshcaHome({SSHCA_HOME: ''}), join(homedir(), '.sshca'))
    assert.equal(sshcaHome({}), join(homedir(), '.sshca'))
  })
})

describe('$SSHCA_HOME on disk: the real file system, checkHome once per home, the commands that check first', () => {
  let base: string
  let home: string
  beforeEach(() => {
    base = tempDir()
    home = join(base, 'sshca')
    mkdirSync(join(home, 'contexts', 'prod'), {recursive: true, mode: 0o700})
    writeFileSync(join(home, 'contexts', 'prod', CONTEXT_FILE), '{}', {mode: 0o600})
    writeFileSync(join(home, 'current'), 'prod\n', {mode: 0o600})
  })

  it('an entry removed between listing its folder and looking at it is skipped, not a crash', () => {
    const deps = tree(good)
    const readdir = deps.readdir
    deps.readdir = (p) => (p === `${H}/contexts` ? [...readdir(p), 'removed-meanwhile'] : readdir(p))
    assert.doesNotThrow(() => checkHomeTree(H, deps))
  })

  it('the real file system: a private home passes, so does a missing one; a writable folder or a link inside is refused', () => {
    checkHomeTree(home)
    checkHomeTree(join(base, 'not-yet'))
    chmodSync(join(home, 'contexts', 'prod'), 0o777)
    throwsCode(() => checkHomeTree(home), 'ERR_UNSAFE_PATH')
    chmodSync(join(home, 'contexts', 'prod'), 0o700)
    symlinkSync('/etc/passwd', join(home, 'contexts', 'prod', 'root_ca.crt'))
    throwsCode(() => checkHomeTree(home), 'ERR_UNSAFE_PATH')
  })

  it('the real file system: a home that is a symlink is checked where it leads', () => {
    const link = join(base, 'link')
    symlinkSync(home, link)
    checkHomeTree(link)
    chmodSync(join(home, 'current'), 0o620)
    throwsCode(() => checkHomeTree(link), 'ERR_UNSAFE_PATH')
  })

  it('the real file system: an error other than a missing name (ENOTDIR) is thrown, not taken for "no home"', () => {
    assert.throws(() => checkHomeTree(join(home, 'current', 'sshca')), {code: 'ENOTDIR'})
  })

  it('the real file system: an entry of another user is refused (run as root, which may chown)', function () {
    if (process.getuid?.() !== 0) this.skip()
    chownSync(join(home, 'current'), 1001, 1001)
    throwsCode(() => checkHomeTree(home), 'ERR_UNSAFE_PATH')
  })

  it('checkHome refuses an unsafe home, then stamps the layout of a safe one and checks it once per process', () => {
    const unsafe: HomeCheckDeps = {
      uid: 1000,
      lstat: () => ({uid: 1001, mode: 0o40700, isDirectory: true, isSymbolicLink: false}),
      readdir: () => [],
      realpath: (p) => p,
    }
    throwsCode(() => checkHome(home, unsafe), 'ERR_UNSAFE_PATH')
    assert.equal(existsSync(join(home, LAYOUT_FILE)), false, 'nothing written into a home that was refused')
    checkHome(home)
    assert.deepEqual(JSON.parse(readFileSync(join(home, LAYOUT_FILE), 'utf8')), {layout: HOME_LAYOUT})
    assert.doesNotThrow(() => checkHome(home, unsafe), 'checked already in this process')
  })

  it('checkHome refuses a home from a newer sshca (ERR_HOME_LAYOUT)', () => {
    writeFileSync(join(home, LAYOUT_FILE), `${JSON.stringify({layout: HOME_LAYOUT + 1})}\n`, {mode: 0o600})
    throwsCode(() => checkHome(home), 'ERR_HOME_LAYOUT')
  })

  it('loadContext and knownUserCas check the home first: a writable home is ERR_UNSAFE_PATH, not read', async () => {
    chmodSync(home, 0o777)
    await rejectsCode(loadContext(home, 'prod'), 'ERR_UNSAFE_PATH')
    const other = join(base, 'other')
    mkdirSync(other, {mode: 0o700})
    chmodSync(other, 0o775)
    await rejectsCode(knownUserCas(other), 'ERR_UNSAFE_PATH')
  })

  it("agentlessFiles: the context's id_sshca and the id_sshca-cert.pub ssh loads beside it", () => {
    assert.deepEqual(agentlessFiles({dir: '/h/contexts/prod'}), {
      key: '/h/contexts/prod/id_sshca',
      certificate: '/h/contexts/prod/id_sshca-cert.pub',
    })
  })
})

describe('settingsProblem (context.json read, not trusted)', () => {
  const good = {
    name: 'prod',
    caUrl: 'https://ca.example.com',
    rootFingerprint: 'ab'.repeat(32),
    userCaKeys: ['ssh-ed25519 AAAA'],
    hostCaKeys: [],
    hostPattern: '*.example.com',
    bootstrappedAt: '2026-11-26T00:00:00.000Z',
  }
  it('takes what bootstrap writes, optional fields absent or of their types', () => {
    assert.equal(settingsProblem(good), undefined)
    assert.equal(
      settingsProblem({
        ...good,
        provisioner: 'sso',
        acceptedCaPattern: '*.example.com',
        sshConfig: {pattern: '*', krlFile: null},
        agentless: {},
      }),
      undefined,
    )
  })
  it('names the first field of the wrong type', () => {
    for (const [v, want] of [
      [null, /is not a JSON object/],
      [[], /is not a JSON object/],
      [{}, /name is not a string/],
      [{...good, userCaKeys: 5}, /userCaKeys is not a list of strings/],
      [{...good, hostCaKeys: [1]}, /hostCaKeys is not a list of strings/],
      [{...good, caUrl: 7}, /caUrl is not a string/],
      [{...good, provisioner: 1}, /provisioner is not a string/],
      [{...good, acceptedCaPattern: ['*']}, /acceptedCaPattern is not a string/],
      [{...good, sshConfig: []}, /sshConfig is not an object/],
      [{...good, sshConfig: {}}, /sshConfig\.pattern is not a string/],
    ] as const)
      assert.match(settingsProblem(v) ?? '', want, JSON.stringify(v))
  })
})
