// A pool worker: encodes units (deflates VMDK grains) for the coordinator, on its own wasm instance of the
// module the page compiled once. Units arrive and leave as transferred buffers over a MessagePort; nothing is
// shared, so this works without cross-origin isolation (a saved page cannot have it).
// Runs after the wasm-bindgen glue and protocol.js in the same blob.
'use strict';

let encoder = null;
let job = null;
let memory = null;

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type !== MSG.INIT) return;
  memory = wasm_bindgen.initSync({module: msg.module}).memory;
  msg.port.onmessage = (e) => handle(msg.port, e.data);
};

function handle(port, msg) {
  try {
    if (msg.type === POOL.SETUP) {
      encoder?.free();
      encoder = null;
      job = msg.job;
      const {format, options, seed, epoch, outputName} = msg.target;
      encoder = new wasm_bindgen.Encoder(format, options, BigInt(seed), BigInt(epoch), outputName, msg.virtualSize);
    } else if (msg.type === POOL.ENCODE) {
      if (msg.job !== job || !encoder) throw {kind: 'internal', message: 'Encoder not set up for this job'};
      const units = msg.units.map(({index, data}) => ({index, data: encoder.encode(index, data) ?? null}));
      // wasm memory never shrinks, so its size now is its high-water mark.
      const bytes = memory.buffer.byteLength;
      port.postMessage({type: POOL.ENCODED, job, batch: msg.batch, units, memory: bytes},
        units.filter((u) => u.data).map((u) => u.data.buffer));
    }
  } catch (e) {
    port.postMessage({type: MSG.ERROR, job: msg.job, batch: msg.batch, error: diskError(e)});
  }
}
