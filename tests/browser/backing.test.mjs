// An overlay qcow2 whose data continues in a backing file: the page asks for the backing file by name, takes
// it from a second pick (or from the same pick), and converts the whole chain as the CLI does.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

/** base.qcow2 (the fixture's data) and overlay.qcow2 on top of it with one MiB changed, plus the merged raw. */
function makeChain(dir) {
  const {qcow2: base} = h.makeFixture(dir, 'base');
  const overlay = h.join(dir, 'overlay.qcow2');
  h.run('qemu-img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', overlay], {cwd: dir});
  h.run('qemu-io', ['-f', 'qcow2', '-c', `write -P 0x5a 8M 1M`, overlay]);
  const merged = h.join(dir, 'merged.img');
  h.run('qemu-img', ['convert', '-O', 'raw', overlay, merged]);
  return {base, overlay, merged};
}

for (const mode of ['http', 'file']) {
  test(`${mode}: an overlay asks for its backing file and converts with it`, async (t) => {
    const dir = h.tempDir(t);
    const {base, overlay, merged} = makeChain(dir);
    const browser = await h.launch(t);
    const {page, errors} = await h.openPage(t, browser, mode, {query: `?seed=${h.SEED}&epoch=${h.EPOCH}`});
    await h.pick(page, [overlay]);
    await page.getByText('"base.qcow2"').waitFor();
    assert.equal(await page.getByRole('button', {name: 'VHDX for Hyper-V'}).isDisabled(), true);
    // The overlay's own header is shown already; what needs the whole chain waits for the backing file.
    const alone = await page.locator('#info-list').innerText();
    assert.match(alone, /Virtual size\s+24\.0 MiB\s[^]*Allocated data\s+known once the backing file is picked/);

    await page.getByLabel('Backing file', {exact: true}).setInputFiles(base);
    await page.locator('#backing').waitFor({state: 'hidden'});
    assert.equal(await page.locator('#info-name').innerText(), 'overlay.qcow2');
    assert.match(await page.locator('#info-list').innerText(), /Virtual size\s+24\.0 MiB/);
    const out = await h.clickAndDownload(page, 'VHDX for Hyper-V', dir);
    assert.equal(out.name, 'overlay.vhdx');
    h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', merged, out.path]);
    h.run('mkdir', ['-p', h.join(dir, 'cli')]);
    const reference = h.join(dir, 'cli', 'overlay.vhdx');
    const cli = h.cli(['convert', '-O', 'vhdx', overlay, reference]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.ok(h.sameBytes(out.path, reference), 'the page and the CLI wrote different bytes');

    // A backing file downloaded under another name, picked in the backing-file field, stands in for base.qcow2.
    const renamed = h.join(dir, 'cli', 'downloaded-base.qcow2');
    h.run('cp', [base, renamed]);
    await h.pick(page, [overlay]);
    await page.getByLabel('Backing file', {exact: true}).setInputFiles(renamed);
    await page.locator('#backing').waitFor({state: 'hidden'});
    const again = await h.clickAndDownload(page, 'VHDX for Hyper-V', dir);
    assert.ok(h.sameBytes(again.path, reference), 'the renamed backing file gave other bytes');

    // Both picked at once, in either order: the overlay is the one the other does not back.
    await h.pick(page, [base, overlay]);
    assert.equal(await page.locator('#info-name').innerText(), 'overlay.qcow2');
    assert.equal(await page.locator('#backing').isHidden(), true);
    assert.deepEqual(errors, []);
  });
}
