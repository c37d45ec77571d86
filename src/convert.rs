//! The conversion pipeline, in one place:
//!
//! ```text
//! source Image ──extent map──► units that hold data ──read──► UnitEncoder (any thread / worker) ──► ImageWriter
//!                                                                                              (in unit order)
//! ```
//!
//! A writer cuts the guest disk into fixed-size *units* (a VMDK grain, a slice of a VHDX block, a raw chunk).
//! Only units that overlap a `Data` extent of the source are read; the rest are never touched, so a 2 TiB
//! sparse image costs its metadata only. Encoding a unit (zero detection, compression) is a pure function,
//! run on all cores by [`run`] in the CLI and by a pool of workers in the browser; the writer receives the
//! results strictly in ascending unit order and owns all output state.

use crate::error::{Error, Result};
use crate::extent::ExtentKind;
use crate::image::Image;
use crate::io::{Sink, zeroed_buffer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Turns the guest bytes of one unit into the bytes the writer stores for it. Pure and thread-safe, so it
/// can run anywhere — including a separate wasm instance, rebuilt there from the same options.
pub trait UnitEncoder: Send + Sync {
    /// Encodes unit `index`, whose guest bytes are `data` (shorter than the unit size only for the last unit).
    /// `None` means the unit needs nothing in the output (it reads as zeros).
    fn encode(&self, index: u64, data: Vec<u8>) -> Result<Option<Vec<u8>>>;
}

/// An output format's writer: receives encoded units in ascending order, then finishes the file.
pub trait ImageWriter {
    /// Guest bytes per unit; a power of two.
    fn unit_size(&self) -> u64;

    /// The encoder for this writer's units.
    fn encoder(&self) -> Arc<dyn UnitEncoder>;

    /// What the user should know about the output before it is written (a size rounded up); the CLI prints
    /// each as a warning. Most writers have nothing to say.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// A chance to look at the whole source before any unit arrives — for layouts on an append-only sink that
    /// must know up front which units are empty. Most writers need nothing here.
    fn plan(&mut self, _source: &mut dyn Image) -> Result<()> {
        Ok(())
    }

    /// Stores the encoded unit `index`. Called in strictly ascending `index` order; units never passed read
    /// as zeros.
    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()>;

    /// Writes the trailing metadata, sets the output's final length, and gives the sink back. Nothing is
    /// completed on drop: a writer that is not finished has not produced a valid file.
    fn finish(self: Box<Self>) -> Result<Box<dyn Sink>>;
}

/// The encoder that stores a unit as it is, unless it is all zeros.
#[derive(Debug, Default)]
pub struct SkipZeros;

impl UnitEncoder for SkipZeros {
    fn encode(&self, _index: u64, data: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(if is_zero(&data) { None } else { Some(data) })
    }
}

/// Whether every byte is zero (compares a word at a time).
pub fn is_zero(data: &[u8]) -> bool {
    let (head, words, tail) = unsafe {
        // SAFETY: any bit pattern is a valid u64, and align_to only yields aligned, in-bounds words.
        data.align_to::<u64>()
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// A conversion in progress: pulls units from the source and hands encoded ones to the writer.
pub struct Converter {
    source: Box<dyn Image>,
    writer: Box<dyn ImageWriter>,
    unit: u64,
    size: u64,
    cursor: u64,
    total: u64,
    done: u64,
    next_write: u64,
}

impl Converter {
    /// Lets the writer plan, then measures the work from the source's map (metadata only).
    pub fn new(mut source: Box<dyn Image>, mut writer: Box<dyn ImageWriter>) -> Result<Self> {
        let unit = writer.unit_size();
        if !unit.is_power_of_two() || unit > crate::io::MAX_BUFFER {
            return Err(Error::argument(format!("Invalid unit size {unit}")));
        }
        writer.plan(source.as_mut())?;
        let size = source.virtual_size();
        let mut conv = Converter { source, writer, unit, size, cursor: 0, total: 0, done: 0, next_write: 0 };
        conv.total = conv.measure()?;
        Ok(conv)
    }

    fn measure(&mut self) -> Result<u64> {
        let mut total = 0;
        let mut pos = 0;
        while let Some(index) = self.next_data_unit(&mut pos)? {
            total += self.unit_len(index);
        }
        Ok(total)
    }

    /// Finds the first unit at or after `*pos` that overlaps a `Data` extent and moves `*pos` past it.
    fn next_data_unit(&mut self, pos: &mut u64) -> Result<Option<u64>> {
        while *pos < self.size {
            let extent = self.source.extent_at(*pos)?;
            if extent.kind == ExtentKind::Data {
                let index = *pos / self.unit;
                *pos = (index + 1) * self.unit;
                return Ok(Some(index));
            }
            *pos = extent.end();
        }
        Ok(None)
    }

    fn unit_len(&self, index: u64) -> u64 {
        self.unit.min(self.size - index * self.unit)
    }

    /// Guest bytes the conversion reads in all: the units that hold data.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Guest bytes read so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The writer's encoder, for running [`UnitEncoder::encode`] elsewhere.
    pub fn encoder(&self) -> Arc<dyn UnitEncoder> {
        self.writer.encoder()
    }

    /// Reads the next unit that holds data: its index and guest bytes. `None` when the source is exhausted.
    pub fn next_unit(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(index) = self.next_index()? else { return Ok(None) };
        Ok(Some((index, read_unit(self.source.as_mut(), self.unit, index)?)))
    }

    /// The index of the next unit that holds data, without reading it — for callers that read units from
    /// their own opening of the same source (one per thread or worker). `None` when the source is exhausted.
    pub fn next_index(&mut self) -> Result<Option<u64>> {
        let mut pos = self.cursor;
        let Some(index) = self.next_data_unit(&mut pos)? else {
            self.cursor = self.size;
            return Ok(None);
        };
        self.cursor = pos;
        self.done += self.unit_len(index);
        Ok(Some(index))
    }

    /// Guest bytes per unit.
    pub fn unit_size(&self) -> u64 {
        self.unit
    }

    /// Passes the encoded unit `index` to the writer; units must come back in the order `next_unit` gave them.
    pub fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        if index < self.next_write {
            return Err(Error::argument(format!("Unit {index} written out of order")));
        }
        self.next_write = index + 1;
        self.writer.write_unit(index, encoded)
    }

    /// Finishes the output once every unit has been written.
    pub fn finish(self) -> Result<Box<dyn Sink>> {
        self.writer.finish()
    }
}

/// Reads unit `index` (of `unit` bytes; the last one is shorter) from `image`.
pub fn read_unit(image: &mut dyn Image, unit: u64, index: u64) -> Result<Vec<u8>> {
    let start = index * unit;
    let len = unit.min(image.virtual_size().saturating_sub(start));
    let mut data = zeroed_buffer(len, "a unit of guest data")?;
    image.read_at(start, &mut data)?;
    Ok(data)
}

/// Opens another instance of the source, so that a thread can read (and decompress) units itself.
pub type Reopen<'a> = &'a (dyn Fn() -> Result<Box<dyn Image>> + Sync);

/// How [`run`] reports and stops.
pub struct RunOptions<'a> {
    /// Encoder threads; 0 or 1 encodes on the calling thread.
    pub threads: usize,
    /// Called with (done, total) guest bytes after each unit.
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
    /// Checked between units; when set, the run stops with a `Cancelled` error.
    pub cancel: Option<&'a AtomicBool>,
    /// With several threads: lets each thread open the source itself, so reading and decompressing the
    /// input run on all cores too. Without it, this thread reads every unit and threads only encode.
    pub reopen: Option<Reopen<'a>>,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions { threads: 1, progress: None, cancel: None, reopen: None }
    }
}

/// Converts `source` with `writer` to the end and returns the finished sink.
///
/// With several threads, encoding (and, given [`RunOptions::reopen`], reading) runs on worker threads while
/// this thread walks the map and writes in order; at most `2 × threads` units are in flight, so memory stays
/// bounded whatever the image size.
pub fn run(source: Box<dyn Image>, writer: Box<dyn ImageWriter>, mut opts: RunOptions<'_>) -> Result<Box<dyn Sink>> {
    let mut conv = Converter::new(source, writer)?;
    let total = conv.total();
    let cancelled = |opts: &RunOptions<'_>| opts.cancel.is_some_and(|c| c.load(Ordering::Relaxed));
    let mut report = |done: u64, opts: &mut RunOptions<'_>| {
        if let Some(p) = opts.progress.as_mut() {
            p(done, total);
        }
    };
    report(0, &mut opts);
    if opts.threads <= 1 || cfg!(target_arch = "wasm32") {
        let encoder = conv.encoder();
        while let Some((index, data)) = conv.next_unit()? {
            if cancelled(&opts) {
                return Err(Error::cancelled());
            }
            let encoded = encoder.encode(index, data)?;
            conv.write_unit(index, encoded)?;
            report(conv.done(), &mut opts);
        }
        return conv.finish();
    }
    run_threads(&mut conv, &mut opts, &mut report, &cancelled)?;
    conv.finish()
}

/// A unit to encode: its index, and its bytes unless the worker reads them from its own source.
type Job = (u64, Option<Vec<u8>>);
type Done = (u64, Result<Option<Vec<u8>>>);

fn run_threads(
    conv: &mut Converter,
    opts: &mut RunOptions<'_>,
    report: &mut dyn FnMut(u64, &mut RunOptions<'_>),
    cancelled: &dyn Fn(&RunOptions<'_>) -> bool,
) -> Result<()> {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, mpsc};

    let threads = opts.threads;
    let encoder = conv.encoder();
    let unit = conv.unit_size();
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        for _ in 0..threads {
            let (job_rx, done_tx, encoder) = (Arc::clone(&job_rx), done_tx.clone(), Arc::clone(&encoder));
            let reopen = opts.reopen;
            scope.spawn(move || {
                let mut own: Option<Box<dyn Image>> = None;
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((index, data))) = job else { break };
                    let encoded = match data {
                        Some(data) => encoder.encode(index, data),
                        None => own_source(&mut own, reopen)
                            .and_then(|image| read_unit(image, unit, index))
                            .and_then(|data| encoder.encode(index, data)),
                    };
                    if done_tx.send((index, encoded)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);

        // Units are dispatched in ascending order; results are written as soon as the lowest is back.
        let mut in_flight: BTreeMap<u64, Option<Result<Option<Vec<u8>>>>> = BTreeMap::new();
        let mut exhausted = false;
        let result = loop {
            while !exhausted && in_flight.len() < 2 * threads {
                if cancelled(opts) {
                    break;
                }
                let next = if opts.reopen.is_some() {
                    conv.next_index().map(|i| i.map(|index| (index, None)))
                } else {
                    conv.next_unit().map(|u| u.map(|(index, data)| (index, Some(data))))
                };
                match next {
                    Ok(Some((index, data))) => {
                        in_flight.insert(index, None);
                        if job_tx.send((index, data)).is_err() {
                            break;
                        }
                    }
                    Ok(None) => exhausted = true,
                    Err(e) => return Err(e),
                }
            }
            if cancelled(opts) {
                break Err(Error::cancelled());
            }
            let Some((&lowest, _)) = in_flight.first_key_value() else {
                break Ok(());
            };
            while in_flight.get(&lowest).is_some_and(|r| r.is_none()) {
                match done_rx.recv() {
                    Ok((index, r)) => {
                        in_flight.insert(index, Some(r));
                    }
                    Err(_) => return Err(Error::new(crate::error::ErrorKind::Io, "An encoder thread stopped")),
                }
            }
            while let Some(entry) = in_flight.first_entry() {
                if entry.get().is_none() {
                    break;
                }
                let (index, r) = entry.remove_entry();
                let encoded = r.expect("checked above")?;
                conv.write_unit(index, encoded)?;
                report(conv.done(), opts);
            }
        };
        drop(job_tx);
        result
    })
}

/// A worker's own opening of the source, made on its first unit.
fn own_source<'a>(own: &'a mut Option<Box<dyn Image>>, reopen: Option<Reopen<'_>>) -> Result<&'a mut dyn Image> {
    if own.is_none() {
        let reopen = reopen.ok_or_else(|| Error::argument("No way to reopen the source"))?;
        *own = Some(reopen()?);
    }
    Ok(own.as_mut().expect("opened above").as_mut())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_zero_checks_every_byte_at_any_alignment() {
        let mut v = vec![0u8; 1000];
        for start in 0..9 {
            assert!(is_zero(&v[start..]));
        }
        v[999] = 1;
        assert!(!is_zero(&v[3..]));
        v[999] = 0;
        v[1] = 1;
        assert!(!is_zero(&v[1..]));
    }
}
