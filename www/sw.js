// The service worker of the hosted page (never of a saved one: from file:// nothing registers it). It keeps this
// build's files so the page opens and converts with the network gone, and it turns a conversion into a download
// the browser writes to disk as it arrives (for browsers without a save dialog). The build replaces BUILD with a
// hash of the page, so every deployment gets a cache of its own and the old ones are deleted on activation.
'use strict';

const CACHE = 'diskbridge-BUILD';
// Not './': a static host need not serve index.html for the directory; navigations fall back to it below.
const FILES = ['./index.html', './manifest.webmanifest', './icon.svg', './icon-192.png', './icon-512.png'];
// A streamed download's address: download/<id>/<file name>, under this worker's scope.
const DOWNLOAD_PATH = /\/download\/([\w-]+)\/[^/]*$/;

self.addEventListener('install', (event) => {
  // A new build takes over at once: pages always fetch the network first, so nothing stays on the old one.
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  const old = (key) => key.startsWith('diskbridge-') && key !== CACHE;
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter(old).map((key) => caches.delete(key))))
    .then(() => self.clients.claim()));
});

// ---- streamed downloads ----------------------------------------------------------------------------------
//
// The page registers a download (its id, file name and a MessagePort whose other end the coordinator worker
// holds), then opens download/<id>/<name> in a hidden frame. This worker answers that request with a stream it
// fills from the port, one chunk per pull: the browser pulls as it writes to disk, so the conversion runs no
// faster than the disk takes it and memory holds a chunk or two. The output bytes pass straight through: they
// are never cached, stored or logged here.
//
// port protocol (this worker ↔ coordinator): ← {type: 'pull'} | {type: 'cancel'} (the user stopped the
// download); → {type: 'chunk', data: Uint8Array} | {type: 'end'} | {type: 'abort', reason}. A download that
// does not end with 'end' fails in the browser's download list, so no complete-looking file is left.

// Chunks (of up to 8 MiB) the stream asks for ahead of the browser's reads: one at a time costs a round trip per
// chunk (measured in Firefox: about 40 MB/s); a few keep the download busy while memory stays bounded.
const CHUNKS_AHEAD = 4;

/** Registered downloads not yet requested, by id: {name, port}. */
const registered = new Map();
/** Downloads being streamed, by id: abort(reason) ends one with an error. */
const streaming = new Map();

self.addEventListener('message', (event) => {
  const msg = event.data;
  if (msg?.type === 'download' && event.ports[0]) {
    registered.set(msg.id, {name: msg.name, port: event.ports[0]});
    event.ports[0].postMessage({type: 'registered'});
  } else if (msg?.type === 'abort') {
    streaming.get(msg.id)?.(msg.reason);
    registered.delete(msg.id);
  }
  // {type: 'keepalive'} needs nothing: the event itself keeps this worker running during a long download
  // (Firefox stops a worker that has had no event for 30 s, even while it is answering a request).
});

function streamDownload(event, id) {
  const entry = registered.get(id);
  if (!entry) return new Response('This download has ended or was never started.', {status: 404});
  registered.delete(id);
  const {name, port} = entry;
  let answered = null;
  let finished;
  const done = new Promise((resolve) => { finished = resolve; });
  const stream = new ReadableStream({
    start(controller) {
      const settle = () => {
        answered?.();
        answered = null;
      };
      const end = (error) => {
        streaming.delete(id);
        port.onmessage = null;
        port.close();
        try {
          if (error) controller.error(new Error(error));
          else controller.close();
        } catch { /* the browser had already cancelled the download */ }
        settle();
        finished();
      };
      streaming.set(id, (reason) => end(reason || 'aborted'));
      port.onmessage = ({data}) => {
        if (data.type === 'chunk') {
          controller.enqueue(data.data);
          settle();
        } else if (data.type === 'end') {
          end(null);
        } else if (data.type === 'abort') {
          end(data.reason || 'aborted');
        }
      };
    },
    pull() {
      port.postMessage({type: 'pull'});
      return new Promise((resolve) => { answered = resolve; });
    },
    cancel() {
      port.postMessage({type: 'cancel'});
      streaming.delete(id);
      finished();
    },
  }, {highWaterMark: CHUNKS_AHEAD});
  event.waitUntil(done);
  // Plain ASCII for old parsers, the exact (UTF-8) name for the rest (RFC 6266).
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return new Response(stream, {
    headers: {
      'Content-Type': 'application/octet-stream',
      'Content-Disposition': `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`,
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    },
  });
}

// ---- the page's files --------------------------------------------------------------------------------------

// Network first, so an online visit always gets the deployed build; the cache answers only when the network
// fails. The query (?seed=, ?epoch=) does not change the file.
self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== location.origin) return;
  const download = new URL(request.url).pathname.match(DOWNLOAD_PATH);
  if (download) {
    event.respondWith(streamDownload(event, download[1]));
    return;
  }
  event.respondWith(fetch(request).catch(async () => {
    const cache = await caches.open(CACHE);
    // The installed app starts at './', and every page of this scope is the one page.
    const cached = await cache.match(request, {ignoreSearch: true})
      ?? (request.mode === 'navigate' ? await cache.match('./index.html') : undefined);
    return cached ?? Response.error();
  }));
});
