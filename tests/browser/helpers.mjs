// Shared pieces of the browser tests: fixtures made with qemu-img, the diskbridge CLI as the reference, a
// static server for dist/, and Debian's Chromium driven by playwright-core (browser downloads fail here).
import {execFileSync, spawn, spawnSync} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import {closeSync, createReadStream, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync,
  writeSync} from 'node:fs';
import {createServer} from 'node:http';
import {tmpdir} from 'node:os';
import {basename, join, resolve} from 'node:path';
import {pathToFileURL} from 'node:url';
import {chromium} from 'playwright-core';

export const ROOT = resolve(import.meta.dirname, '../..');
export const DIST = join(ROOT, 'dist');
export const SEED = '42';
export const EPOCH = '1700000000';

export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'diskbridge-browser-'));
  t.after(() => rmSync(dir, {recursive: true, force: true}));
  return dir;
}

export function run(cmd, args, options = {}) {
  return execFileSync(cmd, args, {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...options});
}

/** The CLI to compare with: $DISKBRIDGE_BIN, or this checkout's release build. */
export function cliPath() {
  if (process.env.DISKBRIDGE_BIN) return process.env.DISKBRIDGE_BIN;
  run('cargo', ['build', '--release', '--bin', 'diskbridge'], {cwd: ROOT, stdio: 'inherit'});
  return join(ROOT, 'target/release/diskbridge');
}

/** Runs the CLI deterministically; returns {status, stderr} (warnings too, when it succeeds). */
export function cli(args) {
  const env = {...process.env, DISKBRIDGE_SEED: SEED, SOURCE_DATE_EPOCH: EPOCH};
  const stdio = ['ignore', 'ignore', 'pipe'];
  const {status, stderr, error} = spawnSync(cliPath(), args, {env, encoding: 'utf8', stdio});
  if (error) throw error;
  return {status, stderr};
}

/**
 * The CLI's output for `args`, whose output path is `fifo`, as it writes it to a pipe of that name: the
 * append-only layout the page streams. Resolves to the captured file's path.
 */
export async function cliThroughPipe(args, fifo) {
  run('mkfifo', [fifo]);
  const captured = `${fifo}.captured`;
  const reader = spawn('sh', ['-c', 'cat "$1" > "$2"', 'sh', fifo, captured]);
  const read = new Promise((resolve) => reader.on('exit', resolve));
  const result = cli(args);
  if (result.status !== 0) reader.kill();
  await read;
  if (result.status !== 0) throw new Error(`diskbridge ${args.join(' ')}: ${result.stderr}`);
  return captured;
}

/**
 * A raw disk image with data in a few places and holes elsewhere (a sparse file), plus the same image as
 * qcow2 and as compressed qcow2: `{raw, qcow2, compressed}` paths in `dir`. The data is text (compressible,
 * unlike random bytes) with random bytes in one MiB.
 */
export function makeFixture(dir, name = 'guest', sizeMiB = 24) {
  const raw = join(dir, `${name}.img`);
  run('qemu-img', ['create', '-f', 'raw', raw, `${sizeMiB}M`]);
  const text = Buffer.alloc(3 << 20);
  const source = readFileSync(join(ROOT, 'Cargo.lock'));
  for (let i = 0; i < text.length; i += source.length) source.copy(text, i);
  const fd = openSync(raw, 'r+');
  writeSync(fd, text, 0, 1 << 20, 0);
  writeSync(fd, text, 1 << 20, 2 << 20, 3 << 20);
  writeSync(fd, randomBytes(1 << 20), 0, 1 << 20, (sizeMiB - 1) << 20);
  closeSync(fd);
  const qcow2 = join(dir, `${name}.qcow2`);
  run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  // Compressed clusters, the way distributions ship cloud images.
  const compressed = join(dir, `${name}-compressed.qcow2`);
  run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, compressed]);
  return {raw, qcow2, compressed};
}

/**
 * A first login for a cloud image, as the page's First login fields take it and as the CLI's flags name it:
 * `{hostname, key, password, userData, files: {key, password, userData}, flags}`, the files written into `dir`.
 * The key is an ed25519 public key made here (its blob as OpenSSH lays it out, random key bytes).
 */
export function loginFixture(dir) {
  const field = (bytes) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return [length, bytes];
  };
  const blob = Buffer.concat([...field(Buffer.from('ssh-ed25519')), ...field(randomBytes(32))]);
  const login = {
    hostname: 'web-1',
    key: `ssh-ed25519 ${blob.toString('base64')} tester@diskbridge`,
    password: 'correct horse battery',
    userData: '#cloud-config\nruncmd:\n  - [sh, -c, "echo diskbridge-login-test > /dev/ttyS0"]\n',
    files: {key: join(dir, 'id_ed25519.pub'), password: join(dir, 'password.txt'), userData: join(dir, 'user-data')},
  };
  writeFileSync(login.files.key, `${login.key}\n`);
  writeFileSync(login.files.password, `${login.password}\n`);
  writeFileSync(login.files.userData, login.userData);
  login.flags = ['--hostname', login.hostname, '--ssh-key', login.files.key, '--password-file', login.files.password,
    '--user-data', login.files.userData];
  return login;
}

/** Serves `dir` on 127.0.0.1 and logs every request path; `close()` stops it (the network gone). */
export async function serve(t, dir = DIST) {
  const requests = [];
  const server = createServer((req, res) => {
    requests.push(req.url);
    const path = join(dir, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!path.startsWith(dir) || !existsSync(path) || !statSync(path).isFile()) {
      res.writeHead(404).end();
      return;
    }
    const type = {html: 'text/html; charset=utf-8', js: 'text/javascript', webmanifest: 'application/manifest+json',
      svg: 'image/svg+xml', png: 'image/png'}[path.split('.').pop()] ?? 'application/octet-stream';
    res.writeHead(200, {'content-type': type});
    // A test's folder may be removed while a late request (the service worker's) is still being answered.
    createReadStream(path).on('error', () => res.destroy()).pipe(res);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  let closed = null;
  const close = () => {
    closed ??= new Promise((ok) => {
      server.close(ok);
      server.closeAllConnections();
    });
    return closed;
  };
  t.after(close);
  return {url: `http://127.0.0.1:${server.address().port}/index.html`, requests, close};
}

export async function launch(t) {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  return browser;
}

/** The page's address in each mode the tests cover: served over http, and opened as a saved file. */
export async function pageUrl(t, mode, root = DIST) {
  if (mode === 'file') return {url: pathToFileURL(join(root, 'index.html')).href, requests: null};
  return serve(t, root);
}

/**
 * Opens the page with `query` (e.g. `?seed=42`). `picker`: 'hidden' removes showSaveFilePicker (the page then
 * takes its OPFS or in-memory path), 'opfs' replaces it with a function returning an OPFS file handle (the
 * picker's code path without a native dialog). `esxi`: the ESXi button's package, 'vmdk' (what most tests
 * compare with the CLI) or 'ova' (the page's default where it can write one). `locale`: the browser's language.
 * `root`: the directory served (or opened) instead of dist/. `init`: code (a function or its source) run before
 * the page's own scripts, to stand in for a browser that lacks something. `serviceWorkers`: 'block' (the
 * default here) keeps the page from registering its service worker, so without the picker it takes its OPFS or
 * in-memory path as where the worker cannot run; 'allow' lets it stream downloads (engines.test.mjs covers that
 * path in every engine). `close()` stops the server.
 */
export async function openPage(t, browser, mode, {query = '', picker = 'hidden', esxi = 'vmdk', locale = 'en-US',
  root = DIST, init = null, serviceWorkers = 'block'} = {}) {
  const {url, requests: served, close} = await pageUrl(t, mode, root);
  const context = await browser.newContext({acceptDownloads: true, locale, serviceWorkers});
  t.after(() => context.close());
  if (picker === 'hidden') await context.addInitScript(() => { delete window.showSaveFilePicker; });
  if (picker === 'opfs') {
    await context.addInitScript(() => {
      window.showSaveFilePicker = async ({suggestedName}) =>
        (await navigator.storage.getDirectory()).getFileHandle(suggestedName, {create: true});
    });
  }
  if (init) await context.addInitScript(init);
  const requests = [];
  context.on('request', (r) => requests.push(r.url()));
  const errors = [];
  const consoleErrors = [];
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(e));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  await page.goto(url + query);
  // The note comes once the page knows where output goes (it waits a few seconds for a service worker that a
  // blocked context never activates).
  await page.locator('#storage-note:not([hidden])').waitFor();
  // The OVA choice is turned off (and VMDK chosen) once the page finds it has no OPFS.
  await page.locator(`input[name=esxi-package][value=${esxi}]`).check();
  return {page, requests, served, errors, consoleErrors, url: url + query, close};
}

/** Picks `paths` in the page's file input and waits for the image's info. */
export async function pick(page, paths) {
  await page.setInputFiles('#file', paths);
  await page.locator('#info:not([hidden]), #error:not([hidden])').first().waitFor();
}

/**
 * Clicks the button named `name` and saves the download into `dir`; returns its path and suggested name.
 * Fails at once with the page's error when one is shown instead.
 */
export async function clickAndDownload(page, name, dir) {
  const downloaded = page.waitForEvent('download', {timeout: 120_000});
  // Watched only after the click, which hides an earlier error at once.
  await page.getByRole('button', {name, exact: true}).click();
  const failed = page.locator('#error:not([hidden])').waitFor({timeout: 120_000})
    .then(async () => { throw new Error(`the page shows: ${await page.locator('#error').innerText()}`); });
  const download = await Promise.race([downloaded, failed]);
  failed.catch(() => {});
  downloaded.catch(() => {});
  const path = join(dir, `page-${download.suggestedFilename()}`);
  await download.saveAs(path);
  return {path, name: download.suggestedFilename()};
}

/** Names of the files in the page's origin-private file system. */
export function opfsNames(page) {
  return page.evaluate(async () => {
    const names = [];
    for await (const name of (await navigator.storage.getDirectory()).keys()) names.push(name);
    return names;
  });
}

/** Copies the OPFS file `name` out of the page into `path`. */
export async function saveOpfsFile(page, name, path) {
  const base64 = await page.evaluate(async (n) => {
    const file = await (await (await navigator.storage.getDirectory()).getFileHandle(n)).getFile();
    const bytes = new Uint8Array(await file.arrayBuffer());
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }, name);
  writeFileSync(path, Buffer.from(base64, 'base64'));
}

export function sameBytes(a, b) {
  return Buffer.compare(readFileSync(a), readFileSync(b)) === 0;
}

export {basename, join};
