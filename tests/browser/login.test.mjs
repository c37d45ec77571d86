// The First login section in Chromium: each wrong field refused at the field before anything starts, in both
// languages; nothing typed kept anywhere; the disk size growing the output; the seed disk through the save
// picker. (The seed disk and the OVA carrying it are compared with the CLI in every engine: engines.test.mjs.)
import assert from 'node:assert/strict';
import {writeFileSync} from 'node:fs';
import {test} from 'node:test';
import * as h from './helpers.mjs';

const PRIVATE_KEY = ['-----BEGIN OPENSSH PRIVATE KEY-----', 'b3BlbnNzaC1rZXktdjEAAAAA',
  '-----END OPENSSH PRIVATE KEY-----', ''].join('\n');
const FIELDS = ['hostname', 'ssh-keys', 'password', 'user-data', 'disk-size'];

/** The visible field errors, as {id: text}. */
function fieldErrors(page) {
  return page.evaluate((ids) => Object.fromEntries(ids.map((id) => [id, document.getElementById(`${id}-error`)])
    .filter(([, el]) => !el.hidden).map(([id, el]) => [id, el.innerText])), FIELDS);
}

test('a bad host name, a pasted private key, a size below the source and a user-data file setting the host name ' +
  'too each get one clear error at their field, and nothing starts', async (t) => {
  const dir = h.tempDir(t);
  const {qcow2} = h.makeFixture(dir);
  const userData = h.join(dir, 'user-data');
  writeFileSync(userData, '#cloud-config\nhostname: other\n');
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http');
  let downloads = 0;
  page.on('download', () => downloads++);
  await h.pick(page, [qcow2]);
  assert.match(await page.locator('#disk-size-hint').innerText(), /^Empty: the same size as the source \(24\.0 MiB\)/);
  const cases = [
    {id: 'hostname', fill: () => page.getByLabel('Host name').fill('web_1'),
      error: /^This host name cannot be used: 'web_1' is not a valid host name: .+\.$/},
    {id: 'ssh-keys', fill: () => page.getByLabel('SSH public keys').fill(PRIVATE_KEY),
      error: /^These are not SSH public keys: This is a private key; give its public key \(the \.pub file\)/},
    // Each field is good alone; together they set the host name twice.
    {id: 'user-data', fill: async () => {
      await page.getByLabel('Host name').fill('web-1');
      await page.getByLabel('Your own user-data file (optional)').setInputFiles(userData);
    }, error: /^This user-data file cannot be used: The user data sets 'hostname' itself/},
    {id: 'disk-size', fill: async () => {
      await page.getByRole('spinbutton', {name: 'Disk size'}).fill('16');
      await page.getByRole('combobox', {name: 'Disk size Unit'}).selectOption('MiB');
    }, error: /^The disk size 16 MiB is smaller than the source's 24\.0 MiB: a disk can only be made larger\.$/},
  ];
  for (const c of cases) {
    await page.getByRole('button', {name: 'Clear these fields'}).click();
    assert.deepEqual(await fieldErrors(page), {});
    await c.fill();
    await page.getByRole('button', {name: 'VHDX for Hyper-V'}).click();
    await page.locator(`#${c.id}-error:not([hidden])`).waitFor();
    const shown = await fieldErrors(page);
    assert.deepEqual(Object.keys(shown), [c.id]);
    assert.match(shown[c.id], c.error);
    // Marked invalid, described by its error, and focused, so a screen reader reads the error out.
    const field = page.locator(`#${c.id}`);
    assert.equal(await field.getAttribute('aria-invalid'), 'true');
    assert.match(await field.getAttribute('aria-describedby'), new RegExp(`\\b${c.id}-error\\b`));
    assert.equal(await page.evaluate(() => document.activeElement.id), c.id);
    // The only message: no alert, no progress, no result.
    assert.equal(await page.locator('#error').isHidden(), true);
    assert.equal(await page.locator('#progress').isHidden(), true);
    assert.equal(await page.locator('#result').innerText(), '');
  }
  // A corrected field loses its error as soon as it changes; the error is in the page's language.
  await page.getByRole('button', {name: '日本語'}).click();
  assert.match(await page.locator('#disk-size-error').innerText(),
    /^ディスクサイズ 16 MiB は変換元の 24\.0 MiB より小さく/);
  await page.getByRole('spinbutton', {name: 'ディスクサイズ'}).fill('');
  await page.getByRole('spinbutton', {name: 'ディスクサイズ'}).dispatchEvent('change');
  assert.deepEqual(await fieldErrors(page), {});
  assert.equal(await page.locator('#disk-size').getAttribute('aria-invalid'), null);
  await page.waitForTimeout(500);
  assert.equal(downloads, 0);
  assert.deepEqual(errors, []);
});

test('nothing typed in the First login section is stored: a password field, no web storage, no IndexedDB, ' +
  'no cookie, empty after a reload', async (t) => {
  const dir = h.tempDir(t);
  const {qcow2} = h.makeFixture(dir);
  const login = h.loginFixture(dir);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http');
  const stored = () => page.evaluate(async () => ({
    local: localStorage.length, session: sessionStorage.length, cookie: document.cookie,
    indexedDB: (await indexedDB.databases()).map((d) => d.name),
  }));
  const before = await stored();
  assert.deepEqual(before, {local: 0, session: 0, cookie: '', indexedDB: []});
  assert.equal(await page.getByLabel('Password for the default user').getAttribute('type'), 'password');
  await h.pick(page, [qcow2]);
  await page.getByLabel('Host name').fill(login.hostname);
  await page.getByLabel('SSH public keys').fill(login.key);
  await page.getByLabel('Password for the default user').fill(login.password);
  await page.getByLabel('Your own user-data file (optional)').setInputFiles(login.files.userData);
  await page.getByRole('spinbutton', {name: 'Disk size'}).fill('32');
  await page.getByRole('combobox', {name: 'Disk size Unit'}).selectOption('MiB');
  assert.equal((await h.clickAndDownload(page, 'qcow2 for OpenStack', dir)).name, 'guest.qcow2');
  assert.equal((await h.clickAndDownload(page, 'Save the seed disk (guest-seed.qcow2)', dir)).name,
    'guest-seed.qcow2');
  assert.deepEqual(await stored(), before);
  await page.reload();
  await page.locator('#storage-note:not([hidden])').waitFor();
  const values = await page.evaluate((ids) => ids.map((id) => document.getElementById(id).value), FIELDS);
  assert.deepEqual(values, ['', '', '', '', '']);
  assert.deepEqual(await stored(), before);
  assert.deepEqual(errors, []);
});

test('a disk size grows the output: the CLI\'s bytes for -o size=, qemu-img reads the new size', async (t) => {
  const dir = h.tempDir(t);
  const {qcow2, raw} = h.makeFixture(dir);
  const browser = await h.launch(t);
  const {page, errors} = await h.openPage(t, browser, 'http', {query: `?seed=${h.SEED}&epoch=${h.EPOCH}`});
  await h.pick(page, [qcow2]);
  await page.getByRole('spinbutton', {name: 'Disk size'}).fill('0.0625');
  const out = await h.clickAndDownload(page, 'qcow2 for OpenStack', dir);
  const info = JSON.parse(h.run('qemu-img', ['info', '--output=json', '-f', 'qcow2', out.path]));
  assert.equal(info['virtual-size'], 64 << 20);
  // The source's bytes, then zeros.
  h.run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, out.path]);
  h.run('mkdir', ['-p', h.join(dir, 'cli')]);
  const reference = h.join(dir, 'cli', 'guest.qcow2');
  const cli = h.cli(['convert', '-O', 'qcow2', '-o', 'size=64M', qcow2, reference]);
  assert.equal(cli.status, 0, cli.stderr);
  assert.ok(h.sameBytes(out.path, reference), 'the page and the CLI wrote different bytes');
  // No seed disk is offered without a login.
  assert.equal(await page.locator('#seed').isHidden(), true);
  assert.deepEqual(errors, []);
});

test('save picker: the seed disk beside a VMDK is written to its picked file, diskbridge seed\'s bytes',
  async (t) => {
    const dir = h.tempDir(t);
    const {qcow2} = h.makeFixture(dir);
    const login = h.loginFixture(dir);
    const browser = await h.launch(t);
    const query = `?seed=${h.SEED}&epoch=${h.EPOCH}`;
    const {page, errors} = await h.openPage(t, browser, 'http', {query, picker: 'opfs'});
    await h.pick(page, [qcow2]);
    await page.getByLabel('Host name').fill(login.hostname);
    await page.getByLabel('Or pick .pub files (they are added to the keys above)').setInputFiles(login.files.key);
    await page.waitForFunction((key) => document.getElementById('ssh-keys').value === key, login.key);
    await page.getByRole('button', {name: 'VMDK for VMware ESXi'}).click();
    await page.locator('#result').filter({hasText: 'Saved guest.vmdk'}).waitFor({timeout: 120_000});
    const attach = 'vmkfstools -i guest-seed.vmdk -d thin guest-seed-esxi.vmdk) and add guest-seed-esxi.vmdk to the VM ' +
      'as a second hard disk';
    assert.ok((await page.locator('#seed').innerText()).includes(attach));
    await page.getByRole('button', {name: 'Save the seed disk (guest-seed.vmdk)'}).click();
    await page.locator('#seed-result').filter({hasText: 'Saved guest-seed.vmdk'}).waitFor();
    assert.deepEqual((await h.opfsNames(page)).sort(), ['guest-seed.vmdk', 'guest.vmdk']);
    const saved = h.join(dir, 'page-seed.vmdk');
    await h.saveOpfsFile(page, 'guest-seed.vmdk', saved);
    h.run('mkdir', ['-p', h.join(dir, 'cli')]);
    const reference = h.join(dir, 'cli', 'guest-seed.vmdk');
    const flags = ['--hostname', login.hostname, '--ssh-key', login.files.key];
    const cli = h.cli(['seed', ...flags, reference]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.ok(h.sameBytes(saved, reference), 'the seed disk differs from diskbridge seed\'s');
    // The FAT volume labelled CIDATA, as cloud-init looks for it.
    const rawSeed = h.join(dir, 'seed.img');
    h.run('qemu-img', ['convert', '-O', 'raw', saved, rawSeed]);
    assert.match(h.run('/sbin/blkid', ['-p', rawSeed]), /LABEL="CIDATA"/);
    assert.deepEqual(errors, []);
  });
