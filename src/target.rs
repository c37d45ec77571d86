//! What to write: an output format with its `-o` options and the settings that make output reproducible,
//! turned into the format's writer through the table of formats (or, in a browser pool worker, just its
//! encoders).

use crate::error::{Error, Result};
use crate::formats::Format;
use crate::image::{Grown, Image};
use crate::options::OptionList;
use crate::writer::{ImageWriter, NoOutputs, Outputs, Settings, UnitEncoder};
use std::sync::Arc;

/// Everything that decides the output bytes besides the guest data.
#[derive(Debug, Clone)]
pub struct Target {
    /// Output format.
    pub format: Format,
    /// The `-o` options, as given.
    pub options: OptionList,
    /// Seed, epoch, output name, `-c`.
    pub settings: Settings,
}

/// Builds the writer for `target` on `outputs`, for a disk of `virtual_size` bytes. Nothing is written yet.
///
/// # Errors
/// `Unsupported` for a format that is only read; `InvalidArgument` for an unknown or bad option, naming it, and
/// for `-c` with a format that has no compressed form.
pub fn writer(target: &Target, virtual_size: u64, outputs: &mut dyn Outputs) -> Result<Box<dyn ImageWriter>> {
    let (name, spec) = (target.format.name(), target.format.spec());
    let write = spec.write.ok_or_else(|| Error::unsupported(format!("Writing {name} is not supported")))?;
    if target.settings.compressed && !spec.compress {
        return Err(Error::argument(format!("Compression (-c) is not supported for {name} output")));
    }
    let mut options = target.options.clone();
    let writer = write(&mut options, &target.settings, virtual_size, outputs)?;
    options.finish(name)?;
    Ok(writer)
}

/// The source as the output will hold it: grown to `-o size=` when the options ask for that (which this takes
/// out of them), for every output format.
///
/// # Errors
/// `InvalidArgument` for a size that is not one, or smaller than the source.
pub fn sized(source: Box<dyn Image>, options: &mut OptionList) -> Result<Box<dyn Image>> {
    match options.take_size("size")? {
        Some(size) => Ok(Box::new(Grown::new(source, size)?)),
        None => Ok(source),
    }
}

/// The encoders a writer for `target` would use, for running them in another thread or wasm instance.
pub struct Encoders {
    /// The scan pass's encoder, for writers that have one.
    pub scan: Option<Arc<dyn UnitEncoder>>,
    /// The write pass's encoder.
    pub write: Arc<dyn UnitEncoder>,
    /// Guest bytes per unit.
    pub unit: u64,
}

/// The encoders `writer` would use for `target` on a disk of `virtual_size` bytes.
///
/// # Errors
/// As [`writer`].
pub fn encoders(target: &Target, virtual_size: u64) -> Result<Encoders> {
    let writer = writer(target, virtual_size, &mut NoOutputs)?;
    Ok(Encoders { scan: writer.scan_encoder(), write: writer.encoder(), unit: writer.unit_size() })
}
