//! The conversion pipeline, in one place:
//!
//! ```text
//!                 ┌─ scan pass (some writers): every unit holding data ──► ScanEncoder ──► writer.scan_unit ─┐
//! source Image ──extent map──►                                                                             │
//!                 └─ write pass: every unit holding data ──read──► UnitEncoder (any thread / worker) ──► writer.write_unit
//!                                                                                             (in unit order)
//!                                                               ──► finish, in bounded steps (tables, checksums)
//! ```
//!
//! A writer cuts the guest disk into fixed-size *units* (a VMDK grain, a slice of a VHDX block, a raw chunk).
//! Only units that overlap a `Data` extent of the source are read; the rest are never touched, so a 2 TiB
//! sparse image costs its metadata only. Encoding a unit (zero detection, compression) is a pure function,
//! run on all cores by [`run`] in the CLI and by a pool of workers in the browser; the writer receives the
//! results strictly in ascending unit order and owns all output state. Every phase — the scan some layouts need
//! first, the write pass, and the work after the last unit — reports progress in the same units (guest bytes)
//! and can be cancelled between any two steps.

use crate::error::{Error, ErrorKind, Result};
use crate::extent::ExtentKind;
use crate::image::Image;
use crate::io::{Sink, zeroed_buffer};
use crate::writer::{Finishing, ImageWriter, UnitEncoder};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Where a conversion is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A first pass over every unit holding data, for the writer to plan its layout.
    Scan,
    /// The pass that encodes and writes every unit holding data.
    Write,
    /// The writer's work after the last unit, in steps ([`Converter::finish_step`]).
    Finish,
    /// The output is complete ([`Converter::into_sink`]).
    Done,
}

impl Phase {
    /// The name the page's protocol uses.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Scan => "scan",
            Phase::Write => "write",
            Phase::Finish => "finish",
            Phase::Done => "done",
        }
    }
}

/// A conversion in progress, driven a unit or a step at a time: by [`run`] in the CLI, by the page's coordinator
/// worker in the browser.
pub struct Converter {
    source: Box<dyn Image>,
    writer: Option<Box<dyn ImageWriter>>,
    finishing: Option<Box<dyn Finishing>>,
    phase: Phase,
    unit: u64,
    size: u64,
    /// Where the current pass looks for the next unit holding data.
    cursor: u64,
    /// The lowest unit index the current pass may still accept.
    next_accept: u64,
    /// Units handed out in the current pass and not accepted back yet.
    outstanding: u64,
    /// Guest bytes one pass reads: the units holding data.
    pass_bytes: u64,
    /// Progress counted so far, in guest bytes, excluding the finish's own.
    done: u64,
    total: u64,
    finish_cost: u64,
}

impl Converter {
    /// Lets the writer look at the source, then measures the work from the source's map (metadata only).
    ///
    /// # Errors
    /// `InvalidArgument` for a writer with a bad unit size; whatever preparing or mapping the source gives.
    pub fn new(mut source: Box<dyn Image>, mut writer: Box<dyn ImageWriter>) -> Result<Self> {
        let unit = writer.unit_size();
        if !unit.is_power_of_two() || unit > crate::io::MAX_BUFFER {
            return Err(Error::argument(format!("Invalid unit size {unit}")));
        }
        writer.prepare(source.as_mut())?;
        let size = source.virtual_size();
        let phase = if writer.wants_scan() { Phase::Scan } else { Phase::Write };
        let mut conv = Converter {
            source,
            writer: None,
            finishing: None,
            phase,
            unit,
            size,
            cursor: 0,
            next_accept: 0,
            outstanding: 0,
            pass_bytes: 0,
            done: 0,
            total: 0,
            finish_cost: 0,
        };
        conv.pass_bytes = conv.measure()?;
        // At least one, so that progress reaches its total only when the output is complete.
        conv.finish_cost = writer.finish_cost(conv.pass_bytes).max(1);
        let passes = if phase == Phase::Scan { 2 } else { 1 };
        conv.total = passes * conv.pass_bytes + conv.finish_cost;
        conv.writer = Some(writer);
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

    fn writer(&mut self) -> Result<&mut Box<dyn ImageWriter>> {
        self.writer.as_mut().ok_or_else(|| Error::argument("The conversion is past its unit passes"))
    }

    /// Where the conversion is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The work in all, in guest bytes: each pass's units, and what the finish is worth (at least 1).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The work done so far, in the units of [`Converter::total`]; it reaches the total only when the output is
    /// complete.
    pub fn done(&self) -> u64 {
        match (&self.finishing, self.phase) {
            (_, Phase::Done) => self.total,
            (Some(f), _) => {
                let (done, total) = f.progress();
                let part = (self.finish_cost as u128 * done as u128).checked_div(total as u128).unwrap_or(0);
                // The last bit of the finish is counted only with its last step.
                self.done + (part as u64).min(self.finish_cost.saturating_sub(1))
            }
            (None, _) => self.done,
        }
    }

    /// Guest bytes per unit.
    pub fn unit_size(&self) -> u64 {
        self.unit
    }

    /// The encoder of the current pass, for running [`UnitEncoder::encode`] elsewhere.
    ///
    /// # Errors
    /// `InvalidArgument` outside the unit passes.
    pub fn encoder(&self) -> Result<Arc<dyn UnitEncoder>> {
        let writer = self.writer.as_ref().ok_or_else(|| Error::argument("The conversion is past its unit passes"))?;
        match self.phase {
            Phase::Scan => writer.scan_encoder().ok_or_else(|| Error::argument("The writer has no scan")),
            _ => Ok(writer.encoder()),
        }
    }

    /// The index of the next unit of the current pass that holds data, without reading it — for callers that
    /// read units from their own opening of the same source (one per thread or worker). `None` when the pass has
    /// handed out every unit, and outside the unit passes.
    ///
    /// # Errors
    /// Whatever mapping the source gives.
    pub fn next_index(&mut self) -> Result<Option<u64>> {
        if !matches!(self.phase, Phase::Scan | Phase::Write) {
            return Ok(None);
        }
        let mut pos = self.cursor;
        let Some(index) = self.next_data_unit(&mut pos)? else {
            self.cursor = self.size;
            return Ok(None);
        };
        self.cursor = pos;
        self.outstanding += 1;
        Ok(Some(index))
    }

    /// Reads the next unit of the current pass that holds data: its index and guest bytes.
    ///
    /// # Errors
    /// Whatever mapping or reading the source gives.
    pub fn next_unit(&mut self) -> Result<Option<(u64, Vec<u8>)>> {
        let Some(index) = self.next_index()? else { return Ok(None) };
        Ok(Some((index, read_unit(self.source.as_mut(), self.unit, index)?)))
    }

    /// Gives the writer unit `index` as the current pass's encoder made it; units come back in the order
    /// [`Converter::next_index`] gave them.
    ///
    /// # Errors
    /// `InvalidArgument` for a unit out of order or outside the unit passes; whatever the writer gives.
    pub fn accept(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        if index < self.next_accept || self.outstanding == 0 {
            return Err(Error::argument(format!("Unit {index} written out of order")));
        }
        self.next_accept = index + 1;
        self.outstanding -= 1;
        let len = self.unit.min(self.size.saturating_sub(index * self.unit));
        let scanning = self.phase == Phase::Scan;
        let writer = self.writer()?;
        if scanning {
            writer.scan_unit(index, encoded)?
        } else {
            writer.write_unit(index, encoded)?
        }
        self.done += len;
        Ok(())
    }

    /// Ends the current unit pass once every unit has been accepted: after the scan the write pass begins; after
    /// the write pass, the finish.
    ///
    /// # Errors
    /// `InvalidArgument` while units are still out or left; whatever the writer gives.
    pub fn end_pass(&mut self) -> Result<()> {
        if self.cursor < self.size || self.outstanding > 0 {
            return Err(Error::argument("The pass still has units to write"));
        }
        match self.phase {
            Phase::Scan => {
                self.writer()?.end_scan()?;
                (self.phase, self.cursor, self.next_accept) = (Phase::Write, 0, 0);
            }
            Phase::Write => {
                let writer = self.writer.take().ok_or_else(|| Error::argument("No writer to finish"))?;
                self.finishing = Some(writer.finish()?);
                self.phase = Phase::Finish;
            }
            Phase::Finish | Phase::Done => return Err(Error::argument("The conversion is past its unit passes")),
        }
        Ok(())
    }

    /// Does the next bounded step of the finish; `true` once the output is complete.
    ///
    /// # Errors
    /// `InvalidArgument` before the unit passes are over; whatever the writer's finish gives.
    pub fn finish_step(&mut self) -> Result<bool> {
        match self.phase {
            Phase::Done => Ok(true),
            Phase::Finish => {
                let finishing = self.finishing.as_mut().ok_or_else(|| Error::argument("No finish under way"))?;
                if finishing.step()? {
                    self.phase = Phase::Done;
                }
                Ok(self.phase == Phase::Done)
            }
            Phase::Scan | Phase::Write => Err(Error::argument("The unit passes are not over")),
        }
    }

    /// The finished output.
    ///
    /// # Errors
    /// `InvalidArgument` before the finish is done.
    pub fn into_sink(self) -> Result<Box<dyn Sink>> {
        match (self.phase, self.finishing) {
            (Phase::Done, Some(finishing)) => Ok(finishing.into_sink()),
            _ => Err(Error::argument("The conversion has not finished")),
        }
    }
}

/// Reads unit `index` (of `unit` bytes; the last one is shorter) from `image`.
///
/// # Errors
/// Whatever reading the image gives.
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
    /// Called with (done, total) as the work goes on, in every phase ([`Converter::done`]).
    pub progress: Option<&'a mut dyn FnMut(u64, u64)>,
    /// Checked between units and steps; when set, the run stops with a `Cancelled` error.
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

impl RunOptions<'_> {
    fn check_cancel(&self) -> Result<()> {
        match self.cancel {
            Some(c) if c.load(Ordering::Relaxed) => Err(Error::cancelled()),
            _ => Ok(()),
        }
    }

    fn report(&mut self, conv: &Converter) {
        if let Some(p) = self.progress.as_mut() {
            p(conv.done(), conv.total());
        }
    }
}

/// Converts `source` with `writer` to the end and returns the finished sink.
///
/// With several threads, encoding (and, given [`RunOptions::reopen`], reading) runs on worker threads while
/// this thread walks the map and writes in order; at most `2 × threads` units are in flight, so memory stays
/// bounded whatever the image size.
///
/// # Errors
/// `Cancelled` once [`RunOptions::cancel`] is set; whatever reading, encoding or writing gives.
pub fn run(source: Box<dyn Image>, writer: Box<dyn ImageWriter>, mut opts: RunOptions<'_>) -> Result<Box<dyn Sink>> {
    let mut conv = Converter::new(source, writer)?;
    opts.report(&conv);
    while matches!(conv.phase(), Phase::Scan | Phase::Write) {
        if opts.threads <= 1 || cfg!(target_arch = "wasm32") {
            let encoder = conv.encoder()?;
            while let Some((index, data)) = conv.next_unit()? {
                opts.check_cancel()?;
                let encoded = encoder.encode(index, data)?;
                conv.accept(index, encoded)?;
                opts.report(&conv);
            }
        } else {
            run_threads(&mut conv, &mut opts)?;
        }
        conv.end_pass()?;
    }
    while !conv.finish_step()? {
        opts.check_cancel()?;
        opts.report(&conv);
    }
    opts.report(&conv);
    conv.into_sink()
}

/// A unit to encode: its index, and its bytes unless the worker reads them from its own source.
type Job = (u64, Option<Vec<u8>>);
type Done = (u64, Result<Option<Vec<u8>>>);

/// One unit pass on `opts.threads` threads.
fn run_threads(conv: &mut Converter, opts: &mut RunOptions<'_>) -> Result<()> {
    use std::collections::BTreeMap;
    use std::sync::{Mutex, mpsc};

    let threads = opts.threads;
    let encoder = conv.encoder()?;
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
                if opts.check_cancel().is_err() {
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
            if let Err(e) = opts.check_cancel() {
                break Err(e);
            }
            let Some((&lowest, _)) = in_flight.first_key_value() else {
                break Ok(());
            };
            while in_flight.get(&lowest).is_some_and(|r| r.is_none()) {
                match done_rx.recv() {
                    Ok((index, r)) => {
                        in_flight.insert(index, Some(r));
                    }
                    Err(_) => return Err(Error::new(ErrorKind::Io, "An encoder thread stopped")),
                }
            }
            while let Some(entry) = in_flight.first_entry() {
                if entry.get().is_none() {
                    break;
                }
                let (index, r) = entry.remove_entry();
                let encoded = r.expect("checked above")?;
                conv.accept(index, encoded)?;
                opts.report(conv);
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
    use crate::io::{MemorySink, StreamSink};
    use crate::options::OptionList;
    use crate::raw::RawImage;
    use crate::writer::{OneOutput, Settings};

    /// 24 MiB of bytes that do not compress, so that an OVA's disk takes several hashing steps.
    fn noise() -> Vec<u8> {
        let mut random = crate::random::Random::new(5);
        (0..3 << 20).flat_map(|_| random.next_u64().to_le_bytes()).collect()
    }

    fn writer(format: &str, size: u64, sink: Box<dyn Sink>) -> Box<dyn ImageWriter> {
        let settings =
            Settings { seed: 1, epoch: 0, output_name: format!("out.{format}"), compressed: false, seed_disk: None };
        let write = crate::formats::Format::from_name(format).unwrap().spec().write.unwrap();
        write(&mut OptionList::default(), &settings, size, &mut OneOutput::new(sink)).unwrap()
    }

    /// A run's result and every (done, total) it reported.
    type Watched = (Result<Box<dyn Sink>>, Vec<(u64, u64)>);

    /// Runs `writer` over `data`, setting the cancel flag once `stop(done, total)` says so; the progress seen.
    fn run_watched(
        data: &[u8],
        writer: Box<dyn ImageWriter>,
        threads: usize,
        stop: &dyn Fn(u64, u64) -> bool,
    ) -> Watched {
        let cancel = AtomicBool::new(false);
        let mut seen = Vec::new();
        let mut progress = |done, total| {
            seen.push((done, total));
            if stop(done, total) {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        let source = Box::new(RawImage::new(Box::new(data.to_vec())));
        let opts = RunOptions { threads, progress: Some(&mut progress), cancel: Some(&cancel), reopen: None };
        let result = run(source, writer, opts);
        (result, seen)
    }

    fn assert_complete_only_at_the_end(seen: &[(u64, u64)]) {
        let (_, total) = seen[0];
        assert!(seen.iter().all(|&(_, t)| t == total), "the total never changes");
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "monotonic: {seen:?}");
        assert_eq!(seen.last(), Some(&(total, total)));
        assert!(seen[..seen.len() - 1].iter().all(|&(done, _)| done < total), "100 % before the end: {seen:?}");
    }

    #[test]
    fn a_scan_pass_counts_in_the_same_progress_and_cancel_stops_it_before_any_byte_is_written() {
        let data = noise();
        let size = data.len() as u64;
        let stream = |out: &std::rc::Rc<std::cell::RefCell<Vec<u8>>>| {
            Box::new(StreamSink::new(SharedVec(out.clone()))) as Box<dyn Sink>
        };
        for threads in [1, 2] {
            let out = std::rc::Rc::default();
            let (result, seen) = run_watched(&data, writer("vhdx", size, stream(&out)), threads, &|_, _| false);
            result.unwrap();
            assert_complete_only_at_the_end(&seen);
            // The scan and the write pass each count the 24 MiB.
            assert!(seen[0].1 >= 2 * size, "{:?}", seen[0]);

            let out = std::rc::Rc::default();
            let stop = |done: u64, total: u64| done > 0 && done < total / 4;
            let (result, _) = run_watched(&data, writer("vhdx", size, stream(&out)), threads, &stop);
            assert_eq!(result.err().map(|e| e.kind()), Some(ErrorKind::Cancelled));
            assert!(out.borrow().is_empty(), "written during the scan: {} bytes", out.borrow().len());
        }
    }

    #[test]
    fn an_ova_hashes_in_steps_that_count_and_cancel_stops_before_the_package_is_complete() {
        let data = noise();
        let size = data.len() as u64;
        let memory = MemorySink::default();
        let (result, seen) = run_watched(&data, writer("ova", size, Box::new(memory.clone())), 1, &|_, _| false);
        result.unwrap();
        assert_complete_only_at_the_end(&seen);
        let total = seen[0].1;
        let hashing = seen.iter().filter(|&&(done, _)| done > size && done < total).count();
        assert!(hashing >= 2, "progress while hashing: {seen:?}");
        assert_eq!(&memory.bytes()[..6], b"out.ov", "the descriptor's tar header");

        let memory = MemorySink::default();
        let stop = |done: u64, total: u64| done > size && done < total;
        let (result, _) = run_watched(&data, writer("ova", size, Box::new(memory.clone())), 1, &stop);
        assert_eq!(result.err().map(|e| e.kind()), Some(ErrorKind::Cancelled));
        assert!(memory.bytes()[..512].iter().all(|&b| b == 0), "no tar header: not an archive");
    }

    /// An append-only output into a vector the test keeps.
    struct SharedVec(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl std::io::Write for SharedVec {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
