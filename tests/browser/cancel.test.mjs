// Cancel mid-conversion on each output path: the save picker's file (replaced by an OPFS handle, the picker's
// code path), OPFS then download (picker hidden, http), and memory then download (picker hidden, file://).
// Nothing may be left behind, no download may start, and the page must answer at once.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

/** A raw image with 512 MiB of incompressible data: long enough to cancel in the middle. */
function bigFixture(dir) {
  const path = h.join(dir, 'big.img');
  h.run('dd', ['if=/dev/urandom', `of=${path}`, 'bs=1M', 'count=512', 'status=none']);
  return path;
}

const RAW = 'Raw disk image (.img)';
// Raw output is written as fast as it is read; VMDK waits on the encoders' deflate.
const PATHS = [
  {mode: 'http', picker: 'opfs', button: RAW, what: 'the picked file'},
  {mode: 'http', picker: 'opfs', button: 'VMDK for VMware ESXi', what: 'the picked file, while deflating'},
  {mode: 'http', picker: 'hidden', button: RAW, what: 'the OPFS file'},
  {mode: 'file', picker: 'hidden', button: RAW, what: 'the in-memory output'},
];

for (const {mode, picker, button, what} of PATHS) {
  test(`${mode}, picker ${picker}: cancel stops at once and removes ${what}`, async (t) => {
    const dir = h.tempDir(t);
    const input = bigFixture(dir);
    const browser = await h.launch(t);
    const {page, errors} = await h.openPage(t, browser, mode, {picker});
    let downloads = 0;
    page.on('download', () => downloads++);
    const note = await page.locator('#storage-note').innerText();
    if (mode === 'file') assert.match(note, /assembled in memory.*at most 2\.00 GiB/);
    if (picker === 'opfs') assert.match(note, /created as soon as you choose it/);
    if (mode === 'http' && picker === 'hidden') assert.match(note, /browser's own storage for this page first/);
    await h.pick(page, [input]);
    await page.getByText('Advanced options').click();
    await page.getByRole('button', {name: button, exact: true}).click();
    // Cancel once real output has been written, not before the first step.
    await page.waitForFunction(() => Number(document.getElementById('bar').value) > 0);
    assert.match(await page.locator('#status').innerText(), /^[\d.]+ [KMG]iB of 512 MiB — [\d.]+ MB\/s/);
    // No other file can be picked while this one converts.
    assert.equal(await page.locator('#file').isDisabled(), true);
    const started = Date.now();
    await page.getByRole('button', {name: 'Cancel'}).click();
    await page.getByText('Cancelled. No file was left behind.').waitFor({timeout: 5000});
    assert.ok(Date.now() - started < 2000, `cancel took ${Date.now() - started} ms`);
    assert.equal(await page.locator('#progress').isHidden(), true);
    assert.equal(await page.locator('#file').isEnabled(), true);
    if (mode === 'http') assert.deepEqual(await h.opfsNames(page), []);
    await page.waitForTimeout(500);
    assert.equal(downloads, 0);
    page.removeAllListeners('download');
    // The page stays usable: the next conversion runs (with the picker, into the picked file).
    if (picker === 'opfs') {
      await page.getByRole('button', {name: 'Empty 64 KiB VMDK'}).click();
      await page.locator('#result').filter({hasText: 'Saved 64KiB.vmdk'}).waitFor();
      assert.deepEqual(await h.opfsNames(page), ['64KiB.vmdk']);
    } else {
      assert.equal((await h.clickAndDownload(page, 'Empty 64 KiB VMDK', dir)).name, '64KiB.vmdk');
    }
    assert.deepEqual(errors, []);
  });
}

test('http, streamed: cancelling the download in the browser stops the conversion', async (t) => {
  const dir = h.tempDir(t);
  const input = bigFixture(dir);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {serviceWorkers: 'allow'});
  assert.match(await page.locator('#storage-note').innerText(), /streamed into its downloads/);
  await h.pick(page, [input]);
  const download = page.waitForEvent('download');
  await page.getByRole('button', {name: 'VMDK for VMware ESXi'}).click();
  await page.waitForFunction(() => Number(document.getElementById('bar').value) > 0);
  // The service worker's stream is cancelled by its reader; the worker stops at its next chunk.
  await (await download).cancel();
  await page.getByText('Cancelled. The download of big.vmdk was stopped').waitFor({timeout: 10_000});
  assert.equal(await page.locator('#error').isHidden(), true);
  assert.deepEqual(errors, []);
});

// Issue 18: the OVA's last phase (hashing its finished disk) is steppable like the others, so a cancel there is
// answered at once by the worker itself — not by the page terminating it after CANCEL_GRACE_MS — and the
// staging file in OPFS and the picked file both go.
test('http, picker opfs: cancel during an OVA\'s final hashing is answered within 0.5 s without restarting the ' +
  'workers, and leaves nothing', async (t) => {
  const dir = h.tempDir(t);
  const input = bigFixture(dir);
  const browser = await h.launch(t);
  const countWorkers = () => {
    const Native = window.Worker;
    window.workersStarted = 0;
    window.Worker = class extends Native {
      constructor(...args) {
        super(...args);
        window.workersStarted++;
      }
    };
  };
  const {page, errors} = await h.openPage(t, browser, 'http', {picker: 'opfs', esxi: 'ova', init: countWorkers});
  let downloads = 0;
  page.on('download', () => downloads++);
  await h.pick(page, [input]);
  await page.getByText('Advanced options').click();
  // The quickest deflate, so the write pass is short; the hash still reads the whole 512 MiB member.
  const options = page.getByLabel('VMDK options');
  await options.fill(`${await options.inputValue()},compression_level=1`);
  await page.getByRole('button', {name: 'OVA for VMware ESXi'}).click();
  await page.waitForFunction(() => document.getElementById('bar').dataset.phase === 'finish', null,
    {timeout: 180_000, polling: 50});
  const workers = await page.evaluate(() => window.workersStarted);
  // The bar keeps moving while the disk is hashed.
  const before = await page.evaluate(() => Number(document.getElementById('bar').value));
  await page.waitForFunction((v) => Number(document.getElementById('bar').value) > v, before, {polling: 20});
  const {ms, during} = await page.evaluate(() => new Promise((resolve) => {
    const result = document.getElementById('result');
    const during = document.getElementById('bar').dataset.phase;
    const started = performance.now();
    new MutationObserver(() => {
      if (result.textContent.startsWith('Cancelled')) resolve({ms: performance.now() - started, during});
    }).observe(result, {childList: true, subtree: true, characterData: true});
    document.getElementById('cancel').click();
  }));
  assert.equal(during, 'finish', 'the cancel came during the hash');
  assert.ok(ms < 500, `cancel took ${ms.toFixed(0)} ms`);
  t.diagnostic(`cancel during the OVA's hash answered in ${ms.toFixed(0)} ms`);
  assert.equal(await page.locator('#result').innerText(), 'Cancelled. No file was left behind.');
  // Past the page's grace period: had the worker not answered, it would have been terminated and restarted.
  await page.waitForTimeout(3500);
  assert.equal(await page.evaluate(() => window.workersStarted), workers, 'the workers were restarted');
  assert.deepEqual(await h.opfsNames(page), []);
  assert.equal(downloads, 0);
  assert.deepEqual(errors, []);
});
