//! A conversion in the page: a [`Job`] in the coordinator worker steps through the [`Converter`]'s phases, an
//! [`Encoder`] in each pool worker reads and encodes the units it names.

use super::bindings::open;
use super::blob::PickedFiles;
use super::protocol::{append_only, files, login, set, strings, target, with_login};
use super::sink::ChunkSink;
use crate::convert::{Converter, Phase, read_unit};
use crate::error::{Error, Result};
use crate::image::{Blank, Image};
use crate::target::{self, Encoders, Target};
use crate::writer::OneOutput;
use js_sys::{Array, Function, Object, Uint8Array};
use wasm_bindgen::prelude::*;
use web_sys::File;

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
    warnings: Vec<String>,
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
        let warnings = writer.warnings();
        Ok(Job { conv: Some(Converter::new(image, writer)?), sink, warnings })
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

    /// What the writer warns of, as the CLI prints it (a fixed VHD's size rounded up to a whole MiB): an array of
    /// strings, known from the start.
    #[wasm_bindgen(getter)]
    pub fn warnings(&self) -> Array {
        strings(self.warnings.iter().map(String::as_str))
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
