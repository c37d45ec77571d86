// The First login section: what a cloud image's first boot is to set up (host name, SSH public keys, password,
// user-data file) as the protocol's Login, and the disk size, each field checked before a conversion starts, its
// error shown at the field. The core does the checking (the worker makes a seed disk
// of the field alone), so the page and the CLI refuse the same things with the same words.
// Nothing here is sent anywhere or stored: the values stay in the fields, and in memory for the seed disk the
// result offers. Uses app.js's $, show, human, request and TEXT (one script with it; runs before it).
'use strict';

// Each field of the Login, by the id of its input (whose error goes in the element `${id}-error`).
const LOGIN_FIELDS = {hostname: 'hostname', 'ssh-keys': 'sshKeys', password: 'password', 'user-data': 'userData'};
// A user-data file is read no further than this: the core refuses anything over 64 KiB, which this much still
// shows it, and a large file picked by mistake is not read whole.
const USER_DATA_READ = 1 << 20;
// The disk size's units, as its select names them: powers of 1024, as qemu-img's suffixes are.
const SIZE_UNITS = {M: 2 ** 20, G: 2 ** 30, T: 2 ** 40};

/** The Login the fields hold, or null when they are all empty (then nothing changes from a plain conversion). */
async function readLogin() {
  const text = (id, trim) => {
    const value = trim ? $(id).value.trim() : $(id).value;
    return value === '' ? null : value;
  };
  const file = $('user-data').files[0];
  const login = {
    hostname: text('hostname', true),
    sshKeys: text('ssh-keys', true),
    // As typed: leading or trailing spaces are part of a password.
    password: text('password', false),
    userData: file ? new Uint8Array(await file.slice(0, USER_DATA_READ).arrayBuffer()) : null,
  };
  return Object.values(login).some((v) => v !== null) ? login : null;
}

/** Shows `message` at the field `id` (marking it invalid), or clears the field's error when it is null. */
function fieldError(id, message) {
  const element = $(`${id}-error`);
  element.hidden = message === null;
  show(element, message === null ? null : () => message());
  if (message === null) $(id).removeAttribute('aria-invalid');
  else $(id).setAttribute('aria-invalid', 'true');
}

/** The core's verdict on `login`: null when it takes it, else its error. */
async function coreVerdict(login) {
  try {
    await request({type: MSG.CHECK_LOGIN, login}).promise;
    return null;
  } catch (error) {
    return diskError(error);
  }
}

/** Checks the field `id` of `login` alone and shows its error at it; true when it is good (or empty). */
async function checkField(id, login) {
  const key = LOGIN_FIELDS[id];
  const error = login?.[key] == null ? null : await coreVerdict({[key]: login[key]});
  fieldError(id, error && (() => TEXT.loginError[key](error.message)));
  return error === null;
}

/**
 * Checks each filled field of `login` alone, so that an error lands at its field, then all together (a
 * user-data file may set what a field sets too: that is the user-data's error). True when all are good.
 */
async function checkLogin(login) {
  let good = true;
  for (const id of Object.keys(LOGIN_FIELDS)) good = (await checkField(id, login)) && good;
  if (good && login) {
    const error = await coreVerdict(login);
    if (error) fieldError('user-data', () => TEXT.loginError.userData(error.message));
    good = error === null;
  }
  return good;
}

/**
 * The disk size asked for: `{bytes}`, bytes null when the field is empty (the source's size); or null after showing
 * the field's error: not a size, or below `sourceSize` (a disk is only ever grown).
 */
function diskSize(sourceSize) {
  const input = $('disk-size');
  if (input.value === '' && !input.validity.badInput) {
    fieldError('disk-size', null);
    return {bytes: null};
  }
  const unit = $('disk-size-unit').value;
  // A whole number of bytes, as the core makes of the same number and unit (rounded down, as qemu-img does).
  const bytes = Math.trunc(Number(input.value) * SIZE_UNITS[unit]);
  const error = !input.validity.valid || !(bytes > 0) ? () => TEXT.sizeNotNumber
    : bytes < sourceSize ? () => TEXT.sizeTooSmall(`${input.value} ${unit}iB`, human(sourceSize)) : null;
  fieldError('disk-size', error);
  return error ? null : {bytes};
}

/**
 * What the First login section asks of a conversion of an image of `sourceSize` bytes: `{login, size}` (login
 * null when empty, size in bytes or null for the source's), or null after showing each wrong field's error and
 * moving the focus to the first one.
 */
async function firstLogin(sourceSize) {
  const size = diskSize(sourceSize);
  const login = await readLogin();
  const good = await checkLogin(login);
  if (good && size !== null) return {login, size: size.bytes};
  document.querySelector('#login [aria-invalid=true]')?.focus();
  return null;
}

/** The disk size's hint, naming the picked image's size (null: none picked yet). */
function showSourceSize(bytes) {
  show($('disk-size-hint'), () => TEXT.diskSizeHint(bytes === null ? null : human(bytes)));
}

/** Empties every field of the section, and their errors. */
function clearLogin() {
  for (const id of [...Object.keys(LOGIN_FIELDS), 'disk-size']) {
    $(id).value = '';
    fieldError(id, null);
  }
  $('ssh-key-file').value = '';
}

/** Picked .pub files fill the key field, after any keys already there. */
async function addKeyFiles(list) {
  const texts = await Promise.all([...list].map((file) => file.text()));
  const keys = [$('ssh-keys').value.trim(), ...texts.map((t) => t.trim())].filter(Boolean);
  $('ssh-keys').value = keys.join('\n');
  $('ssh-key-file').value = '';
  await recheck('ssh-keys');
}

/** Checks the field `id` again once it changes, so its error shows (or goes) before a conversion. */
async function recheck(id) {
  if (id === 'disk-size') diskSize(image?.info.virtualSize ?? 0);
  else await checkField(id, await readLogin());
}

function wireLogin() {
  for (const id of [...Object.keys(LOGIN_FIELDS), 'disk-size']) $(id).addEventListener('change', () => recheck(id));
  $('disk-size-unit').addEventListener('change', () => recheck('disk-size'));
  $('ssh-key-file').addEventListener('change', (e) => addKeyFiles(e.target.files));
  $('login-clear').addEventListener('click', clearLogin);
  showSourceSize(null);
}
