//! VHD (Virtual PC / Virtual Server / Hyper-V's first format; qemu's `vpc`) reader: fixed, dynamic and
//! differencing disks, after Microsoft's Virtual Hard Disk Image Format Specification.
//!
//! ```text
//! fixed:          | guest bytes ........................................... | footer |
//! dynamic/diff.:  | footer copy | dynamic header | BAT | bitmap | block | bitmap | block | ... | footer |
//! ```
//!
//! A dynamic disk's block is read whole when its BAT entry is set, whatever its sector bitmap says, as qemu
//! does (qemu writes all-ones bitmaps and never reads them). A differencing disk needs its bitmap: a 0 bit sends
//! that sector to the parent, which is found through the parent locators (qemu reads a differencing disk as if
//! it were dynamic, without its parent).
//!
//! Stricter than qemu, so that damage shows before any output is written: the dynamic header's checksum is
//! checked (qemu checks only the footer's), and every allocated block must end before the trailing footer (qemu
//! only wants it inside the file). The size rule is qemu's, documented on `Footer::virtual_size` in `header.rs`.

mod header;
mod writer;

pub use writer::{OPTIONS, VpcOptions, VpcWriter, writer};

use crate::chain::{Opener, Parent, ParentSearch, parent_extent, read_parent, unless_missing};
use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::{Fact, Image, ImageInfo, Specific};
use crate::io::{ReadAt, zeroed_buffer};
use byteorder::{BigEndian, ByteOrder};
use header::{
    BatEntry, BlockState, DiskType, DynamicHeader, FOOTER_SIZE, Footer, HEADER_SIZE, SECTOR, bitmap_size,
    has_footer_cookie, sector_present,
};

/// Most absent blocks one extent of a dynamic disk spans.
const MAX_ABSENT_RUN: u64 = 1024;

/// Longest parent locator path accepted; Windows paths top out at 32767 UTF-16 units.
const MAX_LOCATOR_LENGTH: u32 = 64 << 10;

/// Whether a file is a VHD: a dynamic disk's footer copy at the start, or a fixed disk's footer at the end.
pub fn probe(head: &[u8], tail: &[u8]) -> bool {
    head.starts_with(b"conectix") || is_fixed_footer(tail)
}

/// Opens a VHD and a differencing disk's parent (the table of formats' entry).
///
/// # Errors
/// As [`Vpc::open`].
pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Box<dyn Image>> {
    Ok(Box::new(Vpc::open(file, name, opener)?))
}

/// Whether `tail`, a file's last 512 bytes, is a fixed VHD's footer (cookie, checksum and disk type) — the only
/// mark a fixed VHD carries, so probing looks for it when nothing matches the file's first bytes.
pub fn is_fixed_footer(tail: &[u8]) -> bool {
    tail.len() >= FOOTER_SIZE && Footer::parse(tail, 0).is_ok_and(|f| f.disk_type == DiskType::Fixed)
}

/// An opened VHD image.
pub struct Vpc {
    file: Box<dyn ReadAt>,
    info: ImageInfo,
    /// `None` for a fixed disk.
    blocks: Option<Blocks>,
}

/// The block map of a dynamic or differencing disk.
struct Blocks {
    block_size: u64,
    bitmap_size: u64,
    /// The BAT as stored (big-endian entries), only as many entries as the virtual size needs.
    bat: Vec<u8>,
    /// The parent of a differencing disk.
    parent: Option<Box<dyn Image>>,
    /// The sector bitmap of the block last looked at — the only metadata cached besides the BAT.
    bitmap: Vec<u8>,
    /// File offset `bitmap` was read from.
    bitmap_at: Option<u64>,
}

impl Vpc {
    /// Opens `file` (named `name`); a differencing disk's parent is opened through `ctx`.
    ///
    /// # Errors
    /// `InvalidFormat` without a footer, `Corrupt` for checksum mismatches and structures that contradict each
    /// other or the file's length, `LimitExceeded` for sizes beyond the format's or diskbridge's limits, and
    /// whatever opening the parent gives.
    pub fn open(file: Box<dyn ReadAt>, name: &str, opener: &mut dyn Opener) -> Result<Vpc> {
        let len = file.len();
        let (footer, footer_at) = read_footer(&*file)?;
        // Dynamic disks lead with a copy of the footer; fixed disks cannot, their guest data starts at 0.
        let fixed = footer.disk_type == DiskType::Fixed;
        if (footer_at == 0) == fixed {
            return Err(Error::corrupt(if fixed {
                "VHD footer at the start of the file is a fixed disk's, whose guest data starts there"
            } else {
                "VHD footer at the end of the file is a dynamic disk's, but the file does not start with its copy"
            })
            .at(footer_at));
        }
        let virtual_size = footer.virtual_size().map_err(|e| e.at(footer_at))?;
        let mut info = ImageInfo::basic("vpc", virtual_size);
        let subformat = match footer.disk_type {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        };
        let creator = String::from_utf8_lossy(&footer.creator_app).trim_end_matches(['\0', ' ']).to_string();
        info.specific =
            Some(Specific(vec![("subformat", Fact::Text(subformat.into())), ("creator", Fact::Text(creator))]));
        let blocks = match footer.disk_type {
            DiskType::Fixed => {
                let data = len - FOOTER_SIZE as u64;
                if virtual_size > data.div_ceil(SECTOR) * SECTOR {
                    return Err(Error::corrupt(format!(
                        "Fixed VHD holds {data} bytes of guest data, less than its virtual size of {virtual_size}"
                    ))
                    .at(footer_at));
                }
                None
            }
            DiskType::Dynamic | DiskType::Differencing => {
                let header = read_header(&*file, &footer)?;
                // The BAT-size check has no field of its own to point at: name the header.
                let mut blocks = Blocks::load(&*file, &header, virtual_size).map_err(|e| e.at(footer.data_offset))?;
                info.cluster_size = Some(blocks.block_size);
                if footer.disk_type == DiskType::Differencing {
                    let opened = open_parent(&*file, name, &header, opener);
                    if let Some(parent) = unless_missing(opener, opened)? {
                        info.backing_filename = Some(parent.name);
                        info.full_backing_filename = Some(parent.resolved);
                        blocks.parent = Some(parent.image);
                    }
                }
                Some(blocks)
            }
        };
        Ok(Vpc { file, info, blocks })
    }
}

/// The footer: the copy at offset 0 if there is one (dynamic and differencing disks), else the last 512 bytes
/// (fixed disks); and where it was found.
fn read_footer(file: &dyn ReadAt) -> Result<(Footer, u64)> {
    let len = file.len();
    if len < FOOTER_SIZE as u64 {
        return Err(Error::invalid("Not a VHD image: shorter than its 512-byte footer"));
    }
    let mut buf = [0u8; FOOTER_SIZE];
    file.read_exact_at(0, &mut buf)?;
    let at = if has_footer_cookie(&buf) { 0 } else { len - FOOTER_SIZE as u64 };
    if at != 0 {
        file.read_exact_at(at, &mut buf)?;
    }
    Ok((Footer::parse(&buf, at)?, at))
}

fn read_header(file: &dyn ReadAt, footer: &Footer) -> Result<DynamicHeader> {
    let at = footer.data_offset;
    if at.checked_add(HEADER_SIZE as u64).is_none_or(|end| end > file.len()) {
        return Err(
            Error::corrupt(format!("VHD dynamic disk header offset {at:#x} is beyond the end of the file")).at(0)
        );
    }
    let mut buf = [0u8; HEADER_SIZE];
    file.read_exact_at(at, &mut buf)?;
    DynamicHeader::parse(&buf, at)
}

impl Blocks {
    /// Checks the BAT against the virtual size and the file, and reads it.
    fn load(file: &dyn ReadAt, header: &DynamicHeader, virtual_size: u64) -> Result<Blocks> {
        let block_size = u64::from(header.block_size);
        let needed = virtual_size.div_ceil(block_size);
        if u64::from(header.max_table_entries) < needed {
            return Err(Error::corrupt(format!(
                "VHD block allocation table has {} entries; the virtual size needs {needed}",
                header.max_table_entries
            )));
        }
        let table_at = header.table_offset;
        let table_bytes = needed * 4;
        if table_at.checked_add(table_bytes).is_none_or(|end| end > file.len()) {
            return Err(Error::corrupt("VHD block allocation table lies beyond the end of the file").at(table_at));
        }
        let mut bat = zeroed_buffer(table_bytes, "VHD block allocation table")?;
        file.read_exact_at(table_at, &mut bat)?;
        let bitmap_size = bitmap_size(block_size);
        // Checking every block up front (as qemu does) makes a truncated download fail at open, before any
        // output is written, and lets reads trust the BAT. Unlike qemu we also want the trailing footer after
        // the last block: without it the file was cut, even if just inside the footer.
        let blocks_end = file.len() - FOOTER_SIZE as u64;
        for (index, entry) in bat.chunks_exact(4).enumerate() {
            let BlockState::At(at) = BatEntry(BigEndian::read_u32(entry)).state() else {
                continue;
            };
            if at + bitmap_size + block_size > blocks_end {
                return Err(Error::corrupt(format!(
                    "VHD block {index} at {at:#x} runs into the footer or past the end of the file (truncated?)"
                ))
                .at(table_at + 4 * index as u64));
            }
        }
        Ok(Blocks {
            block_size,
            bitmap_size,
            bat,
            parent: None,
            bitmap: zeroed_buffer(bitmap_size, "VHD sector bitmap")?,
            bitmap_at: None,
        })
    }

    fn parent(&mut self) -> Option<&mut dyn Image> {
        self.parent.as_mut().map(|p| &mut **p as &mut dyn Image)
    }

    fn count(&self) -> u64 {
        self.bat.len() as u64 / 4
    }

    fn state(&self, index: u64) -> BlockState {
        let at = index as usize * 4;
        BatEntry(BigEndian::read_u32(&self.bat[at..at + 4])).state()
    }

    /// Makes `bitmap` the sector bitmap stored at `at`, reading it unless it is already there.
    fn load_bitmap(&mut self, file: &dyn ReadAt, at: u64) -> Result<()> {
        if self.bitmap_at != Some(at) {
            self.bitmap_at = None;
            file.read_exact_at(at, &mut self.bitmap)?;
            self.bitmap_at = Some(at);
        }
        Ok(())
    }

    /// The guest map at `offset`: to the end of its block or bitmap run, or over a run of absent blocks.
    fn extent_at(&mut self, file: &dyn ReadAt, offset: u64, virtual_size: u64) -> Result<Extent> {
        let index = offset / self.block_size;
        let block_start = index * self.block_size;
        let block_end = (block_start + self.block_size).min(virtual_size);
        let state = self.state(index);
        if self.parent.is_none() {
            if state != BlockState::Absent {
                let length = block_end - offset;
                return Ok(Extent { offset, length, kind: ExtentKind::Data });
            }
            // Callers skip unallocated runs at once, so absent blocks are worth merging; data is read a unit at a
            // time, each unit asking for its extent again, so a present block is answered alone in O(1). The
            // bound keeps a caller that walks a huge empty disk in small windows from paying for all of it
            // at every step.
            let last = (index + MAX_ABSENT_RUN).min(self.count());
            let mut next = index + 1;
            while next < last && self.state(next) == BlockState::Absent {
                next += 1;
            }
            let end = (next * self.block_size).min(virtual_size);
            return Ok(Extent { offset, length: end - offset, kind: ExtentKind::Unallocated });
        }
        let run_end = match state {
            BlockState::Absent => block_end,
            BlockState::At(at) => {
                self.load_bitmap(file, at)?;
                let (present, end) = sector_run(&self.bitmap, offset - block_start, block_end - block_start);
                if present {
                    return Ok(Extent { offset, length: block_start + end - offset, kind: ExtentKind::Data });
                }
                block_start + end
            }
        };
        parent_extent(self.parent(), offset, run_end)
    }

    /// Reads guest bytes at `offset`, which lie in one block.
    fn read_in_block(&mut self, file: &dyn ReadAt, offset: u64, buf: &mut [u8]) -> Result<()> {
        let block_start = offset / self.block_size * self.block_size;
        let in_block = offset - block_start;
        let at = match self.state(offset / self.block_size) {
            BlockState::Absent => return read_parent(self.parent(), offset, buf),
            BlockState::At(at) => at,
        };
        let data_at = at + self.bitmap_size;
        if self.parent.is_none() {
            return file.read_exact_at(data_at + in_block, buf);
        }
        self.load_bitmap(file, at)?;
        let mut done = 0u64;
        while done < buf.len() as u64 {
            let limit = in_block + buf.len() as u64;
            let (present, end) = sector_run(&self.bitmap, in_block + done, limit);
            let part = &mut buf[done as usize..(end - in_block) as usize];
            if present {
                file.read_exact_at(data_at + in_block + done, part)?;
            } else {
                read_parent(self.parent(), offset + done, part)?;
            }
            done = end - in_block;
        }
        Ok(())
    }
}

/// The run of sectors sharing the bitmap bit of the sector holding block-relative byte `from` (see
/// [`crate::chain::sector_run`]).
fn sector_run(bitmap: &[u8], from: u64, limit: u64) -> (bool, u64) {
    crate::chain::sector_run(bitmap, sector_present, SECTOR, from, limit)
}

/// Opens the parent of a differencing disk: each locator's path in turn (relative first), then the recorded
/// parent name, then the base names of all of them beside the child — an absolute Windows path resolves
/// nowhere else, and the page matches picked files by base name anyway.
fn open_parent(file: &dyn ReadAt, name: &str, header: &DynamicHeader, opener: &mut dyn Opener) -> Result<Parent> {
    let mut candidates = Vec::new();
    for locator in &header.locators {
        if locator.length > MAX_LOCATOR_LENGTH {
            return Err(Error::limit(format!(
                "VHD parent locator of {} bytes exceeds the {MAX_LOCATOR_LENGTH}-byte limit",
                locator.length
            ))
            .at(locator.offset));
        }
        if locator.offset.checked_add(u64::from(locator.length)).is_none_or(|end| end > file.len()) {
            return Err(Error::corrupt("VHD parent locator lies beyond the end of the file").at(locator.offset));
        }
        let mut data = vec![0u8; locator.length as usize];
        file.read_exact_at(locator.offset, &mut data)?;
        candidates.push(locator.decode(&data).map_err(|e| e.at(locator.offset))?);
    }
    candidates.push(header.parent_name.replace('\\', "/"));
    let base_names: Vec<String> = candidates.iter().filter_map(|c| c.rsplit('/').next()).map(str::to_string).collect();
    candidates.extend(base_names);
    let unnamed = "Differencing VHD names no parent it can be found by";
    let search = ParentSearch { candidates, format: "vpc", kind: "VHD", unnamed };
    crate::chain::open_parent(opener, search, name, &mut |file, resolved| check_parent_id(file, resolved, header))
}

/// Refuses a parent whose unique id is not the one the child recorded: it was replaced or changed since the
/// child was made, and reading through it would mix two disks. A child that records no id is taken on trust.
fn check_parent_id(parent: &dyn ReadAt, resolved: &str, header: &DynamicHeader) -> Result<()> {
    if header.parent_unique_id == [0; 16] {
        return Ok(());
    }
    let (footer, _) = read_footer(parent).map_err(|e| e.in_file(resolved.to_string()))?;
    if footer.unique_id != header.parent_unique_id {
        let hex = |id: &[u8; 16]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
        return Err(Error::corrupt(format!(
            "Parent '{resolved}' has unique id {}, but this differencing VHD was made from {}",
            hex(&footer.unique_id),
            hex(&header.parent_unique_id)
        )));
    }
    Ok(())
}

impl Image for Vpc {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        let virtual_size = self.info.virtual_size;
        match &mut self.blocks {
            None => Ok(Extent { offset, length: virtual_size - offset, kind: ExtentKind::Data }),
            Some(blocks) => blocks.extent_at(&*self.file, offset, virtual_size),
        }
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let Some(blocks) = &mut self.blocks else {
            // A fixed disk whose size is not a whole number of sectors ends inside its last sector.
            let data = self.file.len() - FOOTER_SIZE as u64;
            let n = data.saturating_sub(offset).min(buf.len() as u64) as usize;
            self.file.read_exact_at(offset, &mut buf[..n])?;
            buf[n..].fill(0);
            return Ok(());
        };
        let mut done = 0;
        while done < buf.len() {
            let pos = offset + done as u64;
            let n = (blocks.block_size - pos % blocks.block_size).min((buf.len() - done) as u64) as usize;
            blocks.read_in_block(&*self.file, pos, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        self.blocks.as_mut()?.parent()
    }

    fn file_length(&self) -> u64 {
        self.file.len()
    }
}

#[cfg(test)]
mod tests;
