// The page loads as one file and then makes no request but for its own app files (its CSP forbids connections),
// and every control has a label a screen reader (and a test) can find.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const APP_FILES = ['index.html', 'sw.js', 'manifest.webmanifest', 'icon.svg', 'icon-192.png', 'icon-512.png'];

for (const mode of ['http', 'file']) {
  test(`${mode}: no network requests after load, and connections are forbidden`, async (t) => {
    const dir = h.tempDir(t);
    const {qcow2, raw} = h.makeFixture(dir);
    const browser = await h.launch(t);
    // The service worker runs, so over http the download is streamed through it.
    const {page, requests, served, url} = await h.openPage(t, browser, mode, {serviceWorkers: 'allow'});
    await h.pick(page, [qcow2]);
    await h.pick(page, [raw]);
    await page.getByText('Advanced options').click();
    await h.clickAndDownload(page, 'Raw disk image (.img)', dir);

    const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
    assert.match(csp, /connect-src 'none'/);
    assert.match(csp, /default-src 'none'/);
    const fetched = await page.evaluate((u) => fetch(u).then(() => 'fetched', () => 'blocked'), url);
    assert.equal(fetched, 'blocked');

    // Only the page itself, plus the blob: URLs the workers start from (memory, not network), and over http the
    // hosted page's own files beside it (service worker, manifest, icons) and the streamed download, which the
    // service worker answers inside the browser — never the disk data.
    const streamed = requests.filter((r) => new URL(r, url).pathname.startsWith('/download/'));
    if (mode === 'http') assert.deepEqual(streamed.map((r) => r.replace(/\/download\/[\w-]+\//, '/download/ID/')),
      [new URL('download/ID/guest.img', url).href]);
    const network = requests.filter((r) => !r.startsWith('blob:') && !streamed.includes(r));
    const own = mode === 'http' ? APP_FILES.map((name) => new URL(name, url).href) : [];
    assert.equal(network[0], url);
    assert.deepEqual(network.filter((r) => r !== url && !own.includes(r)), []);
    if (served) {
      const paths = [new URL(url).pathname + new URL(url).search, ...own.map((r) => new URL(r).pathname)];
      assert.deepEqual(served.filter((p) => !paths.includes(p)), []);
    }
  });
}

test('every control is labelled and the target buttons are named for their format', async (t) => {
  const browser = await h.launch(t);
  const {page} = await h.openPage(t, browser, 'http');
  await page.getByText('Advanced options').click();
  for (const name of ['VMDK for VMware ESXi', 'VHDX for Hyper-V', 'VHD for Azure', 'VHD for XCP-ng / XenServer',
    'Empty 64 KiB VMDK']) {
    assert.equal(await page.getByRole('button', {name, exact: true}).count(), 1, name);
  }
  const controls = 'input, textarea, button, progress, select';
  const unlabelled = await page.evaluate((selector) => [...document.querySelectorAll(selector)]
    .filter((el) => !(el.labels?.length || el.textContent.trim() || el.getAttribute('aria-labelledby')))
    .map((el) => el.id), controls);
  assert.deepEqual(unlabelled, []);
});
