// The service worker of the hosted page (never of a saved one: from file:// nothing registers it). It keeps this
// build's files so the page opens and converts with the network gone. The build replaces BUILD with a hash of
// the page, so every deployment gets a cache of its own and the old ones are deleted on activation.
'use strict';

const CACHE = 'diskbridge-BUILD';
const FILES = ['./', './index.html', './manifest.webmanifest', './icon.svg', './icon-192.png', './icon-512.png'];

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

// Network first, so an online visit always gets the deployed build; the cache answers only when the network
// fails. The query (?seed=, ?epoch=) does not change the file.
self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== location.origin) return;
  event.respondWith(fetch(request).catch(async () => {
    const cached = await caches.match(request, {cacheName: CACHE, ignoreSearch: true});
    return cached ?? Response.error();
  }));
});
