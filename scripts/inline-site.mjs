// Assembles dist/index.html from index.html, www/ and the wasm-bindgen output: everything inlined, workers
// started from blob: URLs, and a Content-Security-Policy that allows exactly these inline parts and no network.
// Usage: node scripts/inline-site.mjs <wasm-bindgen out dir> <output html>
import {createHash} from 'node:crypto';
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs';
import {dirname} from 'node:path';

const [bindgenDir, outFile] = process.argv.slice(2);
const read = (path) => readFileSync(path, 'utf8');

// Workers get the glue, the message shapes and their own code as one classic script each.
const workerSource = (file) => [read(`${bindgenDir}/diskbridge.js`), read('www/protocol.js'), read(file)].join('\n');
const build = {
  wasm: readFileSync(`${bindgenDir}/diskbridge_bg.wasm`).toString('base64'),
  worker: workerSource('www/worker.js'),
  encoder: workerSource('www/encoder.js'),
};
// The page's own scripts, in order: the message shapes, one string table per language, the UI.
const pageScripts = ['www/protocol.js', 'www/i18n/en.js', 'www/i18n/ja.js', 'www/app.js'];
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
  'worker-src blob:',
  `style-src ${hash(style)}`,
  "connect-src 'none'",
  "img-src 'none'",
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
mkdirSync(dirname(outFile), {recursive: true});
writeFileSync(outFile, html);
console.log(`${outFile}: ${(html.length / 1024).toFixed(0)} KiB`);
