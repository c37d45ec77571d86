// What a person does besides clicking: dropping files on the page, working it by keyboard, and a bad URL.
import assert from 'node:assert/strict';
import {test} from 'node:test';
import * as h from './helpers.mjs';

test('files dropped anywhere on the page are picked', async (t) => {
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http');
  await page.evaluate(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(3 << 20).fill(7)], 'dropped.img'));
    document.querySelector('h1').dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
  });
  await page.locator('#info:not([hidden])').waitFor();
  assert.equal(await page.locator('#info-name').innerText(), 'dropped.img');
  assert.match(await page.locator('#info-list').innerText(), /Virtual size\s+3\.00 MiB/);
  assert.equal(await page.getByRole('button', {name: 'VHDX for Hyper-V'}).isEnabled(), true);
  assert.deepEqual(errors, []);
});

test('the whole flow works from the keyboard', async (t) => {
  const dir = h.tempDir(t);
  const {qcow2} = h.makeFixture(dir);
  const browser = await h.launch(t);
  const {page} = await h.openPage(t, browser, 'http');
  await h.pick(page, [qcow2]);
  await page.locator('#file').focus();
  let focused = '';
  for (let i = 0; i < 20 && focused !== 'VMDK for VMware ESXi'; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement.textContent.trim());
  }
  assert.equal(focused, 'VMDK for VMware ESXi');
  const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
  assert.equal(download.suggestedFilename(), 'guest.vmdk');
  // The advanced options open from the keyboard too.
  await page.locator('summary').focus();
  await page.keyboard.press('Enter');
  assert.equal(await page.getByLabel('VMDK options').isVisible(), true);
});

test('a seed in the URL that is not a number is refused with a clear error', async (t) => {
  const browser = await h.launch(t);
  const {page} = await h.openPage(t, browser, 'http', {query: '?seed=abc'});
  await page.getByRole('button', {name: 'Empty 64 KiB VMDK'}).click();
  await page.getByRole('alert').waitFor();
  assert.match(await page.getByRole('alert').innerText(), /invalid-argument[\s\S]*seed= must be a whole number/);
});

test('an OPFS output over 1 GiB asks for persistent storage first; a small one does not', async (t) => {
  const dir = h.tempDir(t);
  const {raw} = h.makeFixture(dir, 'small', 8);
  const large = h.join(dir, 'large.qcow2');
  h.run('qemu-img', ['create', '-f', 'qcow2', large, '1100M']);
  const browser = await h.launch(t);
  // The picker hidden and the service worker blocked: the page's path in Firefox from a saved page.
  const {page} = await h.openPage(t, browser, 'http', {init: () => {
    window.persistAsked = 0;
    navigator.storage.persisted = async () => false;
    navigator.storage.persist = async () => {
      window.persistAsked++;
      return false;
    };
  }});
  await h.pick(page, [raw]);
  await page.getByText('Advanced options').click();
  await h.clickAndDownload(page, 'Raw disk image (.img)', dir);
  assert.equal(await page.evaluate(() => window.persistAsked), 0);
  await h.pick(page, [large]);
  await page.getByRole('button', {name: 'Raw disk image (.img)'}).click();
  await page.waitForFunction(() => window.persistAsked === 1);
  // Nothing is allocated, so the conversion ends at once, whether or not this context's storage holds 1.1 GiB.
  await page.locator('#result:not(:empty), #error:not([hidden])').first().waitFor();
});
