//! Raw images: the guest bytes as they are. Reading maps the file's holes as zeros where the file system tells
//! them apart (a sparse file), and everything else as data (zero detection happens in the writers' encoders);
//! writing leaves holes wherever a unit is all zeros, as `qemu-img convert -O raw` does.

use crate::chain::Opener;
use crate::error::Result;
use crate::extent::{Extent, ExtentKind};
use crate::image::{Image, ImageInfo};
use crate::io::{ReadAt, Sink};
use crate::options::OptionList;
use crate::writer::{Finished, Finishing, ImageWriter, Outputs, Settings, SkipZeros, UnitEncoder};
use std::sync::Arc;

/// Opens `file` as a raw disk (the table of formats' entry).
///
/// # Errors
/// None in practice: every file is a raw disk.
pub fn open(file: Box<dyn ReadAt>, _name: &str, _opener: &mut dyn Opener) -> Result<Box<dyn Image>> {
    Ok(Box::new(RawImage::new(file)))
}

/// The raw writer on `outputs` (the table of formats' entry); raw takes no options.
///
/// # Errors
/// Whatever creating the output gives.
pub fn writer(
    _options: &mut OptionList,
    _settings: &Settings,
    virtual_size: u64,
    outputs: &mut dyn Outputs,
) -> Result<Box<dyn ImageWriter>> {
    Ok(Box::new(RawWriter::new(outputs.main()?, virtual_size)))
}

/// A raw image opened for reading.
pub struct RawImage {
    file: Box<dyn ReadAt>,
    info: ImageInfo,
}

impl RawImage {
    /// Takes the whole file as the guest disk, its size rounded up to 512 bytes (the tail reads as zeros).
    pub fn new(file: Box<dyn ReadAt>) -> Self {
        let size = file.len().div_ceil(512) * 512;
        let mut info = ImageInfo::basic("raw", size);
        if file.len() % 512 != 0 {
            // Anything unrecognised is raw, as in qemu-img; a disk is whole sectors, a stray text file is not.
            info.warnings.push(format!(
                "Read as a raw disk, but {} bytes is not a whole number of 512-byte sectors: is this a disk image?",
                file.len()
            ));
        }
        RawImage { info, file }
    }
}

impl Image for RawImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        let size = self.info.virtual_size;
        let (kind, end) = match self.file.allocation_at(offset) {
            Some((true, end)) => (ExtentKind::Data, end),
            Some((false, end)) => (ExtentKind::Zero, end),
            // Past the file's end (its tail rounded up to a sector) or not known.
            None => (ExtentKind::Data, size),
        };
        Ok(Extent { offset, length: end.min(size) - offset, kind })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let file_len = self.file.len();
        let in_file = file_len.saturating_sub(offset).min(buf.len() as u64) as usize;
        self.file.read_exact_at(offset, &mut buf[..in_file])?;
        buf[in_file..].fill(0);
        Ok(())
    }

    fn file_length(&self) -> u64 {
        self.file.len()
    }
}

/// Guest bytes per unit: large enough to keep reads coalesced, small enough to find holes.
const RAW_UNIT: u64 = 1 << 20;

/// Writes a raw image, leaving all-zero megabytes as holes.
pub struct RawWriter {
    sink: Box<dyn Sink>,
    virtual_size: u64,
}

impl RawWriter {
    /// A writer for a disk of `virtual_size` bytes.
    pub fn new(sink: Box<dyn Sink>, virtual_size: u64) -> Self {
        RawWriter { sink, virtual_size }
    }
}

impl ImageWriter for RawWriter {
    fn unit_size(&self) -> u64 {
        RAW_UNIT
    }

    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        Arc::new(SkipZeros)
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        match encoded {
            Some(data) => self.sink.write_at(index * RAW_UNIT, &data),
            None => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>) -> Result<Box<dyn Finishing>> {
        self.sink.finish(self.virtual_size)?;
        Ok(Box::new(Finished(self.sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::{RunOptions, run};
    use crate::io::MemorySink;

    #[test]
    fn raw_round_trip_with_threads_reading_their_own_source() {
        let mut data = vec![0u8; 3 << 20];
        data[(2 << 20) + 5] = 7;
        data.truncate((3 << 20) - 100);
        let image = Box::new(RawImage::new(Box::new(data.clone())));
        assert_eq!(image.virtual_size(), 3 << 20);
        assert!(image.info().warnings[0].contains("not a whole number of 512-byte sectors"));
        assert!(RawImage::new(Box::new(vec![0u8; 4096])).info().warnings.is_empty());
        let out = MemorySink::default();
        let writer = Box::new(RawWriter::new(Box::new(out.clone()), image.virtual_size()));
        let reopen = || Ok(Box::new(RawImage::new(Box::new(data.clone()))) as Box<dyn Image>);
        run(image, writer, RunOptions { threads: 3, reopen: Some(&reopen), ..Default::default() }).unwrap();
        let out = out.bytes();
        assert_eq!(out.len(), 3 << 20);
        assert_eq!(&out[..data.len()], &data[..]);
        assert!(out[data.len()..].iter().all(|&b| b == 0));
    }
}
