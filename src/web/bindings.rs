//! What the page's workers call besides a conversion ([`super::job`]): the start hook that makes panics readable,
//! [`inspect`] a picked image, and [`compare`] the written output with its source.

use super::blob::{BlobReader, PickedFiles};
use super::protocol::{files, nullable, set, strings};
use crate::compare::Comparison;
use crate::error::Result;
use crate::extent::ExtentKind;
use crate::image::{Extents, Image};
use crate::open::OpenContext;
use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::{Blob, File};

/// Runs when a worker instantiates the module: panics become readable, both in the console and for the worker,
/// which finds the message in `globalThis.diskbridgePanic` after the call traps.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let _ = Reflect::set(&js_sys::global(), &"diskbridgePanic".into(), &info.to_string().into());
    }));
}

pub(super) fn open(input: &File, resolver: &PickedFiles) -> Result<Box<dyn Image>> {
    open_blob(&input.name(), input.clone().into(), resolver)
}

pub(super) fn open_blob(name: &str, blob: Blob, resolver: &PickedFiles) -> Result<Box<dyn Image>> {
    open_in(OpenContext::new(resolver), name, blob)
}

/// Opens `blob`, named `name`, through `ctx`, in the probed format.
pub(super) fn open_in(mut ctx: OpenContext<'_>, name: &str, blob: Blob) -> Result<Box<dyn Image>> {
    let reader = BlobReader::new(blob).map_err(|e| e.in_file(name))?;
    ctx.open(name, Box::new(reader), None)
}

/// What the guest boots with: `{partitionTable: 'gpt'|'mbr'|'none', boot: ['bios'|'uefi'...], problems}`.
fn guest(image: &mut dyn Image) -> Result<JsValue> {
    let guest = crate::guest::inspect(image)?;
    let obj = Object::new();
    set(&obj, "partitionTable", guest.table.name());
    set(&obj, "boot", strings(guest.boot.iter().map(|b| b.name())));
    set(&obj, "problems", strings(guest.problems.iter().map(String::as_str)));
    Ok(obj.into())
}

/// Looks at a picked image: `{name, format, virtualSize, fileSize, clusterSize, compression, allocatedBytes,
/// backingFile, backingFormat, needsBacking, dirty, warnings, guest}`, `guest` as the partition table and boot
/// methods found in the guest's first sectors.
///
/// `others` are the other picked files, searched for backing files by name. When a backing file is not among
/// them, the result lists it in `needsBacking` (the page asks for it) and holds what the image's own headers say;
/// `allocatedBytes` and `guest`, which need the whole chain, are `null`. `clusterSize`, `compression` and
/// `backingFile` are also `null` where the format has none.
///
/// # Errors
/// The core's error as `{kind, message, offset, file}`.
#[wasm_bindgen]
pub fn inspect(input: File, others: Array) -> Result<JsValue, JsValue> {
    let resolver = PickedFiles::new(files(&others));
    let name = input.name();
    // An overlay is looked at alone when its backing file was not picked, as `info` does in the CLI.
    let mut image = open_in(OpenContext::new(&resolver).allowing_missing_backing(), &name, input.clone().into())?;
    let missing = resolver.missing();
    let obj = Object::new();
    set(&obj, "name", name);
    set(&obj, "fileSize", input.size());
    // The guest's map and partition table continue in the missing file: unknown until it is picked.
    if missing.is_empty() {
        let mut allocated = 0;
        for extent in Extents::all(image.as_mut()) {
            let extent = extent?;
            if extent.kind == ExtentKind::Data {
                allocated += extent.length;
            }
        }
        set(&obj, "allocatedBytes", allocated as f64);
        set(&obj, "guest", guest(image.as_mut())?);
    } else {
        set(&obj, "allocatedBytes", JsValue::NULL);
        set(&obj, "guest", JsValue::NULL);
    }
    let info = image.info();
    set(&obj, "format", info.format);
    set(&obj, "virtualSize", info.virtual_size as f64);
    set(&obj, "clusterSize", nullable(info.cluster_size.map(|c| c as f64)));
    let compression = info.specific.as_ref().and_then(|s| s.text("compression-type"));
    set(&obj, "compression", nullable(compression));
    set(&obj, "backingFile", nullable(info.backing_filename.clone().or_else(|| missing.first().cloned())));
    set(&obj, "backingFormat", nullable(info.backing_format.clone()));
    set(&obj, "needsBacking", missing.into_iter().map(JsValue::from).collect::<Array>());
    set(&obj, "dirty", info.dirty);
    set(&obj, "warnings", strings(info.warnings.iter().map(String::as_str)));
    Ok(obj.into())
}

/// Compares the guest contents of `source` (backing files among `others`) with a written `output` named
/// `output_name`, as `qemu-img compare` does: `{identical, offset, sizesDiffer}`, `offset` the first differing
/// 512-byte sector or `null`. `progress(done, total)` is called after every compared MiB.
///
/// # Errors
/// The core's error reading either image.
#[wasm_bindgen]
pub fn compare(
    source: File,
    others: Array,
    output: Blob,
    output_name: &str,
    progress: &Function,
) -> Result<JsValue, JsValue> {
    let resolver = PickedFiles::new(files(&others));
    let mut a = open(&source, &resolver)?;
    let mut b = open_blob(output_name, output, &resolver)?;
    let mut report = |done: u64, total: u64| {
        // The page's progress callback only posts a message; nothing it throws matters to the comparison.
        let _ = progress.call2(&JsValue::NULL, &(done as f64).into(), &(total as f64).into());
    };
    let result = crate::compare::compare(a.as_mut(), b.as_mut(), false, &mut report)?;
    let (identical, offset, sizes_differ) = match result {
        Comparison::Identical { sizes_differ } => (true, None, sizes_differ),
        Comparison::Mismatch { offset, sizes_differ } => (false, Some(offset as f64), sizes_differ),
        Comparison::SizeMismatch => (false, None, true),
    };
    let obj = Object::new();
    set(&obj, "identical", identical);
    set(&obj, "offset", nullable(offset));
    set(&obj, "sizesDiffer", sizes_differ);
    Ok(obj.into())
}
