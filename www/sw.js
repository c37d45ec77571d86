// The service worker of the hosted page (never of a saved one: from file:// nothing registers it). It keeps this
// build's files so the page opens and converts with the network gone. The build replaces BUILD with a hash of
// the page, so every deployment gets a cache of its own and the old ones are deleted on activation.
'use strict';

const CACHE = 'diskbridge-BUILD';
// Not './': a static host need not serve index.html for the directory; navigations fall back to it below.
const FILES = ['./index.html', './manifest.webmanifest', './icon.svg', './icon-192.png', './icon-512.png'];

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
    const cache = await caches.open(CACHE);
    // The installed app starts at './', and every page of this scope is the one page.
    const cached = await cache.match(request, {ignoreSearch: true})
      ?? (request.mode === 'navigate' ? await cache.match('./index.html') : undefined);
    return cached ?? Response.error();
  }));
});
