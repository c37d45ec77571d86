// The VHD targets and Hyper-V's fixed VHDX in Chromium: VHD for Azure rounds a size that is not a whole MiB up
// and says so, byte for byte the CLI's fixed VHD, read back by qemu-img and libvhdi at the exact size; the
// fixed-size choice for Hyper-V writes the CLI's fixed VHDX. (Both VHD targets, streamed or not, are compared
// with the CLI in every engine: engines.test.mjs.)
import assert from 'node:assert/strict';
import {statSync} from 'node:fs';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const QUERY = `?seed=${h.SEED}&epoch=${h.EPOCH}`;
// 10 MiB + 3.5 KiB: a whole number of sectors, not of MiB.
const ODD_SIZE = (10 << 20) + 3584;
const ROUNDED = 11 << 20;

/** The CLI's output for `args` (OUT standing for the output path `name` in a folder of its own). */
function reference(dir, args, name) {
  h.run('mkdir', ['-p', h.join(dir, 'cli')]);
  const path = h.join(dir, 'cli', name);
  const cli = h.cli(args.map((arg) => (arg === 'OUT' ? path : arg)));
  assert.equal(cli.status, 0, cli.stderr);
  return {path, stderr: cli.stderr};
}

test('VHD for Azure: a size that is not a whole MiB is rounded up with a warning, the CLI\'s bytes, read back ' +
  'by qemu-img and libvhdi at the exact size, and the upload commands name it', async (t) => {
  const dir = h.tempDir(t);
  const raw = h.join(dir, 'odd.img');
  h.run('qemu-img', ['create', '-f', 'raw', raw, String(ODD_SIZE)]);
  h.run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 1M', '-c', `write -P 0xa5 ${ODD_SIZE - 4096} 4096`, raw]);
  const qcow2 = h.join(dir, 'odd.qcow2');
  h.run('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {query: QUERY});
  await h.pick(page, [qcow2]);
  const out = await h.clickAndDownload(page, 'VHD for Azure', dir);
  assert.equal(out.name, 'odd.vhd');
  assert.equal(statSync(out.path).size, ROUNDED + 512);
  assert.equal(await page.locator('#warnings').innerText(),
    `Warning: The fixed VHD's size is rounded up from ${ODD_SIZE} to ${ROUNDED} bytes, a whole MiB as Azure ` +
    `requires; the last ${ROUNDED - ODD_SIZE} bytes read as zeros`);
  const guidance = await page.locator('#guidance').innerText();
  assert.match(guidance, new RegExp(`--upload-size-bytes ${ROUNDED + 512} `));
  assert.match(guidance, /azcopy copy odd\.vhd "\$sas" --blob-type PageBlob/);

  const cli = reference(dir, ['convert', '-O', 'vpc', '-o', 'subformat=fixed', qcow2, 'OUT'], 'odd.vhd');
  assert.match(cli.stderr, /warning: .*rounded up/);
  assert.ok(h.sameBytes(out.path, cli.path), 'the page and the CLI wrote different VHDs');
  const info = JSON.parse(h.run('qemu-img', ['info', '--output=json', '-f', 'vpc', out.path]));
  assert.equal(info['virtual-size'], ROUNDED);
  h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vpc', raw, out.path]);
  const vhdi = h.run('vhdiinfo', [out.path]);
  assert.match(vhdi, /Disk type\s*:\s*Fixed/);
  assert.match(vhdi, new RegExp(`Media size\\s*:.*\\(${ROUNDED} bytes\\)`));
  assert.deepEqual(errors, []);
});

test('Hyper-V\'s fixed-size choice writes the CLI\'s fixed VHDX, also with a disk size', async (t) => {
  const dir = h.tempDir(t);
  const {qcow2, raw} = h.makeFixture(dir, 'guest', 8);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {query: QUERY});
  await h.pick(page, [qcow2]);
  await page.getByRole('checkbox', {name: /fixed-size VHDX/}).check();
  await page.getByRole('spinbutton', {name: 'Disk size'}).fill('12');
  await page.getByRole('combobox', {name: 'Disk size Unit'}).selectOption('MiB');
  const out = await h.clickAndDownload(page, 'VHDX for Hyper-V', dir);
  const cli = reference(dir, ['convert', '-O', 'vhdx', '-o', 'subformat=fixed,size=12M', qcow2, 'OUT'], 'guest.vhdx');
  assert.ok(h.sameBytes(out.path, cli.path), 'the page and the CLI wrote different VHDXs');
  const info = JSON.parse(h.run('qemu-img', ['info', '--output=json', '-f', 'vhdx', out.path]));
  assert.equal(info['virtual-size'], 12 << 20);
  h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', raw, out.path]);
  assert.match(h.run('vhdiinfo', [out.path]), /Disk type\s*:\s*Fixed/);
  assert.deepEqual(errors, []);
});
