//! What every output format's writer is to the pipeline ([`crate::convert`]): guest data cut into fixed-size
//! units, each encoded anywhere (any thread, any wasm worker) and handed to the writer in ascending order, with an
//! optional pass before (a scan of every unit, for layouts whose tables come first on an append-only output) and
//! work after (tables, a checksum of the finished file) done in bounded steps, so progress and cancel reach
//! every phase.

use crate::error::{Error, Result};
use crate::image::Image;
use crate::io::Sink;
use crate::options::OptionList;
use std::sync::Arc;

/// Everything besides the format, its `-o` options and the guest data that decides the output's bytes.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seed for every random field (CID, GUIDs, ids).
    pub seed: u64,
    /// Seconds since 1970 for every timestamp the output records.
    pub epoch: u64,
    /// The output file's base name (VMDK descriptors name their extent by it; packages name their members).
    pub output_name: String,
    /// `-c`: compressed clusters for qcow2; formats without a compressed form refuse it, as qemu-img does.
    pub compressed: bool,
    /// A cloud-init seed disk for a package (OVA, OVF) to carry as a second disk; other formats refuse it.
    pub seed_disk: Option<SeedDisk>,
}

/// A small disk a package carries beside the converted one: a NoCloud seed that gives the guest its first login.
#[derive(Clone)]
pub struct SeedDisk {
    /// Its guest bytes (a few MiB at most).
    pub bytes: Arc<Vec<u8>>,
    /// The seed for the random fields of the disk file holding it, apart from the converted disk's.
    pub container_seed: u64,
}

impl std::fmt::Debug for SeedDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeedDisk({} bytes)", self.bytes.len())
    }
}

/// Where a writer's files go: the output itself, and for a format made of several files (OVF) files beside it.
pub trait Outputs {
    /// The output. Asked for at most once.
    ///
    /// # Errors
    /// Whatever creating it gives.
    fn main(&mut self) -> Result<Box<dyn Sink>>;

    /// A file named `name` in the output's folder.
    ///
    /// # Errors
    /// `InvalidArgument` where the output is not a file in a folder (standard output, a browser download).
    fn beside(&mut self, name: &str) -> Result<Box<dyn Sink>>;
}

/// Builds a format's writer on `outputs` for a disk of `virtual_size` bytes, taking the `-o` keys it knows out of
/// `options`. Nothing is written yet.
pub type WriterFactory = fn(&mut OptionList, &Settings, u64, &mut dyn Outputs) -> Result<Box<dyn ImageWriter>>;

/// Turns the guest bytes of one unit into the bytes the writer stores for it. Pure and thread-safe, so it
/// can run anywhere — including a separate wasm instance, rebuilt there from the same options.
pub trait UnitEncoder: Send + Sync {
    /// Encodes unit `index`, whose guest bytes are `data` (shorter than the unit size only for the last unit).
    /// `None` means the unit needs nothing in the output (it reads as zeros).
    fn encode(&self, index: u64, data: Vec<u8>) -> Result<Option<Vec<u8>>>;
}

/// An output format's writer.
pub trait ImageWriter {
    /// Guest bytes per unit; a power of two.
    fn unit_size(&self) -> u64;

    /// The encoder for this writer's units.
    fn encoder(&self) -> Arc<dyn UnitEncoder>;

    /// What the user should know about the output before it is written (a size rounded up); the CLI prints each
    /// as a warning, the page shows them. Most writers have nothing to say.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// A bounded look at the source before any pass — a few sectors at most (the partition table an OVA's
    /// firmware follows from). Most writers need nothing here.
    fn prepare(&mut self, _source: &mut dyn Image) -> Result<()> {
        Ok(())
    }

    /// Whether this writer, on this output, must see every unit holding data before the first is written: a
    /// layout on an append-only output whose tables come first must know which units are empty.
    fn wants_scan(&self) -> bool {
        false
    }

    /// The encoder that condenses a unit for the scan, for writers that may want one — the same whatever the
    /// output, so a browser pool worker builds it without knowing where the output goes. Its results go to
    /// [`ImageWriter::scan_unit`], in ascending order.
    fn scan_encoder(&self) -> Option<Arc<dyn UnitEncoder>> {
        None
    }

    /// Takes the scan's result for unit `index`.
    fn scan_unit(&mut self, _index: u64, _scanned: Option<Vec<u8>>) -> Result<()> {
        Ok(())
    }

    /// Called once the scan has seen every unit, before the first [`ImageWriter::write_unit`].
    fn end_scan(&mut self) -> Result<()> {
        Ok(())
    }

    /// Stores the encoded unit `index`. Called in strictly ascending `index` order; units never passed read
    /// as zeros.
    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()>;

    /// What the work left after the last unit costs, in the units progress is counted in (guest bytes), given the
    /// guest bytes one pass over the units reads; 0 for a few tables. An OVA hashes its whole disk.
    fn finish_cost(&self, _pass_bytes: u64) -> u64 {
        0
    }

    /// Begins the work after the last unit: trailing metadata, the output's final length. Nothing is completed
    /// on drop: a writer that is not finished has not produced a valid file.
    fn finish(self: Box<Self>) -> Result<Box<dyn Finishing>>;
}

/// The work a writer does after its last unit, in steps of bounded length.
pub trait Finishing {
    /// How far the work is: (done, total), in units of its own.
    fn progress(&self) -> (u64, u64);

    /// Does the next bounded piece of the work; `true` once the output is complete.
    fn step(&mut self) -> Result<bool>;

    /// The finished output, once [`Finishing::step`] has returned `true`.
    fn into_sink(self: Box<Self>) -> Box<dyn Sink>;
}

/// A finish that was done in one go: the output is complete.
pub struct Finished(pub Box<dyn Sink>);

impl Finishing for Finished {
    fn progress(&self) -> (u64, u64) {
        (1, 1)
    }

    fn step(&mut self) -> Result<bool> {
        Ok(true)
    }

    fn into_sink(self: Box<Self>) -> Box<dyn Sink> {
        self.0
    }
}

/// The encoder that stores a unit as it is, unless it is all zeros.
#[derive(Debug, Default)]
pub struct SkipZeros;

impl UnitEncoder for SkipZeros {
    fn encode(&self, _index: u64, data: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(if is_zero(&data) { None } else { Some(data) })
    }
}

/// The scan encoder that only tells whether a unit holds a non-zero byte: `Some` (empty) when it does.
#[derive(Debug, Default)]
pub struct FindData;

impl UnitEncoder for FindData {
    fn encode(&self, _index: u64, data: Vec<u8>) -> Result<Option<Vec<u8>>> {
        Ok(if is_zero(&data) { None } else { Some(Vec::new()) })
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

/// Outputs for a writer that only lends its encoder (a browser pool worker): nothing is ever written to them.
#[derive(Debug, Default)]
pub struct NoOutputs;

impl Outputs for NoOutputs {
    fn main(&mut self) -> Result<Box<dyn Sink>> {
        Ok(Box::new(crate::io::MemorySink::default()))
    }

    fn beside(&mut self, _name: &str) -> Result<Box<dyn Sink>> {
        Ok(Box::new(crate::io::MemorySink::default()))
    }
}

/// Outputs of a single file: the one sink given, and no files beside it.
pub struct OneOutput(Option<Box<dyn Sink>>);

impl OneOutput {
    /// The output `sink`.
    pub fn new(sink: Box<dyn Sink>) -> Self {
        OneOutput(Some(sink))
    }
}

impl Outputs for OneOutput {
    fn main(&mut self) -> Result<Box<dyn Sink>> {
        self.0.take().ok_or_else(|| Error::argument("The output was asked for twice"))
    }

    fn beside(&mut self, name: &str) -> Result<Box<dyn Sink>> {
        Err(Error::argument(format!("This output is one file; '{name}' cannot be written beside it")))
    }
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
