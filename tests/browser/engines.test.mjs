// The page's core flows in every engine — Chromium, Firefox ESR and WebKitGTK — over http and from file://,
// without a save dialog (Firefox and Safari have none; Chromium's is hidden here): each engine takes the path
// its capabilities allow (a download streamed through the service worker, OPFS then a download, or memory), and
// every download is checked against the CLI's bytes for the same path and by qemu-img. Also: Verify, cancel,
// an error, the First login (a field's error, the seed disk beside a VHDX, the OVA carrying it), both
// languages, and axe-core's WCAG 2.1 AA rules before and after a conversion and with a field's error shown.
import assert from 'node:assert/strict';
import {mkdirSync, readFileSync, rmSync, truncateSync} from 'node:fs';
import {test} from 'node:test';
import * as e from './engines.mjs';
import * as h from './helpers.mjs';

const VMDK_OPTIONS = 'adapter_type=lsilogic,subformat=streamOptimized,compat6';
const AXE = readFileSync(h.join(h.ROOT, 'node_modules/axe-core/axe.min.js'), 'utf8');
// Only the formats with an append-only layout are streamed (app.js STREAMABLE).
const STREAMABLE = new Set(['vmdk', 'vhdx', 'vpc', 'raw']);
const ENGINES = (process.env.DISKBRIDGE_ENGINES ?? e.ENGINES.join(',')).split(',');

/** Opens the page in a fresh browser of `engine`; resolves to {browser, page, can, url} once it is ready. */
async function open(t, engine, mode, dir, query = `?seed=${h.SEED}&epoch=${h.EPOCH}`) {
  const {url} = await h.pageUrl(t, mode);
  const browser = await e.launch(t, engine, h.join(dir, `downloads-${engine}`));
  const {page} = browser;
  await page.goto(url + query);
  await e.waitFor(page, () => !document.getElementById('storage-note').hidden, null, 30_000, 'the storage note');
  const can = await page.evaluate(() => window.diskbridgeCapabilities);
  const quota = await page.evaluate(async () => (await navigator.storage?.estimate?.())?.quota ?? null);
  const gib = quota === null ? 'none' : `${(quota / 2 ** 30).toFixed(1)} GiB`;
  t.diagnostic(`${engine} ${mode}: picker ${can.picker}, OPFS ${can.opfs}, SIMD ${can.simd}, streamed ${can.stream}` +
    `, reads picked files ${can.readsFiles}, storage quota ${gib}`);
  return {browser, page, can, url};
}

/** Clicks `button` and waits for the page's result line, `#result` or the seed disk's (or fails with its error). */
async function convert(page, button, result = 'result') {
  await page.click(button);
  const outcome = await e.waitFor(page, (id) => {
    const error = document.getElementById('error');
    if (!error.hidden) return {error: error.innerText};
    const result = document.getElementById(id).innerText;
    return /^(Saved|Streamed|.*(保存しました|書き出しました))/.test(result) ? {result} : null;
  }, result, 180_000, `the result of ${button}`);
  assert.equal(outcome.error, undefined, outcome.error);
  return outcome.result;
}

/** The size of the page's last output, as it reported it. */
function lastBytes(page) {
  return page.evaluate(() => window.diskbridgeLastRun.bytes);
}

/** Picks `paths` in the page's file input and waits for the image's info (or an error) about them. */
async function pick(page, paths) {
  // What an earlier pick showed is hidden first, so only this pick's outcome ends the wait.
  await page.evaluate(() => {
    document.getElementById('info').hidden = true;
    document.getElementById('error').hidden = true;
  });
  await page.setFiles('#file', paths);
  await e.waitFor(page, () => !document.getElementById('info').hidden || !document.getElementById('error').hidden);
}

/** axe-core's WCAG 2.1 A/AA violations on the page as it is now, as "rule: selectors" lines. */
async function axeViolations(page) {
  // Evaluated by the driver, not by the page, so the page's CSP (which forbids any other script) does not apply.
  const run = `async () => {
    ${AXE}
    const result = await axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',
      'wcag21aa']}});
    return result.violations.map((v) => v.id + ': ' + v.nodes.map((n) => n.target.join(' ')).join(', '));
  }`;
  return page.evaluate(run);
}

async function checkAccessibility(page, when) {
  for (const language of ['en', 'ja']) {
    await page.click(`[data-lang=${language}]`);
    assert.deepEqual(await axeViolations(page), [], `axe-core, ${language}, ${when}`);
  }
  await page.click('[data-lang=en]');
}

/**
 * The CLI's bytes for what the page wrote: `args` with the output name `name` in place of OUT, written through a
 * pipe where the page streamed, else to a file.
 */
async function reference(dir, args, name, streamed) {
  const out = h.join(dir, `cli-${Math.random().toString(36).slice(2)}`);
  mkdirSync(out);
  const path = h.join(out, name);
  const full = args.map((arg) => (arg === 'OUT' ? path : arg));
  if (streamed) return h.cliThroughPipe(full, path);
  const result = h.cli(full);
  assert.equal(result.status, 0, result.stderr);
  return path;
}

/** The Empty 64 KiB VMDK button gives the CLI's empty disk (streamed where the page streams). */
async function emptyVmdk(dir, browser, can) {
  assert.match(await convert(browser.page, '#empty-vmdk'), /64KiB\.vmdk/);
  const path = await e.downloaded(browser, '64KiB.vmdk', await lastBytes(browser.page));
  const expected = await reference(dir, ['create', '-f', 'vmdk', '-o', VMDK_OPTIONS, 'OUT', '64k'], '64KiB.vmdk',
    can.stream);
  assert.ok(h.sameBytes(path, expected), 'the empty VMDK differs from the CLI\'s');
}

/**
 * The First login section with `qcow2` picked: a bad host name is refused at its field before anything starts
 * (and the page passes axe-core so); then, filled in (the key from a picked .pub file), the VHDX's result offers
 * the seed disk, which is `diskbridge seed`'s, and the OVA carries it — the CLI's bytes for the same flags.
 */
async function firstLogin(dir, browser, can, qcow2) {
  const {page} = browser;
  const login = h.loginFixture(dir);
  await page.evaluate(() => { document.getElementById('hostname').value = '-bad-'; });
  await page.click('#to-vhdx');
  const error = await e.waitFor(page, () => document.getElementById('hostname-error').innerText);
  assert.match(error, /^This host name cannot be used: '-bad-' is not a valid host name/);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'hostname');
  assert.equal(await page.evaluate(() => document.getElementById('progress').hidden), true);
  await checkAccessibility(page, 'with a field\'s error');

  await page.evaluate(({hostname, password}) => {
    document.getElementById('hostname').value = hostname;
    document.getElementById('password').value = password;
  }, login);
  await page.setFiles('#ssh-key-file', [login.files.key]);
  await e.waitFor(page, (key) => document.getElementById('ssh-keys').value === key, login.key);
  await page.setFiles('#user-data', [login.files.userData]);
  await convert(page, '#to-vhdx');
  assert.match(await page.evaluate(() => document.getElementById('seed-guidance').innerText),
    /guest-seed\.vhdx\. Attach it to the VM as a second hard disk on its SCSI controller/);
  assert.match(await convert(page, '#save-seed', 'seed-result'), /guest-seed\.vhdx/);
  const streamed = can.stream;
  const seed = await e.downloaded(browser, 'guest-seed.vhdx', await lastBytes(page));
  const expected = await reference(dir, ['seed', ...login.flags, 'OUT'], 'guest-seed.vhdx', streamed);
  assert.ok(h.sameBytes(seed, expected), 'the seed disk differs from diskbridge seed\'s');
  h.run('qemu-img', ['check', '-f', 'vhdx', seed]);

  if (!can.opfs) return;
  await page.click('input[name=esxi-package][value=ova]');
  assert.match(await convert(page, '#to-vmdk'), /^Saved guest\.ova /);
  assert.match(await page.evaluate(() => document.getElementById('guidance').innerText), /guest-seed\.vmdk/);
  const ova = await e.downloaded(browser, 'guest.ova', await lastBytes(page));
  const cli = await reference(dir, ['convert', '-O', 'ova', '-o', VMDK_OPTIONS, ...login.flags, qcow2, 'OUT'],
    'guest.ova', false);
  assert.ok(h.sameBytes(ova, cli), 'the page and the CLI wrote different OVAs with a first login');
  await page.click('#login-clear');
}

/**
 * Starts a VMDK of `big` and cancels it once output is being written: the page answers at once, and no file
 * under the output's name holds a complete-looking image.
 */
async function cancelConversion(browser, can, big) {
  const {page} = browser;
  await page.click('input[name=esxi-package][value=vmdk]');
  await pick(page, [big]);
  await page.click('#to-vmdk');
  await e.waitFor(page, () => Number(document.getElementById('bar').value) > 0, null, 60_000, 'progress');
  const started = Date.now();
  await page.click('#cancel');
  const result = await e.waitFor(page, () => /^Cancelled/.test(document.getElementById('result').innerText)
    && document.getElementById('result').innerText, null, 10_000, 'the cancel');
  assert.ok(Date.now() - started < 5000, `cancel took ${Date.now() - started} ms`);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const size = e.sizeOf(browser, 'big.vmdk');
  if (!can.stream) {
    assert.equal(size, null, e.downloadFolder(browser).join(', '));
    return;
  }
  // The stream ended with an error, so the download failed. Firefox keeps an empty placeholder under the name
  // and a .part file (for a retry); WebKitGTK keeps what had arrived under the name itself — which no reader
  // takes for a whole image (a streamOptimized VMDK's footer is missing), and the page says to delete it.
  assert.match(result, /download of big\.vmdk was stopped and marked as failed/);
  if (size) assert.throws(() => h.run('qemu-img', ['info', '-f', 'vmdk', h.join(browser.downloads, 'big.vmdk')]));
}

for (const engine of ENGINES) {
  for (const mode of ['http', 'file']) {
    test(`${engine} ${mode}: VMDK, VHDX, VHD, qcow2, OVA, the seed disk and the empty VMDK are the CLI's ` +
      'bytes; Verify; a field\'s error; both languages pass axe-core', async (t) => {
      const dir = h.tempDir(t);
      const {qcow2, raw} = h.makeFixture(dir);
      const {browser, page, can} = await open(t, engine, mode, dir);
      assert.equal(can.picker, false);
      assert.equal(can.file, mode === 'file');
      // The truth about where output goes: never "opened from a file" over http.
      const note = await page.evaluate(() => document.getElementById('storage-note').innerText);
      if (mode === 'http') assert.doesNotMatch(note, /opened from a file/);
      else assert.match(note, /opened from a file/);
      if (can.stream) assert.match(note, /streamed into its downloads/);
      await checkAccessibility(page, 'before a conversion');
      if (!can.readsFiles) {
        // WebKitGTK from file://: no worker can read a Blob. The page says so; the empty VMDK needs no input.
        assert.equal(`${engine} ${mode}`, 'webkit file');
        assert.match(note, /does not let a page opened from a file read the files you pick/);
        await emptyVmdk(dir, browser, can);
        await checkAccessibility(page, 'after a conversion');
        return;
      }

      await page.click('input[name=esxi-package][value=vmdk]');
      await pick(page, [qcow2]);
      const cases = [
        {format: 'vmdk', button: '#to-vmdk', name: 'guest.vmdk', args: ['-O', 'vmdk', '-o', VMDK_OPTIONS]},
        {format: 'vhdx', button: '#to-vhdx', name: 'guest.vhdx', args: ['-O', 'vhdx']},
        {format: 'vpc', button: '#to-azure', name: 'guest.vhd', args: ['-O', 'vpc', '-o', 'subformat=fixed']},
        {format: 'vpc', button: '#to-xen', name: 'guest.vhd', args: ['-O', 'vpc']},
        {format: 'qcow2', button: '#to-qcow2', name: 'guest.qcow2', args: ['-O', 'qcow2']},
      ];
      for (const c of cases) {
        const streamed = can.stream && STREAMABLE.has(c.format);
        const result = await convert(page, c.button);
        assert.match(result, new RegExp(`^${streamed ? 'Streamed' : 'Saved'} ${c.name} `));
        const path = await e.downloaded(browser, c.name, await lastBytes(page));
        const expected = await reference(dir, ['convert', ...c.args, qcow2, 'OUT'], c.name, streamed);
        assert.ok(h.sameBytes(path, expected), `${c.name} (${c.button}): the page and the CLI wrote different bytes`);
        h.run('qemu-img', ['compare', '-f', 'raw', '-F', c.format, raw, path]);
        // Out of the way of the next download of the same name; the last one is verified below.
        if (c !== cases.at(-1)) rmSync(path);
      }

      // Verify the last one: read back where the page can, else from the downloaded file picked again.
      const rereadable = await page.evaluate(() => !document.getElementById('verify').hidden);
      if (rereadable) await page.click('#verify');
      else await page.setFiles('#verify-file', [h.join(browser.downloads, 'guest.qcow2')]);
      const verdict = await e.waitFor(page, () => /identical|differs/.test(document.getElementById('verdict').innerText)
        && document.getElementById('verdict').innerText);
      assert.match(verdict, /^Verified: guest\.qcow2 .*\(identical\)\.$/);

      if (can.opfs) {
        await page.click('input[name=esxi-package][value=ova]');
        assert.match(await convert(page, '#to-vmdk'), /^Saved guest\.ova /);
        const path = await e.downloaded(browser, 'guest.ova', await lastBytes(page));
        const expected = await reference(dir, ['convert', '-O', 'ova', '-o', VMDK_OPTIONS, qcow2, 'OUT'], 'guest.ova',
          false);
        assert.ok(h.sameBytes(path, expected), 'the page and the CLI wrote different OVAs');
        rmSync(path);
      } else {
        assert.equal(await page.evaluate(() => document.querySelector('input[value=ova]').disabled), true);
        const why = await page.evaluate(() => document.getElementById('ova-note').innerText);
        assert.match(why, mode === 'file' ? /opened from a file/ : /does not give the page/);
      }

      await firstLogin(dir, browser, can, qcow2);
      await emptyVmdk(dir, browser, can);
      await checkAccessibility(page, 'after a conversion');
    });

    test(`${engine} ${mode}: cancel leaves no complete-looking file, an error shows the core's message, ` +
      'and the language switch is remembered', async (t) => {
      const dir = h.tempDir(t);
      const big = h.join(dir, 'big.img');
      h.run('dd', ['if=/dev/urandom', `of=${big}`, 'bs=1M', 'count=384', 'status=none']);
      const {browser, page, can} = await open(t, engine, mode, dir);
      if (can.readsFiles) await cancelConversion(browser, can, big);
      else {
        await pick(page, [big]);
        assert.match(await page.evaluate(() => document.getElementById('error').innerText), /NotReadableError/);
      }


      if (!can.readsFiles) return;
      const broken = h.join(dir, 'broken.qcow2');
      h.run('cp', [h.makeFixture(dir).qcow2, broken]);
      truncateSync(broken, 1024);
      await pick(page, [broken]);
      const shown = await page.evaluate(() => !document.getElementById('error').hidden
        || (document.getElementById('to-vhdx').click(), false));
      if (!shown) await e.waitFor(page, () => !document.getElementById('error').hidden);
      const message = await page.evaluate(() => document.getElementById('error-message').innerText);
      const cli = h.cli(['convert', '-O', 'vhdx', broken, h.join(dir, 'out.vhdx')]);
      assert.equal(cli.status, 1);
      assert.ok(cli.stderr.includes(message.replace(/^[^:]*: /, '')), `page: ${message}\nCLI: ${cli.stderr}`);

      if (can.stream) {
        // A conversion that fails once its download has begun: the error, the failed download, no image left.
        const {raw} = h.makeFixture(dir, 'streamed', 8);
        await pick(page, [raw]);
        await page.evaluate(() => { document.getElementById('vhdx-options').value = 'bogus=1'; });
        await page.click('#to-vhdx');
        await e.waitFor(page, () => !document.getElementById('error').hidden);
        assert.match(await page.evaluate(() => document.getElementById('error').innerText), /invalid-argument[^]*bogus/);
        assert.match(await page.evaluate(() => document.getElementById('result').innerText),
          /download of streamed\.vhdx was stopped and marked as failed/);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        assert.equal(e.sizeOf(browser, 'streamed.vhdx') ?? 0, 0, e.downloadFolder(browser).join(', '));
      }

      await page.click('[data-lang=ja]');
      assert.equal(await page.evaluate(() => document.documentElement.lang), 'ja');
      assert.match(await page.evaluate(() => document.getElementById('storage-note').innerText), /ブラウザー/);
      assert.equal(await page.evaluate(() => document.getElementById('empty-vmdk').innerText), '空の 64 KiB VMDK');
      await page.goto(await page.evaluate(() => location.href));
      await e.waitFor(page, () => document.documentElement.lang === 'ja'
        && document.getElementById('to-vhdx').innerText);
      assert.equal(await page.evaluate(() => document.getElementById('to-vhdx').innerText), 'Hyper-V 用 VHDX');
    });
  }
}

// Issue 17's "done when": where there is no save dialog, an output larger than the memory fallback's 2 GiB
// arrives whole through the stream, and the browser's own storage does not grow meanwhile (sampled all along).
// (Chromium streams too without its save dialog, but it has one.)
for (const engine of ENGINES.filter((name) => name !== 'chromium')) {
  test(`${engine} http: a 2.5 GiB raw image is streamed whole, and OPFS does not grow`, async (t) => {
    const dir = h.tempDir(t);
    // 2.5 GiB virtual with a MiB of data at 2 GiB: quick to read, and every byte of the output must arrive.
    const image = h.join(dir, 'large.qcow2');
    h.run('qemu-img', ['create', '-f', 'qcow2', image, '2560M']);
    h.run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 2G 1M', image]);
    const {browser, page, can} = await open(t, engine, 'http', dir, '');
    assert.equal(can.stream, true);
    const usage = () => page.evaluate(async () => (await navigator.storage?.estimate?.())?.usage ?? null);
    const before = await usage();
    await pick(page, [image]);
    await page.click('details summary');
    await page.click('#to-raw');
    let most = before;
    let result = '';
    for (const until = Date.now() + 600_000; !result && Date.now() < until;) {
      most = Math.max(most, await usage());
      result = await page.evaluate(() => document.getElementById('error').innerText.trim()
        || document.getElementById('result').innerText);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    t.diagnostic(`${engine}: ${result}`);
    assert.match(result, /^Streamed large\.img \(2\.50 GiB\)/);
    const path = await e.downloaded(browser, 'large.img', 2560 * 2 ** 20, 600_000);
    assert.equal((await import('node:fs')).statSync(path).size, 2560 * 2 ** 20);
    h.run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', image, path]);
    // WebKitGTK has no OPFS (and no estimate() to ask); the memory fallback would have refused the output.
    if (before !== null) {
      assert.ok(most - before < 16 << 20, `the page's storage grew from ${before} to ${most} bytes`);
      t.diagnostic(`${engine}: storage usage ${before} → at most ${most} bytes during the download`);
    }
  });
}
