// The coordinator worker: runs the core (reading the picked File with FileReaderSync, which only a dedicated
// worker has), and writes the output chunks it queues to the picked file, OPFS, memory or a streamed download.
// Runs after the wasm-bindgen glue (global `wasm_bindgen`) and protocol.js in the same blob.
'use strict';

// Guest bytes per batch handed to an encoder, and batches in flight per encoder: enough to keep every encoder
// busy while this worker writes, little enough to keep memory flat and to answer a cancel within a fraction of
// a second even at deflate speed. A batch names its units; the encoder reads them from its own opening of the
// input, so only indices go out and only encoded units come back.
const BATCH_BYTES = 2 << 20;
const BATCHES_PER_ENCODER = 3;
// Output bytes gathered before a write: each write through the picker's writable costs far more than its bytes
// (measured here: 1 MiB writes take 30 % longer than 8 MiB ones for the same output).
const WRITE_BYTES = 8 << 20;
const PROGRESS_INTERVAL_MS = 100;

let pool = [];
let poolJob = 0;
const batches = new Map();
let memory = null;
// The largest wasm memory each encoder has reported (DECISIONS.md: per-worker memory for the benchmark).
let encoderMemory = [];

const cancelled = new Set();

self.onmessage = (event) => {
  const msg = event.data;
  switch (msg.type) {
    case MSG.INIT:
      memory = wasm_bindgen.initSync({module: msg.module}).memory;
      pool = msg.pool;
      encoderMemory = pool.map(() => 0);
      pool.forEach((port, i) => {
        port.onmessage = (e) => {
          if (e.data.memory) encoderMemory[i] = Math.max(encoderMemory[i], e.data.memory);
          settleBatch(e.data);
        };
      });
      self.postMessage({type: MSG.READY, readsFiles: readsBlob(msg.probe)});
      break;
    case MSG.INSPECT:
      try {
        self.postMessage({type: MSG.INFO, id: msg.id, info: wasm_bindgen.inspect(msg.file, msg.others)});
      } catch (e) {
        self.postMessage({type: MSG.ERROR, id: msg.id, error: diskError(e)});
      }
      break;
    case MSG.CONVERT:
      convert(msg);
      break;
    case MSG.VERIFY:
      verify(msg);
      break;
    case MSG.CHECK_LOGIN:
      checkLogin(msg);
      break;
    case MSG.CANCEL:
      cancelled.add(msg.id);
      break;
  }
};

// A seed disk made only to check a login: its format and numbers change nothing the core checks.
const CHECK_TARGET = {format: 'raw', options: '', seed: '0', epoch: '0', outputName: 'seed.img'};

/** Answers whether the core takes `msg.login` for a seed disk (it checks every field as it makes one). */
function checkLogin(msg) {
  try {
    wasm_bindgen.Job.seedDisk(msg.login, CHECK_TARGET).free();
    self.postMessage({type: MSG.LOGIN_OK, id: msg.id});
  } catch (e) {
    self.postMessage({type: MSG.ERROR, id: msg.id, error: diskError(e)});
  }
}

async function convert(msg) {
  const {id, target} = msg;
  let job = null;
  let output = null;
  try {
    output = await openOutput(msg.output, () => cancelled.has(id));
    job = msg.input ? new wasm_bindgen.Job(msg.input, msg.others, target, msg.login ?? null)
      : msg.login ? wasm_bindgen.Job.seedDisk(msg.login, target)
      : wasm_bindgen.Job.blank(msg.blankSize, target);
    if (output.readBack) job.setReadBack(output.readBack);
    const {total, warnings} = job;
    self.postMessage({type: MSG.PROGRESS, id, done: 0, total, phase: job.phase});
    let last = performance.now();
    const progress = () => {
      if (performance.now() - last < PROGRESS_INTERVAL_MS) return;
      last = performance.now();
      self.postMessage({type: MSG.PROGRESS, id, done: job.done, total, phase: job.phase});
    };
    const checkCancel = () => {
      if (cancelled.has(id)) throw {kind: 'cancelled', message: 'Cancelled'};
    };
    // A seed disk (a few MiB, made from the login) is encoded here; an input's units on the pool.
    const pooled = msg.input ? setUpPool(msg) : null;
    for (let phase = job.phase; phase === 'scan' || phase === 'write'; phase = job.phase) {
      if (pooled === null) {
        while (job.encodeHere(BATCH_BYTES)) checkCancel();
      } else {
        await encodeInPool(job, pooled, phase, output, checkCancel, progress);
      }
      job.endPass();
    }
    await finishInSteps(job, output, checkCancel, progress);
    self.postMessage({type: MSG.PROGRESS, id, done: total, total, phase: 'finish'});
    const length = job.finish();
    await output.write(job.takeChunks());
    const result = await output.close(length);
    const memoryUsed = {coordinator: memory.buffer.byteLength, encoders: encoderMemory};
    self.postMessage({type: MSG.DONE, id, bytes: length, output: result, memory: memoryUsed, warnings});
  } catch (e) {
    const error = diskError(e);
    // The picker created the file when the user chose it; without this an empty or partial file stays.
    if (output) await output.discard();
    else if (msg.output.kind === 'handle') await msg.output.handle.remove().catch(() => {});
    self.postMessage(error.kind === 'cancelled' ? {type: MSG.CANCELLED, id} : {type: MSG.ERROR, id, error});
  } finally {
    // After a panic the instance is unusable and free() would trap too; the page restarts the workers.
    try { job?.free(); } catch { /* see above */ }
    cancelled.delete(id);
  }
}

/** Compares the source with the written output in one call; progress messages are posted from inside it. */
function verify(msg) {
  const {id} = msg;
  let last = 0;
  const progress = (done, total) => {
    if (performance.now() - last < PROGRESS_INTERVAL_MS && done < total) return;
    last = performance.now();
    self.postMessage({type: MSG.PROGRESS, id, done, total});
  };
  try {
    const result = wasm_bindgen.compare(msg.source, msg.others, msg.output, msg.outputName, progress);
    self.postMessage({type: MSG.VERIFIED, id, ...result});
  } catch (e) {
    self.postMessage({type: MSG.ERROR, id, error: diskError(e)});
  }
}

/** Has every encoder open the input for a new job; its id. */
function setUpPool(msg) {
  if (!pool.length) throw {kind: 'internal', message: 'No encoder workers', offset: null, file: null};
  const jobId = ++poolJob;
  for (const port of pool) {
    port.postMessage({type: POOL.SETUP, job: jobId, input: msg.input, others: msg.others, target: msg.target});
  }
  return jobId;
}

/**
 * One unit pass (`scan` or `write`): hands the units that hold data to the pool in batches of indices (round
 * robin, a bounded number in flight) and gives the results back to the job in order, writing what it queues.
 * Waiting for a batch lets a cancel message in.
 */
async function encodeInPool(job, jobId, phase, output, checkCancel, progress) {
  const waiting = [];
  let sent = 0;
  try {
    for (let exhausted = false; !exhausted || waiting.length;) {
      checkCancel();
      while (!exhausted && waiting.length < pool.length * BATCHES_PER_ENCODER) {
        const indices = job.nextIndices(BATCH_BYTES);
        if (indices.length === 0) {
          exhausted = true;
          break;
        }
        const batch = sent++;
        const answer = new Promise((resolve, reject) => batches.set(`${jobId}/${batch}`, {resolve, reject}));
        // Handled here so a failed batch that is not awaited yet is not reported as unhandled.
        answer.catch(() => {});
        waiting.push(answer);
        pool[batch % pool.length].postMessage({type: POOL.ENCODE, job: jobId, batch, phase, indices}, [indices.buffer]);
      }
      if (!waiting.length) break;
      const units = await waiting.shift();
      for (const {index, data} of units) job.writeUnit(index, data ?? undefined);
      if (job.queued >= WRITE_BYTES) await output.write(job.takeChunks());
      progress();
    }
  } finally {
    // Batches still out belong to a pass that has failed or been cancelled; their answers are dropped.
    for (const key of [...batches.keys()]) if (key.startsWith(`${jobId}/`)) batches.delete(key);
  }
}

/**
 * The writer's work after the last unit (tables, an OVA's checksum of its disk), a bounded step at a time; between
 * steps the queued output is written and, every so often, the event loop turns so that a cancel message gets in.
 */
async function finishInSteps(job, output, checkCancel, progress) {
  let turned = performance.now();
  while (!job.finishStep()) {
    if (job.queued >= WRITE_BYTES) await output.write(job.takeChunks());
    progress();
    if (performance.now() - turned > PROGRESS_INTERVAL_MS) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      turned = performance.now();
    }
    checkCancel();
  }
}

/**
 * Whether this worker can read a Blob the page made: WebKitGTK refuses every read from a worker of a page opened
 * from a file (NotReadableError), so the page can tell why no image can be read there.
 */
function readsBlob(blob) {
  try {
    return new FileReaderSync().readAsArrayBuffer(blob).byteLength === blob.size;
  } catch {
    return false;
  }
}

function settleBatch(msg) {
  const key = `${msg.job}/${msg.batch}`;
  const pending = batches.get(key);
  if (!pending) return;
  batches.delete(key);
  if (msg.type === MSG.ERROR) pending.reject(msg.error);
  else pending.resolve(msg.units);
}

/**
 * An output taking the core's chunks: write([{offset, data}]), close(length) → result, discard(), and where
 * the bytes written so far can be read back synchronously (OPFS only), readBack(offset, length) → Uint8Array.
 * `stopped()` tells whether the conversion has been cancelled, for an output that waits on its reader.
 */
async function openOutput(spec, stopped) {
  const open = {
    handle: () => openHandle(spec.handle),
    opfs: () => openOpfs(spec.name),
    memory: () => openMemory(spec.limit),
    stream: () => openStream(spec.port, stopped),
  };
  const output = await open[spec.kind]().catch(storageError('Cannot create the output'));
  // One write may still be running when write() returns, so the browser writes while the coordinator hands out
  // and takes back the next batch; the next write (or close) waits for it, which keeps the order and bounds the
  // bytes held. Writes to OPFS are synchronous and done by the time write() returns, as readBack needs.
  let running = null;
  const settle = async () => {
    const previous = running;
    running = null;
    await previous;
  };
  return {
    async write(chunks) {
      await settle();
      running = output.write(chunks).catch(storageError('Cannot write the output'));
      // Awaited by the next write or close; until then a failure must not count as unhandled.
      running.catch(() => {});
    },
    async close(length) {
      await settle();
      return output.close(length).catch(storageError('Cannot finish the output'));
    },
    async discard() {
      await settle().catch(() => {});
      await output.discard();
    },
    readBack: output.readBack,
  };
}

/** The browser's storage failing (quota, permission, a removed file) is an I/O error, not an internal one. */
function storageError(what) {
  return (e) => {
    if (e && typeof e.kind === 'string') throw e;
    throw {kind: 'io', message: `${what}: ${e?.name ?? 'Error'}: ${e?.message ?? e}`, offset: null, file: null};
  };
}

/** The picker's file: writes go to a swap file that replaces it on close() and vanishes on abort(). */
async function openHandle(handle) {
  const writable = await handle.createWritable();
  return {
    async write(chunks) {
      for (const {offset, data} of chunks) await writable.write({type: 'write', position: offset, data});
    },
    async close(length) {
      await writable.truncate(length);
      await writable.close();
      return {kind: 'handle'};
    },
    async discard() {
      await writable.abort().catch(() => {});
      await handle.remove().catch(() => {});
    },
  };
}

/** A file in the origin-private file system, written synchronously; the page downloads it when done. */
async function openOpfs(name) {
  const dir = await navigator.storage.getDirectory();
  const file = await dir.getFileHandle(name, {create: true});
  const access = await file.createSyncAccessHandle();
  return {
    async write(chunks) {
      for (const {offset, data} of chunks) {
        if (access.write(data, {at: offset}) !== data.length) throw storageFull(offset);
      }
    },
    async close(length) {
      access.truncate(length);
      access.flush();
      access.close();
      return {kind: 'opfs', name};
    },
    async discard() {
      try { access.close(); } catch { /* already closed */ }
      await dir.removeEntry(name).catch(() => {});
    },
    readBack(offset, length) {
      const bytes = new Uint8Array(length);
      access.read(bytes, {at: offset});
      return bytes;
    },
  };
}

/**
 * A short OPFS write: this origin's storage is used up. Private windows keep it in memory and allow far less
 * than the quota navigator.storage.estimate() reports (measured: about 1.2 GiB in headless Chromium).
 */
function storageFull(offset) {
  return {
    kind: 'io',
    message: "The browser's storage for this page is full (a private window allows little). Free some disk " +
      "space or use a normal window, or use Chromium's save dialog (over https or from a saved page), which " +
      'writes straight to the chosen file.',
    offset, file: null,
  };
}

/** The last resort: the output assembled in memory, refused past `limit` bytes. */
async function openMemory(limit) {
  let chunks = [];
  const tooBig = {
    kind: 'limit-exceeded',
    message: `The output is larger than ${limit / 2 ** 30} GiB, the limit for a download assembled in memory. ` +
      'Use Chromium over https (or a saved page in Chromium) to write straight to disk, or the diskbridge CLI.',
    offset: null, file: null,
  };
  return {
    async write(list) {
      for (const chunk of list) {
        if (chunk.offset + chunk.data.length > limit) throw tooBig;
        chunks.push(chunk);
      }
    },
    async close(length) {
      if (length > limit) throw tooBig;
      const bytes = new Uint8Array(length);
      // In write order, so a later write of the same range (metadata written last) wins.
      for (const {offset, data} of chunks) bytes.set(data.subarray(0, Math.max(0, length - offset)), offset);
      chunks = [];
      return {kind: 'memory', blob: new Blob([bytes])};
    },
    async discard() {
      chunks = [];
    },
  };
}

/**
 * A download the page's service worker streams to the browser's download manager (sw.js has the port's
 * protocol). The core writes append-only layouts for it (the job's target says so), so chunks come in order;
 * gaps, which read as zeros, are sent as zeros. A chunk goes only when the service worker asks for one, so the
 * conversion waits for the disk and memory stays at a chunk or two.
 */
async function openStream(port, stopped) {
  let position = 0;
  let credit = 0;
  let cancelledByUser = false;
  let wake = null;
  port.onmessage = ({data}) => {
    if (data.type === 'pull') credit++;
    if (data.type === 'cancel') cancelledByUser = true;
    wake?.();
  };
  const cancelled = {kind: 'cancelled', message: 'Cancelled'};
  const send = async (data) => {
    // Polled as well as woken: a cancel from the page arrives as a message to this worker, not on the port.
    while (!credit) {
      if (cancelledByUser || stopped()) throw cancelled;
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
      wake = null;
    }
    if (cancelledByUser || stopped()) throw cancelled;
    credit--;
    // The chunk's buffer is handed over, not copied; a view into a larger buffer is copied out first.
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
    port.postMessage({type: 'chunk', data: own}, [own.buffer]);
  };
  const zerosTo = async (end) => {
    while (position < end) {
      const n = Math.min(end - position, WRITE_BYTES);
      await send(new Uint8Array(n));
      position += n;
    }
  };
  return {
    async write(chunks) {
      for (const {offset, data} of chunks) {
        if (offset < position) {
          throw {kind: 'internal', message: `A streamed output cannot go back to offset ${offset}`, offset: null,
            file: null};
        }
        await zerosTo(offset);
        // Read before sending: a sent chunk's buffer is detached and its length reads 0.
        const length = data.length;
        if (length) await send(data);
        position += length;
      }
    },
    async close(length) {
      await zerosTo(length);
      port.postMessage({type: 'end'});
      port.close();
      return {kind: 'stream'};
    },
    async discard() {
      // The browser marks the download failed: a partial file never looks complete.
      port.postMessage({type: 'abort', reason: 'The conversion failed or was cancelled'});
      port.close();
    },
  };
}
