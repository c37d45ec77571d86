// The page: picking, info, choosing the target and where to save, progress, cancel and errors. All the work
// happens in the coordinator worker (worker.js); this file only talks to it through protocol.js's messages.
// The build defines DISKBRIDGE = {wasm: base64 string, worker, encoder: sources of the workers' blobs}.
'use strict';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// DECISIONS.md: without the picker or OPFS the output is assembled in memory, and refused above this.
const MEMORY_LIMIT = 2 * 2 ** 30;
// A cooperative cancel is answered within one step; past this the worker is presumed stuck and terminated.
const CANCEL_GRACE_MS = 3000;
const OPFS_PREFIX = 'diskbridge-';

// Every sentence the page writes, in one place, so a second language is one more table of the same keys.
const TEXT = {
  bytes: (n) => `${n.toLocaleString('en')} bytes`,
  unknownWithoutBacking: 'known once the backing file is picked',
  none: 'none',
  rows: {
    format: 'Format', virtualSize: 'Virtual size', fileSize: 'File size', clusterSize: 'Cluster size',
    compression: 'Compression', allocated: 'Allocated data', backing: 'Backing file', warning: 'Warning',
  },
  needsBacking: (names) => `This image is an overlay: its data continues in "${names.join('", "')}". Pick that ` +
    'file too (it is matched by its name).',
  notePicker: 'You choose where to save. The file is created as soon as you choose it, and choosing an existing ' +
    'file empties it at once; if the conversion fails or is cancelled, it is removed.',
  noteOpfs: 'This browser has no save dialog: the output is written to the browser\'s own storage first, then ' +
    'offered as a download.',
  noteMemory: (limit) => 'This browser cannot write files directly here, so the output is assembled in memory ' +
    `and then offered as a download — at most ${limit}. For larger images use Chromium (or Edge) over https, ` +
    'or the diskbridge command-line tool.',
  badUrlNumber: (key) => `The URL's ${key}= must be a whole number below 2^64`,
  starting: 'Starting…',
  cancelling: 'Cancelling…',
  cancelled: 'Cancelled. No file was left behind.',
  progress: (done, total, mbps) => `${done} of ${total} — ${mbps} MB/s`,
  eta: (left) => `, about ${left} left`,
  seconds: (s) => `${s} s`,
  minutes: (m, s) => `${m} min ${s} s`,
  hours: (h, m) => `${h} h ${m} min`,
  saved: (name, size, seconds, mbps) => `Saved ${name} (${size}) in ${seconds} s${mbps ? `, ${mbps} MB/s` : ''}.`,
  errorKind: (kind) => `Error (${kind}):`,
  fileTypes: {vmdk: 'VMDK disk image', vhdx: 'VHDX disk image', raw: 'Raw disk image'},
};

const TARGETS = {
  vmdk: {button: 'to-vmdk', options: 'vmdk-options', ext: 'vmdk', mime: 'application/x-vmdk'},
  vhdx: {button: 'to-vhdx', options: 'vhdx-options', ext: 'vhdx', mime: 'application/x-vhdx'},
  raw: {button: 'to-raw', options: null, ext: 'img', mime: 'application/octet-stream'},
};

// ---- the coordinator worker ----------------------------------------------------------------------------

const wasmModule = WebAssembly.compile(Uint8Array.from(atob(DISKBRIDGE.wasm), (c) => c.charCodeAt(0)));
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
      if (msg.type === MSG.READY) return resolve();
      const request = pending.get(msg.id);
      if (!request) return;
      if (msg.type === MSG.PROGRESS) return request.onProgress?.(msg.done, msg.total);
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
      worker.postMessage({type: MSG.INIT, module, pool}, pool);
    }, (e) => fail(diskError(e)));
  });
}

/** Sends a request to the worker: its id, and a promise of its final message (rejected with a DiskError). */
function request(message, onProgress) {
  const id = nextId++;
  const promise = new Promise((resolve, reject) => pending.set(id, {resolve, reject, onProgress}));
  workerReady.then(() => worker.postMessage({...message, id}), () => {});
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
  $('result').textContent = '';
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
    showError(error);
  }
  updateButtons();
}

function showInfo({file, info}) {
  $('info').hidden = false;
  $('info-name').textContent = file.name;
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
  for (const warning of info.warnings ?? []) rows.push([TEXT.rows.warning, warning]);
  const list = $('info-list');
  list.replaceChildren();
  for (const [term, value] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.append(value);
    list.append(dt, dd);
  }
  const missing = info.needsBacking;
  $('backing').hidden = missing.length === 0;
  $('backing-text').textContent = missing.length === 0 ? '' : TEXT.needsBacking(missing);
}

function updateButtons() {
  const ready = image !== null && image.info.needsBacking.length === 0 && !busy;
  for (const target of Object.values(TARGETS)) $(target.button).disabled = !ready;
  $('empty-vmdk').disabled = busy;
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

/** Picks the output: the save dialog where there is one, else OPFS then a download, else memory. */
async function chooseOutput(name, format) {
  const target = TARGETS[format];
  if (typeof window.showSaveFilePicker === 'function') {
    try {
      const handle = await window.showSaveFilePicker({
        suggestedName: name,
        types: [{description: TEXT.fileTypes[format], accept: {[target.mime]: [`.${target.ext}`]}}],
      });
      return {kind: 'handle', handle};
    } catch (e) {
      if (e.name === 'AbortError') return null;
      throw diskError(e);
    }
  }
  if (await opfsAvailable) {
    await removeOldOpfsFiles();
    return {kind: 'opfs', name: `${OPFS_PREFIX}${Date.now()}-${name}`};
  }
  return {kind: 'memory', limit: MEMORY_LIMIT};
}

/** Finished outputs stay in OPFS until their download has surely been read; the next conversion clears them. */
async function removeOldOpfsFiles() {
  const dir = await navigator.storage.getDirectory();
  for await (const name of dir.keys()) {
    if (name.startsWith(OPFS_PREFIX)) await dir.removeEntry(name).catch(() => {});
  }
}

async function storageNote() {
  const note = $('storage-note');
  note.hidden = false;
  // BROWSER.md: the picker creates (or empties) the chosen file the moment it is chosen.
  note.textContent = typeof window.showSaveFilePicker === 'function' ? TEXT.notePicker
    : (await opfsAvailable) ? TEXT.noteOpfs : TEXT.noteMemory(human(MEMORY_LIMIT));
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

async function convert(format, source) {
  if (busy) return;
  const target = TARGETS[format];
  hideError();
  $('result').textContent = '';
  try {
    const name = source.blankSize ? '64KiB.vmdk' : outputName(source.file, target.ext);
    const options = target.options ? $(target.options).value.trim() : '';
    const message = {
      type: MSG.CONVERT,
      input: source.file ?? null,
      blankSize: source.blankSize ?? 0,
      others: source.file ? files.filter((f) => f !== source.file) : [],
      target: {format, options, ...determinism(), outputName: name},
    };
    const output = await chooseOutput(name, format);
    if (!output) return;
    message.output = output;
    setBusy(true);
    const started = performance.now();
    const result = await runCancellable(message, output);
    const seconds = (performance.now() - started) / 1000;
    const mbps = result.total ? (result.total / 1e6 / Math.max(seconds, 0.001)).toFixed(1) : null;
    if (result.output.kind === 'opfs') {
      const dir = await navigator.storage.getDirectory();
      download(await (await dir.getFileHandle(result.output.name)).getFile(), name);
    } else if (result.output.kind === 'memory') {
      download(result.output.blob, name);
    }
    $('result').textContent = TEXT.saved(name, human(result.bytes), seconds.toFixed(1), mbps);
    // For the benchmark and the tests: what the last conversion took, and each worker's wasm memory.
    window.diskbridgeLastRun = {seconds, bytes: result.bytes, total: result.total, memory: result.memory};
  } catch (error) {
    if (error.kind === 'cancelled') $('result').textContent = TEXT.cancelled;
    else showError(error);
    // A panic leaves the wasm instance unusable: start fresh workers for the next try.
    if (error.kind === 'internal') startWorker();
  } finally {
    setBusy(false);
  }
}

function runCancellable(message, output) {
  const started = performance.now();
  let total = 0;
  const {id, promise} = request(message, (done, all) => {
    total = all;
    showProgress(done, total, started);
  });
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
  if (output.kind === 'opfs') {
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

function showProgress(done, total, started) {
  const bar = $('bar');
  bar.max = Math.max(total, 1);
  bar.value = done;
  const seconds = (performance.now() - started) / 1000;
  const rate = seconds > 0 ? done / seconds : 0;
  const left = rate > 0 ? (total - done) / rate : NaN;
  const eta = Number.isFinite(left) && done > 0 ? TEXT.eta(formatDuration(left)) : '';
  $('status').textContent = TEXT.progress(human(done), human(total), (rate / 1e6).toFixed(1)) + eta;
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
    $('status').textContent = TEXT.starting;
  }
  updateButtons();
}

function showError(error) {
  const e = diskError(error);
  $('error').hidden = false;
  $('error-kind').textContent = TEXT.errorKind(e.kind);
  let text = e.message;
  if (e.file) text = `${e.file}: ${text}`;
  if (e.offset != null && !/offset 0x/.test(text)) text += ` (at offset 0x${e.offset.toString(16)})`;
  $('error-message').textContent = text;
}

function hideError() {
  $('error').hidden = true;
}

// ---- wiring ----------------------------------------------------------------------------------------------

startWorker();
workerReady.catch(showError);
storageNote();
$('file').addEventListener('change', (e) => pickFiles([...e.target.files], false));
$('backing-file').addEventListener('change', (e) => pickFiles([...e.target.files], true));
for (const [format, target] of Object.entries(TARGETS)) {
  $(target.button).addEventListener('click', () => convert(format, {file: image.file}));
}
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
