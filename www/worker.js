// The coordinator worker: runs the core (reading the picked File with FileReaderSync, which only a dedicated
// worker has), and writes the output chunks it queues to the picked file, OPFS or memory.
// Runs after the wasm-bindgen glue (global `wasm_bindgen`) and protocol.js in the same blob.
'use strict';

// Guest bytes per step: small enough that progress and cancel answer within a fraction of a second even at
// deflate speed, large enough that the per-step overhead does not show.
const STEP_BYTES = 4 << 20;
const PROGRESS_INTERVAL_MS = 100;

const cancelled = new Set();

self.onmessage = (event) => {
  const msg = event.data;
  switch (msg.type) {
    case MSG.INIT:
      wasm_bindgen.initSync({module: msg.module});
      self.postMessage({type: MSG.READY});
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
    case MSG.CANCEL:
      cancelled.add(msg.id);
      break;
  }
};

/** Lets queued messages (a cancel) in: awaiting a resolved promise would not. */
function yieldToEvents() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

async function convert(msg) {
  const {id, target} = msg;
  let job = null;
  let output = null;
  try {
    output = await openOutput(msg.output);
    const seed = BigInt(target.seed);
    const epoch = BigInt(target.epoch);
    job = msg.input
      ? new wasm_bindgen.Job(msg.input, msg.others, target.format, target.options, seed, epoch, target.outputName)
      : wasm_bindgen.Job.blank(msg.blankSize, target.format, target.options, seed, epoch, target.outputName);
    const total = job.total;
    self.postMessage({type: MSG.PROGRESS, id, done: 0, total});
    let last = performance.now();
    for (let finished = false; !finished;) {
      await yieldToEvents();
      if (cancelled.has(id)) throw {kind: 'cancelled', message: 'Cancelled'};
      finished = job.step(STEP_BYTES);
      await output.write(job.takeChunks());
      if (performance.now() - last >= PROGRESS_INTERVAL_MS) {
        last = performance.now();
        self.postMessage({type: MSG.PROGRESS, id, done: job.done, total});
      }
    }
    self.postMessage({type: MSG.PROGRESS, id, done: total, total});
    const length = job.finish();
    await output.write(job.takeChunks());
    const result = await output.close(length);
    self.postMessage({type: MSG.DONE, id, bytes: length, output: result});
  } catch (e) {
    const error = diskError(e);
    // The picker created the file when the user chose it; without this an empty or partial file stays.
    if (output) await output.discard();
    else if (msg.output.kind === 'handle') await msg.output.handle.remove().catch(() => {});
    self.postMessage(error.kind === 'cancelled' ? {type: MSG.CANCELLED, id} : {type: MSG.ERROR, id, error});
  } finally {
    if (job) job.free();
    cancelled.delete(id);
  }
}

/** An output taking the core's chunks: write([{offset, data}]), close(length) → result, discard(). */
async function openOutput(spec) {
  switch (spec.kind) {
    case 'handle': return openHandle(spec.handle);
    case 'opfs': return openOpfs(spec.name);
    case 'memory': return openMemory(spec.limit);
  }
  throw {kind: 'internal', message: `Unknown output kind '${spec.kind}'`};
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
        if (access.write(data, {at: offset}) !== data.length) {
          throw {kind: 'io', message: 'Short write to browser storage (is the disk full?)', offset, file: null};
        }
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
  };
}

/** The last resort: the output assembled in memory, refused past `limit` bytes. */
function openMemory(limit) {
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
