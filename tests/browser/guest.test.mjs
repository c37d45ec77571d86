// What the guest boots with, read from a GPT that sfdisk made, shown with the image's info; the import guidance
// next to each result follows it; Verify reads the saved output back and finds it identical to the source.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const BIOS_BOOT = '21686148-6449-6E6F-744E-656564454649';
const ESP = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';
const LINUX = '0FC63DAF-8483-4772-8E79-3D69D8477DE4';

/**
 * A 16 MiB raw disk with a GPT holding `types` (1 MiB each, the last one taking the rest), and some data.
 * `bootCode`: the protective MBR gets boot code (as GRUB's boot.img puts there); sfdisk leaves it zero.
 */
function gptDisk(dir, name, types, bootCode) {
  const path = h.join(dir, `${name}.img`);
  h.run('qemu-img', ['create', '-f', 'raw', path, '16M']);
  const partitions = types.map((type, i) => `size=${i === types.length - 1 ? '' : '1MiB'}, type=${type}`);
  h.run('/usr/sbin/sfdisk', ['--quiet', path], {input: ['label: gpt', ...partitions].join('\n'), stdio: 'pipe'});
  h.run('dd', ['if=/dev/urandom', `of=${path}`, 'bs=64k', 'seek=100', 'count=4', 'conv=notrunc', 'status=none']);
  if (bootCode) h.run('dd', ['if=/dev/urandom', `of=${path}`, 'bs=440', 'count=1', 'conv=notrunc', 'status=none']);
  return path;
}

test('a hybrid GPT image: both boot methods shown, either Hyper-V generation, and Verify finds it identical',
  async (t) => {
    const dir = h.tempDir(t);
    const disk = gptDisk(dir, 'hybrid', [BIOS_BOOT, ESP, LINUX], true);
    const browser = await h.launch(t);
    const {page, errors} = await h.openPage(t, browser, 'http');
    await h.pick(page, [disk]);
    const info = await page.locator('#info-list').innerText();
    assert.match(info, /Partition table\s+GPT/);
    assert.match(info, /Boots with\s+BIOS or UEFI \(a hybrid image: it boots either way\)/);
    const out = await h.clickAndDownload(page, 'VHDX for Hyper-V', dir);
    h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', disk, out.path]);
    assert.match(await page.locator('#guidance').innerText(), /Generation 1 or Generation 2/);
    // The time it took and its speed, the size in human units with the exact bytes on hover.
    const saved = /^Saved hybrid\.vhdx \([\d.]+ MiB\) in [\d.]+ s, reading the disk's data at [\d.]+ MB\/s\.$/;
    assert.match(await page.locator('#result').innerText(), saved);
    assert.match(await page.locator('#result').getAttribute('title'), /^[\d,]+ bytes$/);
    await page.getByRole('button', {name: 'Verify the saved file'}).click();
    await page.locator('#verdict').filter({hasText: /identical|differs/}).waitFor({timeout: 60_000});
    assert.equal(await page.locator('#verdict').innerText(),
      'Verified: hybrid.vhdx holds exactly the source\'s disk contents (identical).');
    assert.deepEqual(errors, []);
  });

test('a UEFI-only GPT image: Generation 2, and the qcow2 for OpenStack says hw_firmware_type=uefi', async (t) => {
  const dir = h.tempDir(t);
  const disk = gptDisk(dir, 'efi', [ESP, LINUX], false);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'file', {locale: 'ja-JP'});
  await h.pick(page, [disk]);
  assert.match(await page.locator('#info-list').innerText(), /起動方式\s+UEFI$/);
  await page.getByRole('button', {name: 'English'}).click();
  const out = await h.clickAndDownload(page, 'qcow2 for OpenStack', dir);
  h.run('qemu-img', ['check', out.path]);
  h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', disk, out.path]);
  assert.match(await page.locator('#guidance').innerText(),
    /openstack image create --disk-format qcow2 --container-format bare --file efi\.qcow2 efi .*hw_firmware_type=uefi/);
  await page.getByRole('button', {name: 'Verify the saved file'}).click();
  await page.locator('#verdict').filter({hasText: /identical|differs/}).waitFor({timeout: 60_000});
  assert.match(await page.locator('#verdict').innerText(), /\(identical\)/);
  const vhdx = await h.clickAndDownload(page, 'VHDX for Hyper-V', dir);
  assert.equal(vhdx.name, 'efi.vhdx');
  assert.match(await page.locator('#guidance').innerText(), /create a Generation 2 virtual machine/);
  assert.deepEqual(errors, []);
});

test('Verify reads the saved file as it is now: one changed byte is found, in its sector', async (t) => {
  const dir = h.tempDir(t);
  const {raw} = h.makeFixture(dir, 'guest', 8);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {picker: 'opfs'});
  await h.pick(page, [raw]);
  await page.getByText('Advanced options').click();
  await page.getByRole('button', {name: 'Raw disk image (.img)'}).click();
  await page.locator('#result').filter({hasText: 'Saved guest.img'}).waitFor({timeout: 60_000});
  // In a raw output the guest's byte N is the file's byte N; this one lies in the fixture's text at 3 MiB.
  const at = (3 << 20) + 1000;
  await page.evaluate(async (offset) => {
    const handle = await (await navigator.storage.getDirectory()).getFileHandle('guest.img');
    const writable = await handle.createWritable({keepExistingData: true});
    await writable.write({type: 'write', position: offset, data: new Uint8Array([0xff])});
    await writable.close();
  }, at);
  await page.getByRole('button', {name: 'Verify the saved file'}).click();
  await page.locator('#verdict').filter({hasText: /identical|differs/}).waitFor({timeout: 60_000});
  assert.equal(await page.locator('#verdict').innerText(), 'guest.img differs from the source: the first ' +
    `difference is in the sector at byte ${at - (at % 512)}.`);
  assert.deepEqual(errors, []);
});
