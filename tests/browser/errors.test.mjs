// Errors reach the page as the core's kind and message — the same message the CLI prints — never as
// "RuntimeError: unreachable" or "[object Object]".
import assert from 'node:assert/strict';
import {truncateSync} from 'node:fs';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const KINDS = ['io', 'not-found', 'invalid-format', 'corrupt', 'unsupported', 'limit-exceeded', 'invalid-argument'];

async function shownError(page) {
  const alert = page.getByRole('alert');
  await alert.waitFor();
  const kind = (await page.locator('#error-kind').innerText()).match(/^Error \(([a-z-]+)\):$/)?.[1];
  const message = await page.locator('#error-message').innerText();
  assert.ok(KINDS.includes(kind), `unexpected kind in "${await alert.innerText()}"`);
  assert.doesNotMatch(message, /unreachable|RuntimeError|\[object/);
  return {kind, message};
}

/** The page shows "FILE: message (at offset …)"; the CLI prints "diskbridge: PATH: message (at offset …)". */
function assertSameMessage(pageMessage, cliStderr) {
  const text = pageMessage.replace(/^[^:]*: /, '');
  assert.ok(cliStderr.includes(text), `page: "${pageMessage}"\nCLI:  "${cliStderr.trim()}"`);
}

for (const mode of ['http', 'file']) {
  test(`${mode}: a damaged qcow2 shows the core's error kind and message`, async (t) => {
    const dir = h.tempDir(t);
    const {qcow2} = h.makeFixture(dir);
    // Header intact, tables cut off.
    truncateSync(qcow2, 1024);
    const browser = await h.launch(t);
    const {page} = await h.openPage(t, browser, mode);
    await page.setInputFiles('#file', qcow2);
    await page.locator('#info:not([hidden]), #error:not([hidden])').first().waitFor();
    if (await page.locator('#error').isHidden()) {
      await page.getByRole('button', {name: 'VMDK for VMware ESXi'}).click();
    }
    const {message} = await shownError(page);
    const cli = h.cli(['convert', '-O', 'vmdk', qcow2, h.join(dir, 'out.vmdk')]);
    assert.equal(cli.status, 1);
    assertSameMessage(message, cli.stderr);
  });

  test(`${mode}: a bad advanced option is an invalid-argument error naming it`, async (t) => {
    const dir = h.tempDir(t);
    const {raw} = h.makeFixture(dir);
    const browser = await h.launch(t);
    const {page} = await h.openPage(t, browser, mode);
    await h.pick(page, [raw]);
    await page.getByText('Advanced options').click();
    await page.getByLabel('VHDX options').fill('bogus=1');
    await page.getByRole('button', {name: 'VHDX for Hyper-V'}).click();
    const {kind, message} = await shownError(page);
    const cli = h.cli(['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'bogus=1', raw, h.join(dir, 'out.vhdx')]);
    assertSameMessage(message, cli.stderr);
    assert.equal(kind, 'invalid-argument');
    assert.match(message, /bogus/);
  });
}

test('file: an output over 2 GiB assembled in memory is refused with advice, and nothing is downloaded', async (t) => {
  const dir = h.tempDir(t);
  // 3 GiB virtual, almost nothing allocated: the raw output would be 3 GiB, the VMDK a few KiB.
  const image = h.join(dir, 'sparse.qcow2');
  h.run('qemu-img', ['create', '-f', 'qcow2', image, '3G']);
  h.run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 2G 1M', image]);
  const browser = await h.launch(t);
  const {page} = await h.openPage(t, browser, 'file');
  let downloads = 0;
  page.on('download', () => downloads++);
  await h.pick(page, [image]);
  await page.getByText('Advanced options').click();
  await page.getByRole('button', {name: 'Raw disk image (.img)'}).click();
  const {kind, message} = await shownError(page);
  assert.equal(kind, 'limit-exceeded');
  assert.match(message, /larger than 2 GiB.*Chromium.*CLI/);
  assert.equal(downloads, 0);
  // Small outputs still work on the same path.
  assert.equal((await h.clickAndDownload(page, 'VMDK for VMware ESXi', dir)).name, 'sparse.vmdk');
});
