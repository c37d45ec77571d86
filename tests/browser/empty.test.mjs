// The one-click empty 64 KiB VMDK: reachable by keyboard, named 64KiB.vmdk, valid for qemu-img, and the same
// bytes as `diskbridge create -f vmdk 64KiB.vmdk 64k` with the same options, seed and epoch.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

for (const mode of ['http', 'file']) {
  test(`${mode}: the Empty 64 KiB VMDK button gives the CLI's empty disk`, async (t) => {
    const dir = h.tempDir(t);
    const browser = await h.launch(t);
    const {page, errors} = await h.openPage(t, browser, mode, {query: `?seed=${h.SEED}&epoch=${h.EPOCH}`});
    const button = page.getByRole('button', {name: 'Empty 64 KiB VMDK'});
    await button.focus();
    const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
    assert.equal(download.suggestedFilename(), '64KiB.vmdk');
    const path = h.join(dir, 'page.vmdk');
    await download.saveAs(path);

    const info = JSON.parse(h.run('qemu-img', ['info', '--output=json', '-f', 'vmdk', path]));
    assert.equal(info['virtual-size'], 65536);
    h.run('qemu-img', ['check', '-f', 'vmdk', path]);
    const options = await page.locator('#vmdk-options').inputValue();
    h.run('mkdir', ['-p', h.join(dir, 'cli')]);
    const reference = h.join(dir, 'cli', '64KiB.vmdk');
    const cli = h.cli(['create', '-f', 'vmdk', '-o', options, reference, '64k']);
    assert.equal(cli.status, 0, cli.stderr);
    assert.ok(h.sameBytes(path, reference), 'the page and the CLI wrote different bytes');
    assert.deepEqual(errors, []);
  });
}
