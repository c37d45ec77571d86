// One small driver over the three engines the page is tested in, so each flow is written once: Chromium through
// playwright-core, Firefox ESR through puppeteer-core over WebDriver BiDi, and WebKitGTK through
// selenium-webdriver with WebKitWebDriver and MiniBrowser under Xvfb — all Debian's own browsers (no browser
// build is downloaded). A page offers goto, evaluate (a function and one JSON argument, run in the page),
// setFiles, click and waitFor; downloads land in the browser's own download folder and are waited for by name.
import {spawn} from 'node:child_process';
import {existsSync, mkdirSync, readdirSync, statSync} from 'node:fs';
import {createServer} from 'node:net';
import {join} from 'node:path';
import {chromium} from 'playwright-core';
import puppeteer from 'puppeteer-core';
import {Builder} from 'selenium-webdriver';

export const ENGINES = ['chromium', 'firefox', 'webkit'];
const MINIBROWSER = '/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    }).on('error', reject);
  });
}

/** MiniBrowser needs an X display: a private Xvfb, which tells the display number it took. */
function startXvfb() {
  return new Promise((resolve, reject) => {
    const process = spawn('Xvfb', ['-displayfd', '1', '-nolisten', 'tcp', '-screen', '0', '1280x1024x24'],
      {stdio: ['ignore', 'pipe', 'ignore']});
    process.on('error', reject);
    process.stdout.once('data', (data) => resolve({name: `:${String(data).trim()}`, process}));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** `fn` applied to `arg` in the page, as one expression every driver can evaluate (awaited if it is a promise). */
function expression(fn, arg) {
  return `(${fn})(${JSON.stringify(arg ?? null)})`;
}

/**
 * Starts `engine` with its downloads going to `downloads` (a fresh folder), without a save dialog; closed after
 * the test. Scripts the tests evaluate (axe-core among them) run through the driver, which the page's CSP does
 * not govern; Chromium's context also bypasses the CSP, as Playwright needs for that.
 */
export async function launch(t, engine, downloads) {
  mkdirSync(downloads, {recursive: true});
  const browser = await LAUNCH[engine](downloads);
  t.after(() => browser.close().catch(() => {}));
  return browser;
}

const LAUNCH = {
  async chromium(downloads) {
    const browser = await chromium.launch({executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS});
    const context = await browser.newContext({acceptDownloads: true, bypassCSP: true});
    // No save dialog, as in Firefox and Safari: the page streams or falls back.
    await context.addInitScript(() => { delete window.showSaveFilePicker; });
    const failed = new Set();
    context.on('page', (page) => page.on('download', async (download) => {
      const name = download.suggestedFilename();
      if (await download.failure()) failed.add(name);
      else await download.saveAs(join(downloads, name)).catch(() => failed.add(name));
    }));
    const page = await context.newPage();
    return {
      engine: 'chromium', downloads, failed,
      async close() { await browser.close(); },
      page: {
        goto: (url) => page.goto(url),
        evaluate: (fn, arg) => page.evaluate(expression(fn, arg)),
        setFiles: (selector, paths) => page.setInputFiles(selector, paths),
        click: (selector) => page.click(selector),
      },
    };
  },

  async firefox(downloads) {
    const browser = await puppeteer.launch({
      browser: 'firefox', executablePath: '/usr/bin/firefox-esr', headless: true,
      extraPrefsFirefox: {
        'browser.download.folderList': 2,
        'browser.download.dir': downloads,
        'browser.download.useDownloadDir': true,
        'browser.download.always_ask_before_handling_new_types': false,
        'browser.download.manager.showWhenStarting': false,
        'browser.download.alwaysOpenPanel': false,
      },
    });
    const page = (await browser.pages())[0] ?? await browser.newPage();
    return {
      engine: 'firefox', downloads, failed: new Set(),
      async close() { await browser.close(); },
      page: {
        goto: (url) => page.goto(url),
        evaluate: (fn, arg) => page.evaluate(expression(fn, arg)),
        async setFiles(selector, paths) {
          await (await page.$(selector)).uploadFile(...[paths].flat());
        },
        click: (selector) => page.$eval(selector, (el) => el.click()),
      },
    };
  },

  async webkit(downloads) {
    const port = await freePort();
    const display = process.env.DISPLAY ? null : await startXvfb();
    // MiniBrowser saves downloads into $HOME, which it takes from the driver that starts it.
    const driverProcess = spawn('WebKitWebDriver', [`--port=${port}`], {
      stdio: 'ignore', env: {...process.env, HOME: downloads, ...(display && {DISPLAY: display.name})},
    });
    let driver = null;
    for (let i = 0; i < 50 && !driver; i++) {
      await sleep(100);
      driver = await new Builder().usingServer(`http://127.0.0.1:${port}`).withCapabilities({
        browserName: 'MiniBrowser',
        'webkitgtk:browserOptions': {binary: MINIBROWSER, args: ['--automation']},
      }).build().catch(() => null);
    }
    if (!driver) {
      driverProcess.kill();
      display?.process.kill();
      throw new Error('WebKitWebDriver did not start MiniBrowser');
    }
    const evaluate = async (fn, arg) => {
      const result = await driver.executeAsyncScript(`const done = arguments[arguments.length - 1];
        Promise.resolve().then(() => ${expression(fn, arg)})
          .then((value) => done({value}), (e) => done({error: String(e && (e.stack || e.message) || e)}));`);
      if (result.error) throw new Error(result.error);
      return result.value;
    };
    return {
      engine: 'webkit', downloads, failed: new Set(),
      async close() {
        await driver.quit().catch(() => {});
        driverProcess.kill();
        display?.process.kill();
      },
      page: {
        goto: (url) => driver.get(url),
        evaluate,
        async setFiles(selector, paths) {
          const input = await driver.findElement({css: selector});
          // WebKitWebDriver adds to a multiple input's files; a pick replaces them, as in the other engines.
          await driver.executeScript('arguments[0].value = "";', input);
          await input.sendKeys([paths].flat().join('\n'));
        },
        click: (selector) => evaluate((s) => document.querySelector(s).click(), selector),
      },
    };
  },
};

/** Polls `fn(arg)` in the page until it returns something truthy, which it returns; fails after `timeout` ms. */
export async function waitFor(page, fn, arg, timeout = 60_000, what = String(fn)) {
  const until = Date.now() + timeout;
  for (;;) {
    const value = await page.evaluate(fn, arg);
    if (value) return value;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Waits until the browser has finished saving `name`, of `bytes` bytes, in its download folder: the file has
 * its full size and no partial file is left (Firefox writes to a randomly named .part file beside an empty
 * placeholder; WebKitGTK writes under the name itself). Returns its path.
 */
export async function downloaded(browser, name, bytes, timeout = 120_000) {
  const path = join(browser.downloads, name);
  const until = Date.now() + timeout;
  for (;;) {
    if (browser.failed.has(name)) throw new Error(`the download of ${name} failed`);
    const partial = readdirSync(browser.downloads).some((f) => f.endsWith('.part'));
    if (!partial && existsSync(path) && statSync(path).size === bytes) return path;
    if (Date.now() > until) throw new Error(`${name} (${bytes} bytes) was not downloaded into ${browser.downloads}`);
    await sleep(200);
  }
}

/** Files in the download folder (names only), finished or not. */
export function downloadFolder(browser) {
  return readdirSync(browser.downloads).filter((f) => !f.startsWith('.'));
}

/** The size of `name` in the download folder, or null when there is no such file. */
export function sizeOf(browser, name) {
  const path = join(browser.downloads, name);
  return existsSync(path) ? statSync(path).size : null;
}
