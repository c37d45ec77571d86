// Japanese and English: the same keys in both tables, the page in the browser's language, a switch that is
// remembered, and the buttons' names with "VMDK", "VHDX" and "64 KiB" in both.
import assert from 'node:assert/strict';
import {readFileSync} from 'node:fs';
import {test} from 'node:test';
import {runInNewContext} from 'node:vm';
import * as h from './helpers.mjs';

const read = (path) => readFileSync(h.join(h.ROOT, path), 'utf8');
const TABLES = runInNewContext(`${read('www/i18n/en.js')}\n${read('www/i18n/ja.js')}\n({en: TEXT_EN, ja: TEXT_JA})`);

/** Every key path in `table` with its type ('string', 'function' or, for nested tables, their own keys). */
function shape(table, prefix = '') {
  return Object.entries(table).flatMap(([key, value]) => (typeof value === 'object'
    ? shape(value, `${prefix}${key}.`) : [`${prefix}${key}: ${typeof value}`])).sort();
}

test('both languages have the same keys, and every key the page uses exists', () => {
  const en = shape(TABLES.en);
  const ja = shape(TABLES.ja);
  assert.deepEqual(en.filter((k) => !ja.includes(k)), [], 'missing in ja.js');
  assert.deepEqual(ja.filter((k) => !en.includes(k)), [], 'missing in en.js');
  const used = [
    ...[...read('index.html').matchAll(/data-(?:text|placeholder)="([^"]+)"/g)].map((m) => `page.${m[1]}`),
    ...['www/app.js', 'www/login.js'].flatMap((file) => [...read(file).matchAll(/\bTEXT((?:\.\w+)+)/g)])
      .map((m) => m[1].slice(1)),
  ];
  assert.ok(used.length > 40, `only ${used.length} uses found`);
  for (const path of used) {
    for (const [language, table] of Object.entries(TABLES)) {
      assert.notEqual(path.split('.').reduce((t, key) => t?.[key], table), undefined, `${language}: ${path}`);
    }
  }
});

test('the buttons\' names contain OVA, VMDK, VHDX, VHD and 64 KiB in both languages', () => {
  for (const table of Object.values(TABLES)) {
    assert.match(table.page.toOva, /OVA/);
    assert.match(table.page.toVmdk, /VMDK/);
    assert.match(table.page.toVhdx, /VHDX/);
    assert.match(table.page.toAzure, /^(VHD for Azure|Azure 用 VHD)$/);
    assert.match(table.page.toXen, /VHD/);
    assert.match(table.page.emptyVmdk, /64 KiB VMDK/);
  }
});

test('a Japanese browser gets the Japanese page, and the empty 64 KiB VMDK downloads from it', async (t) => {
  const dir = h.tempDir(t);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {locale: 'ja-JP'});
  assert.equal(await page.locator('html').getAttribute('lang'), 'ja');
  assert.equal(await page.getByRole('heading', {level: 2}).first().innerText(), '1. 仮想ディスクイメージを選ぶ');
  assert.equal(await page.getByRole('button', {name: 'Hyper-V 用 VHDX'}).isVisible(), true);
  assert.match(await page.title(), /仮想ディスク/);
  const out = await h.clickAndDownload(page, '空の 64 KiB VMDK', dir);
  assert.equal(out.name, '64KiB.vmdk');
  assert.equal(JSON.parse(h.run('qemu-img', ['info', '--output=json', out.path]))['virtual-size'], 65536);
  const saved = /^64KiB\.vmdk（[\d.]+ KiB）を [\d.]+ 秒で保存しました/;
  assert.match(await page.locator('#result').innerText(), saved);
  assert.deepEqual(errors, []);
});

for (const mode of ['http', 'file']) {
  test(`${mode}: English for an English browser; the switch changes all text, remembered`, async (t) => {
    const browser = await h.launch(t);
    const {page, errors} = await h.openPage(t, browser, mode, {locale: 'en-US'});
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    assert.equal(await page.getByRole('button', {name: 'VMDK for VMware ESXi'}).isVisible(), true);
    // Info already shown is redrawn in the new language too.
    await page.setInputFiles('#file', {name: 'd.img', mimeType: 'application/octet-stream',
      buffer: Buffer.alloc(1 << 20)});
    await page.locator('#info:not([hidden])').waitFor();
    await page.getByRole('button', {name: '日本語'}).click();
    assert.equal(await page.locator('html').getAttribute('lang'), 'ja');
    assert.equal(await page.getByRole('button', {name: 'VMware ESXi 用 VMDK'}).isVisible(), true);
    assert.match(await page.locator('#info-list').innerText(), /仮想サイズ\s+1\.00 MiB/);
    assert.match(await page.locator('#storage-note').innerText(), /ブラウザー/);
    assert.equal(await page.getByRole('button', {name: '日本語'}).getAttribute('aria-pressed'), 'true');
    await page.reload();
    assert.equal(await page.locator('html').getAttribute('lang'), 'ja');
    assert.equal(await page.getByRole('button', {name: '空の 64 KiB VMDK'}).isVisible(), true);
    await page.getByRole('button', {name: 'English'}).click();
    assert.equal(await page.getByRole('button', {name: 'Empty 64 KiB VMDK'}).isVisible(), true);
    assert.deepEqual(errors, []);
  });
}
