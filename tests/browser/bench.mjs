// The browser half of scripts/bench (issue 6): converts the benchmark input in the real page in headless
// Chromium, timed as DECISIONS.md asks — from the click that starts the conversion to the output being closed,
// with showSaveFilePicker replaced by an OPFS file handle (the picker's code path), page load and wasm compile
// timed separately — and in Firefox ESR (issue 17), which has no picker: there the page streams the output
// through its service worker into Firefox's download folder (beside the input), timed from the click to the
// stream's end; then prints ratios against qemu-img's times from the same run.
// Usage: node tests/browser/bench.mjs INPUT QEMU_VMDK_SECONDS QEMU_VHDX_SECONDS
import {createReadStream, existsSync, mkdtempSync, rmSync, statSync} from 'node:fs';
import {createServer} from 'node:http';
import {dirname, join, resolve} from 'node:path';
import {chromium} from 'playwright-core';
import * as engines from './engines.mjs';

const [input, qemuVmdk, qemuVhdx] = process.argv.slice(2);
const dist = resolve(import.meta.dirname, '../../dist');
// dist/ as a static host serves it: the page, and beside it the service worker Firefox streams through.
const server = createServer((req, res) => {
  const path = join(dist, new URL(req.url, 'http://x').pathname.replace(/^\/+/, '') || 'index.html');
  if (!path.startsWith(dist) || !existsSync(path) || !statSync(path).isFile()) return res.writeHead(404).end();
  const type = {html: 'text/html; charset=utf-8', js: 'text/javascript', webmanifest: 'application/manifest+json',
    svg: 'image/svg+xml', png: 'image/png'}[path.split('.').pop()] ?? 'application/octet-stream';
  res.writeHead(200, {'content-type': type});
  createReadStream(path).pipe(res);
});
await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
// A real profile (an off-the-record context keeps OPFS in memory with a small quota), beside the input, so the
// page's output lands on the same file system as qemu-img's.
const profile = mkdtempSync(join(dirname(resolve(input)), 'chromium-profile-'));
const launchContext = () => chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const rows = [];
  const targets = [['VMDK', 'VMDK for VMware ESXi', qemuVmdk], ['VHDX', 'VHDX for Hyper-V', qemuVhdx]];
  for (const [target, button, qemu] of targets) {
    const context = await launchContext();
    await context.addInitScript(() => {
      window.showSaveFilePicker = async ({suggestedName}) =>
        (await navigator.storage.getDirectory()).getFileHandle(suggestedName, {create: true});
    });
    const page = context.pages()[0] ?? await context.newPage();
    const loadStart = Date.now();
    await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
    // qemu-img writes the bare VMDK: so does the page here (its default for ESXi is an OVA).
    await page.getByRole('radio', {name: 'VMDK only'}).check();
    await page.setInputFiles('#file', input);
    await page.locator('#info:not([hidden])').waitFor({timeout: 600_000});
    const loaded = (Date.now() - loadStart) / 1000;
    await page.getByRole('button', {name: button}).first().click();
    await page.waitForFunction(() => window.diskbridgeLastRun || !document.getElementById('error').hidden,
      null, {timeout: 3_600_000, polling: 500});
    const run = await page.evaluate(() => window.diskbridgeLastRun);
    if (!run) throw new Error(`${target}: ${await page.locator('#error').innerText()}`);
    const mib = (n) => (n / 1048576).toFixed(1);
    const encoders = run.memory?.encoders?.length ? Math.max(...run.memory.encoders) : 0;
    // Free the OPFS copy, then time writing as many bytes through the picker's API alone: no page can be faster.
    const writeSeconds = await page.evaluate(async (bytes) => {
      const root = await navigator.storage.getDirectory();
      for await (const name of root.keys()) await root.removeEntry(name);
      const writable = await (await root.getFileHandle('write-probe', {create: true})).createWritable();
      const chunk = new Uint8Array(8 << 20).map((_, i) => i * 7);
      const start = performance.now();
      for (let at = 0; at < bytes; at += chunk.length) {
        const data = chunk.subarray(0, Math.min(chunk.length, bytes - at));
        await writable.write({type: 'write', position: at, data});
      }
      await writable.close();
      const seconds = (performance.now() - start) / 1000;
      await root.removeEntry('write-probe');
      return seconds;
    }, run.bytes);
    rows.push(`| ${target} in Chromium | ${qemu} | ${run.seconds.toFixed(2)} | ${(qemu / run.seconds).toFixed(2)}× | ` +
      `${(qemu / writeSeconds).toFixed(2)}× | ${mib(run.bytes)} | ` +
      `coordinator ${mib(run.memory?.coordinator ?? 0)} / encoder ${mib(encoders)} | ${loaded.toFixed(1)} |`);
    await context.close();
  }
  rows.push(...await firefoxRows(targets));
  console.log('\n| conversion | qemu-img s | page s | speed-up | write ceiling | output MiB | ' +
    'wasm memory MiB (high-water) | load + inspect s |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const row of rows) console.log(row);
  console.log('\nwrite ceiling = qemu-img s ÷ the seconds the same page takes only to write as many bytes through ' +
    'createWritable(), the save picker\'s API, in 8 MiB writes.');
  console.log('In Firefox the page streams the output into the download folder; it has no write-only API to time ' +
    'alone, so no ceiling is given.');
  console.log(`\ninput: ${input} (${(statSync(input).size / 1048576).toFixed(0)} MiB)`);
} finally {
  server.close();
  rmSync(profile, {recursive: true, force: true});
}

/** The same conversions in Firefox ESR, streamed through the page's service worker: one table row each. */
async function firefoxRows(targets) {
  const rows = [];
  for (const [target, button, qemu] of targets) {
    const cleanup = [];
    const downloads = mkdtempSync(join(dirname(resolve(input)), 'firefox-downloads-'));
    try {
      const browser = await engines.launch({after: (fn) => cleanup.push(fn)}, 'firefox', downloads);
      const {page} = browser;
      const loadStart = Date.now();
      await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
      await engines.waitFor(page, async () => (await window.diskbridgeCapabilities).stream, null, 30_000,
        'the service worker');
      await page.click('input[name=esxi-package][value=vmdk]');
      await page.setFiles('#file', [input]);
      await engines.waitFor(page, () => !document.getElementById('info').hidden, null, 600_000, 'the info');
      const loaded = (Date.now() - loadStart) / 1000;
      await page.click(target === 'VMDK' ? '#to-vmdk' : '#to-vhdx');
      const run = await engines.waitFor(page, () => window.diskbridgeLastRun
        ?? (document.getElementById('error').hidden ? null : {error: document.getElementById('error').innerText}),
      null, 3_600_000, `${target} in Firefox`);
      if (run.error) throw new Error(`${target} in Firefox: ${run.error}`);
      const mib = (n) => (n / 1048576).toFixed(1);
      const encoders = run.memory?.encoders?.length ? Math.max(...run.memory.encoders) : 0;
      rows.push(`| ${target} in Firefox (streamed) | ${qemu} | ${run.seconds.toFixed(2)} | ` +
        `${(qemu / run.seconds).toFixed(2)}× | | ${mib(run.bytes)} | ` +
        `coordinator ${mib(run.memory?.coordinator ?? 0)} / encoder ${mib(encoders)} | ${loaded.toFixed(1)} |`);
    } finally {
      for (const fn of cleanup) await fn();
      rmSync(downloads, {recursive: true, force: true});
    }
  }
  return rows;
}
