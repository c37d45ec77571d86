// Converts qemu-img-made images through the real page, served over http and opened from file://, and checks the
// output with qemu-img and against the CLI's output for the same input, options, seed, epoch and name.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const VMDK_OPTIONS = 'adapter_type=lsilogic,subformat=streamOptimized,compat6';
const CASES = [
  {format: 'vmdk', button: 'VMDK for VMware ESXi', ext: 'vmdk', options: VMDK_OPTIONS},
  {format: 'vhdx', button: 'VHDX for Hyper-V', ext: 'vhdx', options: ''},
  {format: 'raw', button: 'Raw disk image (.img)', ext: 'img', options: '', advanced: true},
];

for (const mode of ['http', 'file']) {
  for (const input of ['raw', 'qcow2']) {
    for (const c of CASES) {
      test(`${mode}: ${input} → ${c.format} matches the CLI byte for byte and qemu-img's reading`, async (t) => {
        const dir = h.tempDir(t);
        const fixture = h.makeFixture(dir);
        const source = fixture[input];
        const browser = await h.launch(t);
        const {page, errors} = await h.openPage(t, browser, mode, {query: `?seed=${h.SEED}&epoch=${h.EPOCH}`});
        await h.pick(page, [source]);
        assert.equal(await page.locator('#error').isHidden(), true, await page.locator('#error').innerText());
        if (c.advanced) await page.getByText('Advanced options').click();
        const out = await h.clickAndDownload(page, c.button, dir);
        assert.equal(out.name, `guest.${c.ext}`);
        assert.match(await page.locator('#result').innerText(), /^Saved guest\./);

        const reference = h.join(dir, 'cli', out.name);
        const args = ['convert', '-f', input, '-O', c.format, ...(c.options ? ['-o', c.options] : []), source, reference];
        h.run('mkdir', ['-p', h.join(dir, 'cli')]);
        const cli = h.cli(args);
        assert.equal(cli.status, 0, cli.stderr);
        assert.ok(h.sameBytes(out.path, reference), 'the page and the CLI wrote different bytes');

        if (c.format !== 'raw') h.run('qemu-img', ['check', '-f', c.format, out.path]);
        h.run('qemu-img', ['compare', '-f', 'raw', '-F', c.format, fixture.raw, out.path]);
        assert.deepEqual(errors, []);
      });
    }
  }
}
