// A pool worker: opens the picked input itself, on its own wasm instance of the module the page compiled once,
// and reads, decompresses and encodes the units the coordinator names. Indices arrive and encoded units leave as
// transferred buffers over a MessagePort; nothing is shared, so this works without cross-origin isolation (a
// saved page cannot have it).
// Runs after the wasm-bindgen glue and protocol.js in the same blob.
'use strict';

let encoder = null;
let job = null;
// Why this job's encoder could not be set up; its batches fail with it (the coordinator waits for batches only).
let setupError = null;
let memory = null;

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type !== MSG.INIT) return;
  memory = wasm_bindgen.initSync({module: msg.module}).memory;
  msg.port.onmessage = (e) => (e.data.type === POOL.SETUP ? setup(e.data) : encode(msg.port, e.data));
};

function setup(msg) {
  encoder?.free();
  encoder = null;
  job = msg.job;
  setupError = null;
  try {
    encoder = new wasm_bindgen.Encoder(msg.input, msg.others, msg.target);
  } catch (e) {
    setupError = diskError(e);
  }
}

function encode(port, msg) {
  try {
    if (msg.job !== job) throw {kind: 'internal', message: 'Encoder not set up for this job'};
    if (setupError) throw setupError;
    const units = Array.from(msg.indices, (index) => ({index, data: encoder.encode(index, msg.phase) ?? null}));
    // wasm memory never shrinks, so its size now is its high-water mark.
    const bytes = memory.buffer.byteLength;
    port.postMessage({type: POOL.ENCODED, job, batch: msg.batch, units, memory: bytes},
      units.filter((u) => u.data).map((u) => u.data.buffer));
  } catch (e) {
    port.postMessage({type: MSG.ERROR, job: msg.job, batch: msg.batch, error: diskError(e)});
  }
}
