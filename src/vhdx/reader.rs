//! Reading dynamic and fixed VHDX files: the current header, a valid region table, the five metadata items,
//! then the BAT a page at a time. Files with a log to replay and differencing files are refused.

use super::bat::{BatEntry, BatState, Geometry};
use super::guid::Guid;
use super::header::{self, Header, RegionEntry, RegionTable};
use super::metadata::Metadata;
use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::{Format, Image, ImageInfo};
use crate::io::{ReadAt, zeroed_buffer};

/// BAT entries read at once.
const BAT_PAGE: u64 = 512;
/// An extent reaches at most this many blocks past its first one, keeping `extent_at` cheap.
const EXTENT_BLOCKS: u64 = 4096;

/// An opened VHDX image.
pub struct Vhdx {
    file: Box<dyn ReadAt>,
    info: ImageInfo,
    header: Header,
    metadata: Metadata,
    geometry: Geometry,
    bat: RegionEntry,
    /// Header section, log and regions, sorted: no payload block may overlap them.
    reserved: Vec<(u64, u64)>,
    /// One page of the BAT: its first index and its entries.
    page: (u64, Vec<u64>),
}

impl Vhdx {
    /// Opens `file`, validating headers, region tables, metadata and the BAT's size.
    ///
    /// # Errors
    /// `InvalidFormat` without the `vhdxfile` signature, `Corrupt` for broken structures, `Unsupported` for a
    /// log to replay, a differencing disk, or an unknown required region.
    pub fn open(file: Box<dyn ReadAt>) -> Result<Vhdx> {
        let mut id = [0u8; 8];
        file.read_exact_at(header::FILE_ID_OFFSET, &mut id)?;
        header::check_file_identifier(&id)?;
        let header = current_header(file.as_ref())?;
        if header.log_guid != Guid::ZERO {
            return Err(Error::unsupported(
                "The VHDX log holds changes not yet applied (not closed cleanly); open it once with Hyper-V or \
                 `qemu-img check -r all` to replay it",
            ));
        }
        let regions = region_table(file.as_ref())?;
        let region = |guid: Guid, name: &str| {
            let entry = regions.entries.iter().find(|e| e.guid == guid).copied();
            entry.ok_or_else(|| Error::corrupt(format!("Region table lacks the {name} region")))
        };
        let (bat, meta) = (region(Guid::BAT_REGION, "BAT")?, region(Guid::METADATA_REGION, "metadata")?);
        if let Some(e) = regions.entries.iter().find(|e| e.required && **e != bat && **e != meta) {
            return Err(Error::unsupported(format!("Unknown required region {}", e.guid)));
        }
        let reserved = reserved_spans(&header, &regions)?;
        let mut region_bytes = zeroed_buffer(meta.length as u64, "the metadata region")?;
        file.read_exact_at(meta.file_offset, &mut region_bytes).map_err(|e| e.at(meta.file_offset))?;
        let metadata = Metadata::parse(&region_bytes).map_err(|e| e.at(meta.file_offset))?;
        if metadata.has_parent {
            return Err(Error::unsupported("Differencing VHDX images (with a parent) are not supported"));
        }
        let lss = metadata.logical_sector_size as u64;
        let geometry = Geometry {
            // Rounded up to whole sectors; the tail reads as zeros (DECISIONS.md, reader policy).
            virtual_size: metadata.virtual_size.div_ceil(lss) * lss,
            block_size: metadata.block_size as u64,
            logical_sector_size: lss,
        };
        if geometry.entries() * 8 > bat.length as u64 {
            return Err(Error::corrupt(format!(
                "BAT region of {} bytes is too small for {} entries",
                bat.length,
                geometry.entries()
            ))
            .at(bat.file_offset));
        }
        let mut info = ImageInfo::basic(Format::Vhdx, geometry.virtual_size);
        info.cluster_size = Some(geometry.block_size);
        Ok(Vhdx { file, info, header, metadata, geometry, bat, reserved, page: (0, Vec::new()) })
    }

    /// The current header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The metadata items.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// How blocks map to BAT entries.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Raw BAT entry `index` (payload or sector-bitmap slot).
    ///
    /// # Errors
    /// `InvalidArgument` past the last entry; read errors.
    pub fn bat_entry(&mut self, index: u64) -> Result<BatEntry> {
        if index >= self.geometry.entries() {
            return Err(Error::argument(format!("BAT index {index} is past the last entry")));
        }
        let (start, entries) = &self.page;
        if index < *start || index >= start + entries.len() as u64 {
            let start = index / BAT_PAGE * BAT_PAGE;
            let count = BAT_PAGE.min(self.geometry.entries() - start);
            let mut raw = vec![0u8; count as usize * 8];
            self.file.read_exact_at(self.bat.file_offset + start * 8, &mut raw)?;
            let entries = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
            self.page = (start, entries);
        }
        Ok(BatEntry(self.page.1[(index - self.page.0) as usize]))
    }

    /// What block `block` holds: the extent kind, and the file offset when it is stored.
    fn block(&mut self, block: u64) -> Result<(ExtentKind, Option<u64>)> {
        let index = self.geometry.index(block);
        let entry = self.bat_entry(index)?;
        let at = self.bat.file_offset + index * 8;
        Ok(match entry.state().map_err(|e| e.at(at))? {
            BatState::FullyPresent => {
                let offset = entry.offset();
                let end = offset.saturating_add(self.geometry.block_size);
                if end > self.file.len() {
                    return Err(Error::corrupt(format!("Block {block} at {offset:#x} lies outside the file")).at(at));
                }
                if self.reserved.iter().any(|&(start, stop)| offset < stop && end > start) {
                    return Err(Error::corrupt(format!("Block {block} at {offset:#x} overlaps the metadata")).at(at));
                }
                (ExtentKind::Data, Some(offset))
            }
            BatState::Zero => (ExtentKind::Zero, None),
            BatState::NotPresent | BatState::Undefined | BatState::Unmapped => (ExtentKind::Unallocated, None),
            BatState::PartiallyPresent => {
                return Err(
                    Error::corrupt(format!("Block {block} is partially present in a disk without a parent")).at(at)
                );
            }
        })
    }
}

/// The header with the larger sequence number among the valid ones.
fn current_header(file: &dyn ReadAt) -> Result<Header> {
    let mut raw = [[0u8; header::HEADER_SIZE]; 2];
    let mut parsed = Vec::with_capacity(2);
    for (buf, &offset) in raw.iter_mut().zip(&header::HEADER_OFFSETS) {
        file.read_exact_at(offset, buf)?;
        parsed.push(Header::parse(buf).map_err(|e| e.at(offset)));
    }
    match (parsed.remove(0), parsed.remove(0)) {
        (Ok(a), Ok(b)) if a.sequence_number == b.sequence_number && raw[0] != raw[1] => {
            Err(Error::corrupt("Both headers have the same sequence number but differ").at(header::HEADER_OFFSETS[1]))
        }
        (Ok(a), Ok(b)) => Ok(if b.sequence_number > a.sequence_number { b } else { a }),
        (Ok(h), Err(_)) | (Err(_), Ok(h)) => Ok(h),
        (Err(e), Err(_)) => Err(e),
    }
}

/// The first region table copy that is valid (the second is a backup).
fn region_table(file: &dyn ReadAt) -> Result<RegionTable> {
    let mut buf = vec![0u8; header::REGION_TABLE_SIZE];
    let mut first_error = None;
    for offset in header::REGION_TABLE_OFFSETS {
        file.read_exact_at(offset, &mut buf)?;
        match RegionTable::parse(&buf) {
            Ok(table) => return Ok(table),
            Err(e) => {
                first_error.get_or_insert(e.at(offset));
            }
        }
    }
    Err(first_error.expect("two copies tried"))
}

/// The header section, the log and the regions, sorted; MS-VHDX 2.2.3.2: they must not overlap.
fn reserved_spans(header: &Header, regions: &RegionTable) -> Result<Vec<(u64, u64)>> {
    let span = |start: u64, len: u64| {
        start.checked_add(len).map(|end| (start, end)).ok_or_else(|| Error::corrupt("Region ends past 2^64").at(start))
    };
    let mut spans = vec![(0, header::HEADER_SECTION_SIZE), span(header.log_offset, header.log_length as u64)?];
    for e in &regions.entries {
        spans.push(span(e.file_offset, e.length as u64)?);
    }
    spans.sort_unstable();
    match spans.windows(2).find(|w| w[1].0 < w[0].1) {
        Some(w) => Err(Error::corrupt("Regions, log or header section overlap").at(w[1].0)),
        None => Ok(spans),
    }
}

impl Image for Vhdx {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        let block_size = self.geometry.block_size;
        let first = offset / block_size;
        let (kind, _) = self.block(first)?;
        let last_block = self.geometry.data_blocks();
        let mut end = first + 1;
        while end < last_block && end - first < EXTENT_BLOCKS && self.block(end)?.0 == kind {
            end += 1;
        }
        let length = (end * block_size).min(self.info.virtual_size) - offset;
        Ok(Extent { offset, length, kind })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let block_size = self.geometry.block_size;
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let within = pos % block_size;
            let n = ((block_size - within) as usize).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            match self.block(pos / block_size)?.1 {
                Some(file_offset) => self.file.read_exact_at(file_offset + within, piece)?,
                None => piece.fill(0),
            }
            done += n;
        }
        Ok(())
    }

    fn file_length(&self) -> u64 {
        self.file.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::run;
    use crate::io::MemorySink;

    /// A small valid file: 3 MiB + 512 of guest data in 1 MiB blocks, two of them stored.
    fn sample() -> Vec<u8> {
        let mut data = vec![0u8; 3 << 20];
        data[5] = 1;
        data[(2 << 20) + 9] = 2;
        data.resize((3 << 20) + 512, 3);
        let source = Box::new(crate::raw::RawImage::new(Box::new(data)));
        let out = MemorySink::default();
        let opts = super::super::VhdxOptions::default();
        let writer = super::super::VhdxWriter::new(Box::new(out.clone()), (3 << 20) + 512, &opts, 4).unwrap();
        run(source, Box::new(writer), Default::default()).unwrap();
        out.take()
    }

    /// Opens `file`, walks its map and reads the first and last sector of every extent.
    fn open_and_read(file: Vec<u8>) -> Result<()> {
        let mut image = Vhdx::open(Box::new(file))?;
        let size = image.virtual_size();
        let mut pos = 0;
        let mut sector = [0u8; 512];
        while pos < size {
            let extent = image.extent_at(pos)?;
            image.read_at(extent.offset, &mut sector)?;
            image.read_at(extent.end() - 512, &mut sector)?;
            pos = extent.end();
        }
        Ok(())
    }

    #[test]
    fn damaged_files_give_errors_not_panics() {
        let good = sample();
        open_and_read(good.clone()).unwrap();
        // Each field byte of every structure the reader parses gets its top bit flipped; headers and region
        // tables are re-sealed so the damage gets past their CRCs.
        let sealed = [(0x10000, 4096, 8..80), (0x30000, 65536, 8..80)];
        for (start, len, fields) in sealed {
            for at in fields {
                let mut bad = good.clone();
                for copy in [start, start + 0x10000] {
                    bad[copy + at] ^= 0x80;
                    let crc = header::checksum(&bad[copy..copy + len]);
                    bad[copy + 4..copy + 8].copy_from_slice(&crc.to_le_bytes());
                }
                let _ = open_and_read(bad);
            }
        }
        let unsealed = [0..8, 0x300000..0x3000c0, 0x310000..0x310028, 0x200000..0x200020];
        for at in unsealed.into_iter().flatten() {
            let mut bad = good.clone();
            bad[at] ^= 0x80;
            let _ = open_and_read(bad);
        }
        for len in (0..good.len()).step_by(1 << 18) {
            assert!(open_and_read(good[..len].to_vec()).is_err(), "truncated to {len}");
        }
    }
}
