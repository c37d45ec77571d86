//! The streamOptimized file layouts (FORMATS.md §2.5), chosen by the sink:
//!
//! ```text
//! seekable (open-vmdk's vmdk-convert, "layout B"):
//!   header | descriptor (20 sectors) | GD @21 | all GTs, preallocated | grains… | EOS
//! append-only, e.g. stdout (the technote's stream, "layout C"):
//!   header (gdOffset = GD_AT_END) | descriptor | zeros to sector 128 | {grains… | GT marker | GT}… per GD slot
//!   | GD marker | GD | footer marker | footer | EOS
//! ```
//!
//! Both put grains in ascending LBA order, end with the end-of-stream sector and write nothing after it.
//! Memory stays bounded whatever the disk size: grains arrive in ascending order, so only the grain table
//! being filled is kept; layout C also keeps the GD (4 bytes per 32 MiB of disk) until the end.

use super::VmdkOptions;
use super::descriptor::{self, ContentIds};
use super::grain::GrainEncoder;
use super::header::{DESCRIPTOR_OFFSET, DESCRIPTOR_SECTORS, GD_AT_END, GRAIN_SECTORS, GTES_PER_GT, Header};
use super::marker::{self, Kind};
use crate::error::{Error, Result};
use crate::io::{MAX_BUFFER, Sink};
use crate::writer::{Finished, Finishing, ImageWriter, UnitEncoder};
use byteorder::{ByteOrder, LittleEndian};
use std::sync::Arc;

const SECTOR: u64 = 512;
/// Guest bytes per grain, the writer's unit.
const GRAIN_BYTES: u64 = GRAIN_SECTORS * SECTOR;
/// Sectors of one grain table (512 u32 entries).
const GT_SECTORS: u64 = GTES_PER_GT * 4 / SECTOR;
/// Layout B's grain directory follows the descriptor directly.
const FRONT_GD_OFFSET: u64 = DESCRIPTOR_OFFSET + DESCRIPTOR_SECTORS;
/// Layout C's `overHead`: VMware's streams start their grains at sector 128. The gap is really written
/// (zeros), since qemu refuses a file shorter than `overHead` ("File truncated").
const STREAM_OVERHEAD: u64 = 128;
/// GTEs and GDEs are u32 sector numbers, so nothing can be placed at or past 2 TiB.
const MAX_SECTORS: u64 = 1 << 32;

enum Layout {
    /// Metadata in front, grain tables written into their slots as the stream moves past them.
    Front,
    /// Metadata behind the grains; `gd` collects each grain table's sector as it is written.
    Stream { started: bool, gd: Vec<u32> },
}

/// Writes a streamOptimized VMDK: layout B on a seekable sink, layout C on an append-only one.
pub struct VmdkWriter {
    sink: Box<dyn Sink>,
    layout: Layout,
    level: u32,
    /// Guest size in sectors.
    capacity: u64,
    gt_count: u64,
    gd_sectors: u64,
    /// `overHead`: sectors before the first grain.
    overhead: u64,
    descriptor: String,
    /// The grain table being filled, its index, and whether any entry is set.
    gt: Vec<u32>,
    gt_index: u64,
    gt_used: bool,
    /// The next free sector of the file.
    next: u64,
}

impl VmdkWriter {
    /// A writer on `sink` for a disk of `virtual_size` bytes (rounded up to whole sectors), whose descriptor
    /// names the extent `name` (the output's base name) and whose content ids come from `seed`. Nothing is
    /// written yet.
    ///
    /// # Errors
    /// `InvalidArgument` for an empty disk or a name the descriptor cannot hold; `LimitExceeded` when the
    /// grain directory would exceed [`MAX_BUFFER`] (a disk over 512 TiB).
    pub fn new(sink: Box<dyn Sink>, virtual_size: u64, opts: &VmdkOptions, seed: u64, name: &str) -> Result<Self> {
        let capacity = virtual_size.div_ceil(SECTOR);
        if capacity == 0 {
            // qemu-img creates such a file but cannot open it ("Unsupported image type").
            return Err(Error::argument("A VMDK needs a virtual size of at least one sector"));
        }
        let gt_count = capacity.div_ceil(GRAIN_SECTORS).div_ceil(GTES_PER_GT);
        let gd_sectors = (gt_count * 4).div_ceil(SECTOR);
        if gd_sectors * SECTOR > MAX_BUFFER {
            return Err(Error::limit(format!(
                "A VMDK of {virtual_size} bytes needs a grain directory over the {MAX_BUFFER}-byte limit"
            )));
        }
        // vmdk-convert names its extent literally "disk"; keep that where there is no file name (stdout).
        let name = if name.is_empty() { "disk" } else { name };
        let descriptor = descriptor::text(capacity, name, opts, &ContentIds::from_seed(seed))?;
        if descriptor.len() as u64 > DESCRIPTOR_SECTORS * SECTOR {
            return Err(Error::argument("The output name is too long for the VMDK descriptor"));
        }
        let (layout, overhead) = if sink.is_seekable() {
            (Layout::Front, FRONT_GD_OFFSET + gd_sectors + gt_count * GT_SECTORS)
        } else {
            (Layout::Stream { started: false, gd: Vec::new() }, STREAM_OVERHEAD)
        };
        Ok(VmdkWriter {
            sink,
            layout,
            level: opts.compression_level,
            capacity,
            gt_count,
            gd_sectors,
            overhead,
            descriptor,
            gt: vec![0; GTES_PER_GT as usize],
            gt_index: 0,
            gt_used: false,
            next: overhead,
        })
    }

    /// Reserves `sectors` at the end of the file and returns where they start.
    fn place(&mut self, sectors: u64) -> Result<u64> {
        let start = self.next;
        if start + sectors > MAX_SECTORS {
            return Err(Error::limit("The VMDK would exceed 2 TiB, the most its 32-bit sector offsets address")
                .at(start * SECTOR));
        }
        self.next += sectors;
        Ok(start)
    }

    fn header(&self, gd_offset: u64) -> [u8; 512] {
        Header::stream_optimized(self.capacity, gd_offset, self.overhead).to_bytes()
    }

    /// Layout C's leading header and descriptor, which an append-only sink must get before anything else.
    fn start_stream(&mut self) -> Result<()> {
        let Layout::Stream { started: false, .. } = self.layout else {
            return Ok(());
        };
        let mut head = vec![0; ((DESCRIPTOR_OFFSET + DESCRIPTOR_SECTORS) * SECTOR) as usize];
        head[..512].copy_from_slice(&self.header(GD_AT_END));
        let d = (DESCRIPTOR_OFFSET * SECTOR) as usize;
        head[d..d + self.descriptor.len()].copy_from_slice(self.descriptor.as_bytes());
        self.sink.write_at(0, &head)?;
        if let Layout::Stream { started, .. } = &mut self.layout {
            *started = true;
        }
        Ok(())
    }

    /// Completes grain tables until `index` is the one being filled.
    fn advance_to_gt(&mut self, index: u64) -> Result<()> {
        while self.gt_index < index {
            self.close_gt()?;
        }
        Ok(())
    }

    fn close_gt(&mut self) -> Result<()> {
        match self.layout {
            // An unused table's slot is left as a gap, which reads as zeros.
            Layout::Front if self.gt_used => {
                let slot = FRONT_GD_OFFSET + self.gd_sectors + self.gt_index * GT_SECTORS;
                self.sink.write_at(slot * SECTOR, &le_table(&self.gt, GT_SECTORS))?;
            }
            Layout::Front => {}
            // Every GD slot gets a table, empty ones too: both ESXi-proven producers (vmdk-convert, qemu)
            // always have all tables, and an empty one costs 2.5 KiB per 32 MiB of disk. VMDKstream.py leaves
            // GDE 0 instead, which readers accept, but no import of that is known to us.
            Layout::Stream { .. } => {
                let at = self.place(1 + GT_SECTORS)?;
                let mut buf = marker::metadata(Kind::GrainTable, GT_SECTORS).to_vec();
                buf.extend_from_slice(&le_table(&self.gt, GT_SECTORS));
                self.sink.write_at(at * SECTOR, &buf)?;
                if let Layout::Stream { gd, .. } = &mut self.layout {
                    gd.push((at + 1) as u32);
                }
            }
        }
        if self.gt_used {
            self.gt.fill(0);
            self.gt_used = false;
        }
        self.gt_index += 1;
        Ok(())
    }
}

/// u32 LE entries padded with zeros to `sectors` (a GT or a GD).
fn le_table(entries: &[u32], sectors: u64) -> Vec<u8> {
    let mut b = vec![0u8; (sectors * SECTOR) as usize];
    LittleEndian::write_u32_into(entries, &mut b[..entries.len() * 4]);
    b
}

impl ImageWriter for VmdkWriter {
    fn unit_size(&self) -> u64 {
        GRAIN_BYTES
    }

    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        Arc::new(GrainEncoder::new(self.level))
    }

    fn write_unit(&mut self, index: u64, encoded: Option<Vec<u8>>) -> Result<()> {
        let Some(grain) = encoded else { return Ok(()) };
        if index * GRAIN_SECTORS >= self.capacity {
            return Err(Error::argument(format!("Grain {index} is beyond the end of the disk")));
        }
        self.start_stream()?;
        self.advance_to_gt(index / GTES_PER_GT)?;
        let at = self.place(grain.len() as u64 / SECTOR)?;
        self.sink.write_at(at * SECTOR, &grain)?;
        self.gt[(index % GTES_PER_GT) as usize] = at as u32;
        self.gt_used = true;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Box<dyn Finishing>> {
        self.start_stream()?;
        self.advance_to_gt(self.gt_count)?;
        let eos = marker::metadata(Kind::EndOfStream, 0);
        let stream_gd = match &mut self.layout {
            Layout::Front => None,
            Layout::Stream { gd, .. } => Some(std::mem::take(gd)),
        };
        match stream_gd {
            None => {
                let at = self.place(1)?;
                self.sink.write_at(at * SECTOR, &eos)?;
                let first_gt = FRONT_GD_OFFSET + self.gd_sectors;
                let gd: Vec<u32> = (0..self.gt_count).map(|i| (first_gt + i * GT_SECTORS) as u32).collect();
                self.sink.write_at(FRONT_GD_OFFSET * SECTOR, &le_table(&gd, self.gd_sectors))?;
                self.sink.write_at(DESCRIPTOR_OFFSET * SECTOR, self.descriptor.as_bytes())?;
                // The header goes last, so an interrupted file does not carry a valid magic (vmdk-convert gets
                // the same from writing "kdmv" first and "KDMV" after an fsync).
                self.sink.write_at(0, &self.header(FRONT_GD_OFFSET))?;
            }
            Some(gd) => {
                let at = self.place(1 + self.gd_sectors + 3)?;
                let mut tail = marker::metadata(Kind::GrainDirectory, self.gd_sectors).to_vec();
                tail.extend_from_slice(&le_table(&gd, self.gd_sectors));
                tail.extend_from_slice(&marker::metadata(Kind::Footer, 1));
                tail.extend_from_slice(&self.header(at + 1));
                tail.extend_from_slice(&eos);
                self.sink.write_at(at * SECTOR, &tail)?;
            }
        }
        self.sink.finish(self.next * SECTOR)?;
        Ok(Box::new(Finished(self.sink)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::io::{MemorySink, StreamSink};
    use crate::options::OptionList;

    fn opts() -> VmdkOptions {
        VmdkOptions::from_options(&mut OptionList::default()).unwrap()
    }

    fn grain(index: u64) -> Option<Vec<u8>> {
        GrainEncoder::new(1).encode(index, vec![1; 512]).unwrap()
    }

    #[test]
    fn nothing_is_written_before_the_first_unit() {
        let sink = MemorySink::default();
        let _ = VmdkWriter::new(Box::new(sink.clone()), 1 << 30, &opts(), 0, "a.vmdk").unwrap();
        assert!(sink.bytes().is_empty());
    }

    /// A seekable sink that keeps nothing, for offsets no test can hold in memory.
    struct Discard;
    impl Sink for Discard {
        fn write_at(&mut self, _offset: u64, _data: &[u8]) -> Result<()> {
            Ok(())
        }
        fn is_seekable(&self) -> bool {
            true
        }
        fn finish(&mut self, _len: u64) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_file_stops_short_of_2_tib() {
        let mut w = VmdkWriter::new(Box::new(Discard), 1 << 20, &opts(), 0, "a.vmdk").unwrap();
        w.next = MAX_SECTORS - 1;
        let last_sector = w.next;
        w.write_unit(0, grain(0)).unwrap();
        assert_eq!(w.gt[0] as u64, last_sector, "the last addressable sector is still usable");
        let err = w.write_unit(1, grain(1)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LimitExceeded);
        assert_eq!(err.offset(), Some(MAX_SECTORS * SECTOR));
    }

    #[test]
    fn empty_and_oversized_disks_are_refused() {
        let new = |size| VmdkWriter::new(Box::new(MemorySink::default()), size, &opts(), 0, "a.vmdk").err().unwrap();
        assert_eq!(new(0).kind(), ErrorKind::InvalidArgument);
        assert_eq!(new(1 << 60).kind(), ErrorKind::LimitExceeded, "a 512 MiB grain directory");
        let long = "x".repeat(10_000);
        assert!(VmdkWriter::new(Box::new(MemorySink::default()), 512, &opts(), 0, &long).is_err());
    }

    #[test]
    fn stream_layout_on_an_append_only_sink() {
        let sink = Box::new(StreamSink::new(Vec::new()));
        let w = VmdkWriter::new(sink, 512, &opts(), 0, "").unwrap();
        assert!(matches!(w.layout, Layout::Stream { .. }));
        assert!(w.descriptor.contains("RW 1 SPARSE \"disk\""), "vmdk-convert's name when there is none");
    }
}
