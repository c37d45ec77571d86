// The only message shapes that cross between the page, the coordinator worker and the encoder workers.
// Loaded as a classic script into every context (the page and each blob-URL worker), so it defines globals.
//
// page → coordinator
//   {type: 'init', module: WebAssembly.Module, pool: MessagePort[], probe: Blob}  one port per encoder worker
//       (at least one); probe: a small Blob the worker tries to read
//   {type: 'inspect', id, file: File, others: File[]}
//   {type: 'convert', id, input: File | null, blankSize: number, others: File[], target: Target, output: Output,
//    login: Login | null}
//       input null: the seed disk for `login` when there is one, else an empty disk of blankSize bytes
//       Target = {format: 'vmdk'|'ova'|'vhdx'|'qcow2'|'vpc'|'raw', options: string, seed: string, epoch: string,
//                 outputName: string}
//       Login = {hostname, sshKeys, password, userData}   a cloud image's first login, each null when not given:
//               strings, sshKeys the pasted text of one or more OpenSSH public keys, userData a Uint8Array
//       (seed and epoch are decimal strings: they are u64 and would lose bits as numbers)
//       Output = {kind: 'handle', handle: FileSystemFileHandle} | {kind: 'opfs', name} | {kind: 'memory', limit}
//              | {kind: 'stream', port: MessagePort}   a download the service worker streams (sw.js: its port's
//                messages), transferred; the target then has appendOnly: true (the core's append-only layouts)
//   {type: 'verify', id, source: File, others: File[], output: Blob, outputName}   compare output with source
//   {type: 'check-login', id, login: Login}   whether the core takes it for a seed disk
//   {type: 'cancel', id}
// coordinator → page
//   {type: 'ready', readsFiles: boolean}   whether it could read the probe (not in WebKitGTK from file://)
//   {type: 'info', id, info}            info as diskbridge's inspect() gives it
//   {type: 'progress', id, done, total, phase} guest bytes; phase 'scan', 'write' or 'finish' (a conversion's)
//   {type: 'done', id, bytes, output: {kind: 'handle'} | {kind: 'opfs', name} | {kind: 'memory', blob: Blob}
//    | {kind: 'stream'},
//    memory: {coordinator, encoders: []},  high-water wasm memory in bytes; an encoder that did nothing has 0
//    warnings: string[]}                   the writer's, as the CLI prints them
//   {type: 'login-ok', id}              the answer to check-login when the core takes the login
//   {type: 'verified', id, identical, offset: number|null, sizesDiffer}   offset: first differing sector
//   {type: 'cancelled', id}             the partial output is already gone
//   {type: 'error', id, error: DiskError}
// page → encoder worker
//   {type: 'init', module, port: MessagePort}  the port's other end is the coordinator's
// coordinator ↔ encoder worker, over that port
//   → {type: 'setup', job, input: File, others: File[], target: Target}   the encoder opens the input itself
//   → {type: 'encode', job, batch, phase, indices: Float64Array}   units to read and encode for the pass
//       phase ('scan' or 'write'), transferred
//   ← {type: 'encoded', job, batch, units: [{index, data: Uint8Array | null}], memory}   data transferred
//       null: the unit needs nothing; memory: the encoder's wasm memory in bytes
//   ← {type: 'error', job, batch, error: DiskError}
// DiskError = {kind, message, offset: number|null, file: string|null}, kind as the core names it
// ('io', 'not-found', 'invalid-format', 'corrupt', 'unsupported', 'limit-exceeded', 'invalid-argument', 'cancelled'), or
// 'internal' for a panic or a browser failure outside the core.
'use strict';

const MSG = Object.freeze({
  INIT: 'init', READY: 'ready', INSPECT: 'inspect', INFO: 'info', CONVERT: 'convert', CANCEL: 'cancel',
  PROGRESS: 'progress', DONE: 'done', CANCELLED: 'cancelled', ERROR: 'error', VERIFY: 'verify',
  VERIFIED: 'verified', CHECK_LOGIN: 'check-login', LOGIN_OK: 'login-ok',
});

const POOL = Object.freeze({SETUP: 'setup', ENCODE: 'encode', ENCODED: 'encoded'});

/** Whatever was thrown, as a DiskError: the core's objects pass through, anything else is 'internal'. */
function diskError(thrown) {
  if (thrown && typeof thrown === 'object' && typeof thrown.kind === 'string' && 'message' in thrown) {
    const {kind, message, offset, file} = thrown;
    return {kind, message: String(message), offset: offset ?? null, file: file ?? null};
  }
  // A panic traps as "RuntimeError: unreachable"; the panic hook left the real message here.
  const panic = globalThis.diskbridgePanic;
  if (panic) {
    globalThis.diskbridgePanic = undefined;
    return {kind: 'internal', message: 'Internal error: ' + panic, offset: null, file: null};
  }
  const text = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
  return {kind: 'internal', message: text, offset: null, file: null};
}
