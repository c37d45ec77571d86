//! The protocol's values (www/protocol.js) as the core's: a `Target`, a `Login`, an error as the plain object the
//! page shows.

use crate::error::{Error, Result};
use crate::formats::Format;
use crate::options::OptionList;
use crate::seed::SeedConfig;
use crate::target::Target;
use crate::writer::Settings;
use js_sys::{Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use web_sys::File;

/// An error as the plain object the page shows: `{kind, message, offset, file}`, with `null` where unknown.
pub fn js_error(e: &Error) -> JsValue {
    let obj = Object::new();
    set(&obj, "kind", e.kind().name());
    set(&obj, "message", e.message());
    set(&obj, "offset", nullable(e.offset().map(|o| o as f64)));
    set(&obj, "file", nullable(e.file()));
    obj.into()
}

impl From<Error> for JsValue {
    fn from(e: Error) -> JsValue {
        js_error(&e)
    }
}

/// `null` for `None` (wasm-bindgen would give `undefined`), as the protocol promises.
pub(super) fn nullable<T: Into<JsValue>>(value: Option<T>) -> JsValue {
    value.map_or(JsValue::NULL, Into::into)
}

pub(super) fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Reflect.set only fails on frozen objects or throwing setters; these are fresh plain objects.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

/// Strings as a JS array of strings.
pub(super) fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> Array {
    items.into_iter().map(JsValue::from).collect()
}

pub(super) fn files(list: &Array) -> Vec<File> {
    list.iter().filter_map(|v| v.dyn_into::<File>().ok()).collect()
}

/// The protocol's `Target`, `{format, options, seed, epoch, outputName}`, seed and epoch as decimal strings (they
/// are u64 and would lose bits as JS numbers).
pub(super) fn target(spec: &JsValue) -> Result<Target> {
    let text = |key: &str| {
        Reflect::get(spec, &key.into())
            .ok()
            .and_then(|value| value.as_string())
            .ok_or_else(|| Error::argument(format!("The target has no '{key}'")))
    };
    let number = |key: &str| {
        text(key)?.parse::<u64>().map_err(|_| Error::argument(format!("The target's '{key}' is not a whole number")))
    };
    Ok(Target {
        format: Format::from_name(&text("format")?)?,
        options: OptionList::parse(&text("options")?)?,
        settings: Settings {
            seed: number("seed")?,
            epoch: number("epoch")?,
            output_name: text("outputName")?,
            // qemu-img's -c: the page's qcow2 is uncompressed, as OpenStack's own conversions write it (compressed
            // clusters would cost every later read).
            compressed: false,
            seed_disk: None,
        },
    })
}

/// The protocol's `Login`, `{hostname, sshKeys, password, userData}` (each `null` or missing when not given; the
/// keys as pasted text, the user data as bytes): what the first boot is to set up. `None` when nothing is given.
pub(super) fn login(value: &JsValue) -> Result<Option<SeedConfig>> {
    if value.is_null() || value.is_undefined() {
        return Ok(None);
    }
    let field = |key: &str| Reflect::get(value, &key.into()).ok().filter(|v| !v.is_null() && !v.is_undefined());
    let text = |key: &str| field(key).and_then(|v| v.as_string()).filter(|t| !t.is_empty());
    let ssh_keys = match text("sshKeys") {
        Some(keys) => crate::seed::ssh_key::keys_in(keys.as_bytes())?,
        None => Vec::new(),
    };
    let user_data = field("userData").map(|bytes| Uint8Array::new(&bytes).to_vec());
    let config = SeedConfig { hostname: text("hostname"), ssh_keys, password: text("password"), user_data };
    Ok(if config.is_empty() { None } else { Some(config) })
}

/// The target with `login` in it: a package carries the seed disk, other formats cannot.
pub(super) fn with_login(mut target: Target, login: Option<SeedConfig>) -> Result<Target> {
    if let Some(config) = login {
        if target.format.spec().disk_format.is_none() {
            return Err(Error::argument(format!(
                "A first login goes into an OVA; for {} output save the seed disk beside it",
                target.format
            )));
        }
        let (seed, epoch) = (target.settings.seed, target.settings.epoch);
        target.settings.seed_disk = Some(crate::seed::for_package(&config, seed, epoch)?);
    }
    Ok(target)
}

/// The protocol Target's `appendOnly`: the output takes bytes only in order (a streamed download).
pub(super) fn append_only(spec: &JsValue) -> bool {
    Reflect::get(spec, &"appendOnly".into()).is_ok_and(|v| v.is_truthy())
}
