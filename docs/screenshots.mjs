// Takes the README's screenshots of the page, in English and Japanese: a hybrid GPT image picked, a first login
// entered, converted to VHDX (with the Hyper-V guidance and the seed disk offered) and verified. Run after ./scripts/build-site: node docs/screenshots.mjs
// The Japanese one needs a Japanese font for Chromium (Debian: apt-get install fonts-ipafont-gothic).
import * as h from '../tests/browser/helpers.mjs';

// helpers.mjs cleans up through a test context's after(); here that is the end of the script.
const cleanups = [];
const t = {after: (fn) => cleanups.push(fn)};
try {
  const dir = h.tempDir(t);
  const disk = h.join(dir, 'ubuntu-cloud.img');
  h.run('qemu-img', ['create', '-f', 'raw', disk, '64M']);
  const gpt = ['label: gpt', 'size=1MiB, type=21686148-6449-6E6F-744E-656564454649',
    'size=8MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B', 'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4'];
  h.run('/usr/sbin/sfdisk', ['--quiet', disk], {input: gpt.join('\n'), stdio: 'pipe'});
  // Boot code in the protective MBR, as GRUB puts there: the image boots with BIOS and UEFI.
  h.run('dd', ['if=/dev/urandom', `of=${disk}`, 'bs=440', 'count=1', 'conv=notrunc', 'status=none']);
  const login = h.loginFixture(dir);
  const browser = await h.launch(t);
  for (const [locale, file, verify] of [['en-US', 'page-en.png', 'Verify the saved file'],
    ['ja-JP', 'page-ja.png', '保存したファイルを検証']]) {
    const {page} = await h.openPage(t, browser, 'http', {locale, esxi: 'ova'});
    await page.setViewportSize({width: 900, height: 900});
    await h.pick(page, [disk]);
    await page.locator('#hostname').fill(login.hostname);
    await page.locator('#ssh-keys').fill(login.key);
    await h.clickAndDownload(page, /VHDX/, dir);
    await page.getByRole('button', {name: verify}).click();
    await page.locator('#verdict').filter({hasText: /identical/}).waitFor();
    await page.screenshot({path: h.join(h.ROOT, 'docs', file), fullPage: true});
    console.log(`docs/${file}`);
  }
} finally {
  for (const fn of cleanups.reverse()) await fn();
}
