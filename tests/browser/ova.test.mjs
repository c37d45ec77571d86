// The ESXi target's OVA: written through OPFS (the worker reads the disk member back to hash it), downloaded or
// copied to the picked file, byte for byte the CLI's OVA, with a manifest whose digests match its members.
import assert from 'node:assert/strict';
import {createHash} from 'node:crypto';
import {readFileSync, writeFileSync} from 'node:fs';
import {test} from 'node:test';
import * as h from './helpers.mjs';

/** The members of a ustar archive: [{name, data}] (sizes here are far below the base-256 range). */
function untar(bytes) {
  const members = [];
  for (let at = 0; at + 512 <= bytes.length && bytes[at] !== 0;) {
    const field = (from, len) => bytes.subarray(at + from, at + from + len).toString('latin1').replace(/\0.*$/s, '');
    assert.equal(field(257, 6), 'ustar', `member header at ${at}`);
    const size = parseInt(field(124, 12).trim(), 8);
    members.push({name: field(0, 100), data: bytes.subarray(at + 512, at + 512 + size)});
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return members;
}

test('an OVA from the page: the CLI\'s bytes, manifest digests right, the disk qemu-img\'s, import guidance',
  async (t) => {
    const dir = h.tempDir(t);
    const {qcow2, raw} = h.makeFixture(dir);
    const browser = await h.launch(t);
    const query = `?seed=${h.SEED}&epoch=${h.EPOCH}`;
    const {page, errors} = await h.openPage(t, browser, 'http', {query, esxi: 'ova'});
    await h.pick(page, [qcow2]);
    const out = await h.clickAndDownload(page, 'OVA for VMware ESXi', dir);
    assert.equal(out.name, 'guest.ova');
    assert.match(await page.locator('#guidance').innerText(), /Deploy OVF Template/);
    // Verify reads the disk inside the downloaded OVA back in place.
    await page.getByRole('button', {name: 'Verify the saved file'}).click();
    await page.locator('#verdict').filter({hasText: /identical|differs/}).waitFor({timeout: 60_000});
    assert.match(await page.locator('#verdict').innerText(), /^Verified: guest\.ova .*\(identical\)\.$/);

    const members = untar(readFileSync(out.path));
    assert.deepEqual(members.map((m) => m.name), ['guest.ovf', 'guest-disk1.vmdk', 'guest.mf']);
    const manifest = members[2].data.toString('utf8').trim().split('\n');
    assert.deepEqual(manifest, members.slice(0, 2).map((m) =>
      `SHA256(${m.name})= ${createHash('sha256').update(m.data).digest('hex')}`));
    const disk = h.join(dir, 'disk.vmdk');
    writeFileSync(disk, members[1].data);
    h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vmdk', raw, disk]);

    h.run('mkdir', ['-p', h.join(dir, 'cli')]);
    const reference = h.join(dir, 'cli', 'guest.ova');
    const options = await page.locator('#vmdk-options').inputValue();
    const cli = h.cli(['convert', '-O', 'ova', '-o', options, qcow2, reference]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.ok(h.sameBytes(out.path, reference), 'the page and the CLI wrote different OVAs');

    // With the save picker the OVA is staged in OPFS, copied to the picked file, and the staging file removed.
    const picked = await h.openPage(t, browser, 'http', {query, esxi: 'ova', picker: 'opfs'});
    await h.pick(picked.page, [qcow2]);
    await picked.page.getByRole('button', {name: 'OVA for VMware ESXi'}).click();
    await picked.page.locator('#result').filter({hasText: 'Saved guest.ova'}).waitFor({timeout: 120_000});
    assert.deepEqual(await h.opfsNames(picked.page), ['guest.ova']);
    const copy = h.join(dir, 'picked.ova');
    await h.saveOpfsFile(picked.page, 'guest.ova', copy);
    assert.ok(h.sameBytes(copy, reference), 'the picked file differs from the CLI\'s OVA');
    assert.deepEqual([...errors, ...picked.errors], []);
  });

test('file://: no OPFS, so the OVA choice is off with a note, and the ESXi button writes the VMDK', async (t) => {
  const browser = await h.launch(t);
  const {page} = await h.openPage(t, browser, 'file');
  await page.locator('#ova-note').waitFor();
  assert.equal(await page.getByRole('radio', {name: 'OVA (recommended)'}).isDisabled(), true);
  assert.equal(await page.getByRole('radio', {name: 'VMDK only'}).isChecked(), true);
  assert.equal(await page.getByRole('button', {name: 'VMDK for VMware ESXi'}).isVisible(), true);
});
