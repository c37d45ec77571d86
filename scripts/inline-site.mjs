// Assembles dist/index.html from index.html, www/ and the wasm-bindgen output: everything inlined, workers
// started from blob: URLs, and a Content-Security-Policy that allows exactly these inline parts and no network.
// Beside it go the files only a hosted page uses (service worker, manifest, icons); index.html alone still works.
// Usage: node scripts/inline-site.mjs <wasm-bindgen out dir> <its +simd128 twin> <output html>
import {createHash} from 'node:crypto';
import {copyFileSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {crc32, deflateSync} from 'node:zlib';

const [bindgenDir, simdDir, outFile] = process.argv.slice(2);
const read = (path) => readFileSync(path, 'utf8');

// Both builds go in, as the page picks by what the browser supports; build-site has checked that their glue is
// the same. Workers get the glue, the message shapes and their own code as one classic script each.
const workerSource = (file) => [read(`${bindgenDir}/diskbridge.js`), read('www/protocol.js'), read(file)].join('\n');
const build = {
  wasm: {
    simd: readFileSync(`${simdDir}/diskbridge_bg.wasm`).toString('base64'),
    plain: readFileSync(`${bindgenDir}/diskbridge_bg.wasm`).toString('base64'),
  },
  worker: workerSource('www/worker.js'),
  encoder: workerSource('www/encoder.js'),
};
// The page's own scripts, in order: the message shapes, one string table per language, the First login
// section, the UI.
const pageScripts = ['www/protocol.js', 'www/i18n/en.js', 'www/i18n/ja.js', 'www/login.js', 'www/app.js'];
// JSON with '<' escaped cannot end the <script> element early, whatever the sources contain.
const script = [
  `const DISKBRIDGE = ${JSON.stringify(build).replace(/</g, '\\u003c')};`,
  ...pageScripts.map(read),
].join('\n');
const style = read('www/style.css');
for (const name of [...pageScripts, 'www/style.css']) {
  if (/<\/(script|style)/i.test(read(name))) {
    throw new Error(`${name} contains a closing tag that would end its element`);
  }
}

const hash = (text) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
const csp = [
  "default-src 'none'",
  `script-src ${hash(script)} 'wasm-unsafe-eval'`,
  // 'self': the hosted page's service worker (sw.js); a saved page never registers one.
  "worker-src blob: 'self'",
  "manifest-src 'self'",
  // 'self': the hidden frame that starts a download the service worker streams (download/<id>/<name>).
  "frame-src 'self'",
  `style-src ${hash(style)}`,
  "connect-src 'none'",
  // 'self': the manifest's icons, which Chromium loads under the page's policy to make it installable.
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

const page = read('index.html');
const parts = {
  '<!--CSP-->': `<meta http-equiv="Content-Security-Policy" content="${csp}">`,
  '<!--STYLE-->': `<style>${style}</style>`,
  '<!--SCRIPTS-->': `<script>${script}</script>`,
};
let html = page;
for (const [marker, replacement] of Object.entries(parts)) {
  if (html.split(marker).length !== 2) throw new Error(`index.html must contain ${marker} exactly once`);
  html = html.replace(marker, () => replacement);
}
const outDir = dirname(outFile);
mkdirSync(outDir, {recursive: true});
writeFileSync(outFile, html);
console.log(`${outFile}: ${(html.length / 1024).toFixed(0)} KiB`);

// The service worker's cache is named after this build, so a new deployment replaces the old cache.
const buildId = createHash('sha256').update(html).digest('hex').slice(0, 16);
writeFileSync(join(outDir, 'sw.js'), read('www/sw.js').replace("'diskbridge-BUILD'", `'diskbridge-${buildId}'`));
copyFileSync('www/manifest.webmanifest', join(outDir, 'manifest.webmanifest'));
copyFileSync('www/icon.svg', join(outDir, 'icon.svg'));
for (const size of [192, 512]) writeFileSync(join(outDir, `icon-${size}.png`), iconPng(size));

/** icon.svg's drawing as a `size`-pixel PNG (Chromium's install prompt wants a raster icon as well). */
function iconPng(size) {
  // On icon.svg's 64-unit grid: a blue rounded square, two white drive bays, each with a blue light.
  const inRect = (x, y, left, top, w, h, r) => {
    const dx = Math.max(left + r - x, 0, x - (left + w - r));
    const dy = Math.max(top + r - y, 0, y - (top + h - r));
    return x >= left && x < left + w && y >= top && y < top + h && dx * dx + dy * dy <= r * r;
  };
  const color = (x, y) => {
    if ((x - 46) ** 2 + (y - 21) ** 2 <= 9 || (x - 46) ** 2 + (y - 43) ** 2 <= 9) return [0x25, 0x63, 0xeb, 255];
    if (inRect(x, y, 10, 14, 44, 14, 3) || inRect(x, y, 10, 36, 44, 14, 3)) return [255, 255, 255, 255];
    if (inRect(x, y, 0, 0, 64, 64, 12)) return [0x25, 0x63, 0xeb, 255];
    return [0, 0, 0, 0];
  };
  const rows = Buffer.alloc(size * (size * 4 + 1));
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      rows.set(color(((x + 0.5) * 64) / size, ((y + 0.5) * 64) / size), y * (size * 4 + 1) + 1 + x * 4);
    }
  }
  const chunk = (type, data) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length);
    head.write(type, 4, 'latin1');
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])));
    return Buffer.concat([head, data, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 6, 0, 0, 0], 8); // 8-bit RGBA, no interlace
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const chunks = [chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))];
  return Buffer.concat([signature, ...chunks]);
}
