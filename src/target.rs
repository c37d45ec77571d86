//! What to write: an output format with its `-o` options and the values that make output reproducible,
//! turned into the format's writer (or, in a browser worker, just its encoder).

use crate::convert::{ImageWriter, UnitEncoder};
use crate::error::{Error, Result};
use crate::image::Format;
use crate::io::{MemorySink, Sink};
use crate::options::OptionList;
use std::sync::Arc;

/// Everything that decides the output bytes besides the guest data.
#[derive(Debug, Clone)]
pub struct Target {
    /// Output format.
    pub format: Format,
    /// The `-o` options, as given.
    pub options: OptionList,
    /// Seed for every random field (CID, GUIDs, ids).
    pub seed: u64,
    /// Seconds since 1970 for every timestamp the output records.
    pub epoch: u64,
    /// The output file's base name (VMDK descriptors name their extent by it).
    pub output_name: String,
    /// `-c`: compressed clusters for qcow2; VMDK (streamOptimized) is compressed anyway; raw, VHDX and VHD have
    /// no compressed form and refuse it, as qemu-img does.
    pub compressed: bool,
}

/// Builds the writer for `target` on `sink`, for a disk of `virtual_size` bytes. Nothing is written yet.
///
/// # Errors
/// `InvalidArgument` for an unknown or bad option, naming it, and for `compressed` with raw, VHDX or VHD.
pub fn writer(target: &Target, virtual_size: u64, sink: Box<dyn Sink>) -> Result<Box<dyn ImageWriter>> {
    let mut options = target.options.clone();
    if target.compressed && matches!(target.format, Format::Raw | Format::Vhdx | Format::Vpc) {
        return Err(Error::argument(format!("Compression (-c) is not supported for {} output", target.format)));
    }
    let writer: Box<dyn ImageWriter> = match target.format {
        Format::Raw => Box::new(crate::raw::RawWriter::new(sink, virtual_size)),
        Format::Vmdk => {
            let opts = crate::vmdk::VmdkOptions::from_options(&mut options)?;
            Box::new(crate::vmdk::VmdkWriter::new(sink, virtual_size, &opts, target.seed, &target.output_name)?)
        }
        Format::Vhdx => {
            let opts = crate::vhdx::VhdxOptions::from_options(&mut options)?;
            Box::new(crate::vhdx::VhdxWriter::new(sink, virtual_size, &opts, target.seed)?)
        }
        Format::Ova => {
            return Ok(Box::new(crate::ova::PackageWriter::new(target, virtual_size, crate::ova::Layout::Ova(sink))?));
        }
        Format::Ovf => {
            return Err(Error::argument("OVF output is three files; build it with ova::PackageWriter and Layout::Ovf"));
        }
        Format::Qcow2 => {
            let opts = crate::qcow2::Qcow2Options::from_options(&mut options)?;
            Box::new(crate::qcow2::Qcow2Writer::new(sink, virtual_size, &opts, target.compressed)?)
        }
        Format::Vpc => {
            let opts = crate::vpc::VpcOptions::from_options(&mut options)?;
            Box::new(crate::vpc::VpcWriter::new(sink, virtual_size, &opts, target.seed, target.epoch)?)
        }
    };
    options.finish(target.format.name())?;
    Ok(writer)
}

/// The encoder `writer` would use, for running encoding in another thread or wasm instance.
pub fn encoder(target: &Target, virtual_size: u64) -> Result<Arc<dyn UnitEncoder>> {
    Ok(writer(target, virtual_size, Box::new(MemorySink::default()))?.encoder())
}
