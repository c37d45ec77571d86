//! VHDX input beyond what qemu-img writes: differencing disks and logs to replay. qemu-img creates neither, so
//! the tests build them from diskbridge's own dynamic output by patching its metadata, BAT and log with the
//! library's layout types, then check the guest bytes against a raw image built alongside, libvhdi's view of
//! the differencing disk, and qemu-img's own replay of the log (on a copy); broken files end in errors.

mod common;

use common::*;
use diskbridge::chain::{FileResolver, NoFiles};
use diskbridge::convert::RunOptions;
use diskbridge::extent::{Extent, ExtentKind};
use diskbridge::image::Extents;
use diskbridge::image::{Image, ImageInfo};
use diskbridge::io::{MemorySink, ReadAt, Window};
use diskbridge::native::open_image;
use diskbridge::raw::RawImage;
use diskbridge::vhdx::bat::{BatEntry, BatState, Geometry};
use diskbridge::vhdx::guid::{self, Guid};
use diskbridge::vhdx::header::{HEADER_OFFSETS, HEADER_SIZE, Header, REGION_TABLE_OFFSETS, RegionTable};
use diskbridge::vhdx::log::{LogEntry, LogWrite};
use diskbridge::vhdx::metadata::{Metadata, ParentLocator};
use diskbridge::vhdx::{VhdxOptions, VhdxWriter};
use diskbridge::{Error, ErrorKind};
use std::path::Path;
use std::rc::Rc;

const MIB: u64 = 1 << 20;
/// Eight 1 MiB blocks.
const SIZE: u64 = 8 * MIB;
const SECTOR: usize = 512;

/// A dynamic VHDX of `data` (1 MiB blocks, 512-byte sectors) written by diskbridge.
fn dynamic(data: &[u8], seed: u64) -> Vec<u8> {
    dynamic_from(Box::new(RawImage::new(Box::new(data.to_vec()))), seed)
}

fn dynamic_from(source: Box<dyn Image>, seed: u64) -> Vec<u8> {
    let out = MemorySink::default();
    let opts = VhdxOptions { block_size: Some(MIB), ..Default::default() };
    let writer = VhdxWriter::new(Box::new(out.clone()), source.virtual_size(), &opts, seed).unwrap();
    diskbridge::convert::run(source, Box::new(writer), RunOptions::default()).unwrap();
    out.take()
}

/// A disk of `size` bytes holding whole 1 MiB blocks of data (block index, bytes) and zeros elsewhere, with a
/// map that says so: writing a multi-GiB disk then reads only its data.
struct Sparse {
    info: ImageInfo,
    blocks: Vec<(u64, Vec<u8>)>,
}

impl Sparse {
    fn new(size: u64, blocks: Vec<(u64, Vec<u8>)>) -> Sparse {
        Sparse { info: ImageInfo::basic("raw", size), blocks }
    }
}

impl Image for Sparse {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> diskbridge::Result<Extent> {
        let block = offset / MIB;
        let (end, kind) = match self.blocks.iter().find(|(b, _)| *b == block) {
            Some(_) => ((block + 1) * MIB, ExtentKind::Data),
            None => {
                let next = self.blocks.iter().map(|(b, _)| b * MIB).filter(|&at| at > offset).min();
                (next.unwrap_or(self.info.virtual_size), ExtentKind::Unallocated)
            }
        };
        Ok(Extent { offset, length: end - offset, kind })
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> diskbridge::Result<()> {
        buf.fill(0);
        for (block, data) in &self.blocks {
            let (start, end) = ((block * MIB).max(offset), ((block + 1) * MIB).min(offset + buf.len() as u64));
            if start < end {
                let (from, to) = ((start - block * MIB) as usize, (start - offset) as usize);
                buf[to..to + (end - start) as usize].copy_from_slice(&data[from..from + (end - start) as usize]);
            }
        }
        Ok(())
    }

    fn file_length(&self) -> u64 {
        0
    }
}

/// The parts of a VHDX file the tests patch, found through its own structures.
struct Vhdx {
    bytes: Vec<u8>,
    header: Header,
    bat_at: usize,
    metadata_at: usize,
    metadata: Metadata,
}

impl Vhdx {
    fn parse(bytes: Vec<u8>) -> Vhdx {
        let headers = HEADER_OFFSETS.map(|at| Header::parse(&bytes[at as usize..][..HEADER_SIZE]).unwrap());
        let header = *headers.iter().max_by_key(|h| h.sequence_number).unwrap();
        let regions = RegionTable::parse(&bytes[REGION_TABLE_OFFSETS[0] as usize..]).unwrap();
        let at = |guid| regions.entries.iter().find(|e| e.guid == guid).unwrap().file_offset as usize;
        let (bat_at, metadata_at) = (at(guid::BAT_REGION), at(guid::METADATA_REGION));
        let metadata = Metadata::parse(&bytes[metadata_at..metadata_at + MIB as usize]).unwrap();
        Vhdx { bytes, header, bat_at, metadata_at, metadata }
    }

    fn geometry(&self) -> Geometry {
        Geometry { virtual_size: self.metadata.virtual_size, block_size: MIB, logical_sector_size: 512 }
    }

    fn bat(&self, index: u64) -> BatEntry {
        let at = self.bat_at + 8 * index as usize;
        BatEntry(u64::from_le_bytes(self.bytes[at..at + 8].try_into().unwrap()))
    }

    fn set_bat(&mut self, index: u64, entry: BatEntry) {
        let at = self.bat_at + 8 * index as usize;
        self.bytes[at..at + 8].copy_from_slice(&entry.0.to_le_bytes());
    }

    /// Replaces the metadata region's contents (a differencing disk's when `locator` is given).
    fn set_metadata(&mut self, metadata: Metadata, locator: Option<&ParentLocator>) {
        let region = &mut self.bytes[self.metadata_at..self.metadata_at + MIB as usize];
        region.fill(0);
        let new = metadata.to_bytes_with(locator);
        region[..new.len()].copy_from_slice(&new);
        self.metadata = Metadata::parse(region).unwrap();
    }

    /// Writes `header` into both header slots, the second one current.
    fn set_header(&mut self, header: Header) {
        for (i, at) in HEADER_OFFSETS.into_iter().enumerate() {
            let h = Header { sequence_number: header.sequence_number + i as u64, ..header };
            self.bytes[at as usize..][..HEADER_SIZE].copy_from_slice(&h.to_bytes());
        }
        self.header = Header { sequence_number: header.sequence_number + 1, ..header };
    }

    /// Appends a 1 MiB block and returns its offset.
    fn append_block(&mut self, contents: &[u8]) -> u64 {
        let at = self.bytes.len().div_ceil(MIB as usize) * MIB as usize;
        self.bytes.resize(at + MIB as usize, 0);
        self.bytes[at..at + contents.len()].copy_from_slice(contents);
        at as u64
    }
}

/// What a block of the test child holds.
#[derive(Clone, Copy)]
enum Block {
    /// Fully present: all the child's own.
    Own,
    /// Partially present: sectors whose bit is set are the child's, the rest the parent's.
    Partial(fn(usize) -> bool),
    /// Neither the child's nor anything stored: the BAT state says what it reads as.
    State(BatState),
}

/// The test child's blocks: every state a differencing disk can have.
const LAYOUT: [Block; 8] = [
    Block::Own,
    Block::Partial(|s| s < 8 || (100..300).contains(&s) || s == 2047),
    Block::State(BatState::NotPresent),
    Block::State(BatState::Zero),
    Block::State(BatState::Unmapped),
    Block::State(BatState::Undefined),
    Block::Partial(|_| false),
    Block::Partial(|s| s % 64 < 5),
];

/// A parent with pattern data everywhere, a child differencing it per [`LAYOUT`] whose locator holds
/// `relative_path`, and the guest bytes the child must read as.
struct Chain {
    parent: Vec<u8>,
    child: Vhdx,
    expected: Vec<u8>,
}

fn chain(relative_path: &str) -> Chain {
    chain_over(relative_path, SIZE)
}

/// [`chain`] over a parent of `parent_size` bytes: past the parent's end the child reads zeros.
fn chain_over(relative_path: &str, parent_size: u64) -> Chain {
    let mut parent_data = pattern(SIZE as usize, 1);
    let parent = dynamic(&parent_data[..parent_size as usize], 11);
    parent_data[parent_size as usize..].fill(0);
    let parent_guid = Vhdx::parse(parent.clone()).header.data_write_guid;
    // The child's own data lives in the blocks that store something; the writer allocates exactly those.
    let own = pattern(SIZE as usize, 2);
    let mut child_data = vec![0u8; SIZE as usize];
    let block = MIB as usize;
    for (i, b) in LAYOUT.iter().enumerate() {
        if matches!(b, Block::Own | Block::Partial(_)) {
            child_data[i * block..(i + 1) * block].copy_from_slice(&own[i * block..(i + 1) * block]);
        }
    }
    let mut child = Vhdx::parse(dynamic(&child_data, 12));
    let locator = ParentLocator {
        locator_type: guid::VHDX_PARENT_LOCATOR_TYPE,
        entries: vec![
            ("parent_linkage".into(), format!("{{{parent_guid}}}")),
            ("relative_path".into(), relative_path.into()),
            ("volume_path".into(), "\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\VMs\\parent.vhdx".into()),
            ("absolute_win32_path".into(), "C:\\VMs\\base\\parent.vhdx".into()),
        ],
    };
    let metadata = Metadata { has_parent: true, ..child.metadata };
    child.set_metadata(metadata, Some(&locator));
    let geometry = child.geometry();
    let sectors = geometry.sectors_per_block() as usize;
    let mut bitmap = vec![0u8; MIB as usize];
    let mut expected = Vec::with_capacity(SIZE as usize);
    for (i, b) in LAYOUT.iter().enumerate() {
        let index = geometry.index(i as u64);
        let stored = child.bat(index);
        for s in 0..sectors {
            let at = i * block + s * SECTOR;
            let from = match b {
                Block::Own => &own,
                Block::Partial(bit) if bit(s) => &own,
                Block::Partial(_) | Block::State(BatState::NotPresent | BatState::Undefined) => &parent_data,
                Block::State(_) => &child_data,
            };
            expected.extend_from_slice(&from[at..at + SECTOR]);
        }
        match *b {
            Block::Own => assert_eq!(stored.state().unwrap(), BatState::FullyPresent),
            Block::Partial(bit) => {
                child.set_bat(index, BatEntry::new(BatState::PartiallyPresent, stored.offset()));
                for s in (0..sectors).filter(|&s| bit(s)) {
                    let n = geometry.bitmap_byte(i as u64) as usize * 8 + s;
                    bitmap[n / 8] |= 1 << (n % 8);
                }
            }
            Block::State(state) => child.set_bat(index, BatEntry::new(state, 0)),
        }
    }
    let bitmap_at = child.append_block(&bitmap);
    child.set_bat(geometry.bitmap_index(0), BatEntry::bitmap(bitmap_at));
    Chain { parent, child, expected }
}

/// Reads the whole guest disk in pieces that straddle sectors and blocks.
fn read_all(image: &mut dyn Image) -> Result<Vec<u8>, Error> {
    let mut out = vec![0u8; image.virtual_size() as usize];
    for start in (0..out.len()).step_by(300_000) {
        let end = (start + 300_000).min(out.len());
        image.read_at(start as u64, &mut out[start..end])?;
    }
    Ok(out)
}

/// Walks the map and reads the first and last sector of each extent.
fn walk(image: &mut dyn Image) -> Result<(), Error> {
    let mut sector = [0u8; SECTOR];
    for extent in Extents::all(image).collect::<Result<Vec<_>, _>>()? {
        image.read_at(extent.offset, &mut sector)?;
        image.read_at(extent.end() - SECTOR as u64, &mut sector)?;
    }
    Ok(())
}

fn write_chain(dir: &Path, chain: &Chain) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("base")).unwrap();
    std::fs::write(dir.join("base/parent.vhdx"), &chain.parent).unwrap();
    let child = dir.join("child.vhdx");
    std::fs::write(&child, &chain.child.bytes).unwrap();
    child
}

#[test]
fn differencing_disk_reads_through_to_its_parent() {
    let dir = tmp();
    let chain = chain(".\\base\\parent.vhdx");
    let child = write_chain(dir.path(), &chain);
    let mut image = open_image(&child, None).unwrap();
    let info = image.info().clone();
    assert_eq!((info.format, info.virtual_size), ("vhdx", SIZE));
    assert_eq!(info.backing_filename.as_deref(), Some("base/parent.vhdx"));
    assert!(info.full_backing_filename.unwrap().ends_with("base/parent.vhdx"));
    let got = read_all(&mut *image).unwrap();
    assert!(
        got == chain.expected,
        "first difference at {:?}",
        got.iter().zip(&chain.expected).position(|(a, b)| a != b)
    );

    // The map: block 0 the child's, blocks 3-4 zero, everything else the parent's data or the child's.
    let extents: Vec<_> = Extents::all(&mut *image).collect::<Result<_, _>>().unwrap();
    assert_eq!(extents.first().unwrap().offset, 0);
    assert_eq!(extents.last().unwrap().end(), SIZE);
    assert!(extents.windows(2).all(|w| w[0].end() == w[1].offset));
    let kind_at = |at: u64| extents.iter().find(|e| e.offset <= at && at < e.end()).unwrap().kind;
    assert_eq!(kind_at(0), ExtentKind::Data);
    assert_eq!((kind_at(3 * MIB), kind_at(4 * MIB + 7)), (ExtentKind::Zero, ExtentKind::Zero));
    assert_eq!(kind_at(2 * MIB), ExtentKind::Data, "the parent's block");
    assert!(
        extents
            .iter()
            .all(|e| e.kind == ExtentKind::Data || got[e.offset as usize..e.end() as usize].iter().all(|&b| b == 0))
    );
    assert_eq!(image.backing().unwrap().info().format, "vhdx");

    // libvhdi sees a differencing disk of the same size, linked to the parent, and reads the same bytes.
    let libvhdi = ok("vhdiinfo", &[child.to_str().unwrap()]);
    assert!(libvhdi.contains("Disk type\t\t: Differential"), "vhdiinfo:\n{libvhdi}");
    assert!(libvhdi.contains(&format!("({SIZE} bytes)")), "vhdiinfo:\n{libvhdi}");
    let linkage = Vhdx::parse(chain.parent.clone()).header.data_write_guid;
    assert!(libvhdi.contains(&format!("Parent identifier\t: {linkage}")), "vhdiinfo:\n{libvhdi}");
    // libvhdi looks for the parent by its absolute path's base name beside the child.
    std::fs::write(dir.path().join("parent.vhdx"), &chain.parent).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ok("vhdimount", &[child.to_str().unwrap(), mnt.to_str().unwrap()]);
    let mount = Mount(mnt.clone());
    // vhdi1 is the parent, vhdi2 the child on top of it.
    let libvhdi_bytes = std::fs::read(mnt.join("vhdi2")).unwrap();
    drop(mount);
    // libvhdi reads every state below FULLY_PRESENT through to the parent, ZERO and UNMAPPED included; MS-VHDX
    // says ZERO reads zeros, and UNMAPPED is read as zeros as qemu does (see reader.rs). Elsewhere it must agree.
    let (zero_states, rest) =
        (3 * MIB as usize..5 * MIB as usize, [0..3 * MIB as usize, 5 * MIB as usize..SIZE as usize]);
    for range in rest {
        let (a, b) = (&libvhdi_bytes[range.clone()], &chain.expected[range.clone()]);
        assert!(
            a == b,
            "libvhdi reads differently at {:?}",
            a.iter().zip(b).position(|(a, b)| a != b).map(|p| p + range.start)
        );
    }
    assert!(libvhdi_bytes[zero_states.clone()] == pattern(SIZE as usize, 1)[zero_states]);

    // Converting flattens the chain.
    let out = dir.path().join("flat.raw");
    let run = diskbridge_run(&["convert", "-O", "raw", child.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(std::fs::read(&out).unwrap() == chain.expected);
    let compare = diskbridge_run(&["compare", child.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(compare.status.code(), Some(0), "{}", String::from_utf8_lossy(&compare.stdout));
}

#[test]
fn differencing_disk_larger_than_its_parent_reads_zeros_beyond_the_parent() {
    let dir = tmp();
    // The parent ends inside block 1, which is partially present in the child, and before block 2, which the
    // child leaves to it.
    let chain = chain_over(".\\base\\parent.vhdx", MIB + MIB / 2);
    let child = write_chain(dir.path(), &chain);
    let mut image = open_image(&child, None).unwrap();
    assert!(read_all(&mut *image).unwrap() == chain.expected);
    walk(&mut *image).unwrap();
    let out = dir.path().join("flat.raw");
    for format in ["raw", "vhdx", "qcow2", "vmdk"] {
        let run = diskbridge_run(&["convert", "-O", format, child.to_str().unwrap(), out.to_str().unwrap()]);
        assert!(run.status.success(), "{format}: {}", String::from_utf8_lossy(&run.stderr));
        let compare = diskbridge_run(&["compare", child.to_str().unwrap(), out.to_str().unwrap()]);
        assert_eq!(compare.status.code(), Some(0), "{format}: {}", String::from_utf8_lossy(&compare.stdout));
        let raw = dir.path().join("back.raw");
        qemu_img(&["convert", "-O", "raw", out.to_str().unwrap(), raw.to_str().unwrap()]);
        assert!(std::fs::read(&raw).unwrap() == chain.expected, "{format} as qemu-img reads it");
    }
    assert_eq!(diskbridge_run(&["check", child.to_str().unwrap()]).status.code(), Some(0));
}

/// Past 4 GiB a second chunk begins, with its own sector-bitmap block after its payload entries: our reader and
/// libvhdi must find the same bits there.
#[test]
fn second_chunk_has_its_own_sector_bitmap() {
    let dir = tmp();
    let size = 5 << 30;
    // Blocks 5 and 4101 sit at the same place in chunks 0 and 1.
    let (low, high) = (5, 4096 + 5);
    let parent_blocks = vec![(low, pattern(MIB as usize, 1)), (high, pattern(MIB as usize, 2))];
    let parent = dynamic_from(Box::new(Sparse::new(size, parent_blocks.clone())), 31);
    let parent_guid = Vhdx::parse(parent.clone()).header.data_write_guid;
    let own_blocks = vec![(low, pattern(MIB as usize, 3)), (high, pattern(MIB as usize, 4))];
    let mut child = Vhdx::parse(dynamic_from(Box::new(Sparse::new(size, own_blocks.clone())), 32));
    let locator = ParentLocator {
        locator_type: guid::VHDX_PARENT_LOCATOR_TYPE,
        entries: vec![
            ("parent_linkage".into(), format!("{{{parent_guid}}}")),
            ("relative_path".into(), "parent.vhdx".into()),
            // libvhdi finds the parent by this path's base name.
            ("absolute_win32_path".into(), "C:\\VMs\\parent.vhdx".into()),
        ],
    };
    child.set_metadata(Metadata { has_parent: true, ..child.metadata }, Some(&locator));
    let g = child.geometry();
    assert_eq!(g.bitmap_index(high), 2 * 4097 - 1);
    // Chunk 0's block holds its first half, chunk 1's its second half.
    let mut expected = Vec::new();
    for (n, block) in [low, high].into_iter().enumerate() {
        let present = |s: usize| (s >= 1024) == (n == 1);
        let mut bitmap = vec![0u8; MIB as usize];
        for s in (0..2048).filter(|&s| present(s)) {
            let bit = g.bitmap_byte(block) as usize * 8 + s;
            bitmap[bit / 8] |= 1 << (bit % 8);
        }
        let at = child.append_block(&bitmap);
        child.set_bat(g.bitmap_index(block), BatEntry::bitmap(at));
        let stored = child.bat(g.index(block));
        child.set_bat(g.index(block), BatEntry::new(BatState::PartiallyPresent, stored.offset()));
        let block_bytes: Vec<u8> = (0..2048)
            .flat_map(|s| {
                let from = if present(s) { &own_blocks[n].1 } else { &parent_blocks[n].1 };
                from[s * SECTOR..(s + 1) * SECTOR].to_vec()
            })
            .collect();
        expected.push((block, block_bytes));
    }
    std::fs::write(dir.path().join("parent.vhdx"), &parent).unwrap();
    let path = dir.path().join("child.vhdx");
    std::fs::write(&path, &child.bytes).unwrap();

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ok("vhdimount", &[path.to_str().unwrap(), mnt.to_str().unwrap()]);
    let mount = Mount(mnt.clone());
    let libvhdi = diskbridge::native::InputFile::open(&mnt.join("vhdi2")).unwrap();
    let mut image = open_image(&path, None).unwrap();
    for (block, want) in &expected {
        let (mut ours, mut theirs) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
        image.read_at(block * MIB, &mut ours).unwrap();
        libvhdi.read_exact_at(block * MIB, &mut theirs).unwrap();
        assert!(&ours == want, "our block {block}");
        assert!(&theirs == want, "libvhdi's block {block}");
    }
    drop(mount);
    let e = image.extent_at(high * MIB + 1024 * 512 - 512).unwrap();
    assert_eq!((e.kind, e.length), (ExtentKind::Data, 512), "the parent's sector just before the child's half");
}

#[test]
fn info_names_the_parent_and_follows_the_chain() {
    let dir = tmp();
    let child = write_chain(dir.path(), &chain(".\\base\\parent.vhdx"));
    let run = diskbridge_run(&["info", "--output=json", "--backing-chain", child.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let json = String::from_utf8(run.stdout).unwrap();
    assert!(json.contains("\"backing-filename\": \"base/parent.vhdx\""), "{json}");
    assert_eq!(json.matches("\"format\": \"vhdx\"").count(), 2, "{json}");
    let human = diskbridge_run(&["info", child.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("backing file: base/parent.vhdx"));
}

#[test]
fn parent_is_found_by_base_name_when_the_relative_path_fails() {
    let dir = tmp();
    let chain = chain("..\\elsewhere\\parent.vhdx");
    std::fs::write(dir.path().join("parent.vhdx"), &chain.parent).unwrap();
    let child = dir.path().join("child.vhdx");
    std::fs::write(&child, &chain.child.bytes).unwrap();
    let mut image = open_image(&child, None).unwrap();
    assert_eq!(image.info().backing_filename.as_deref(), Some("parent.vhdx"));
    assert!(read_all(&mut *image).unwrap() == chain.expected);
}

#[test]
fn missing_parent_is_an_error_naming_it() {
    let dir = tmp();
    let chain = chain(".\\base\\parent.vhdx");
    let child = dir.path().join("child.vhdx");
    std::fs::write(&child, &chain.child.bytes).unwrap();
    let err = open_image(&child, None).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.message().contains("'base/parent.vhdx', 'parent.vhdx'"), "{err}");
    // `info` shows the child alone, as qemu-img info would, saying what is missing; converting it fails.
    let run = diskbridge_run(&["info", child.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(stderr.contains("warning: ") && stderr.contains("base/parent.vhdx"), "{stderr}");
    let out = dir.path().join("out.raw");
    let run = diskbridge_run(&["convert", "-O", "raw", child.to_str().unwrap(), out.to_str().unwrap()]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("base/parent.vhdx"));
}

#[test]
fn parent_with_another_data_write_guid_is_refused() {
    let dir = tmp();
    let mut chain = chain(".\\base\\parent.vhdx");
    let mut parent = Vhdx::parse(chain.parent);
    let header = Header { data_write_guid: Guid::from_u128(42), ..parent.header };
    parent.set_header(header);
    chain.parent = parent.bytes;
    let child = write_chain(dir.path(), &chain);
    let err = open_image(&child, None).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("DataWriteGuid"), "{err}");
}

#[test]
fn differencing_disk_that_is_its_own_parent_is_refused() {
    let dir = tmp();
    let mut child = chain("child.vhdx").child;
    // Link it to itself, so that only the loop is wrong.
    let own = child.header.data_write_guid;
    let (at, _) = child.metadata.parent_locator_at.unwrap();
    let item_at = child.metadata_at + at as usize;
    let mut locator = ParentLocator::parse(&child.bytes[item_at..item_at + 4096]).unwrap();
    locator.entries[0].1 = format!("{{{own}}}");
    child.set_metadata(child.metadata, Some(&locator));
    let path = dir.path().join("child.vhdx");
    std::fs::write(&path, &child.bytes).unwrap();
    let err = open_image(&path, None).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("loops"), "{err}");
}

/// In-memory files shared without copying, so that thousands of broken children cost no disk and little time.
struct Files(Vec<(&'static str, Rc<Vec<u8>>)>);

impl FileResolver for Files {
    fn open(&self, name: &str, _referrer: &str) -> diskbridge::Result<(String, Box<dyn ReadAt>)> {
        match self.0.iter().find(|(n, _)| *n == name) {
            Some((_, data)) => Ok((name.to_string(), Box::new(Rc::clone(data)))),
            None => Err(Error::new(ErrorKind::NotFound, format!("No file '{name}'"))),
        }
    }
}

/// A file with one byte's bits flipped by `mask`, read without copying the file.
struct Flipped {
    file: Rc<Vec<u8>>,
    at: u64,
    mask: u8,
}

impl ReadAt for Flipped {
    fn len(&self) -> u64 {
        ReadAt::len(self.file.as_slice())
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> diskbridge::Result<usize> {
        let n = ReadAt::read_at(self.file.as_slice(), offset, buf)?;
        if (offset..offset + n as u64).contains(&self.at) {
            buf[(self.at - offset) as usize] ^= self.mask;
        }
        Ok(n)
    }
}

#[test]
fn truncated_and_bit_flipped_differencing_disks_fail_cleanly() {
    let chain = chain("parent.vhdx");
    let files = Files(vec![("parent.vhdx", Rc::new(chain.parent))]);
    let good = chain.child;
    let bytes: Rc<Vec<u8>> = Rc::new(good.bytes.clone());
    let open = |file: Box<dyn ReadAt>| diskbridge::open::open("child.vhdx", file, None, &files);
    walk(&mut *open(Box::new(Rc::clone(&bytes))).unwrap()).unwrap();
    let len = good.bytes.len() as u64;
    for cut in (0..len).step_by(len as usize / 97) {
        let shared: Rc<dyn ReadAt> = bytes.clone();
        if let Ok(mut image) = open(Box::new(Window::new(shared, 0, cut))) {
            let _ = walk(&mut *image);
        }
    }
    let (locator_at, locator_len) = good.metadata.parent_locator_at.unwrap();
    let locator = good.metadata_at + locator_at as usize;
    let bitmap = good.bat(good.geometry().bitmap_index(0)).offset() as usize;
    let structures = [
        0..8,
        good.metadata_at..good.metadata_at + 240,
        good.metadata_at + 0x10000..good.metadata_at + 0x10028,
        locator..locator + locator_len as usize,
        good.bat_at..good.bat_at + 80,
        bitmap..bitmap + 300,
    ];
    // The locator item emptied, its offset pointing far outside the region.
    let mut empty = good.bytes.clone();
    let item_entry = good.metadata_at + 32 + 5 * 32;
    empty[item_entry + 16..item_entry + 24].copy_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    let err = open(Box::new(empty)).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    let strided = (0..good.bytes.len()).step_by(65_537);
    for at in structures.into_iter().flatten().chain(strided) {
        for mask in [0x01, 0x80] {
            if let Ok(mut image) = open(Box::new(Flipped { file: Rc::clone(&bytes), at: at as u64, mask })) {
                let _ = walk(&mut *image);
            }
        }
    }
}

/// A 4 MiB dynamic disk with blocks 0 and 2 stored, its LogGuid set, and `entries` written into its log one
/// after another.
fn logged(entries: &[LogEntry]) -> Vhdx {
    let mut data = pattern(4 * MIB as usize, 3);
    data[MIB as usize..2 * MIB as usize].fill(0);
    data[3 * MIB as usize..].fill(0);
    let mut v = Vhdx::parse(dynamic(&data, 21));
    let log_at = v.header.log_offset as usize;
    let mut at = log_at;
    for entry in entries {
        let bytes = entry.to_bytes();
        v.bytes[at..at + bytes.len()].copy_from_slice(&bytes);
        at += bytes.len();
    }
    let header = Header { log_guid: LOG_GUID, ..v.header };
    v.set_header(header);
    v
}

const LOG_GUID: Guid = Guid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);

fn entry(sequence_number: u64, tail: u32, writes: Vec<LogWrite>) -> LogEntry {
    LogEntry { sequence_number, tail, log_guid: LOG_GUID, flushed_file_offset: 0, last_file_offset: 0, writes }
}

/// The log's writes for [`logged`]: block 1 now points at block 0's data and block 3 at a new block past the
/// file's end (a BAT sector rewritten), a sector of block 2 and one of the new block get new bytes, and 8 KiB of
/// block 0 are zeroed — in two entries, the second overriding part of the first and growing the file.
fn replay_writes(v: &Vhdx) -> Vec<LogEntry> {
    let block0 = v.bat(0).offset();
    let block2 = v.bat(2).offset();
    let new_block = v.bytes.len() as u64;
    let mut bat_sector = v.bytes[v.bat_at..v.bat_at + 4096].to_vec();
    bat_sector[8..16].copy_from_slice(&BatEntry::present(block0).0.to_le_bytes());
    bat_sector[24..32].copy_from_slice(&BatEntry::present(new_block).0.to_le_bytes());
    vec![
        entry(
            7,
            0,
            vec![
                LogWrite::Data { file_offset: v.bat_at as u64, sector: bat_sector },
                LogWrite::Data { file_offset: block2 + 8192, sector: vec![0xab; 4096] },
            ],
        ),
        LogEntry {
            // Not a whole MiB: the file grows to the next one.
            last_file_offset: new_block + MIB - 4096,
            ..entry(
                8,
                0,
                vec![
                    LogWrite::Zero { file_offset: block0 + 4096, length: 8192 },
                    LogWrite::Data { file_offset: block2 + 8192, sector: vec![0xcd; 4096] },
                    LogWrite::Data { file_offset: new_block + 4096, sector: vec![0xee; 4096] },
                ],
            )
        },
    ]
}

#[test]
fn log_is_replayed_in_memory_and_the_file_left_alone() {
    let dir = tmp();
    let plain = logged(&[]);
    let v = logged(&replay_writes(&plain));
    let path = dir.path().join("logged.vhdx");
    std::fs::write(&path, &v.bytes).unwrap();
    let before = std::fs::read(&path).unwrap();

    let mut image = open_image(&path, None).unwrap();
    assert!(image.info().warnings.iter().any(|w| w.contains("2 entries")), "{:?}", image.info().warnings);
    let got = read_all(&mut *image).unwrap();
    let mut want = pattern(4 * MIB as usize, 3);
    want[2 * MIB as usize + 8192..][..4096].fill(0xcd);
    want[4096..4096 + 8192].fill(0);
    want.copy_within(0..MIB as usize, MIB as usize);
    want[3 * MIB as usize..].fill(0);
    want[3 * MIB as usize + 4096..][..4096].fill(0xee);
    assert!(got == want, "first difference at {:?}", got.iter().zip(&want).position(|(a, b)| a != b));
    drop(image);
    let info = diskbridge_run(&["info", path.to_str().unwrap()]);
    assert!(info.status.success());
    assert!(String::from_utf8_lossy(&info.stderr).contains("replayed in memory"), "{info:?}");
    assert!(std::fs::read(&path).unwrap() == before, "the source was written");

    // qemu-img replays the log itself when it opens a writable copy; both must agree.
    let copy = dir.path().join("copy.vhdx");
    std::fs::copy(&path, &copy).unwrap();
    let _ = run("qemu-img", &["check", "-r", "all", copy.to_str().unwrap()]);
    let ours = dir.path().join("ours.raw");
    std::fs::write(&ours, &got).unwrap();
    assert_same_guest(&copy, &ours);
}

#[test]
fn torn_log_entries_are_ignored() {
    let plain = logged(&[]);
    let mut entries = replay_writes(&plain);
    entries.truncate(1);
    let mut v = logged(&entries);
    // Damage the only entry's data sector: its checksum fails, so it was never completely written.
    let log_at = v.header.log_offset as usize;
    v.bytes[log_at + 4096 + 100] ^= 1;
    let mut image = diskbridge::open::open("x.vhdx", Box::new(v.bytes), None, &NoFiles).unwrap();
    assert!(image.info().warnings.iter().any(|w| w.contains("nothing to replay")));
    let got = read_all(&mut *image).unwrap();
    let mut want = pattern(4 * MIB as usize, 3);
    want[MIB as usize..2 * MIB as usize].fill(0);
    want[3 * MIB as usize..].fill(0);
    assert!(got == want);
}

#[test]
fn malformed_logs_are_corrupt_errors_naming_the_log() {
    let plain = logged(&[]);
    let open = |v: Vhdx| diskbridge::open::open("x.vhdx", Box::new(v.bytes), None, &NoFiles).err();
    let sector = |file_offset: u64| LogWrite::Data { file_offset, sector: vec![1; 4096] };
    let bat = plain.bat_at as u64;
    let cases: Vec<(&str, Vec<LogEntry>)> = vec![
        ("tail", vec![entry(5, 3 * 4096, vec![sector(bat)])]),
        ("header section", vec![entry(5, 0, vec![sector(64 << 10)])]),
        ("header section", vec![entry(5, 0, vec![LogWrite::Zero { file_offset: 0, length: 4096 }])]),
        ("the log itself", vec![entry(5, 0, vec![sector(plain.header.log_offset + 4096)])]),
        ("4 KiB", vec![entry(5, 0, vec![sector(bat + 512)])]),
        ("last file offset", vec![entry(5, 0, vec![sector(1 << 40)])]),
        ("truncated", vec![LogEntry { flushed_file_offset: 1 << 40, ..entry(5, 0, vec![sector(bat)]) }]),
        ("breaks", vec![entry(5, 0, vec![sector(bat)]), entry(7, 0, vec![sector(bat)])]),
    ];
    for (what, entries) in cases {
        let err = open(logged(&entries)).unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert!(err.message().contains("VHDX log at 0x100000") && err.message().contains(what), "{what}: {err}");
    }
    let mut huge = logged(&replay_writes(&plain));
    let header = Header { log_length: 32 << 20, ..huge.header };
    huge.set_header(header);
    assert_eq!(open(huge).unwrap().kind(), ErrorKind::LimitExceeded);

    // Every byte of a good log flipped: an error or a reading, never a panic.
    let good = logged(&replay_writes(&plain));
    let log_at = good.header.log_offset as usize;
    for at in (log_at..log_at + 5 * 4096).step_by(61).chain(log_at..log_at + 64) {
        let mut bad = good.bytes.clone();
        bad[at] ^= 0x40;
        if let Ok(mut image) = diskbridge::open::open("x.vhdx", Box::new(bad), None, &NoFiles) {
            let _ = walk(&mut *image);
        }
    }
}
