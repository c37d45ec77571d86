// Converts qemu-img-made images through the real page, served over http and opened from file://, and checks the
// output with qemu-img and against the CLI's output for the same input, options, seed, epoch and name.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const VMDK_OPTIONS = 'adapter_type=lsilogic,subformat=streamOptimized,compat6';
const CASES = [
  {format: 'vmdk', button: 'VMDK for VMware ESXi', ext: 'vmdk', options: VMDK_OPTIONS},
  {format: 'vhdx', button: 'VHDX for Hyper-V', ext: 'vhdx', options: ''},
  {format: 'qcow2', button: 'qcow2 for OpenStack', ext: 'qcow2', options: ''},
  {format: 'raw', button: 'Raw disk image (.img)', ext: 'img', options: '', advanced: true},
];

for (const mode of ['http', 'file']) {
  for (const input of ['raw', 'qcow2', 'compressed']) {
    for (const c of CASES) {
      test(`${mode}: ${input} → ${c.format} matches the CLI byte for byte and qemu-img's reading`, async (t) => {
        const dir = h.tempDir(t);
        const fixture = h.makeFixture(dir);
        const source = fixture[input];
        const browser = await h.launch(t);
        const {page, errors} = await h.openPage(t, browser, mode, {query: `?seed=${h.SEED}&epoch=${h.EPOCH}`});
        await h.pick(page, [source]);
        assert.equal(await page.locator('#error').isHidden(), true, await page.locator('#error').innerText());
        const info = await page.locator('#info-list').innerText();
        assert.match(info, /Virtual size\s+24\.0 MiB/);
        // A raw file is data throughout; qemu-img's qcow2 allocates only the 4 MiB that hold data.
        assert.match(info, input === 'raw' ? /Allocated data\s+24\.0 MiB/ : /Allocated data\s+4\.00 MiB/);
        const qcow2Facts = /Format\s+qcow2\s[^]*Cluster size\s+64\.0 KiB\s+Compression type\s+zlib/;
        if (input !== 'raw') assert.match(info, qcow2Facts);
        if (c.advanced) await page.getByText('Advanced options').click();
        const out = await h.clickAndDownload(page, c.button, dir);
        const expected = `${h.basename(source).replace(/\.[^.]*$/, '')}.${c.ext}`;
        assert.equal(out.name, expected);
        assert.ok((await page.locator('#result').innerText()).startsWith(`Saved ${expected} `));
        // Every format is read and encoded in the pool (4 MiB of data is two batches: one for each of two
        // encoders), and every worker's wasm memory stays within issue 6's 128 MiB.
        const {memory} = await page.evaluate(() => window.diskbridgeLastRun);
        assert.ok(memory.encoders.length > 0 && memory.encoders.every((bytes) => bytes > 0), JSON.stringify(memory));
        for (const bytes of [memory.coordinator, ...memory.encoders]) assert.ok(bytes <= 128 << 20, `${bytes} bytes`);

        const reference = h.join(dir, 'cli', out.name);
        const options = c.options ? ['-o', c.options] : [];
        const from = input === 'raw' ? 'raw' : 'qcow2';
        const args = ['convert', '-f', from, '-O', c.format, ...options, source, reference];
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

// The path Chromium users take: the save picker's file, written in place with positioned writes. The picker is
// replaced by a function returning an OPFS file handle (same FileSystemFileHandle API, no native dialog).
for (const c of CASES.slice(0, 3)) {
  test(`http, save picker: qcow2 → ${c.format} is written in place, the CLI's bytes`, async (t) => {
    const dir = h.tempDir(t);
    const {qcow2, raw} = h.makeFixture(dir);
    const browser = await h.launch(t);
    const query = `?seed=${h.SEED}&epoch=${h.EPOCH}`;
    const {page, errors} = await h.openPage(t, browser, 'http', {query, picker: 'opfs'});
    await h.pick(page, [qcow2]);
    await page.getByRole('button', {name: c.button, exact: true}).click();
    const name = `guest.${c.ext}`;
    await page.locator('#result').filter({hasText: `Saved ${name}`}).waitFor({timeout: 120_000});
    assert.deepEqual(await h.opfsNames(page), [name]);
    const out = h.join(dir, `page-${name}`);
    await h.saveOpfsFile(page, name, out);

    h.run('mkdir', ['-p', h.join(dir, 'cli')]);
    const reference = h.join(dir, 'cli', name);
    const cli = h.cli(['convert', '-O', c.format, ...(c.options ? ['-o', c.options] : []), qcow2, reference]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.ok(h.sameBytes(out, reference), 'the page and the CLI wrote different bytes');
    h.run('qemu-img', ['compare', '-f', 'raw', '-F', c.format, raw, out]);
    assert.deepEqual(errors, []);
  });
}
