// The page: picking, info, choosing the target and where to save, progress, cancel and errors. All the work
// happens in the coordinator worker (worker.js); this file only talks to it through protocol.js's messages.
// The build defines DISKBRIDGE = {wasm: {simd, plain}: the core built with and without wasm SIMD, base64,
// worker, encoder: sources of the workers' blobs}.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// DECISIONS.md: without the picker or OPFS the output is assembled in memory, and refused above this.
const MEMORY_LIMIT = 2 * 2 ** 30;
// Best-effort browser storage may be evicted or capped (Firefox: about 10 GiB or 10 % of the disk); above this
// an OPFS output first asks the browser to keep the page's storage (navigator.storage.persist()).
const PERSIST_ABOVE = 2 ** 30;
// How long the page waits for its service worker before it saves without streaming.
const SERVICE_WORKER_WAIT_MS = 5000;
// Firefox stops a service worker that has had no event for 30 s, even while it streams a download.
const KEEPALIVE_MS = 10_000;
// Outputs that have an append-only layout and so can be streamed as they are written (the CLI writes the same
// to a pipe; a dynamic VHD or VHDX then reads the input twice). qcow2 cannot (its header and tables precede the
// data and are known only at the end), nor an OVA (its first bytes record the size of the disk inside, known
// only once the disk is written).
const STREAMABLE = new Set(['vmdk', 'vhdx', 'vpc', 'raw']);
// A cooperative cancel is answered within one step; past this the worker is presumed stuck and terminated.
const CANCEL_GRACE_MS = 3000;
const OPFS_PREFIX = 'diskbridge-';

// ---- language ------------------------------------------------------------------------------------------

// The strings live in www/i18n/<language>.js, one table per language with the same keys.
const LANGUAGES = {en: TEXT_EN, ja: TEXT_JA};
const LANGUAGE_KEY = 'diskbridge-language';

/** The remembered choice, else the browser's first language we have (ja → Japanese), else English. */
function initialLanguage() {
  try {
    const saved = localStorage.getItem(LANGUAGE_KEY);
    if (Object.hasOwn(LANGUAGES, saved)) return saved;
  } catch { /* a saved page may have no localStorage: fall through to the browser's languages */ }
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const tag of wanted) {
    const language = String(tag).toLowerCase().split('-')[0];
    if (Object.hasOwn(LANGUAGES, language)) return language;
  }
  return 'en';
}

let TEXT = LANGUAGES.en;
// Texts drawn from state (info, notes, results): each element's render function, run again on a switch.
const rendered = new Map();

/** Shows `render()` (text or nodes) in `element`, and again whenever the language changes; null clears it. */
function show(element, render) {
  if (render) rendered.set(element, render);
  else rendered.delete(element);
  element.replaceChildren(...(render ? [render()].flat() : []));
}

function setLanguage(language, remember) {
  TEXT = LANGUAGES[language];
  document.documentElement.lang = language;
  for (const element of document.querySelectorAll('[data-text]')) {
    element.textContent = TEXT.page[element.dataset.text];
  }
  for (const element of document.querySelectorAll('[data-placeholder]')) {
    element.placeholder = TEXT.page[element.dataset.placeholder];
  }
  for (const button of document.querySelectorAll('[data-lang]')) {
    button.setAttribute('aria-pressed', String(button.dataset.lang === language));
  }
  for (const [element, render] of rendered) element.replaceChildren(...[render()].flat());
  if (remember) {
    try {
      localStorage.setItem(LANGUAGE_KEY, language);
    } catch { /* not remembered where storage is refused; the switch still works for this visit */ }
  }
}

/** The text typed in the option field `id`. */
const typed = (id) => $(id).value.trim();

// What each target writes: its format, its -o options (from the Advanced options and the choices beside the
// buttons), the file's extension and type, and whether a seed disk is offered beside it when a first login is
// given — every single disk but Azure's, which takes the login from Azure itself; the OVA carries its own.
const TARGETS = {
  vmdk: {format: 'vmdk', button: 'to-vmdk', options: () => [typed('vmdk-options')], ext: 'vmdk',
    mime: 'application/x-vmdk', seed: true},
  ova: {format: 'ova', options: () => [typed('vmdk-options')], ext: 'ova', mime: 'application/x-virtualbox-ova',
    seed: false},
  vhdx: {format: 'vhdx', button: 'to-vhdx', ext: 'vhdx', mime: 'application/x-vhdx', seed: true,
    options: () => [typed('vhdx-options'), $('vhdx-fixed').checked && 'subformat=fixed']},
  qcow2: {format: 'qcow2', button: 'to-qcow2', options: () => [typed('qcow2-options')], ext: 'qcow2',
    mime: 'application/x-qemu-disk', seed: true},
  // Azure takes only a fixed VHD (a whole number of MiB); XCP-ng and XenServer import a dynamic one.
  azure: {format: 'vpc', button: 'to-azure', options: () => ['subformat=fixed'], ext: 'vhd', mime: 'application/x-vhd',
    seed: false},
  xen: {format: 'vpc', button: 'to-xen', options: () => [], ext: 'vhd', mime: 'application/x-vhd', seed: true},
  raw: {format: 'raw', button: 'to-raw', options: () => [], ext: 'img', mime: 'application/octet-stream', seed: true},
};

// ---- the coordinator worker ----------------------------------------------------------------------------

// A function doing i8x16.splat then i8x16.popcnt (wasm-feature-detect's probe): it validates only where the
// browser has wasm SIMD as finally specified (popcnt came last, so pre-release implementations fail it), which
// the SIMD build needs. Browsers without it (Safari before 16.4, for one) compile the plain build instead.
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
  65, 0, 253, 15, 253, 98, 11]);
// Which build runs, for the tests and for telling why a conversion is slow.
window.diskbridgeSimd = WebAssembly.validate(SIMD_PROBE);
const wasmBase64 = window.diskbridgeSimd ? DISKBRIDGE.wasm.simd : DISKBRIDGE.wasm.plain;
const wasmModule = WebAssembly.compile(Uint8Array.from(atob(wasmBase64), (c) => c.charCodeAt(0)));
const workerUrl = URL.createObjectURL(new Blob([DISKBRIDGE.worker], {type: 'text/javascript'}));
const encoderUrl = URL.createObjectURL(new Blob([DISKBRIDGE.encoder], {type: 'text/javascript'}));
// One encoder per core: the coordinator mostly waits on them, so it does not need a core of its own.
const POOL_SIZE = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
let worker = null;
let encoders = [];
let workerReady = null;
const pending = new Map();
let nextId = 1;

/** Starts the coordinator and its pool of encoders, each instantiating the one compiled module. */
function startWorker() {
  worker?.terminate();
  for (const encoder of encoders) encoder.terminate();
  worker = new Worker(workerUrl, {name: 'diskbridge'});
  encoders = Array.from({length: POOL_SIZE}, (_, i) => new Worker(encoderUrl, {name: `diskbridge-encoder-${i}`}));
  workerReady = new Promise((resolve, reject) => {
    const fail = (error) => {
      reject(error);
      for (const request of pending.values()) request.reject(error);
      pending.clear();
    };
    worker.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === MSG.READY) return resolve(msg.readsFiles);
      const request = pending.get(msg.id);
      if (!request) return;
      if (msg.type === MSG.PROGRESS) return request.onProgress?.(msg.done, msg.total, msg.phase);
      pending.delete(msg.id);
      if (msg.type === MSG.ERROR) request.reject(msg.error);
      else if (msg.type === MSG.CANCELLED) request.reject({kind: 'cancelled', message: 'Cancelled'});
      else request.resolve(msg);
    };
    for (const w of [worker, ...encoders]) {
      w.onerror = (event) => {
        event.preventDefault();
        fail(diskError(event.message || 'A worker failed to start'));
      };
    }
    wasmModule.then((module) => {
      const pool = encoders.map((encoder) => {
        const channel = new MessageChannel();
        encoder.postMessage({type: MSG.INIT, module, port: channel.port1}, [channel.port1]);
        return channel.port2;
      });
      worker.postMessage({type: MSG.INIT, module, pool, probe: new Blob([new Uint8Array(16)])}, pool);
    }, (e) => fail(diskError(e)));
  });
}

/**
 * Sends a request to the worker: its id, and a promise of its final message (rejected with a DiskError).
 * `transfer`: objects in the message handed over rather than copied (a stream's port).
 */
function request(message, onProgress, transfer = []) {
  const id = nextId++;
  const promise = new Promise((resolve, reject) => pending.set(id, {resolve, reject, onProgress}));
  workerReady.then(() => worker.postMessage({...message, id}, transfer), () => {});
  return {id, promise};
}

// ---- picking and info ------------------------------------------------------------------------------------

let files = [];
let image = null; // {file, info}
let busy = false;

function baseName(path) {
  return path.split(/[/\\]/).pop();
}

function outputName(file, ext) {
  const name = file.name.replace(/\.[^.]*$/, '') || file.name;
  return `${name}.${ext}`;
}

function human(bytes) {
  if (bytes < 1024) return TEXT.bytes(bytes);
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(value >= 10 ? 1 : 2)} ${units[unit]}`;
}

/** A size in human units, with the exact number of bytes on hover. */
function sized(bytes) {
  const span = document.createElement('span');
  span.textContent = human(bytes);
  span.title = TEXT.bytes(bytes);
  return span;
}

async function pickFiles(list, add) {
  if (!list.length || busy) return;
  files = add ? [...files, ...list] : [...list];
  hideError();
  clearOutcome();
  try {
    // The image is the picked file no other picked file names as its backing file.
    const infos = await Promise.all(files.map((file) => request({
      type: MSG.INSPECT, file, others: files.filter((f) => f !== file),
    }).promise.then((msg) => ({file, info: msg.info}))));
    const backings = new Set(infos.map((i) => i.info.backingFile).filter(Boolean).map(baseName));
    image = infos.find((i) => !backings.has(i.file.name)) || infos[0];
    showInfo(image);
  } catch (error) {
    image = null;
    $('info').hidden = true;
    showSourceSize(null);
    showError(error);
  }
  updateButtons();
}

/**
 * One file picked in the backing-file field stands in for the one backing file the image still needs, whatever
 * its name: a download often is not named as the overlay recorded it. (A wrong VHD or VHDX parent is still
 * refused by its id; qcow2 records none.)
 */
function asBacking(list) {
  const needed = image?.info.needsBacking ?? [];
  if (list.length !== 1 || needed.length !== 1 || list[0].name === needed[0]) return list;
  return [new File([list[0]], needed[0], {type: list[0].type, lastModified: list[0].lastModified})];
}

/** How the guest boots, as one of TEXT.boot's keys: 'bios', 'uefi', 'hybrid' or 'none'. */
function bootKind(guest) {
  const bios = guest.boot.includes('bios');
  const uefi = guest.boot.includes('uefi');
  if (bios && uefi) return 'hybrid';
  return bios ? 'bios' : uefi ? 'uefi' : 'none';
}

function showInfo({file, info}) {
  $('info').hidden = false;
  showSourceSize(info.virtualSize);
  $('info-name').textContent = file.name;
  show($('info-list'), () => infoRows(info).flatMap(([term, value]) => {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.append(value);
    return [dt, dd];
  }));
  const missing = info.needsBacking;
  $('backing').hidden = missing.length === 0;
  show($('backing-text'), missing.length === 0 ? null : () => TEXT.needsBacking(missing));
}

function infoRows(info) {
  // Without its backing file an overlay shows only what its own header says.
  const unknown = TEXT.unknownWithoutBacking;
  const size = (bytes) => (bytes == null ? unknown : sized(bytes));
  const absent = info.virtualSize == null ? unknown : '—';
  const rows = [
    [TEXT.rows.format, info.format],
    [TEXT.rows.virtualSize, size(info.virtualSize)],
    [TEXT.rows.fileSize, sized(info.fileSize)],
    [TEXT.rows.clusterSize, info.clusterSize == null ? absent : sized(info.clusterSize)],
    [TEXT.rows.compression, info.compression ?? absent],
    [TEXT.rows.allocated, size(info.allocatedBytes)],
    [TEXT.rows.backing, info.backingFile == null ? TEXT.none
      : info.backingFormat ? `${info.backingFile} (${info.backingFormat})` : info.backingFile],
  ];
  if (info.guest) {
    rows.push([TEXT.rows.table, TEXT.tables[info.guest.partitionTable]]);
    rows.push([TEXT.rows.boot, TEXT.boot[bootKind(info.guest)]]);
  }
  for (const warning of [...info.warnings ?? [], ...info.guest?.problems ?? []]) {
    rows.push([TEXT.rows.warning, warning]);
  }
  return rows;
}

function updateButtons() {
  const ready = image !== null && image.info.needsBacking.length === 0 && !busy;
  for (const target of Object.values(TARGETS)) if (target.button) $(target.button).disabled = !ready;
  $('empty-vmdk').disabled = busy;
  $('save-seed').disabled = busy;
  $('verify').disabled = busy;
  $('verify-file').disabled = busy;
  // A pick during a conversion would be ignored while the picker showed it: not offered until it ends.
  $('file').disabled = busy;
  $('backing-file').disabled = busy;
}

// ---- where the output goes -------------------------------------------------------------------------------

/** Whether this browser can keep a file in OPFS (not from file://, not over plain http to another host). */
const opfsAvailable = (async () => {
  try {
    await navigator.storage.getDirectory();
    return true;
  } catch {
    return false;
  }
})();

const served = /^https?:$/.test(location.protocol);

/**
 * The service worker's registration once it is active, or null: a saved page has none, a browser may refuse
 * it (private windows, plain http to another host), and without it downloads are not streamed.
 */
const serviceWorker = !served || !navigator.serviceWorker ? Promise.resolve(null) : Promise.race([
  navigator.serviceWorker.register('sw.js').then(() => navigator.serviceWorker.ready, () => null),
  new Promise((resolve) => setTimeout(() => resolve(null), SERVICE_WORKER_WAIT_MS)),
]);

/**
 * What this browser offers the page, as the storage note and the tests report it. `readsFiles` waits for the
 * coordinator, which the wiring at the end starts before this first resumes.
 */
const capabilities = (async () => ({
  picker: typeof window.showSaveFilePicker === 'function',
  opfs: await opfsAvailable,
  stream: (await serviceWorker) !== null,
  simd: window.diskbridgeSimd,
  file: !served,
  readsFiles: await workerReady.catch(() => false),
}))();
window.diskbridgeCapabilities = capabilities;

/**
 * Picks the output for `target` (one of TARGETS): the save dialog where there is one; else a download streamed
 * through the service worker for the formats that can be written in order; else OPFS then a download; else
 * memory. An OVA is always written to OPFS first, the one output the worker can read back while it hashes the
 * disk member; the picked file (if any) is filled from it afterwards. `estimate`: about how many bytes the
 * output will take.
 */
async function chooseOutput(name, target, estimate) {
  const {format} = target;
  const opfs = async (copyTo) => {
    await removeOldOpfsFiles();
    if (!copyTo && estimate > PERSIST_ABOVE) await askToPersist();
    return {kind: 'opfs', name: `${OPFS_PREFIX}${Date.now()}-${name}`, copyTo};
  };
  const can = await capabilities;
  if (format === 'ova' && !can.opfs) throw {kind: 'unsupported', message: TEXT.noOva(can)};
  if (!can.picker && can.stream && STREAMABLE.has(format)) return streamTo(name);
  if (can.picker) {
    try {
      const handle = await window.showSaveFilePicker({
        suggestedName: name,
        types: [{description: TEXT.fileTypes[format], accept: {[target.mime]: [`.${target.ext}`]}}],
      });
      return format === 'ova' ? opfs(handle) : {kind: 'handle', handle};
    } catch (e) {
      if (e.name === 'AbortError') return null;
      throw diskError(e);
    }
  }
  if (await opfsAvailable) return opfs(null);
  return {kind: 'memory', limit: MEMORY_LIMIT};
}

/**
 * Asks the browser to keep this page's storage (not evict it, and in Firefox to lift the best-effort cap) before
 * a large output goes there. The answer does not stop the conversion: a refusal only keeps the lower limit.
 */
async function askToPersist() {
  try {
    if (!(await navigator.storage.persisted())) await navigator.storage.persist();
  } catch { /* not offered: the conversion goes ahead within the default limit */ }
}

/**
 * Registers a streamed download with the service worker and starts it: the output spec for the worker holds the
 * port the service worker pulls chunks from; `abort()` ends the download with an error if the worker cannot.
 */
async function streamTo(name) {
  const registration = await serviceWorker;
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  const channel = new MessageChannel();
  const registered = new Promise((resolve) => {
    channel.port2.onmessage = () => resolve();
  });
  registration.active.postMessage({type: 'download', id, name}, [channel.port1]);
  await registered;
  channel.port2.onmessage = null;
  // A hidden frame asks for the download; the browser saves the answer as a file, the page stays as it is.
  const frame = Object.assign(document.createElement('iframe'), {hidden: true, title: name});
  frame.src = `download/${id}/${encodeURIComponent(name)}`;
  document.body.append(frame);
  const keepalive = setInterval(() => registration.active?.postMessage({type: 'keepalive'}), KEEPALIVE_MS);
  const end = () => {
    clearInterval(keepalive);
    // The download carries on without the frame once the response has begun.
    setTimeout(() => frame.remove(), 60_000);
  };
  return {
    kind: 'stream', port: channel.port2, transfer: [channel.port2], end,
    abort() {
      registration.active?.postMessage({type: 'abort', id, reason: 'cancelled'});
      end();
    },
  };
}

/** Finished outputs stay in OPFS until their download has surely been read; the next conversion clears them. */
async function removeOldOpfsFiles() {
  const dir = await navigator.storage.getDirectory();
  for await (const name of dir.keys()) {
    if (name.startsWith(OPFS_PREFIX)) await dir.removeEntry(name).catch(() => {});
  }
}

/** Says where the output goes in this browser, why, and its limit; the OVA is offered only where it can be made. */
async function storageNote() {
  const note = $('storage-note');
  const can = await capabilities;
  // The storage the browser grants this page, for the OPFS path's limit (Firefox: about 10 % of the disk).
  const quota = can.opfs ? await navigator.storage.estimate().then((e) => e.quota ?? null, () => null) : null;
  note.hidden = false;
  // BROWSER.md: the picker creates (or empties) the chosen file the moment it is chosen.
  show(note, () => {
    if (!can.readsFiles) return TEXT.noteNoFileReads;
    if (can.picker) return TEXT.notePicker;
    const fallback = can.opfs ? TEXT.noteOpfs(can, quota == null ? null : human(quota))
      : TEXT.noteMemory(can, human(MEMORY_LIMIT));
    return can.stream ? TEXT.noteStream + ' ' + TEXT.noteNotStreamed + ' ' + fallback : fallback;
  });
  if (!can.opfs) {
    // No OPFS, so no OVA: offer the VMDK and say why.
    document.querySelector('input[name=esxi-package][value=ova]').disabled = true;
    document.querySelector('input[name=esxi-package][value=vmdk]').checked = true;
    nameEsxiButton();
    note.after(Object.assign(document.createElement('p'), {className: 'note', id: 'ova-note'}));
    show($('ova-note'), () => TEXT.noOva(can));
  } else if (!can.picker) {
    note.after(Object.assign(document.createElement('p'), {className: 'note', id: 'ova-note'}));
    show($('ova-note'), () => TEXT.ovaStaged);
  }
}

let downloadUrl = null;

function download(blob, name) {
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = downloadUrl;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

/**
 * The finished output as a Blob, read from where it was written (for the download and for Verify): `written`
 * is the worker's account of it, `chosen` the output chooseOutput() gave (which holds the picked handle).
 */
async function writtenFile(chosen, written) {
  if (written.kind === 'stream') return null;
  if (written.kind === 'memory') return written.blob;
  if (written.kind === 'handle') return chosen.handle.getFile();
  const dir = await navigator.storage.getDirectory();
  return (await dir.getFileHandle(written.name)).getFile();
}

// ---- converting ------------------------------------------------------------------------------------------

function determinism() {
  const seed = params.get('seed') ?? crypto.getRandomValues(new BigUint64Array(1))[0].toString();
  const epoch = params.get('epoch') ?? String(Math.floor(Date.now() / 1000));
  for (const [key, value] of [['seed', seed], ['epoch', epoch]]) {
    if (!/^\d+$/.test(value) || BigInt(value) >= 2n ** 64n) {
      throw {kind: 'invalid-argument', message: TEXT.badUrlNumber(key)};
    }
  }
  return {seed, epoch};
}

let current = null; // the running conversion: {cancel()}
let written = null; // the last conversion's {source: File, others, reread() → Blob, name}, for Verify
// The seed disk the last result offers: {login, target, name}. The login is kept in memory only, until the next
// conversion.
let seedOffer = null;
// The First login fields are being checked for a click on a target: a second click waits for that one.
let starting = false;

/**
 * Converts for the target `targetId` (a key of TARGETS). `source`: {file}, the picked image, with the First login
 * section's login and disk size; or {blankSize}, an empty disk of that many bytes.
 */
async function convert(targetId, source) {
  if (busy || starting) return;
  const target = TARGETS[targetId];
  hideError();
  clearOutcome();
  let first = {login: null, size: null};
  if (source.file) {
    starting = true;
    first = await firstLogin(image.info.virtualSize).finally(() => { starting = false; });
    if (!first) return;
  }
  const name = source.blankSize ? '64KiB.vmdk' : outputName(source.file, target.ext);
  const options = [...target.options(), first.size && `size=${first.size}`].filter(Boolean).join(',');
  const message = {
    type: MSG.CONVERT,
    input: source.file ?? null,
    blankSize: source.blankSize ?? 0,
    others: source.file ? files.filter((f) => f !== source.file) : [],
    // A package carries the seed disk; other targets offer it beside the result.
    login: target.format === 'ova' ? first.login : null,
    target: {format: target.format, options, outputName: name},
  };
  // Raw and fixed outputs take the disk's whole size.
  const whole = target.format === 'raw' || /subformat=fixed/.test(options);
  const estimate = source.file ? (whole ? first.size ?? image.info.virtualSize : image.info.allocatedBytes) : 0;
  const done = await writeOutput(message, target, name, estimate, $('result'));
  if (!done) return;
  const bytes = done.bytes;
  show($('guidance'), () => guidance(targetId, name, source.file && image?.info.guest, first.login, bytes));
  $('warnings').hidden = done.warnings.length === 0;
  show($('warnings'), done.warnings.length ? () => done.warnings.map((w) => paragraph(`${TEXT.rows.warning}: ${w}`))
    : null);
  if (source.file) {
    // A streamed download cannot be read back by the page: Verify asks for the saved file instead.
    written = {source: source.file, others: message.others, reread: done.reread, name};
    $('verify').hidden = done.streamed;
    $('verify-pick').hidden = !done.streamed;
    show($('verify-pick-label'), done.streamed ? () => TEXT.verifyPick(name) : null);
  }
  if (first.login && target.seed) offerSeed(first.login, targetId, name);
}

/**
 * Runs the conversion `message` into an output for `target` named `name` (chooseOutput, `estimate` as there),
 * offers it as a download where it is not written in place, and says in `shown` what was saved — or that it was
 * cancelled, or failed (the error shown as well). Resolves to {bytes, warnings, streamed, reread() → Blob or
 * null} once saved, else to null.
 */
async function writeOutput(message, target, name, estimate, shown) {
  let output = null;
  let streamed = false;
  try {
    message.target = {...message.target, ...determinism()};
    output = await chooseOutput(name, target, estimate);
    if (!output) return null;
    streamed = output.kind === 'stream';
    // Only what the worker uses crosses to it; the stream's port is handed over, not copied.
    message.output = streamed ? {kind: 'stream', port: output.port} : {...output, copyTo: undefined};
    message.target.appendOnly = streamed;
    setBusy(true);
    const started = performance.now();
    const result = await runCancellable(message, output).finally(() => output.end?.());
    const seconds = (performance.now() - started) / 1000;
    const mbps = result.total ? (result.total / 1e6 / Math.max(seconds, 0.001)).toFixed(1) : null;
    // Verify reads the file as it is on disk when asked, not a snapshot of it now.
    let reread = () => writtenFile(output, result.output);
    const file = await reread();
    if (output.copyTo) {
      // An OVA for the picked file: copied from OPFS now that its digests are written.
      await file.stream().pipeTo(await output.copyTo.createWritable());
      await (await navigator.storage.getDirectory()).removeEntry(result.output.name);
      reread = () => output.copyTo.getFile();
    } else if (file) {
      download(file, name);
    }
    show(shown, () => {
      // The exact size on hover, as for every size the page shows.
      shown.title = TEXT.bytes(result.bytes);
      return (streamed ? TEXT.streamed : TEXT.saved)(name, human(result.bytes), seconds.toFixed(1), mbps);
    });
    // For the benchmark and the tests: what the last conversion took, and each worker's wasm memory.
    window.diskbridgeLastRun = {seconds, bytes: result.bytes, total: result.total, memory: result.memory};
    return {bytes: result.bytes, warnings: result.warnings, streamed, reread: streamed ? null : reread};
  } catch (error) {
    // The worker removes what it wrote; an OVA bound for the picked file was written to OPFS, not to that file,
    // which the picker created and which is removed here.
    await output?.copyTo?.remove().catch(() => {});
    // Some browsers keep what a failed download had received under its name (WebKitGTK does): say so.
    if (error.kind === 'cancelled') show(shown, () => (streamed ? TEXT.cancelledStream(name) : TEXT.cancelled));
    else showError(error);
    if (error.kind !== 'cancelled' && streamed) show(shown, () => TEXT.failedStream(name));
    // A panic leaves the wasm instance unusable: start fresh workers for the next try.
    if (error.kind === 'internal') startWorker();
    return null;
  } finally {
    setBusy(false);
  }
}

/** Offers the seed disk for `login` beside the output `name` of the target `targetId`, in the same format. */
function offerSeed(login, targetId, name) {
  const target = TARGETS[targetId];
  const stem = name.replace(/\.[^.]*$/, '');
  const seedName = `${stem}-seed.${target.ext}`;
  seedOffer = {login, target, name: seedName};
  $('seed').hidden = false;
  show($('seed-guidance'), () => [paragraph(TEXT.seedGuide[targetId](seedName, `${stem}-seed`))]);
  show($('save-seed'), () => TEXT.saveSeedNamed(seedName));
}

/** Writes the offered seed disk — `diskbridge seed`'s bytes — through the same outputs as any conversion. */
async function saveSeed() {
  if (busy || !seedOffer) return;
  hideError();
  const {login, target, name} = seedOffer;
  show($('seed-result'), null);
  const message = {
    type: MSG.CONVERT, input: null, blankSize: 0, others: [], login,
    target: {format: target.format, options: '', outputName: name},
  };
  // A seed disk is 1 MiB.
  await writeOutput(message, target, name, 1 << 20, $('seed-result'));
}

/** The ESXi button writes an OVA unless "VMDK only" is chosen. */
function esxiFormat() {
  return document.querySelector('input[name=esxi-package]:checked').value;
}

/** The ESXi button is named for what it writes. */
function nameEsxiButton() {
  $('to-vmdk').dataset.text = esxiFormat() === 'ova' ? 'toOva' : 'toVmdk';
  $('to-vmdk').textContent = TEXT.page[$('to-vmdk').dataset.text];
}

/** A paragraph of `text`. */
function paragraph(text) {
  return Object.assign(document.createElement('p'), {textContent: text});
}

/**
 * What to do with the result `name` (`bytes` long) of the target `targetId` on its platform, as paragraphs and
 * command blocks; `guest`: what inspect() found in the source, `login`: the first login asked for, or null.
 */
function guidance(targetId, name, guest, login, bytes) {
  const stem = name.replace(/\.[^.]*$/, '');
  const kind = guest ? bootKind(guest) : 'none';
  const firmware = kind === 'uefi' ? 'EFI' : kind === 'none' ? null : 'BIOS';
  const lines = {
    ova: () => [TEXT.guide.ova(name), login && TEXT.guide.ovaLogin(`${stem}-seed.vmdk`)],
    vmdk: () => [TEXT.guide.vmdk(name, stem), firmware && TEXT.guide.firmware(firmware)],
    vhdx: () => [{
      bios: TEXT.guide.hyperv1, hybrid: TEXT.guide.hypervEither, none: TEXT.guide.hypervData,
      uefi: guest?.partitionTable === 'gpt' ? TEXT.guide.hyperv2 : TEXT.guide.hypervMbrUefi,
    }[kind]],
    qcow2: () => [TEXT.guide.qcow2(name, stem) + (kind === 'uefi' ? TEXT.guide.qcow2Uefi : '')],
    azure: () => [TEXT.guide.azure(bytes), {code: azureCommands(name, stem, bytes, kind === 'uefi' ? 'V2' : 'V1')},
      login && TEXT.guide.azureLogin],
    xen: () => [TEXT.guide.xen(name), firmware && TEXT.guide.firmware(firmware)],
    raw: () => [],
  }[targetId]();
  return lines.filter(Boolean).map((line) => {
    if (typeof line === 'string') return paragraph(line);
    const pre = document.createElement('pre');
    pre.append(Object.assign(document.createElement('code'), {textContent: line.code}));
    return pre;
  });
}

/**
 * Azure's upload of the fixed VHD `name` (`bytes` long) into a managed disk as a page blob, and a VM made from an
 * image of it with the login Azure sets; `generation` V1 (BIOS) or V2 (UEFI). The same in every language.
 */
function azureCommands(name, stem, bytes, generation) {
  return [
    `az disk create -g GROUP -n ${stem} --upload-type Upload --upload-size-bytes ${bytes} --sku Standard_LRS`,
    `sas=$(az disk grant-access -g GROUP -n ${stem} --access-level Write --duration-in-seconds 86400 ` +
      '--query accessSas -o tsv)',
    `azcopy copy ${name} "$sas" --blob-type PageBlob`,
    `az disk revoke-access -g GROUP -n ${stem}`,
    `az image create -g GROUP -n ${stem} --source ${stem} --os-type Linux --hyper-v-generation ${generation}`,
    `az vm create -g GROUP -n VM --image ${stem} --admin-username USER --ssh-key-values ~/.ssh/id_ed25519.pub`,
  ].join('\n');
}

function runCancellable(message, output) {
  const started = performance.now();
  let total = 0;
  const {id, promise} = request(message, (done, all, phase) => {
    total = all;
    showProgress(done, total, started, phase);
  }, output.transfer);
  current = {
    cancel() {
      $('status').textContent = TEXT.cancelling;
      $('cancel').disabled = true;
      worker.postMessage({type: MSG.CANCEL, id});
      setTimeout(() => {
        if (pending.has(id)) forceCancel(id, output);
      }, CANCEL_GRACE_MS);
    },
  };
  return promise.then((result) => ({...result, total})).finally(() => { current = null; });
}

/** The worker did not answer the cancel (stuck in a long call): end it and remove its output here. */
async function forceCancel(id, output) {
  const request = pending.get(id);
  pending.clear();
  startWorker();
  if (output.kind === 'handle') await output.handle.remove().catch(() => {});
  if (output.kind === 'stream') output.abort();
  if (output.kind === 'opfs') {
    await output.copyTo?.remove().catch(() => {});
    const dir = await navigator.storage.getDirectory();
    // The terminated worker's sync handle lock is released a moment later.
    for (let i = 0; i < 20; i++) {
      try {
        await dir.removeEntry(output.name);
        break;
      } catch (e) {
        if (e.name === 'NotFoundError') break;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
  request?.reject({kind: 'cancelled', message: 'Cancelled'});
}

/** Shows the progress of a conversion in `phase` (scan, write or finish; none when verifying). */
function showProgress(done, total, started, phase) {
  const bar = $('bar');
  bar.max = Math.max(total, 1);
  bar.value = done;
  // For the tests: where the conversion is.
  bar.dataset.phase = phase ?? '';
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? done / seconds : 0;
  const left = rate > 0 ? (total - done) / rate : NaN;
  const eta = Number.isFinite(left) && done > 0 ? TEXT.eta(formatDuration(left)) : '';
  $('status').textContent = TEXT.progress(human(done), human(total), (rate / 1e6).toFixed(1)) + eta +
    (TEXT.phases[phase] ?? '');
}

function formatDuration(seconds) {
  if (seconds < 60) return TEXT.seconds(Math.ceil(seconds));
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return TEXT.minutes(minutes, Math.ceil(seconds % 60));
  return TEXT.hours(Math.floor(minutes / 60), minutes % 60);
}

function setBusy(value) {
  busy = value;
  $('progress').hidden = !value;
  $('cancel').disabled = !value;
  if (value) {
    $('bar').value = 0;
    $('bar').dataset.phase = '';
    $('status').textContent = TEXT.starting;
  }
  updateButtons();
}

// ---- verifying -------------------------------------------------------------------------------------------

/**
 * Reads the saved output back and compares its guest contents with the source's, as qemu-img compare does.
 * `picked`: the saved file as the user picked it again (a streamed download, which the page cannot read back).
 */
async function verify(picked) {
  if (busy || !written) return;
  hideError();
  show($('verdict'), () => TEXT.verifying);
  setBusy(true);
  const {source, others, name} = written;
  const reread = picked ? async () => picked : written.reread;
  try {
    const output = await reread().catch((e) => {
      throw {kind: 'io', message: `Cannot read ${name} back: ${e.name}: ${e.message}`};
    });
    const result = await runCancellable({type: MSG.VERIFY, source, others, output, outputName: name}, {});
    show($('verdict'), () => (result.identical ? TEXT.identical(name)
      : TEXT.differs(name, result.offset ?? 0)) + (result.sizesDiffer ? TEXT.sizesDiffer : ''));
  } catch (error) {
    show($('verdict'), error.kind === 'cancelled' ? () => TEXT.cancelled : null);
    if (error.kind !== 'cancelled') showError(error);
    if (error.kind === 'internal') startWorker();
  } finally {
    setBusy(false);
  }
}

function clearOutcome() {
  for (const id of ['result', 'guidance', 'verdict', 'warnings', 'seed-guidance', 'seed-result']) show($(id), null);
  show($('save-seed'), () => TEXT.page.saveSeed);
  $('result').title = '';
  $('seed-result').title = '';
  $('warnings').hidden = true;
  $('seed').hidden = true;
  seedOffer = null;
  $('verify').hidden = true;
  $('verify-pick').hidden = true;
  $('verify-file').value = '';
  written = null;
}

// ---- errors ----------------------------------------------------------------------------------------------

/** The summary in the page's language; the core's own message (English) below it as the detail. */
function showError(error) {
  const e = diskError(error);
  $('error').hidden = false;
  show($('error-kind'), () => TEXT.errorKind(e.kind));
  show($('error-summary'), () => TEXT.errorKinds[e.kind] ?? '');
  let text = e.message;
  if (e.file) text = `${e.file}: ${text}`;
  if (e.offset != null && !/offset 0x/.test(text)) text += ` (at offset 0x${e.offset.toString(16)})`;
  $('error-message').textContent = text;
}

function hideError() {
  $('error').hidden = true;
}

// ---- installed and offline (hosted pages only) -------------------------------------------------------------

/**
 * Served over http(s), the page links its manifest (installable, opens disk images from the desktop) and
 * registers the service worker that keeps it for offline use. A saved page (file://) has neither file beside it,
 * so nothing is attempted there.
 */
function becomeInstallable() {
  if (!/^https?:$/.test(location.protocol)) return;
  const link = (rel, href) => document.head.append(Object.assign(document.createElement('link'), {rel, href}));
  link('manifest', 'manifest.webmanifest');
  // Named, so the browser does not ask for a /favicon.ico that is not there.
  link('icon', 'icon.svg');
  // The service worker (offline copy, streamed downloads) is registered by `serviceWorker` above.
  // "Open with" on the installed app hands the files over here.
  window.launchQueue?.setConsumer(async ({files: handles}) => {
    pickFiles(await Promise.all(handles.map((handle) => handle.getFile())), false);
  });
}

// ---- wiring ----------------------------------------------------------------------------------------------

setLanguage(initialLanguage(), false);
nameEsxiButton();
for (const radio of document.querySelectorAll('input[name=esxi-package]')) {
  radio.addEventListener('change', nameEsxiButton);
}
for (const button of document.querySelectorAll('[data-lang]')) {
  button.addEventListener('click', () => setLanguage(button.dataset.lang, true));
}
startWorker();
workerReady.catch(showError);
storageNote();
becomeInstallable();
$('file').addEventListener('change', (e) => pickFiles([...e.target.files], false));
$('backing-file').addEventListener('change', (e) => pickFiles(asBacking([...e.target.files]), true));
for (const [id, target] of Object.entries(TARGETS)) {
  if (!target.button) continue;
  const choose = () => (id === 'vmdk' ? esxiFormat() : id);
  $(target.button).addEventListener('click', () => convert(choose(), {file: image.file}));
}
$('save-seed').addEventListener('click', saveSeed);
wireLogin();
$('verify').addEventListener('click', () => verify(null));
$('verify-file').addEventListener('change', (e) => {
  if (e.target.files.length) verify(e.target.files[0]);
});
$('empty-vmdk').addEventListener('click', () => convert('vmdk', {blankSize: 64 * 1024}));
$('cancel').addEventListener('click', () => current?.cancel());
document.addEventListener('dragover', (e) => {
  e.preventDefault();
  document.body.classList.add('dragging');
});
document.addEventListener('dragleave', (e) => {
  if (!e.relatedTarget) document.body.classList.remove('dragging');
});
document.addEventListener('drop', (e) => {
  e.preventDefault();
  document.body.classList.remove('dragging');
  pickFiles([...e.dataTransfer.files], false);
});
updateButtons();
