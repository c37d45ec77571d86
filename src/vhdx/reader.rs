//! Reading VHDX files: the current header, the log replayed in memory when it holds changes, a valid region
//! table, the metadata items, then the BAT a page at a time. A differencing disk's parent is found through
//! its parent locator and read wherever the child's sector bitmaps say the child holds nothing.
//!
//! Block states of a differencing disk [MS-VHDX 2.5.1.1]: `NOT_PRESENT` and `UNDEFINED` blocks come from the
//! parent (the child never wrote them); `ZERO` reads zeros; `UNMAPPED` (discarded by the guest, contents
//! unspecified) reads zeros too, as qemu reads it, rather than bringing back parent data the guest threw
//! away; `PARTIALLY_PRESENT` consults the chunk's sector bitmap, 1 bit per logical sector, bit 0 of byte 0
//! first: set sectors are in this file, clear ones in the parent.
//!
//! The parent must carry the `DataWriteGuid` the locator's `parent_linkage` (or `parent_linkage2`) names, or
//! it is refused: Hyper-V refuses such a chain too, and reading through a parent changed since the child was
//! made would mix two disks.

use super::bat::{BatEntry, BatState, Geometry};
use super::guid::{self, Guid};
use super::header::{self, Header, RegionEntry, RegionTable};
use super::log;
use super::metadata::{Metadata, ParentLocator};
use crate::chain::{Opener, Parent, ParentSearch, parent_extent, read_parent, sector_run, unless_missing};
use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::{Image, ImageInfo};
use crate::io::{ReadAt, zeroed_buffer};

/// BAT entries read at once.
const BAT_PAGE: u64 = 512;
/// An extent reaches at most this many blocks past its first one, keeping `extent_at` cheap.
const EXTENT_BLOCKS: u64 = 4096;
/// Sector-bitmap blocks are always 1 MiB.
const BITMAP_BLOCK: u64 = 1 << 20;

/// An opened VHDX image.
pub struct Vhdx {
    /// The file, seen through the replayed log when there was one.
    file: Box<dyn ReadAt>,
    /// The file's own length (a replayed log may have extended the view of it).
    file_length: u64,
    info: ImageInfo,
    header: Header,
    metadata: Metadata,
    geometry: Geometry,
    bat: RegionEntry,
    /// Entries the BAT must hold: a differencing disk's include the last chunk's sector-bitmap entry.
    bat_entries: u64,
    /// Header section, log and regions, sorted: no payload block may overlap them.
    reserved: Vec<(u64, u64)>,
    /// One page of the BAT: its first index and its entries.
    page: (u64, Vec<u64>),
    parent: Option<Box<dyn Image>>,
    /// The sector-bitmap block last read: its file offset and its bytes — all the bitmap memory there is.
    bitmap: Option<(u64, Vec<u8>)>,
}

/// Where a payload block's bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    /// All in this file, at the offset.
    Stored(u64),
    /// Zeros.
    Zero,
    /// Nowhere: zeros, and unallocated in the map.
    Absent,
    /// The parent's.
    Parent,
    /// Sector by sector from this file (at the offset) or the parent, as the sector bitmap says.
    Partial(u64),
}

impl Vhdx {
    /// Opens `file` (named `name`), validating headers, region tables, metadata and the BAT's size, replaying
    /// the log in memory, and opening a differencing disk's parent through `opener`.
    ///
    /// # Errors
    /// `InvalidFormat` without the `vhdxfile` signature, `Corrupt` for broken structures or a malformed log,
    /// `Unsupported` for an unknown required region or item, and whatever opening the parent gives.
    pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Vhdx> {
        let mut id = [0u8; 8];
        file.read_exact_at(header::FILE_ID_OFFSET, &mut id)?;
        header::check_file_identifier(&id)?;
        let header = current_header(file.as_ref())?;
        let file_length = file.len();
        let mut warnings = Vec::new();
        let file: Box<dyn ReadAt> = if header.log_guid == Guid::nil() {
            file
        } else {
            let replayed = log::replay(file, &header)?;
            warnings.push(match replayed.entries() {
                0 => "The log is marked in use but holds no complete entry: nothing to replay".to_string(),
                n => format!(
                    "The log held {n} entries not yet applied (not closed cleanly); they were replayed in memory \
                     and the file is unchanged"
                ),
            });
            Box::new(replayed)
        };
        let regions = region_table(file.as_ref())?;
        let region = |guid: Guid, name: &str| {
            let entry = regions.entries.iter().find(|e| e.guid == guid).copied();
            entry.ok_or_else(|| Error::corrupt(format!("Region table lacks the {name} region")))
        };
        let (bat, meta) = (region(guid::BAT_REGION, "BAT")?, region(guid::METADATA_REGION, "metadata")?);
        if let Some(e) = regions.entries.iter().find(|e| e.required && **e != bat && **e != meta) {
            return Err(Error::unsupported(format!("Unknown required region {}", e.guid)));
        }
        let reserved = reserved_spans(&header, &regions)?;
        let mut region_bytes = zeroed_buffer(meta.length as u64, "the metadata region")?;
        file.read_exact_at(meta.file_offset, &mut region_bytes).map_err(|e| e.at(meta.file_offset))?;
        let metadata = Metadata::parse(&region_bytes).map_err(|e| e.at(meta.file_offset))?;
        let lss = metadata.logical_sector_size as u64;
        let geometry = Geometry {
            // Rounded up to whole sectors; the tail reads as zeros (DECISIONS.md, reader policy).
            virtual_size: metadata.virtual_size.div_ceil(lss) * lss,
            block_size: metadata.block_size as u64,
            logical_sector_size: lss,
        };
        let bat_entries = if metadata.has_parent { geometry.entries_with_bitmaps() } else { geometry.entries() };
        if bat_entries * 8 > bat.length as u64 {
            return Err(Error::corrupt(format!(
                "BAT region of {} bytes is too small for {bat_entries} entries",
                bat.length
            ))
            .at(bat.file_offset));
        }
        let mut info = ImageInfo::basic("vhdx", geometry.virtual_size);
        info.cluster_size = Some(geometry.block_size);
        info.warnings = warnings;
        let parent = match metadata.parent_locator_at.filter(|_| metadata.has_parent) {
            Some((at, len)) => {
                // `Metadata::parse` checked the item lies inside the region.
                let item = &region_bytes[at as usize..][..len as usize];
                let locator = ParentLocator::parse(item).map_err(|e| e.at(meta.file_offset + at as u64))?;
                let opened = open_parent(&locator, name, opener);
                unless_missing(opener, opened)?.map(|parent| {
                    info.backing_filename = Some(parent.name);
                    info.full_backing_filename = Some(parent.resolved);
                    parent.image
                })
            }
            None => None,
        };
        Ok(Vhdx {
            file,
            file_length,
            info,
            header,
            metadata,
            geometry,
            bat,
            bat_entries,
            reserved,
            page: (0, Vec::new()),
            parent,
            bitmap: None,
        })
    }

    /// The current header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The metadata items (after the log's replay).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// How blocks map to BAT entries.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Raw BAT entry `index` (payload or sector-bitmap slot), after the log's replay.
    ///
    /// # Errors
    /// `InvalidArgument` past the last entry; read errors.
    pub fn bat_entry(&mut self, index: u64) -> Result<BatEntry> {
        if index >= self.bat_entries {
            return Err(Error::argument(format!("BAT index {index} is past the last entry")));
        }
        let (start, entries) = &self.page;
        if index < *start || index >= start + entries.len() as u64 {
            let start = index / BAT_PAGE * BAT_PAGE;
            let count = BAT_PAGE.min(self.bat_entries - start);
            let mut raw = vec![0u8; count as usize * 8];
            self.file.read_exact_at(self.bat.file_offset + start * 8, &mut raw)?;
            let entries = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
            self.page = (start, entries);
        }
        Ok(BatEntry(self.page.1[(index - self.page.0) as usize]))
    }

    /// Checks that `len` bytes at `offset`, which BAT entry `index` points to, lie in the file clear of the
    /// header section, log and regions.
    fn check_stored(&self, what: &str, offset: u64, len: u64, index: u64) -> Result<()> {
        let at = self.bat.file_offset + index * 8;
        let end = offset.saturating_add(len);
        if end > self.file.len() {
            return Err(Error::corrupt(format!("{what} at {offset:#x} lies outside the file")).at(at));
        }
        if self.reserved.iter().any(|&(start, stop)| offset < stop && end > start) {
            return Err(Error::corrupt(format!("{what} at {offset:#x} overlaps the metadata")).at(at));
        }
        Ok(())
    }

    /// Where block `block`'s bytes come from.
    fn mapping(&mut self, block: u64) -> Result<Mapping> {
        let index = self.geometry.index(block);
        let entry = self.bat_entry(index)?;
        let at = self.bat.file_offset + index * 8;
        // A differencing disk's, whether or not its parent was found (`info` looks at a child alone).
        let has_parent = self.metadata.has_parent;
        Ok(match entry.state().map_err(|e| e.at(at))? {
            BatState::FullyPresent => {
                self.check_stored(&format!("Block {block}"), entry.offset(), self.geometry.block_size, index)?;
                Mapping::Stored(entry.offset())
            }
            BatState::PartiallyPresent if has_parent => {
                self.check_stored(&format!("Block {block}"), entry.offset(), self.geometry.block_size, index)?;
                Mapping::Partial(entry.offset())
            }
            BatState::PartiallyPresent => {
                return Err(
                    Error::corrupt(format!("Block {block} is partially present in a disk without a parent")).at(at)
                );
            }
            BatState::Zero => Mapping::Zero,
            BatState::Unmapped if has_parent => Mapping::Zero,
            BatState::NotPresent | BatState::Undefined if has_parent => Mapping::Parent,
            BatState::NotPresent | BatState::Undefined | BatState::Unmapped => Mapping::Absent,
        })
    }

    /// The run of sectors of the partially present block `block` sharing the bitmap bit of block-relative byte
    /// `from`: whether this file holds them, and the block-relative byte where the run ends (≤ `limit`).
    fn sector_run(&mut self, block: u64, from: u64, limit: u64) -> Result<(bool, u64)> {
        let index = self.geometry.bitmap_index(block);
        let at = self.bat.file_offset + index * 8;
        let Some(offset) = self.bat_entry(index)?.bitmap_offset().map_err(|e| e.at(at))? else {
            return Err(
                Error::corrupt(format!("Block {block} is partially present but its sector bitmap is not")).at(at)
            );
        };
        if self.bitmap.as_ref().is_none_or(|(at, _)| *at != offset) {
            self.check_stored("Sector bitmap", offset, BITMAP_BLOCK, index)?;
            let mut bytes = match self.bitmap.take() {
                Some((_, bytes)) => bytes,
                None => zeroed_buffer(BITMAP_BLOCK, "VHDX sector bitmap")?,
            };
            self.file.read_exact_at(offset, &mut bytes)?;
            self.bitmap = Some((offset, bytes));
        }
        let (_, bytes) = self.bitmap.as_ref().expect("just loaded");
        let bits = &bytes[self.geometry.bitmap_byte(block) as usize..];
        Ok(sector_run(bits, bit_set, self.geometry.logical_sector_size, from, limit))
    }

    fn parent(&mut self) -> Option<&mut dyn Image> {
        self.parent.as_mut().map(|p| &mut **p as &mut dyn Image)
    }
}

/// VHDX sector bitmaps count from bit 0 of byte 0 [MS-VHDX 2.4].
fn bit_set(bitmap: &[u8], index: u64) -> bool {
    bitmap[(index / 8) as usize] & (1 << (index % 8)) != 0
}

/// Opens a differencing disk's parent: the locator's `relative_path`, then the base names of it,
/// `absolute_win32_path` and `volume_path` beside the child — absolute Windows paths resolve nowhere else, and
/// the page matches picked files by base name anyway.
fn open_parent(locator: &ParentLocator, name: &str, opener: &mut dyn Opener) -> Result<Parent> {
    if locator.locator_type != guid::VHDX_PARENT_LOCATOR_TYPE {
        return Err(Error::unsupported(format!("Parent locator type {} is not a VHDX parent's", locator.locator_type)));
    }
    let linkage = |key: &str| match locator.get(key) {
        None => Ok(None),
        Some(text) => guid::parse(text)
            .map(Some)
            .ok_or_else(|| Error::corrupt(format!("Parent locator's {key} '{text}' is not a GUID"))),
    };
    let linkages = [linkage("parent_linkage")?, linkage("parent_linkage2")?];
    let Some(linkage) = linkages[0] else {
        return Err(Error::corrupt("Parent locator has no parent_linkage"));
    };
    let normalise = |path: &str| {
        let path = path.replace('\\', "/");
        path.strip_prefix("./").map_or(path.clone(), str::to_string)
    };
    let base_names = ["relative_path", "absolute_win32_path", "volume_path"]
        .into_iter()
        .filter_map(|key| locator.get(key))
        .map(|path| normalise(path).rsplit('/').next().unwrap_or_default().to_string());
    let candidates: Vec<String> = locator.get("relative_path").map(normalise).into_iter().chain(base_names).collect();
    let unnamed = "Differencing VHDX's parent locator names no path to find the parent by";
    let search = ParentSearch { candidates, format: "vhdx", kind: "VHDX", unnamed };
    crate::chain::open_parent(opener, search, name, &mut |file, resolved| {
        let found = current_header(file).map_err(|e| e.in_file(resolved.to_string()))?.data_write_guid;
        if linkages.contains(&Some(found)) {
            return Ok(());
        }
        Err(Error::corrupt(format!(
            "Parent '{resolved}' has DataWriteGuid {found}, but this differencing VHDX was made from {linkage} \
             (parent_linkage): the parent changed since"
        )))
    })
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
        let block_start = first * block_size;
        let virtual_size = self.info.virtual_size;
        let mapping = self.mapping(first)?;
        if let Mapping::Partial(_) = mapping {
            let block_end = (block_start + block_size).min(virtual_size);
            let (present, end) = self.sector_run(first, offset - block_start, block_end - block_start)?;
            let end = block_start + end;
            if present {
                return Ok(Extent { offset, length: end - offset, kind: ExtentKind::Data });
            }
            return parent_extent(self.parent(), offset, end);
        }
        let last_block = self.geometry.data_blocks();
        let mut next = first + 1;
        while next < last_block
            && next - first < EXTENT_BLOCKS
            // A bad entry ends the run: it is reported when the walk asks for its own block, and only then.
            && self.mapping(next).is_ok_and(|m| std::mem::discriminant(&m) == std::mem::discriminant(&mapping))
        {
            next += 1;
        }
        let end = (next * block_size).min(virtual_size);
        let kind = match mapping {
            Mapping::Stored(_) => ExtentKind::Data,
            Mapping::Zero => ExtentKind::Zero,
            Mapping::Absent => ExtentKind::Unallocated,
            Mapping::Parent | Mapping::Partial(_) => return parent_extent(self.parent(), offset, end),
        };
        Ok(Extent { offset, length: end - offset, kind })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let block_size = self.geometry.block_size;
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (block, within) = (pos / block_size, pos % block_size);
            let n = ((block_size - within) as usize).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            match self.mapping(block)? {
                Mapping::Stored(at) => self.file.read_exact_at(at + within, piece)?,
                Mapping::Zero | Mapping::Absent => piece.fill(0),
                Mapping::Parent => read_parent(self.parent(), pos, piece)?,
                Mapping::Partial(at) => {
                    let mut from = within;
                    while from < within + n as u64 {
                        let (present, end) = self.sector_run(block, from, within + n as u64)?;
                        let part = &mut buf[done + (from - within) as usize..done + (end - within) as usize];
                        if present {
                            self.file.read_exact_at(at + from, part)?;
                        } else {
                            read_parent(self.parent(), block * block_size + from, part)?;
                        }
                        from = end;
                    }
                }
            }
            done += n;
        }
        Ok(())
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        self.parent()
    }

    fn file_length(&self) -> u64 {
        self.file_length
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
        let mut ctx = crate::open::OpenContext::new(&crate::chain::NoFiles);
        let mut image = Vhdx::open(Box::new(file), "sample.vhdx", &mut ctx)?;
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
