// The hosted page is installable and works offline: a manifest with icons and file handlers, a service worker
// that keeps this build and hands over cleanly to the next one; a saved page (file://) attempts none of it.
import assert from 'node:assert/strict';
import {cpSync, readFileSync, writeFileSync} from 'node:fs';
import {test} from 'node:test';
import * as h from './helpers.mjs';

/** Waits until the page's service worker is active and controls it. */
function controlled(page) {
  return page.waitForFunction(async () => {
    await navigator.serviceWorker.ready;
    return navigator.serviceWorker.controller !== null;
  });
}

test('after one visit the page opens and converts with the server gone', async (t) => {
  const dir = h.tempDir(t);
  const {raw} = h.makeFixture(dir, 'guest', 8);
  const browser = await h.launch(t);
  const {page, close, errors, consoleErrors} = await h.openPage(t, browser, 'http', {serviceWorkers: 'allow'});
  assert.equal(await page.locator('link[rel=manifest]').getAttribute('href'), 'manifest.webmanifest');
  await controlled(page);
  await close();
  await page.reload();
  await page.getByRole('heading', {name: 'diskbridge'}).waitFor();
  await h.pick(page, [raw]);
  const out = await h.clickAndDownload(page, 'VHDX for Hyper-V', dir);
  h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', raw, out.path]);
  assert.deepEqual(errors, []);
  // Offline, only the requests that found no server fail (the browser logs those); nothing else errs.
  assert.deepEqual(consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED/.test(e)), []);
});

test('Chromium finds the hosted page installable; its manifest opens disk images', async (t) => {
  const browser = await h.launch(t);
  const {page, consoleErrors} = await h.openPage(t, browser, 'http', {serviceWorkers: 'allow'});
  await controlled(page);
  const cdp = await page.context().newCDPSession(page);
  const {installabilityErrors} = await cdp.send('Page.getInstallabilityErrors');
  // Test contexts are incognito-like, which alone keeps the install prompt away.
  assert.deepEqual(installabilityErrors.filter((e) => e.errorId !== 'in-incognito'), []);
  assert.deepEqual((await cdp.send('Page.getAppManifest')).errors, []);
  assert.deepEqual(consoleErrors, []);
  const manifest = JSON.parse(readFileSync(h.join(h.DIST, 'manifest.webmanifest'), 'utf8'));
  const extensions = manifest.file_handlers.flatMap((f) => Object.values(f.accept).flat()).sort();
  assert.deepEqual(extensions, ['.img', '.ova', '.qcow2', '.vhdx', '.vmdk']);
  for (const icon of manifest.icons) {
    const bytes = readFileSync(h.join(h.DIST, icon.src));
    if (icon.type === 'image/png') {
      assert.equal(bytes.subarray(1, 4).toString(), 'PNG');
      assert.equal(`${bytes.readUInt32BE(16)}x${bytes.readUInt32BE(20)}`, icon.sizes);
    }
  }
  assert.ok(manifest.icons.some((i) => i.sizes === '512x512'));
});

test('a new build takes over: the page shows it and only its cache is left', async (t) => {
  const root = h.tempDir(t);
  cpSync(h.DIST, root, {recursive: true});
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {root, serviceWorkers: 'allow'});
  await controlled(page);
  const cachesBefore = await page.evaluate(() => caches.keys());
  assert.equal(cachesBefore.length, 1);
  // A deployment: different page text (outside the hashed script) and a service worker for its cache.
  const index = h.join(root, 'index.html');
  writeFileSync(index, readFileSync(index, 'utf8').replace('<h1>diskbridge</h1>', '<h1>diskbridge next</h1>'));
  const sw = h.join(root, 'sw.js');
  writeFileSync(sw, readFileSync(sw, 'utf8').replace(/'diskbridge-\w+'/, "'diskbridge-next'"));
  await page.reload();
  assert.equal(await page.locator('h1').innerText(), 'diskbridge next');
  await page.waitForFunction(async () => (await caches.keys()).join() === 'diskbridge-next');
  assert.deepEqual(errors, []);
});

test('file://: no manifest link, no service worker, and no error in the console', async (t) => {
  const browser = await h.launch(t);
  const {page, errors, consoleErrors} = await h.openPage(t, browser, 'file');
  await page.getByRole('button', {name: 'Empty 64 KiB VMDK'}).click();
  await page.locator('#result').filter({hasText: 'Saved 64KiB.vmdk'}).waitFor();
  assert.equal(await page.locator('link[rel=manifest]').count(), 0);
  assert.equal(await page.evaluate(() => navigator.serviceWorker?.controller ?? null), null);
  assert.deepEqual(errors, []);
  assert.deepEqual(consoleErrors, []);
});
