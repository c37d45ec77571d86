//! The VHDX writer: guest data in 1 MiB units, payload blocks stored in guest order behind the metadata.
//!
//! A block's place in the file follows from its rank among the allocated blocks ([`Layout::block_offset`]),
//! so the writer only keeps one bit per block, never a whole BAT. On a seekable sink a block is
//! allocated when its first non-zero unit arrives and the BAT is written last. On an append-only sink the BAT
//! precedes the data, so the writer asks for the pipeline's scan ([`ImageWriter::wants_scan`]), which finds the
//! units holding non-zero bytes on every core; the same scan serves the automatic block size of large disks.

use super::VhdxOptions;
use super::bat::{BatEntry, Geometry};
use super::guid::{self, Guid};
use super::header::{self, Header, RegionEntry, RegionTable};
use super::layout::{self, Layout};
use super::metadata::{self, Metadata};
use crate::bitmap::{Bitmap, Ranks};
use crate::error::{Error, Result};
use crate::io::Sink;
use crate::random::Random;
use crate::sparse::write_nonzero;
use crate::writer::{FindData, Finished, Finishing, ImageWriter, SkipZeros, UnitEncoder};
use std::sync::Arc;

/// Guest bytes per unit, whatever the block size: keeps the pipeline's memory small with 256 MiB blocks.
const UNIT: u64 = 1 << 20;
/// BAT entries are written in pieces of this many bytes.
const BAT_PIECE: usize = 1 << 20;

/// Writes a dynamic (or fixed) VHDX.
pub struct VhdxWriter {
    sink: Box<dyn Sink>,
    opts: VhdxOptions,
    /// Guest size rounded up to the logical sector size.
    virtual_size: u64,
    /// Known from the start unless the block size is automatic on a large dynamic disk; then set by the scan.
    layout: Option<Layout>,
    /// The units the scan found holding non-zero bytes (empty without a scan).
    units: Bitmap,
    /// Dynamic disks: the blocks holding data (planned up front on an append-only sink). Empty for fixed disks.
    stored: Bitmap,
    /// How many bits of `stored` are set.
    stored_count: u64,
    /// Ranks of the blocks units go to.
    ranks: Ranks,
    /// The header section, BAT and metadata are on the sink (append-only sinks: before any data).
    front_written: bool,
    file_write_guid: Guid,
    data_write_guid: Guid,
    page83: Guid,
    sequence_number: u64,
}

impl VhdxWriter {
    /// A writer on `sink` for a disk of `virtual_size` bytes; random fields follow from `seed`. Nothing is
    /// written yet.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty disk or one over 64 TiB.
    pub fn new(sink: Box<dyn Sink>, virtual_size: u64, opts: &VhdxOptions, seed: u64) -> Result<Self> {
        let lss = opts.logical_sector_size as u64;
        // The tail past the source's end reads as zeros: no guest byte is dropped.
        let virtual_size = virtual_size.div_ceil(lss) * lss;
        if virtual_size > metadata::MAX_VIRTUAL_SIZE {
            return Err(Error::argument(format!("A VHDX disk holds at most 64 TiB, not {virtual_size} bytes")));
        }
        // A BAT without entries: libvhdi refuses it, and qemu reads one only through an unsigned underflow
        // that wants a BAT of millions of entries (its own empty files carry one).
        if virtual_size == 0 {
            return Err(Error::argument("An empty disk cannot be written as VHDX"));
        }
        let mut random = Random::new(seed);
        let mut writer = VhdxWriter {
            sink,
            opts: opts.clone(),
            virtual_size,
            layout: None,
            units: Bitmap::default(),
            stored: Bitmap::default(),
            stored_count: 0,
            ranks: Ranks::default(),
            front_written: false,
            file_write_guid: random.uuid(),
            data_write_guid: random.uuid(),
            page83: random.uuid(),
            sequence_number: random.next_u32() as u64,
        };
        let block_size = match opts.block_size {
            Some(size) => Some(size),
            // Small disks, and fixed ones which allocate every block, need no look at the data.
            None if virtual_size <= layout::SMALL_DISK || opts.fixed => {
                Some(layout::auto_block_size(virtual_size, lss, opts.log_size, |size| virtual_size.div_ceil(size)))
            }
            None => None,
        };
        if let Some(block_size) = block_size {
            writer.set_layout(block_size)?;
        }
        if writer.wants_scan() {
            writer.units = Bitmap::new(virtual_size.div_ceil(UNIT))?;
        }
        Ok(writer)
    }

    fn set_layout(&mut self, block_size: u64) -> Result<Layout> {
        let logical_sector_size = self.opts.logical_sector_size as u64;
        let geometry = Geometry { virtual_size: self.virtual_size, block_size, logical_sector_size };
        let layout = Layout::new(geometry, self.opts.log_size);
        self.stored = Bitmap::new(if self.opts.fixed { 0 } else { geometry.data_blocks() })?;
        self.layout = Some(layout);
        Ok(layout)
    }

    fn layout(&self) -> Result<Layout> {
        self.layout.ok_or_else(|| Error::argument("The VHDX writer needs its scan before data on a disk over 128 GiB"))
    }

    /// The file rank of `block`, allocating it if the output allows. Blocks come in ascending order.
    fn rank(&mut self, block: u64) -> Result<u64> {
        if self.opts.fixed {
            return Ok(block);
        }
        if !self.stored.get(block) {
            if self.front_written {
                return Err(Error::new(
                    crate::ErrorKind::Io,
                    format!("The source changed while it was read: block {block} held only zeros in the first pass"),
                ));
            }
            self.stored.set(block);
            self.stored_count += 1;
        }
        Ok(self.ranks.below(&self.stored, block))
    }

    fn stored_blocks(&self, layout: &Layout) -> u64 {
        if self.opts.fixed { layout.geometry.data_blocks() } else { self.stored_count }
    }

    /// Header section, BAT and metadata, in ascending file order (so an append-only sink can take them).
    fn write_front(&mut self, layout: &Layout) -> Result<()> {
        let creator = format!("diskbridge {}", env!("CARGO_PKG_VERSION"));
        self.sink.write_at(header::FILE_ID_OFFSET, &header::file_identifier(&creator))?;
        for (i, &offset) in header::HEADER_OFFSETS.iter().enumerate() {
            let h = Header {
                // Two valid headers must differ in sequence number; the second one is current.
                sequence_number: self.sequence_number + i as u64,
                file_write_guid: self.file_write_guid,
                data_write_guid: self.data_write_guid,
                log_guid: Guid::nil(),
                log_length: layout.log_length as u32,
                log_offset: layout.log_offset,
            };
            self.sink.write_at(offset, &h.to_bytes())?;
        }
        let regions = RegionTable {
            entries: vec![
                RegionEntry {
                    guid: guid::BAT_REGION,
                    file_offset: layout.bat_offset,
                    length: layout.bat_length as u32,
                    required: true,
                },
                RegionEntry {
                    guid: guid::METADATA_REGION,
                    file_offset: layout.metadata_offset,
                    length: layout.metadata_length as u32,
                    required: true,
                },
            ],
        }
        .to_bytes();
        for offset in header::REGION_TABLE_OFFSETS {
            write_nonzero(self.sink.as_mut(), offset, &regions)?;
        }
        // The log stays zero: a LogGuid of zero says there is nothing in it.
        self.write_bat(layout)?;
        let metadata = Metadata {
            block_size: layout.geometry.block_size as u32,
            leave_blocks_allocated: self.opts.fixed,
            has_parent: false,
            virtual_size: self.virtual_size,
            page83: self.page83,
            logical_sector_size: self.opts.logical_sector_size,
            physical_sector_size: self.opts.physical_sector_size,
            parent_locator_at: None,
        };
        write_nonzero(self.sink.as_mut(), layout.metadata_offset, &metadata.to_bytes())?;
        self.front_written = true;
        Ok(())
    }

    /// The front on an append-only sink, before any data: a fixed disk's BAT follows from its size alone, a
    /// dynamic disk's needs the scan, which writes it.
    fn write_front_in_order(&mut self, layout: &Layout) -> Result<()> {
        if !self.sink.is_seekable() && !self.opts.fixed {
            return Err(Error::argument("The VHDX writer needs its scan before data on an append-only output"));
        }
        self.write_front(layout)
    }

    /// The BAT, a piece at a time; sector-bitmap slots and blocks without data stay 0 (NOT_PRESENT, offset 0).
    fn write_bat(&mut self, layout: &Layout) -> Result<()> {
        let g = layout.geometry;
        let mut piece: Vec<u8> = Vec::with_capacity(BAT_PIECE);
        let mut piece_start = layout.bat_offset;
        let mut rank = 0;
        for block in 0..g.data_blocks() {
            let entry = if self.opts.fixed || self.stored.get(block) {
                rank += 1;
                BatEntry::present(layout.block_offset(rank - 1)).0
            } else {
                0
            };
            let at = layout.bat_offset + g.index(block) * 8;
            if at + 8 > piece_start + BAT_PIECE as u64 {
                write_nonzero(self.sink.as_mut(), piece_start, &piece)?;
                piece.clear();
                piece_start += BAT_PIECE as u64;
            }
            piece.resize((at - piece_start) as usize, 0);
            piece.extend_from_slice(&entry.to_le_bytes());
        }
        write_nonzero(self.sink.as_mut(), piece_start, &piece)
    }
}

/// The blocks of `units_per_block` units holding at least one non-zero unit, ascending.
fn blocks_with_data(units: &Bitmap, units_per_block: u64) -> impl Iterator<Item = u64> + '_ {
    (0..units.len().div_ceil(units_per_block))
        .filter(move |&b| units.count(b * units_per_block, (b + 1) * units_per_block) > 0)
}

impl ImageWriter for VhdxWriter {
    fn unit_size(&self) -> u64 {
        UNIT
    }

    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        Arc::new(SkipZeros)
    }

    fn wants_scan(&self) -> bool {
        // Fixed disks allocate every block; dynamic ones must know their non-zero blocks to put the BAT first on an
        // append-only sink, or to pick the block size of a large disk.
        !self.opts.fixed && (self.layout.is_none() || !self.sink.is_seekable())
    }

    fn scan_encoder(&self) -> Option<Arc<dyn UnitEncoder>> {
        Some(Arc::new(FindData))
    }

    fn scan_unit(&mut self, index: u64, scanned: Option<Vec<u8>>) -> Result<()> {
        if scanned.is_some() {
            self.units.set(index);
        }
        Ok(())
    }

    fn end_scan(&mut self) -> Result<()> {
        let layout = match self.layout {
            Some(layout) => layout,
            None => {
                let (size, units) = (self.virtual_size, &self.units);
                let lss = self.opts.logical_sector_size as u64;
                let block_size = layout::auto_block_size(size, lss, self.opts.log_size, |block_size| {
                    blocks_with_data(units, block_size / UNIT).count() as u64
                });
                self.set_layout(block_size)?
            }
        };
        if !self.sink.is_seekable() {
            let units = std::mem::take(&mut self.units);
            for block in blocks_with_data(&units, layout.geometry.block_size / UNIT) {
                self.stored.set(block);
                self.stored_count += 1;
            }
            self.write_front(&layout)?;
        }
        Ok(())
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        let Some(data) = encoded else { return Ok(()) };
        let layout = self.layout()?;
        if !self.sink.is_seekable() && !self.front_written {
            self.write_front_in_order(&layout)?;
        }
        let guest = index * UNIT;
        let block = guest / layout.geometry.block_size;
        let offset = layout.block_offset(self.rank(block)?) + guest % layout.geometry.block_size;
        write_nonzero(self.sink.as_mut(), offset, &data)
    }

    fn finish(mut self: Box<Self>) -> Result<Box<dyn Finishing>> {
        let layout = self.layout()?;
        if !self.front_written {
            self.write_front_in_order(&layout)?;
        }
        let len = layout.block_offset(self.stored_blocks(&layout));
        self.sink.finish(len)?;
        Ok(Box::new(Finished(self.sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extent::{Extent, ExtentKind};
    use crate::image::{Image, ImageInfo};

    #[test]
    fn blocks_with_data_groups_units() {
        let mut units = Bitmap::new(40).unwrap();
        for u in [0, 3, 4, 8, 9, 39] {
            units.set(u);
        }
        assert_eq!(blocks_with_data(&units, 1).count(), 6);
        assert_eq!(blocks_with_data(&units, 4).collect::<Vec<_>>(), vec![0, 1, 2, 9]);
        assert_eq!(blocks_with_data(&units, 256).collect::<Vec<_>>(), vec![0]);
    }

    /// Guest bytes that turn non-zero after the first pass, as a source being written to would.
    struct Changing {
        info: ImageInfo,
        reads: u32,
    }

    impl Image for Changing {
        fn info(&self) -> &ImageInfo {
            &self.info
        }
        fn extent_at(&mut self, offset: u64) -> Result<Extent> {
            Ok(Extent { offset, length: self.info.virtual_size - offset, kind: ExtentKind::Data })
        }
        fn read_at(&mut self, _offset: u64, buf: &mut [u8]) -> Result<()> {
            self.reads += 1;
            buf.fill(if self.reads > 2 { 0xff } else { 0 });
            Ok(())
        }
        fn file_length(&self) -> u64 {
            0
        }
    }

    #[test]
    fn append_only_output_refuses_a_source_that_changed_between_passes() {
        let info = ImageInfo::basic("raw", 2 * UNIT);
        let sink = Box::new(crate::io::StreamSink::new(Vec::new()));
        let writer = Box::new(VhdxWriter::new(sink, 2 * UNIT, &VhdxOptions::default(), 1).unwrap());
        let e = crate::convert::run(Box::new(Changing { info, reads: 0 }), writer, Default::default()).err().unwrap();
        assert!(e.message().contains("source changed"), "{}", e.message());
    }

    #[test]
    fn memory_round_trip_through_the_reader() {
        let mut data = vec![0u8; (5 * UNIT + 512) as usize];
        data[3] = 1;
        data[(3 * UNIT + 4096) as usize..(3 * UNIT + 8192) as usize].fill(7);
        *data.last_mut().unwrap() = 9;
        let source = Box::new(crate::raw::RawImage::new(Box::new(data.clone())));
        let out = crate::io::MemorySink::default();
        let opts = VhdxOptions { block_size: Some(2 * UNIT), ..VhdxOptions::default() };
        let writer = Box::new(VhdxWriter::new(Box::new(out.clone()), data.len() as u64, &opts, 9).unwrap());
        crate::convert::run(source, writer, Default::default()).unwrap();
        let file = out.take();
        assert_eq!(file.len() as u64, 4 * UNIT + 3 * 2 * UNIT, "blocks 0, 1 and 2 stored");
        let mut ctx = crate::open::OpenContext::new(&crate::chain::NoFiles);
        let mut image = super::super::Vhdx::open(Box::new(file), "out.vhdx", &mut ctx).unwrap();
        let mut back = vec![0u8; data.len()];
        image.read_at(0, &mut back).unwrap();
        assert!(back == data);
    }
}
