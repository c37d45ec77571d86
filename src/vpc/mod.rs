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

pub use writer::{VpcOptions, VpcWriter};

use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::{Format, FormatSpecific, Image, ImageInfo, OpenContext, Parent, parent_extent, read_parent};
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
    pub fn open(file: Box<dyn ReadAt>, name: &str, ctx: &mut OpenContext<'_>) -> Result<Vpc> {
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
        let mut info = ImageInfo::basic(Format::Vpc, virtual_size);
        let subformat = match footer.disk_type {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        };
        let creator = String::from_utf8_lossy(&footer.creator_app).trim_end_matches(['\0', ' ']).to_string();
        info.specific = Some(FormatSpecific::Vpc { subformat: subformat.into(), creator });
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
                    let opened = open_parent(&*file, name, &header, ctx);
                    if let Some(parent) = ctx.unless_missing(opened)? {
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
/// [`crate::image::sector_run`]).
fn sector_run(bitmap: &[u8], from: u64, limit: u64) -> (bool, u64) {
    crate::image::sector_run(bitmap, sector_present, SECTOR, from, limit)
}

/// Opens the parent of a differencing disk: each locator's path in turn (relative first), then the recorded
/// parent name, then the base names of all of them beside the child — an absolute Windows path resolves
/// nowhere else, and the page matches picked files by base name anyway.
fn open_parent(file: &dyn ReadAt, name: &str, header: &DynamicHeader, ctx: &mut OpenContext<'_>) -> Result<Parent> {
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
    ctx.open_parent(
        candidates,
        name,
        Format::Vpc,
        "VHD",
        "Differencing VHD names no parent it can be found by",
        &mut |file, resolved| check_parent_id(file, resolved, header),
    )
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
mod tests {
    use super::header::tests::{footer_bytes, header_bytes};
    use super::*;
    use crate::error::ErrorKind;
    use crate::extent::Extents;
    use crate::image::FileResolver;

    /// Bytes of each block in the fixtures: 8 sectors, so one bitmap byte covers a block.
    const BLOCK: u64 = 4096;

    /// Named in-memory files, for parents.
    struct Files(Vec<(&'static str, Vec<u8>)>);

    impl FileResolver for Files {
        fn open(&self, name: &str, _referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
            match self.0.iter().find(|(n, _)| *n == name) {
                Some((_, data)) => Ok((name.to_string(), Box::new(data.clone()))),
                None => Err(Error::new(ErrorKind::Io, format!("No file '{name}'"))),
            }
        }
    }

    /// Sector `sector` of an allocated fixture block filled with `fill`.
    fn sector_byte(fill: u8, sector: u64) -> u8 {
        fill.wrapping_add(sector as u8)
    }

    /// A dynamic (3) or differencing (4) disk of `size` bytes in 4 KiB blocks, made by Hyper-V ("win ", so the
    /// current size counts). `blocks` lists the allocated ones as (index, sector bitmap, fill byte); `locator`
    /// is one parent locator's platform and path bytes.
    fn sparse_disk(disk_type: u32, size: u64, blocks: &[(u32, u8, u8)], locator: Option<(&[u8; 4], &[u8])>) -> Vec<u8> {
        let entries = size.div_ceil(BLOCK);
        let bat_at = 3 * 512; // after the footer copy and the 1024-byte header
        let locator_at = bat_at + (entries * 4).div_ceil(512) * 512;
        let (platform, path) = locator.unwrap_or((b"\0\0\0\0", b""));
        let blocks_at = locator_at + (path.len() as u64).div_ceil(512) * 512;
        let footer = footer_bytes(disk_type, b"win ", size, (1, 1, 1));
        let mut file = footer.clone();
        file.extend(header_bytes(bat_at, entries as u32, BLOCK as u32, &[(platform, locator_at, path.len() as u32)]));
        file.resize(blocks_at as usize, 0xff); // BAT: all absent
        file[locator_at as usize..][..path.len()].copy_from_slice(path);
        for (n, &(index, bitmap, fill)) in blocks.iter().enumerate() {
            let at = blocks_at + n as u64 * (512 + BLOCK);
            BigEndian::write_u32(&mut file[bat_at as usize + 4 * index as usize..], (at / 512) as u32);
            let mut sector_bitmap = vec![0u8; 512];
            sector_bitmap[0] = bitmap;
            file.extend(sector_bitmap);
            file.extend((0..BLOCK).map(|i| sector_byte(fill, i / 512)));
        }
        file.extend(footer);
        file
    }

    /// A fixed disk of `size` bytes whose sector `s` is filled with `0xa0 + s`.
    fn fixed_disk(size: u64) -> Vec<u8> {
        let mut file: Vec<u8> = (0..size).map(|i| sector_byte(0xa0, i / 512)).collect();
        file.extend(footer_bytes(2, b"win ", size, (1, 1, 1)));
        file
    }

    fn open(data: Vec<u8>, files: &Files) -> Result<Box<dyn Image>> {
        crate::image::open("child.vhd", Box::new(data), None, files)
    }

    /// Reads the whole guest disk in 1000-byte pieces, so reads straddle sectors and blocks.
    fn read_all(image: &mut dyn Image) -> Result<Vec<u8>> {
        let mut out = vec![0u8; image.virtual_size() as usize];
        for chunk in (0..out.len()).step_by(1000) {
            let end = (chunk + 1000).min(out.len());
            image.read_at(chunk as u64, &mut out[chunk..end])?;
        }
        Ok(out)
    }

    fn extents(image: &mut dyn Image) -> Vec<(u64, u64, ExtentKind)> {
        Extents::all(image).map(|e| e.map(|e| (e.offset, e.end(), e.kind))).collect::<Result<_>>().unwrap()
    }

    /// The guest sectors of a disk as (fill byte, sector) pairs: `None` reads zeros.
    fn expected(sectors: &[Option<(u8, u64)>]) -> Vec<u8> {
        sectors.iter().flat_map(|s| [s.map_or(0, |(fill, sector)| sector_byte(fill, sector)); 512]).collect()
    }

    #[test]
    fn sector_runs_end_where_the_bit_changes_or_at_the_limit() {
        // Sectors 0-15 present, 16-19 absent, 20-23 present, 24-31 absent.
        let bitmap = [0xff, 0xff, 0x0f, 0x00];
        assert_eq!(sector_run(&bitmap, 0, 32 * 512), (true, 16 * 512));
        assert_eq!(sector_run(&bitmap, 16 * 512, 32 * 512), (false, 20 * 512));
        assert_eq!(sector_run(&bitmap, 21 * 512 + 7, 32 * 512), (true, 24 * 512));
        assert_eq!(sector_run(&bitmap, 24 * 512, 30 * 512 + 100), (false, 30 * 512 + 100));
        assert_eq!(sector_run(&bitmap, 5 * 512 + 7, 10 * 512), (true, 10 * 512));
    }

    #[test]
    fn dynamic_disk_reads_allocated_blocks_whole_and_absent_ones_as_zeros() {
        // 2.5 blocks: block 1 absent; block 2's bitmap marks only its last four sectors, which qemu ignores.
        let disk = sparse_disk(3, 10 << 10, &[(0, 0xff, 1), (2, 0x0f, 3)], None);
        let mut image = open(disk, &Files(vec![])).unwrap();
        let info = image.info().clone();
        assert_eq!((info.format, info.virtual_size, info.cluster_size), (Format::Vpc, 10 << 10, Some(BLOCK)));
        let want: Vec<_> = (0..20)
            .map(|s| match s / 8 {
                0 => Some((1, s % 8)),
                1 => None,
                _ => Some((3, s % 8)),
            })
            .collect();
        assert_eq!(read_all(&mut *image).unwrap(), expected(&want));
        assert_eq!(
            extents(&mut *image),
            [(0, 4096, ExtentKind::Data), (4096, 8192, ExtentKind::Unallocated), (8192, 10240, ExtentKind::Data)]
        );
        assert!(image.backing().is_none());
    }

    /// A 12 KiB differencing disk over an 8 KiB fixed parent found by its relative Windows locator: block 0
    /// holds sectors 0-3 itself, block 1 is absent, block 2 holds sectors 4-7 (sectors 0-3 lie beyond the parent).
    fn differencing() -> (Vec<u8>, Files) {
        let path: Vec<u8> = ".\\base\\parent.vhd".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let child = sparse_disk(4, 12 << 10, &[(0, 0xf0, 1), (2, 0x0f, 3)], Some((b"W2ru", &path)));
        (child, Files(vec![("base/parent.vhd", fixed_disk(8 << 10))]))
    }

    #[test]
    fn differencing_disk_takes_sectors_with_clear_bits_from_its_parent() {
        let (child, files) = differencing();
        let mut image = open(child, &files).unwrap();
        assert_eq!(image.info().backing_filename.as_deref(), Some("base/parent.vhd"));
        assert_eq!(image.info().full_backing_filename.as_deref(), Some("base/parent.vhd"));
        let parent = |s: u64| Some((0xa0, s));
        let want: Vec<_> = (0..24)
            .map(|s| match s {
                0..4 => Some((1, s)),
                4..16 => parent(s),
                16..20 => None,
                _ => Some((3, s % 8)),
            })
            .collect();
        assert_eq!(read_all(&mut *image).unwrap(), expected(&want));
        assert_eq!(
            extents(&mut *image),
            [(0, 8192, ExtentKind::Data), (8192, 10240, ExtentKind::Unallocated), (10240, 12288, ExtentKind::Data)]
        );
        // Unmerged, the child's own sectors and the parent's are separate runs.
        assert_eq!(image.extent_at(0).unwrap().length, 2048);
        assert_eq!(image.extent_at(2048).unwrap().length, 2048);
        assert_eq!(image.backing().unwrap().info().format, Format::Vpc);
    }

    #[test]
    fn differencing_disk_without_its_parent_names_what_it_tried() {
        let (child, _) = differencing();
        let err = open(child, &Files(vec![])).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.message().contains("'base/parent.vhd', 'parent.vhd'"), "{err}");
        assert_eq!(err.file(), Some("child.vhd"));
    }

    #[test]
    fn differencing_disk_refuses_a_parent_with_another_unique_id() {
        let (child, mut files) = differencing();
        let parent = &mut files.0[0].1;
        let footer_at = parent.len() - FOOTER_SIZE;
        parent[footer_at + 68] ^= 1;
        super::header::tests::seal(&mut parent[footer_at..], 64);
        let err = open(child, &files).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("unique id"), "{err}");
        assert_eq!(err.file(), Some("child.vhd"));
    }

    #[test]
    fn differencing_disk_that_is_its_own_parent_is_refused() {
        let path: Vec<u8> = "child.vhd".encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut child = sparse_disk(4, 4096, &[], Some((b"W2ku", &path)));
        // Name its own unique id as its parent's, so that only the loop is wrong.
        for word in 0..4 {
            patch_header(&mut child, 40 + 4 * word, 0x0404_0404);
        }
        let err = open(child.clone(), &Files(vec![("child.vhd", child)])).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.message().contains("loops"), "{err}");
    }

    #[test]
    fn fixed_disk_is_probed_by_its_footer_and_read_in_place() {
        let disk = fixed_disk(6 << 10);
        assert!(is_fixed_footer(&disk[disk.len() - 512..]));
        assert_eq!(Format::probe(&disk[..32], &disk[disk.len() - 512..]), Format::Vpc);
        // A dynamic disk's trailing footer copy is not a fixed disk's.
        let dynamic = sparse_disk(3, 4096, &[], None);
        assert!(!is_fixed_footer(&dynamic[dynamic.len() - 512..]));
        let mut image = open(disk, &Files(vec![])).unwrap();
        assert_eq!((image.virtual_size(), image.info().cluster_size), (6 << 10, None));
        let want: Vec<_> = (0..12).map(|s| Some((0xa0, s))).collect();
        assert_eq!(read_all(&mut *image).unwrap(), expected(&want));
        assert_eq!(extents(&mut *image), [(0, 6144, ExtentKind::Data)]);
    }

    /// Rewrites header field `field` (a big-endian u32) of a `sparse_disk` and reseals the header.
    fn patch_header(disk: &mut [u8], field: usize, value: u32) {
        let header = &mut disk[512..512 + HEADER_SIZE];
        BigEndian::write_u32(&mut header[field..], value);
        super::header::tests::seal(header, 36);
    }

    #[test]
    fn inconsistent_structures_are_refused_with_their_offset() {
        let disk = || sparse_disk(3, 10 << 10, &[(0, 0xff, 1)], None);
        let check = |disk: Vec<u8>, kind: ErrorKind, text: &str| {
            let err = open(disk, &Files(vec![])).err().unwrap();
            assert_eq!(err.kind(), kind, "{err}");
            assert!(err.message().contains(text), "{err}");
            assert!(err.offset().is_some(), "{err}");
        };
        let mut d = disk();
        patch_header(&mut d, 32, 3000); // block size
        check(d, ErrorKind::Corrupt, "not a power of two");
        let mut d = disk();
        patch_header(&mut d, 32, 1 << 30);
        check(d, ErrorKind::LimitExceeded, "block size");
        let mut d = disk();
        patch_header(&mut d, 28, 2); // max table entries
        check(d, ErrorKind::Corrupt, "needs 3");
        let mut d = disk();
        BigEndian::write_u32(&mut d[1536..], 0x0fff_ffff); // block 0 far beyond the end
        check(d, ErrorKind::Corrupt, "block 0");
        let mut d = disk();
        d[600] ^= 1;
        check(d, ErrorKind::Corrupt, "header checksum");
        let mut d = disk();
        d.truncate(d.len() - 1024);
        check(d, ErrorKind::Corrupt, "truncated");
        let mut d = fixed_disk(4096);
        d.splice(..0, footer_bytes(2, b"win ", 4096, (1, 1, 1)));
        check(d, ErrorKind::Corrupt, "start of the file is a fixed disk");
        let mut d = fixed_disk(4096);
        d.drain(..1024);
        check(d, ErrorKind::Corrupt, "less than its virtual size");
    }

    #[test]
    fn truncated_and_scrambled_images_fail_cleanly() {
        let (child, files) = differencing();
        for image in [child, sparse_disk(3, 10 << 10, &[(0, 0xff, 1), (2, 0x0f, 3)], None), fixed_disk(4096)] {
            for cut in (0..image.len()).step_by(97) {
                let opened =
                    crate::image::open("child.vhd", Box::new(image[..cut].to_vec()), Some(Format::Vpc), &files);
                if let Ok(mut img) = opened {
                    let _ = read_all(&mut *img);
                    let _ = Extents::all(&mut *img).count();
                }
            }
            for at in (0..image.len()).step_by(53) {
                let mut bad = image.clone();
                bad[at] ^= 0x5a;
                if let Ok(mut img) = open(bad, &files) {
                    let _ = read_all(&mut *img);
                    let _ = Extents::all(&mut *img).count();
                }
            }
        }
    }
}
