//! What the page's workers call: [`inspect`] a picked image, run a conversion — a [`Job`] in the coordinator
//! worker, an [`Encoder`] reading and encoding units in each pool worker — [`compare`] the written output with
//! its source, and errors as plain objects.

use super::blob::{BlobReader, PickedFiles};
use super::sink::ChunkSink;
use crate::compare::Comparison;
use crate::convert::{Converter, Phase, read_unit};
use crate::error::{Error, Result};
use crate::extent::ExtentKind;
use crate::formats::Format;
use crate::image::{Blank, Extents, Image};
use crate::open::OpenContext;
use crate::options::OptionList;
use crate::seed::SeedConfig;
use crate::target::{self, Encoders, Target};
use crate::writer::{OneOutput, Settings};
use js_sys::{Array, Function, Object, Reflect, Uint8Array};
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
fn nullable<T: Into<JsValue>>(value: Option<T>) -> JsValue {
    value.map_or(JsValue::NULL, Into::into)
}

fn set(obj: &Object, key: &str, value: impl Into<JsValue>) {
    // Reflect.set only fails on frozen objects or throwing setters; these are fresh plain objects.
    let _ = Reflect::set(obj, &key.into(), &value.into());
}

fn files(list: &Array) -> Vec<File> {
    list.iter().filter_map(|v| v.dyn_into::<File>().ok()).collect()
}

/// The protocol's `Target`, `{format, options, seed, epoch, outputName}`, seed and epoch as decimal strings (they
/// are u64 and would lose bits as JS numbers).
fn target(spec: &JsValue) -> Result<Target> {
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
fn login(value: &JsValue) -> Result<Option<SeedConfig>> {
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
fn with_login(mut target: Target, login: Option<SeedConfig>) -> Result<Target> {
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
fn append_only(spec: &JsValue) -> bool {
    Reflect::get(spec, &"appendOnly".into()).is_ok_and(|v| v.is_truthy())
}

fn open(input: &File, resolver: &PickedFiles) -> Result<Box<dyn Image>> {
    open_blob(&input.name(), input.clone().into(), resolver)
}

fn open_blob(name: &str, blob: Blob, resolver: &PickedFiles) -> Result<Box<dyn Image>> {
    open_in(OpenContext::new(resolver), name, blob)
}

/// Opens `blob`, named `name`, through `ctx`, in the probed format.
fn open_in(mut ctx: OpenContext<'_>, name: &str, blob: Blob) -> Result<Box<dyn Image>> {
    let reader = BlobReader::new(blob).map_err(|e| e.in_file(name))?;
    ctx.open(name, Box::new(reader), None)
}

/// What the guest boots with: `{partitionTable: 'gpt'|'mbr'|'none', boot: ['bios'|'uefi'...], problems}`.
fn guest(image: &mut dyn Image) -> Result<JsValue> {
    let guest = crate::guest::inspect(image)?;
    let strings = |items: Vec<&str>| items.into_iter().map(JsValue::from).collect::<Array>();
    let obj = Object::new();
    set(&obj, "partitionTable", guest.table.name());
    set(&obj, "boot", strings(guest.boot.iter().map(|b| b.name()).collect()));
    set(&obj, "problems", strings(guest.problems.iter().map(String::as_str).collect()));
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
    set(&obj, "warnings", info.warnings.iter().map(|w| JsValue::from(w.as_str())).collect::<Array>());
    Ok(obj.into())
}

/// A conversion's coordinator: steps through the phases of [`Converter`] — an optional scan pass and the write
/// pass, each handing out the indices of the units that hold data and taking them back encoded, then the finish in
/// bounded steps — and queues output chunks for the worker to write.
///
/// For each unit pass ([`Job::phase`] `scan` or `write`): take indices with [`Job::next_indices`], have
/// [`Encoder`]s (one per pool worker) read and encode them for that pass, give the results back with
/// [`Job::write_unit`] in ascending order, and call [`Job::end_pass`] once every unit is back. Then call
/// [`Job::finish_step`] until it returns `true` (phase `done`), draining [`Job::take_chunks`] along the way, and
/// [`Job::finish`] for the output's length. Cancelling is simply not taking the next step.
#[wasm_bindgen]
pub struct Job {
    conv: Option<Converter>,
    sink: ChunkSink,
}

#[wasm_bindgen]
impl Job {
    /// Converts `input` (backing files found among `others`) to the protocol's `Target` `spec`, grown to its
    /// `size=` option if it has one, an OVA carrying the seed disk for the protocol's `Login` `login`.
    ///
    /// # Errors
    /// The core's error: a bad option, size or login, an unreadable image, a backing file that was not picked.
    #[wasm_bindgen(constructor)]
    pub fn new(input: File, others: Array, spec: JsValue, login: JsValue) -> Result<Job, JsValue> {
        let mut target = with_login(target(&spec)?, self::login(&login)?)?;
        let source = target::sized(open(&input, &PickedFiles::new(files(&others)))?, &mut target.options)?;
        Ok(Job::start(source, &target, append_only(&spec))?)
    }

    /// A cloud-init seed disk for the protocol's `Login` `login`, written to `spec` — the `seed` command, byte for
    /// byte.
    ///
    /// # Errors
    /// The core's error for an empty or bad login or a bad option.
    #[wasm_bindgen(js_name = seedDisk)]
    pub fn seed_disk(login: JsValue, spec: JsValue) -> Result<Job, JsValue> {
        let mut target = target(&spec)?;
        let config = self::login(&login)?.ok_or_else(|| Error::argument("The seed disk needs a first login"))?;
        let image = crate::seed::image(&config, target.settings.seed, target.settings.epoch)?;
        target.settings.seed = crate::seed::container_seed(target.settings.seed);
        Ok(Job::start(image, &target, append_only(&spec))?)
    }

    /// An empty disk of `size` bytes written to `spec` — the `create` command.
    ///
    /// # Errors
    /// The core's error for a bad option or size.
    pub fn blank(size: f64, spec: JsValue) -> Result<Job, JsValue> {
        Ok(Job::start(Box::new(Blank::new(size as u64)), &target(&spec)?, append_only(&spec))?)
    }

    fn start(image: Box<dyn Image>, target: &Target, append_only: bool) -> Result<Job> {
        let sink = ChunkSink::new(append_only);
        let writer = target::writer(target, image.virtual_size(), &mut OneOutput::new(Box::new(sink.clone())))?;
        Ok(Job { conv: Some(Converter::new(image, writer)?), sink })
    }

    fn conv(&mut self) -> Result<&mut Converter> {
        self.conv.as_mut().ok_or_else(|| Error::argument("The conversion has already finished"))
    }

    /// Lets the writer read back the output written so far: `reader(offset, length) → Uint8Array`, synchronous
    /// (an OVA hashes its finished disk member). Call before the first unit; chunks not yet drained are laid
    /// over what it reads.
    #[wasm_bindgen(js_name = setReadBack)]
    pub fn set_read_back(&self, reader: Function) {
        self.sink.set_reader(reader);
    }

    /// Where the conversion is: `scan`, `write`, `finish` or `done`.
    #[wasm_bindgen(getter)]
    pub fn phase(&self) -> String {
        self.conv.as_ref().map_or(Phase::Done, Converter::phase).name().to_string()
    }

    /// The work in all, in the units of [`Job::done`].
    #[wasm_bindgen(getter)]
    pub fn total(&self) -> f64 {
        self.conv.as_ref().map_or(0, |c| c.total()) as f64
    }

    /// The work done so far, in every phase; it reaches the total only when the output is complete.
    #[wasm_bindgen(getter)]
    pub fn done(&self) -> f64 {
        self.conv.as_ref().map_or(0, |c| c.done()) as f64
    }

    /// The next units of the current pass that hold data, about `budget` guest bytes of them: their indices, for
    /// [`Encoder`]s to read and encode. Empty once no unit of the pass is left.
    ///
    /// # Errors
    /// The core's error reading the source's map.
    #[wasm_bindgen(js_name = nextIndices)]
    pub fn next_indices(&mut self, budget: f64) -> Result<Vec<f64>, JsValue> {
        let conv = self.conv()?;
        let mut indices = Vec::new();
        while ((indices.len() as u64 * conv.unit_size()) as f64) < budget {
            let Some(index) = conv.next_index()? else { break };
            indices.push(index as f64);
        }
        Ok(indices)
    }

    /// Reads, encodes and writes the next units of the current pass here, about `budget` guest bytes of them,
    /// for a source no pool worker can open itself (a seed disk, a few MiB); `false` once the pass has none left.
    ///
    /// # Errors
    /// The core's error reading, encoding or writing.
    #[wasm_bindgen(js_name = encodeHere)]
    pub fn encode_here(&mut self, budget: f64) -> Result<bool, JsValue> {
        let conv = self.conv()?;
        let encoder = conv.encoder()?;
        let mut taken = 0;
        while ((taken * conv.unit_size()) as f64) < budget {
            let Some((index, data)) = conv.next_unit()? else { return Ok(false) };
            let encoded = encoder.encode(index, data)?;
            conv.accept(index, encoded)?;
            taken += 1;
        }
        Ok(true)
    }

    /// Gives the writer unit `index` as an [`Encoder`] encoded it for the current pass (`undefined` for a unit
    /// that needs nothing). Units must come back in the order [`Job::next_indices`] gave them.
    ///
    /// # Errors
    /// The core's error, including a unit out of order.
    #[wasm_bindgen(js_name = writeUnit)]
    pub fn write_unit(&mut self, index: f64, encoded: Option<Vec<u8>>) -> Result<(), JsValue> {
        Ok(self.conv()?.accept(index as u64, encoded)?)
    }

    /// Ends the current unit pass once every unit is back: the scan leads to the write pass, the write pass to
    /// the finish.
    ///
    /// # Errors
    /// The core's error, including units still out.
    #[wasm_bindgen(js_name = endPass)]
    pub fn end_pass(&mut self) -> Result<(), JsValue> {
        Ok(self.conv()?.end_pass()?)
    }

    /// Does the next bounded step of the finish (tables, an OVA's checksum); `true` once the output is complete.
    ///
    /// # Errors
    /// The core's error.
    #[wasm_bindgen(js_name = finishStep)]
    pub fn finish_step(&mut self) -> Result<bool, JsValue> {
        Ok(self.conv()?.finish_step()?)
    }

    /// Output bytes queued since [`Job::take_chunks`] was last called.
    #[wasm_bindgen(getter)]
    pub fn queued(&self) -> f64 {
        self.sink.queued() as f64
    }

    /// The output queued since the last call: an array of `{offset, data}`, to be written in order (later
    /// chunks may overwrite earlier ones).
    #[wasm_bindgen(js_name = takeChunks)]
    pub fn take_chunks(&self) -> Array {
        self.sink
            .drain()
            .into_iter()
            .map(|(offset, data)| {
                let chunk = Object::new();
                set(&chunk, "offset", offset as f64);
                set(&chunk, "data", Uint8Array::from(&data[..]));
                JsValue::from(chunk)
            })
            .collect()
    }

    /// The output's final length, once [`Job::finish_step`] has returned `true`.
    ///
    /// # Errors
    /// The core's error, including a finish not yet done.
    pub fn finish(&mut self) -> Result<f64, JsValue> {
        let conv = self.conv.take().ok_or_else(|| Error::argument("The conversion has already finished"))?;
        conv.into_sink()?;
        let len = self.sink.final_len().ok_or_else(|| Error::argument("The writer did not set the output's length"))?;
        Ok(len as f64)
    }
}

/// A pool worker's share of a [`Job`]: its own opening of the same input, from which it reads the units the
/// coordinator names and encodes them for the pass at hand — so reading and decompressing the input run on every
/// core, as the CLI's threads do, and only indices and encoded units cross between workers.
#[wasm_bindgen]
pub struct Encoder {
    source: Box<dyn Image>,
    encoders: Encoders,
}

#[wasm_bindgen]
impl Encoder {
    /// The encoders a [`Job`] with these arguments uses, over its own opening of `input`.
    ///
    /// # Errors
    /// The core's error for a bad option or an unreadable image.
    #[wasm_bindgen(constructor)]
    pub fn new(input: File, others: Array, spec: JsValue) -> Result<Encoder, JsValue> {
        let mut target = target(&spec)?;
        let source = target::sized(open(&input, &PickedFiles::new(files(&others)))?, &mut target.options)?;
        Ok(Encoder { encoders: target::encoders(&target, source.virtual_size())?, source })
    }

    /// Reads unit `index` and encodes it for `phase` (`scan` or `write`): the bytes to store, or `undefined` when
    /// the unit needs nothing.
    ///
    /// # Errors
    /// The core's error reading the source or encoding; `InvalidArgument` for a scan the writer has none of.
    pub fn encode(&mut self, index: f64, phase: &str) -> Result<Option<Vec<u8>>, JsValue> {
        let index = index as u64;
        let encoder = match phase {
            "scan" => self.encoders.scan.clone().ok_or_else(|| Error::argument("This output has no scan pass"))?,
            _ => self.encoders.write.clone(),
        };
        let data = read_unit(self.source.as_mut(), self.encoders.unit, index)?;
        Ok(encoder.encode(index, data)?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::*;

    wasm_bindgen_test_configure!(run_in_dedicated_worker);

    fn file(bytes: &[u8], name: &str) -> File {
        File::new_with_u8_array_sequence(&Array::of1(&Uint8Array::from(bytes)), name).unwrap()
    }

    fn get(obj: &JsValue, key: &str) -> JsValue {
        Reflect::get(obj, &key.into()).unwrap()
    }

    /// Applies drained chunks in order, as the worker's outputs do.
    fn apply(out: &mut Vec<u8>, chunks: &Array) {
        for chunk in chunks.iter() {
            let offset = get(&chunk, "offset").as_f64().unwrap() as usize;
            let data = Uint8Array::new(&get(&chunk, "data")).to_vec();
            if out.len() < offset + data.len() {
                out.resize(offset + data.len(), 0);
            }
            out[offset..offset + data.len()].copy_from_slice(&data);
        }
    }

    /// The protocol's Target, with the largest seed a u64 holds (more than a JS number keeps exactly).
    fn spec(format: &str, options: &str, output_name: &str) -> JsValue {
        let spec = Object::new();
        for (key, value) in [
            ("format", format),
            ("options", options),
            ("seed", "18446744073709551615"),
            ("epoch", "2"),
            ("outputName", output_name),
        ] {
            set(&spec, key, value);
        }
        spec.into()
    }

    fn raw_disk() -> Vec<u8> {
        let mut data = vec![0u8; 3 << 20];
        data[5] = 1;
        data[(2 << 20) + 7] = 2;
        data
    }

    #[wasm_bindgen_test]
    fn errors_cross_as_plain_objects() {
        let e = js_error(&Error::corrupt("L2 table offset unaligned").at(0x30000).in_file("a.qcow2"));
        assert_eq!(get(&e, "kind").as_string().as_deref(), Some("corrupt"));
        assert_eq!(get(&e, "message").as_string().as_deref(), Some("L2 table offset unaligned"));
        assert_eq!(get(&e, "offset").as_f64(), Some(196608.0));
        assert_eq!(get(&e, "file").as_string().as_deref(), Some("a.qcow2"));
        assert!(get(&js_error(&Error::cancelled()), "offset").is_null());
    }

    #[wasm_bindgen_test]
    fn inspect_reports_size_and_allocation() {
        let info = inspect(file(&raw_disk(), "disk.img"), Array::new()).unwrap();
        assert_eq!(get(&info, "format").as_string().as_deref(), Some("raw"));
        assert_eq!(get(&info, "virtualSize").as_f64(), Some((3 << 20) as f64));
        assert_eq!(get(&info, "allocatedBytes").as_f64(), Some((3 << 20) as f64));
        assert!(get(&info, "backingFile").is_null());
        assert_eq!(Array::from(&get(&info, "needsBacking")).length(), 0);
        let guest = get(&info, "guest");
        assert_eq!(get(&guest, "partitionTable").as_string().as_deref(), Some("none"));
        assert_eq!(Array::from(&get(&guest, "boot")).length(), 0);
    }

    #[wasm_bindgen_test]
    fn compare_finds_the_first_differing_sector() {
        let disk = raw_disk();
        let progress = Function::new_no_args("");
        let same = compare(file(&disk, "a.img"), Array::new(), file(&disk, "b.img").into(), "b.img", &progress);
        assert_eq!(get(&same.unwrap(), "identical").as_bool(), Some(true));
        let mut changed = disk.clone();
        changed[(2 << 20) + 700] ^= 1;
        let diff = compare(file(&disk, "a.img"), Array::new(), file(&changed, "b.img").into(), "b.img", &progress);
        let diff = diff.unwrap();
        assert_eq!(get(&diff, "identical").as_bool(), Some(false));
        assert_eq!(get(&diff, "offset").as_f64(), Some(((2 << 20) + 512) as f64));
    }

    /// The written output, shared with a read-back function as the worker's OPFS file is.
    type Written = std::rc::Rc<std::cell::RefCell<Vec<u8>>>;

    /// Runs a job to the end as the coordinator worker does, with two encoders taking turns at each pass's
    /// batches, writing into `out`; returns the progress seen after each batch and step, and the total it counts to.
    fn drive(job: &mut Job, encoders: &mut [Encoder], out: &Written) -> (Vec<f64>, f64) {
        let total = job.total();
        let mut progress = vec![job.done()];
        while matches!(job.phase().as_str(), "scan" | "write") {
            let phase = job.phase();
            for turn in 0.. {
                let indices = job.next_indices((1 << 20) as f64).unwrap();
                if indices.is_empty() {
                    break;
                }
                for index in indices {
                    job.write_unit(index, encoders[turn % 2].encode(index, &phase).unwrap()).unwrap();
                }
                apply(&mut out.borrow_mut(), &job.take_chunks());
                progress.push(job.done());
            }
            job.end_pass().unwrap();
        }
        while !job.finish_step().unwrap() {
            apply(&mut out.borrow_mut(), &job.take_chunks());
            progress.push(job.done());
        }
        progress.push(job.done());
        let len = job.finish().unwrap();
        apply(&mut out.borrow_mut(), &job.take_chunks());
        out.borrow_mut().resize(len as usize, 0);
        (progress, total)
    }

    #[wasm_bindgen_test]
    fn units_encoded_by_encoders_over_their_own_opening_make_the_image() {
        let disk = raw_disk();
        let input = file(&disk, "disk.img");
        let mut job = Job::new(input.clone(), Array::new(), spec("raw", "", "disk.raw"), JsValue::NULL).unwrap();
        assert_eq!(job.phase(), "write");
        let mut encoders: Vec<Encoder> =
            (0..2).map(|_| Encoder::new(input.clone(), Array::new(), spec("raw", "", "disk.raw")).unwrap()).collect();
        let out = Written::default();
        let (progress, total) = drive(&mut job, &mut encoders, &out);
        assert!(*out.borrow() == disk);
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        assert_eq!(progress.last(), Some(&total));
        assert_eq!(job.phase(), "done");
        assert!(job.finish().is_err());
    }

    #[wasm_bindgen_test]
    fn an_ova_hashes_its_disk_in_steps_that_report_progress() {
        let disk = raw_disk();
        let input = file(&disk, "disk.img");
        let target = || spec("ova", "", "vm.ova");
        let mut job = Job::new(input.clone(), Array::new(), target(), JsValue::NULL).unwrap();
        let mut encoders: Vec<Encoder> =
            (0..2).map(|_| Encoder::new(input.clone(), Array::new(), target()).unwrap()).collect();
        let out = Written::default();
        let reader = {
            let out = out.clone();
            Closure::<dyn Fn(f64, f64) -> Uint8Array>::new(move |offset: f64, length: f64| {
                let bytes = out.borrow();
                let (start, end) = (offset as usize, (offset + length) as usize);
                Uint8Array::from(&bytes[start.min(bytes.len())..end.min(bytes.len())])
            })
        };
        job.set_read_back(reader.as_ref().unchecked_ref::<Function>().clone());
        let (progress, total) = drive(&mut job, &mut encoders, &out);
        assert!(out.borrow().starts_with(b"vm.ovf"), "a tar whose first member is the descriptor");
        assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
        assert!(progress[..progress.len() - 1].iter().all(|&p| p < total), "100 % only at the end: {progress:?}");
        assert_eq!(progress.last(), Some(&total));
    }

    #[wasm_bindgen_test]
    fn a_seed_disk_job_writes_the_seed_commands_disk() {
        let login = Object::new();
        set(&login, "hostname", "web-1");
        let mut job = Job::seed_disk(login.clone().into(), spec("raw", "", "seed.img")).unwrap();
        let out = Written::default();
        while matches!(job.phase().as_str(), "scan" | "write") {
            while job.encode_here((1 << 20) as f64).unwrap() {
                apply(&mut out.borrow_mut(), &job.take_chunks());
            }
            job.end_pass().unwrap();
        }
        while !job.finish_step().unwrap() {}
        let len = job.finish().unwrap();
        apply(&mut out.borrow_mut(), &job.take_chunks());
        out.borrow_mut().resize(len as usize, 0);
        let config = SeedConfig { hostname: Some("web-1".into()), ..SeedConfig::default() };
        let mut expected = crate::seed::image(&config, u64::MAX, 2).unwrap();
        let mut bytes = vec![0u8; expected.virtual_size() as usize];
        expected.read_at(0, &mut bytes).unwrap();
        assert!(*out.borrow() == bytes);
        let bad = Object::new();
        set(&bad, "hostname", "-bad-");
        assert_eq!(
            get(&Job::seed_disk(bad.into(), spec("raw", "", "s.img")).err().unwrap(), "kind"),
            "invalid-argument"
        );
        let refused = Job::new(file(&raw_disk(), "d.img"), Array::new(), spec("vhdx", "", "d.vhdx"), login.into());
        assert_eq!(get(&refused.err().unwrap(), "kind"), "invalid-argument", "a login needs a package");
    }

    #[wasm_bindgen_test]
    fn bad_options_formats_and_numbers_are_invalid_arguments() {
        let kind = |spec: JsValue| {
            let error = Job::blank(65536.0, spec).err().unwrap();
            get(&error, "kind").as_string().unwrap()
        };
        assert_eq!(kind(spec("raw", "bogus=1", "x.img")), "invalid-argument");
        assert_eq!(kind(spec("qed", "", "x.qed")), "invalid-argument");
        let big_seed = spec("raw", "", "x.img");
        set(big_seed.unchecked_ref(), "seed", "18446744073709551616");
        assert_eq!(kind(big_seed), "invalid-argument");
        assert!(Job::blank(65536.0, spec("raw", "", "x.img")).is_ok());
    }
}
