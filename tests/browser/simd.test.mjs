// The page carries the core twice, built with and without wasm SIMD: Chromium gets the SIMD build, and a browser
// without SIMD (stood in for below) gets the plain one and still converts to the CLI's bytes.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

/** Whether a compiled module was built with +simd128 (rustc's `target_features` section: '+', length, name). */
function usesSimd(module) {
  return WebAssembly.Module.customSections(module, 'target_features')
    .some((section) => new TextDecoder().decode(section).includes('+\x07simd128'));
}

/** In the page, before its scripts: the probe fails and a module using SIMD does not compile, as without SIMD. */
function withoutSimd(simd) {
  const compile = WebAssembly.compile;
  WebAssembly.validate = () => false;
  WebAssembly.compile = async (bytes) => {
    const module = await compile(bytes);
    if (simd(module)) throw new WebAssembly.CompileError('this browser has no wasm SIMD');
    return module;
  };
}

for (const mode of ['http', 'file']) {
  test(`${mode}: Chromium runs the SIMD build, and only that build uses SIMD`, async (t) => {
    const browser = await h.launch(t);
    const {page, errors} = await h.openPage(t, browser, mode);
    assert.equal(await page.evaluate(() => window.diskbridgeSimd), true);
    const wasm = await page.evaluate(() => DISKBRIDGE.wasm);
    assert.equal(usesSimd(new WebAssembly.Module(Buffer.from(wasm.simd, 'base64'))), true);
    assert.equal(usesSimd(new WebAssembly.Module(Buffer.from(wasm.plain, 'base64'))), false);
    assert.deepEqual(errors, []);
  });
}

test('file: without wasm SIMD the plain build converts compressed qcow2 → VMDK to the CLI\'s bytes', async (t) => {
  const dir = h.tempDir(t);
  const {compressed, raw} = h.makeFixture(dir);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'file',
    {query: `?seed=${h.SEED}&epoch=${h.EPOCH}`, init: `(${withoutSimd})(${usesSimd});`});
  assert.equal(await page.evaluate(() => window.diskbridgeSimd), false);
  await h.pick(page, [compressed]);
  const out = await h.clickAndDownload(page, 'VMDK for VMware ESXi', dir);

  h.run('mkdir', ['-p', h.join(dir, 'cli')]);
  const reference = h.join(dir, 'cli', out.name);
  const options = 'adapter_type=lsilogic,subformat=streamOptimized,compat6';
  const cli = h.cli(['convert', '-f', 'qcow2', '-O', 'vmdk', '-o', options, compressed, reference]);
  assert.equal(cli.status, 0, cli.stderr);
  assert.ok(h.sameBytes(out.path, reference), 'the page and the CLI wrote different bytes');
  h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'vmdk', raw, out.path]);
  assert.deepEqual(errors, []);
});
