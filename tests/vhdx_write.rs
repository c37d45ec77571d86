//! VHDX output checked against qemu-img (compare, check, info), libyal's vhdiinfo, and diskbridge's own reader
//! field by field. Sources are sparse raw files, so multi-GiB disks cost little.

mod common;

use common::*;
use diskbridge::convert::{RunOptions, run};
use diskbridge::error::ErrorKind;
use diskbridge::extent::{Extent, ExtentKind};
use diskbridge::formats::Format;
use diskbridge::image::{Image, ImageInfo};
use diskbridge::io::{ReadAt, StreamSink};
use diskbridge::native::{InputFile, OutputFile, open_image};
use diskbridge::options::OptionList;
use diskbridge::target::{Target, writer};
use diskbridge::vhdx::Vhdx;
use diskbridge::vhdx::bat::BatState;
use diskbridge::writer::{OneOutput, Settings};
use std::path::Path;

const MIB: u64 = 1 << 20;

fn target(options: &str, seed: u64) -> Target {
    Target {
        format: Format::from_name("vhdx").unwrap(),
        options: OptionList::parse(options).unwrap(),
        settings: Settings { seed, epoch: 0, output_name: "out.vhdx".into(), compressed: false, seed_disk: None },
    }
}

/// A sparse raw file read with a map of where its data is, as a qcow2 map would give it. The raw reader maps
/// the whole file as data, so every hole would be read and checked for zeros — seconds per GiB in a debug
/// build; with this source only the data is read.
struct KnownSparse {
    file: InputFile,
    info: ImageInfo,
    data: Vec<(u64, u64)>,
}

impl Image for KnownSparse {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn extent_at(&mut self, offset: u64) -> diskbridge::Result<Extent> {
        let size = self.info.virtual_size;
        let (kind, end) = match self.data.iter().find(|&&(start, len)| offset < start + len) {
            Some(&(start, len)) if start <= offset => (ExtentKind::Data, start + len),
            Some(&(start, _)) => (ExtentKind::Unallocated, start),
            None => (ExtentKind::Unallocated, size),
        };
        Ok(Extent { offset, length: end.min(size) - offset, kind })
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> diskbridge::Result<()> {
        self.file.read_exact_at(offset, buf)
    }
    fn file_length(&self) -> u64 {
        self.file.len()
    }
}

/// Makes a fresh source image each time it is called.
type Source<'a> = dyn Fn() -> Box<dyn Image> + 'a;

/// Writes a sparse raw file of `size` bytes with pattern data at `data` (sorted, disjoint) and returns a
/// maker of hole-aware sources over it.
fn known_sparse(path: &Path, size: u64, data: &[(u64, usize)]) -> impl Fn() -> Box<dyn Image> + use<> {
    sparse_raw(path, size, data);
    let (path, data) = (path.to_path_buf(), data.iter().map(|&(o, l)| (o, l as u64)).collect::<Vec<_>>());
    move || {
        let file = InputFile::open(&path).unwrap();
        Box::new(KnownSparse { file, info: ImageInfo::basic("raw", size), data: data.clone() })
    }
}

/// Converts `source` to `out` through the pipeline; `stream` writes through an append-only sink.
fn convert_image(source: Box<dyn Image>, out: &Path, options: &str, seed: u64, threads: usize, stream: bool) {
    let size = source.virtual_size();
    let sink: Box<dyn diskbridge::io::Sink> = if stream {
        Box::new(StreamSink::new(std::io::BufWriter::new(std::fs::File::create(out).unwrap())))
    } else {
        Box::new(OutputFile::create(out).unwrap())
    };
    let w = writer(&target(options, seed), size, &mut OneOutput::new(sink)).unwrap();
    run(source, w, RunOptions { threads, ..Default::default() }).unwrap();
}

fn convert(raw: &Path, out: &Path, options: &str) {
    convert_image(open_image(raw, Some(Format::raw())).unwrap(), out, options, 7, 2, false);
}

fn open_vhdx(path: &Path) -> Vhdx {
    let mut ctx = diskbridge::open::OpenContext::new(&diskbridge::chain::NoFiles);
    Vhdx::open(Box::new(InputFile::open(path).unwrap()), path.to_str().unwrap(), &mut ctx).unwrap()
}

/// The value of `"key": value` in qemu-img's JSON (the top-level one comes last in its output).
fn json_value(json: &str, key: &str) -> String {
    let pat = format!("\"{key}\": ");
    let at = json.rfind(&pat).unwrap_or_else(|| panic!("no {key} in {json}")) + pat.len();
    json[at..].split([',', '\n']).next().unwrap().trim_matches('"').to_string()
}

/// Every outside check: qemu-img compare / check / info, then [`verify_without_qemu`].
fn verify(raw: &Path, out: &Path, virtual_size: u64) {
    let (r, o) = (raw.to_str().unwrap(), out.to_str().unwrap());
    qemu_img(&["compare", "-f", "raw", "-F", "vhdx", r, o]);
    assert_check_clean(out);
    let json = qemu_img(&["info", "--output=json", o]);
    assert_eq!(json_value(&json, "format"), "vhdx");
    assert_eq!(json_value(&json, "virtual-size"), virtual_size.to_string());
    verify_without_qemu(raw, out, virtual_size, 512);
}

/// vhdiinfo's media size, sector size and disk type, and our reader giving back the source's bytes wherever
/// its extent map says data (the rest of the map reads as zeros, checked by qemu-img compare).
fn verify_without_qemu(raw: &Path, out: &Path, virtual_size: u64, sector: u64) {
    let info = ok("vhdiinfo", &[out.to_str().unwrap()]);
    assert!(info.contains(&format!("({virtual_size} bytes)")), "vhdiinfo media size:\n{info}");
    assert!(info.contains(&format!("Bytes per sector\t: {sector} bytes")), "vhdiinfo sector size:\n{info}");
    assert!(info.contains("Disk type\t\t: Dynamic") || info.contains("Disk type\t\t: Fixed"), "{info}");

    // Our reader, through the generic opener (probing the format), must give back the source's bytes.
    let mut ours = open_image(out, None).unwrap();
    assert_eq!(ours.info().format, "vhdx");
    assert_eq!(ours.virtual_size(), virtual_size);
    let source = InputFile::open(raw).unwrap();
    let (mut a, mut b) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    let mut pos = 0;
    while pos < virtual_size {
        let extent = ours.extent_at(pos).unwrap();
        assert_eq!(extent.offset, pos);
        let end = extent.end().min(virtual_size);
        if extent.kind == ExtentKind::Data {
            while pos < end {
                let n = (end - pos).min(MIB) as usize;
                ours.read_at(pos, &mut a[..n]).unwrap();
                b[..n].fill(0);
                let avail = source.len().saturating_sub(pos).min(n as u64) as usize;
                source.read_exact_at(pos, &mut b[..avail]).unwrap();
                assert!(a[..n] == b[..n], "guest bytes differ at {pos:#x}");
                pos += n as u64;
            }
        }
        pos = end;
    }
}

/// Which blocks the BAT stores and at which file offsets; asserts every other entry (bitmap slots included)
/// is 0: NOT_PRESENT with offset 0.
fn stored_blocks(out: &Path) -> Vec<(u64, u64)> {
    let mut v = open_vhdx(out);
    let g = *v.geometry();
    let mut stored = Vec::new();
    let mut payload_indices = std::collections::HashSet::new();
    for block in 0..g.data_blocks() {
        let index = g.index(block);
        payload_indices.insert(index);
        let e = v.bat_entry(index).unwrap();
        match e.state().unwrap() {
            BatState::FullyPresent => stored.push((block, e.offset())),
            BatState::NotPresent => assert_eq!(e.0, 0, "block {block}: NOT_PRESENT with a non-zero offset"),
            s => panic!("block {block}: unexpected state {s:?}"),
        }
    }
    for index in (0..g.entries()).filter(|i| !payload_indices.contains(i)) {
        assert_eq!(v.bat_entry(index).unwrap().0, 0, "sector-bitmap slot {index} must stay 0");
    }
    stored
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// 1000000000 bytes (not a multiple of 1 MiB): data at the start, across a block boundary, and in the partial
/// last block.
const ODD_SIZE: u64 = 1_000_000_000;
const ODD_DATA: [(u64, usize); 3] = [(0, 300_000), (5 * MIB - 1000, 5000), (999_999_000, 1000)];

/// The odd-size source, with an explicitly written all-zero megabyte (data to the file system, zeros to the guest).
fn odd_source(dir: &Path) -> (std::path::PathBuf, impl Fn() -> Box<dyn Image> + use<>) {
    let raw = dir.join("odd.raw");
    let make = known_sparse(&raw, ODD_SIZE, &ODD_DATA);
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&raw)
        .unwrap()
        .write_all_at(&vec![0u8; MIB as usize], 10 * MIB)
        .unwrap();
    (raw, make)
}

#[test]
fn odd_size_holes_and_zero_data_follow_hyper_v_conventions() {
    let dir = tmp();
    let (raw, _) = odd_source(dir.path());
    let out = dir.path().join("out.vhdx");
    // The plain raw reader here: every megabyte is read and the zero ones are dropped.
    convert(&raw, &out, "subformat=dynamic");
    verify(&raw, &out, 1_000_000_000);

    // Blocks 0, 4, 5 and the last (953) hold data; the zero-filled megabyte and the holes are not stored.
    let stored = stored_blocks(&out);
    assert_eq!(stored, vec![(0, 4 * MIB), (4, 5 * MIB), (5, 6 * MIB), (953, 7 * MIB)]);
    assert_eq!(file_len(&out), 8 * MIB, "ends with the last block");

    let v = open_vhdx(&out);
    let h = *v.header();
    assert_eq!((h.log_offset, h.log_length), (MIB, MIB as u32));
    let m = *v.metadata();
    assert_eq!((m.block_size, m.logical_sector_size, m.physical_sector_size), (MIB as u32, 512, 512));
    assert!(!m.leave_blocks_allocated && !m.has_parent);

    // The header section, field by field (CRCs recomputed by the parsers).
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..8], b"vhdxfile");
    let creator: Vec<u16> =
        bytes[8..520].chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).take_while(|&u| u != 0).collect();
    assert_eq!(String::from_utf16(&creator).unwrap(), format!("diskbridge {}", env!("CARGO_PKG_VERSION")));
    use diskbridge::vhdx::header::{Header, RegionTable};
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    use diskbridge::vhdx::header::checksum;
    assert_eq!(le32(0x10004), checksum(&bytes[0x10000..0x11000]), "header 1 CRC-32C");
    assert_eq!(le32(0x20004), checksum(&bytes[0x20000..0x21000]), "header 2 CRC-32C");
    assert_eq!(le32(0x30004), checksum(&bytes[0x30000..0x40000]), "region table CRC-32C");
    assert!(bytes[0x11000..0x20000].iter().all(|&b| b == 0), "rest of the header 1 slot");
    let h1 = Header::parse(&bytes[0x10000..]).unwrap();
    let h2 = Header::parse(&bytes[0x20000..]).unwrap();
    assert_eq!(h2.sequence_number, h1.sequence_number + 1);
    assert_eq!(h2, diskbridge::vhdx::header::Header { sequence_number: h2.sequence_number, ..h1 });
    assert_eq!(h2, h, "the reader takes the newer header");
    assert_ne!(h1.file_write_guid, h1.data_write_guid);
    assert_eq!(h1.log_guid, diskbridge::vhdx::guid::Guid::nil());
    let rt = RegionTable::parse(&bytes[0x30000..]).unwrap();
    assert_eq!(bytes[0x30000..0x40000], bytes[0x40000..0x50000], "two identical region tables");
    let regions: Vec<_> =
        rt.entries.iter().map(|e| (e.guid.to_string(), e.file_offset, e.length, e.required)).collect();
    assert_eq!(
        regions,
        vec![
            ("2dc27766-f623-4200-9d64-115e9bfd4a08".into(), 2 * MIB, MIB as u32, true),
            ("8b7ca206-4790-4b9a-b8fe-575f050f886e".into(), 3 * MIB, MIB as u32, true),
        ]
    );
    assert!(bytes[0x50000..2 * MIB as usize].iter().all(|&b| b == 0), "reserved space and the log are zero");
}

#[test]
fn append_only_output_equals_seekable_output() {
    let dir = tmp();
    let (odd, odd_make) = odd_source(dir.path());
    let small = dir.path().join("small.raw");
    sparse_raw(&small, 40 * MIB + 512, &[(0, 3 << 20), (17 * MIB + 5, 9 << 20), (40 * MIB, 512)]);
    let small_make = || open_image(&small, Some(Format::raw())).unwrap();
    // Over 128 GiB the first pass also picks the block size.
    let big = dir.path().join("big.raw");
    let big_make = known_sparse(&big, 200 << 30, &[(5 * MIB, 3 << 20), (150 << 30, 1 << 20)]);
    let cases: [(&Path, &Source<'_>, &str); 5] = [
        (&odd, &odd_make, ""),
        (&odd, &odd_make, "block_size=32M"),
        (&small, &small_make, "subformat=fixed,block_size=8M"),
        (&small, &small_make, "logical_sector_size=4096"),
        (&big, &big_make, ""),
    ];
    let (a, b) = (dir.path().join("a.vhdx"), dir.path().join("b.vhdx"));
    for (raw, make, options) in cases {
        convert_image(make(), &a, options, 3, 2, false);
        convert_image(make(), &b, options, 3, 2, true);
        assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{options}: outputs differ");
        let size = make().virtual_size();
        if options.contains("4096") {
            verify_without_qemu(raw, &b, size + 3584, 4096);
        } else if size > 100 << 30 {
            assert_eq!(open_vhdx(&b).metadata().block_size as u64, 2 * MIB);
            assert_eq!(stored_blocks(&b).iter().map(|s| s.0).collect::<Vec<_>>(), vec![2, 3, 150 << 9]);
            assert_check_clean(&b);
            verify_without_qemu(raw, &b, size, 512);
        } else {
            verify(raw, &b, size);
        }
    }
}

#[test]
fn threads_and_seeds_decide_the_bytes() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 40 * MIB, &[(0, 3 << 20), (17 * MIB + 5, 9 << 20), (39 * MIB, 4096)]);
    let out = |name: &str, seed: u64, threads: usize| {
        let p = dir.path().join(name);
        convert_image(open_image(&raw, Some(Format::raw())).unwrap(), &p, "", seed, threads, false);
        std::fs::read(p).unwrap()
    };
    let one = out("1.vhdx", 5, 1);
    assert!(one == out("4.vhdx", 5, 4), "1 and 4 threads differ");
    assert!(one == out("again.vhdx", 5, 4), "same seed, different bytes");
    let other = out("other.vhdx", 6, 1);
    assert_eq!(one.len(), other.len());
    let differing: Vec<usize> = (0..one.len()).filter(|&i| one[i] != other[i]).collect();
    // Only the headers (GUIDs, sequence number, CRC) and the Page 83 item may change with the seed.
    assert!(!differing.is_empty());
    assert!(
        differing.iter().all(|&i| (0x10000..0x10050).contains(&i)
            || (0x20000..0x20050).contains(&i)
            || (0x310010..0x310020).contains(&i)),
        "seed changed bytes outside the random fields: {:x?}",
        &differing[..differing.len().min(8)]
    );
}

#[test]
fn bat_crosses_a_chunk_boundary_above_4_gib() {
    let dir = tmp();
    let raw = dir.path().join("big.raw");
    let size = (5 << 30) + 3 * MIB;
    let make = known_sparse(&raw, size, &[(0, 4096), ((4 << 30) + MIB + 100, 5000), (size - 512, 512)]);
    let out = dir.path().join("big.vhdx");
    convert_image(make(), &out, "", 1, 2, false);
    verify(&raw, &out, size);
    let stored = stored_blocks(&out);
    assert_eq!(stored, vec![(0, 4 * MIB), (4097, 5 * MIB), (5122, 6 * MIB)]);
    let mut v = open_vhdx(&out);
    assert_eq!(v.geometry().index(4097), 4098, "after the bitmap slot 4096");
    assert_eq!(v.bat_entry(4098).unwrap().offset(), 5 * MIB);
}

#[test]
fn block_size_and_log_size_options() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    let make = known_sparse(&raw, 300 * MIB + 512, &[(MIB, 4096), (70 * MIB, 3 * MIB as usize), (300 * MIB, 512)]);
    let out = dir.path().join("out.vhdx");
    for (options, block) in
        [("block_size=2M,physical_sector_size=4096", 2), ("block_size=32M,log_size=3M", 32), ("block_size=256M", 256)]
    {
        convert_image(make(), &out, options, 7, 2, false);
        verify(&raw, &out, 300 * MIB + 512);
        let v = open_vhdx(&out);
        assert_eq!(v.metadata().block_size as u64, block * MIB, "{options}");
        let physical = if options.contains("physical") { 4096 } else { 512 };
        assert_eq!((v.metadata().logical_sector_size, v.metadata().physical_sector_size), (512, physical));
        let log = if options.contains("log_size") { 3 } else { 1 };
        assert_eq!(v.header().log_length as u64, log * MIB);
        let stored = stored_blocks(&out);
        let expected: Vec<u64> = [MIB, 70 * MIB, 72 * MIB, 300 * MIB].iter().map(|o| o / (block * MIB)).collect();
        let mut expected_blocks = expected.clone();
        expected_blocks.dedup();
        assert_eq!(stored.iter().map(|s| s.0).collect::<Vec<_>>(), expected_blocks, "{options}");
        assert_eq!(stored[0].1, (1 + log + 1 + 1) * MIB, "{options}: payload right after the metadata");
        assert_eq!(file_len(&out), stored[0].1 + stored.len() as u64 * block * MIB);
    }
}

#[test]
fn fixed_subformat_stores_every_block() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 10 * MIB + 512, &[(3 * MIB, 100)]);
    let out = dir.path().join("fixed.vhdx");
    convert(&raw, &out, "subformat=fixed");
    verify(&raw, &out, 10 * MIB + 512);
    assert!(ok("vhdiinfo", &[out.to_str().unwrap()]).contains("Fixed"));
    let v = open_vhdx(&out);
    assert!(v.metadata().leave_blocks_allocated);
    assert_eq!(file_len(&out), 4 * MIB + 11 * MIB);
}

/// Unmounts a FUSE mount when dropped, so a failing test leaves nothing mounted.
/// 4096-byte logical sectors, which qemu-img does not read ("Operation not supported"): libvhdi must agree
/// with our reader — vhdiinfo on the geometry, vhdimount (FUSE) on the guest bytes, across the first 32 GiB
/// chunk (a chunk covers 2^23 sectors).
#[test]
fn sector_size_4096_agrees_with_libvhdi() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    // Not a multiple of 4096: the disk is rounded up to whole logical sectors.
    let size = (40 << 30) + 512;
    let data = [(0, 4096), ((32 << 30) + 3 * MIB + 7, 100_000), (size - 512, 512)];
    let make = known_sparse(&raw, size, &data);
    let out = dir.path().join("4k.vhdx");
    convert_image(make(), &out, "logical_sector_size=4096,physical_sector_size=4096", 7, 2, false);
    let rounded = (40 << 30) + 4096;
    verify_without_qemu(&raw, &out, rounded, 4096);
    let v = open_vhdx(&out);
    assert_eq!((v.metadata().logical_sector_size, v.metadata().physical_sector_size), (4096, 4096));
    assert_eq!(v.geometry().chunk_ratio(), 32768);
    assert_eq!(stored_blocks(&out), vec![(0, 4 * MIB), (32771, 5 * MIB), (40960, 6 * MIB)]);

    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    ok("vhdimount", &[out.to_str().unwrap(), mnt.to_str().unwrap()]);
    let _mount = Mount(mnt.clone());
    let guest = InputFile::open(&mnt.join("vhdi1")).unwrap();
    assert_eq!(guest.len(), rounded);
    let source = InputFile::open(&raw).unwrap();
    for (offset, len) in [(0, MIB), ((32 << 30) + 2 * MIB, 3 * MIB), (20 << 30, MIB), (rounded - MIB, MIB)] {
        let (mut a, mut b) = (vec![0u8; len as usize], vec![0u8; len as usize]);
        guest.read_exact_at(offset, &mut a).unwrap();
        let avail = size.saturating_sub(offset).min(len) as usize;
        source.read_exact_at(offset, &mut b[..avail]).unwrap();
        assert!(a == b, "libvhdi reads different bytes at {offset:#x}");
    }
}

fn sizes(p: &Path) -> (u64, u64) {
    (file_len(p), InputFile::allocated(p))
}

/// DECISIONS.md: apparent size ≤ qemu-img's default output, allocated ≤ qemu's + 1 MiB.
fn assert_not_larger_than_qemu(raw: &Path, ours: &Path, dir: &Path) {
    let q = dir.join("qemu.vhdx");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vhdx",
        "-o",
        "subformat=dynamic",
        raw.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    let (ours_len, ours_du) = sizes(ours);
    let (q_len, q_du) = sizes(&q);
    println!("{}: ours {ours_len} bytes, {ours_du} allocated; qemu-img {q_len}, {q_du}", raw.display());
    assert!(ours_len <= q_len, "apparent size {ours_len} > qemu-img's {q_len}");
    assert!(ours_du <= q_du + MIB, "allocated {ours_du} > qemu-img's {q_du} + 1 MiB");
}

#[test]
fn never_larger_than_qemu_img() {
    let dir = tmp();
    let (raw, make) = odd_source(dir.path());
    let out = dir.path().join("odd.vhdx");
    convert_image(make(), &out, "", 1, 2, false);
    assert_not_larger_than_qemu(&raw, &out, dir.path());

    // Scattered 4 KiB pages: each costs a 1 MiB block, but only its page is allocated.
    let pages = dir.path().join("pages.raw");
    let at: Vec<(u64, usize)> = (0..40).map(|i| (i * 7 * MIB + 12288, 4096)).collect();
    let make = known_sparse(&pages, 300 * MIB, &at);
    let out = dir.path().join("pages.vhdx");
    convert_image(make(), &out, "", 1, 2, false);
    assert_not_larger_than_qemu(&pages, &out, dir.path());

    // 128 GiB, the largest disk with 1 MiB blocks: a BAT of 1 MiB against qemu-img's 64 KiB (16 MiB blocks),
    // so the BAT's empty pages must stay holes for the allocated size to keep up.
    let edge = dir.path().join("edge.raw");
    let at: Vec<(u64, usize)> = (0..8).map(|i| (i * (16 << 30) + 3 * MIB, 8192)).collect();
    let make = known_sparse(&edge, 128 << 30, &at);
    let out = dir.path().join("edge.vhdx");
    convert_image(make(), &out, "", 1, 2, false);
    assert_eq!(open_vhdx(&out).metadata().block_size as u64, MIB);
    assert_not_larger_than_qemu(&edge, &out, dir.path());

    // Over 128 GiB the block size is chosen from the data: 200 GiB, a 3 MiB run every 4 GiB and 32 MiB at 100 GiB.
    let big = dir.path().join("big.raw");
    let size = 200u64 << 30;
    let mut at: Vec<(u64, usize)> = (0..50).map(|i| (i * (4 << 30) + 5 * MIB, 3 << 20)).collect();
    at.push(((100 << 30) + 64 * MIB, 32 << 20));
    at.sort_unstable();
    let make = known_sparse(&big, size, &at);
    let out = dir.path().join("big.vhdx");
    convert_image(make(), &out, "", 1, 2, false);
    let v = open_vhdx(&out);
    // 2 MiB and 4 MiB blocks store the same bytes for these runs (4 MiB per 3 MiB run, 32 MiB for the aligned
    // one) behind a 1 MiB BAT; the tie goes to the smaller block. qemu-img picks 32 MiB.
    assert_eq!(v.metadata().block_size as u64, 2 * MIB);
    assert_eq!(stored_blocks(&out).len(), 50 * 2 + 16, "what our reader checks below is all there is");
    // qemu-img compare would read all 200 GiB of our file (its VHDX driver reports no holes): our reader
    // checks the data instead, qemu-img the structure.
    assert_check_clean(&out);
    verify_without_qemu(&big, &out, size, 512);
    assert_not_larger_than_qemu(&big, &out, dir.path());
}

/// Rewrites a structure at `offset` of `bytes` through `edit`, then recomputes its CRC-32C.
fn patch(bytes: &mut [u8], offset: usize, len: usize, edit: impl FnOnce(&mut [u8])) {
    let s = &mut bytes[offset..offset + len];
    edit(s);
    let crc = diskbridge::vhdx::header::checksum(s);
    s[4..8].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn reader_reads_qemu_output_and_refuses_what_it_cannot_read() {
    let dir = tmp();
    let raw = dir.path().join("src.raw");
    sparse_raw(&raw, 64 * MIB, &[(MIB, 8192), (40 * MIB, 100_000)]);
    let q = dir.path().join("qemu.vhdx");
    qemu_img(&["convert", "-f", "raw", "-O", "vhdx", raw.to_str().unwrap(), q.to_str().unwrap()]);
    // qemu's file (ZERO block states, Required = 0) through our reader, round-tripped through our writer.
    let out = dir.path().join("ours.vhdx");
    convert_image(open_image(&q, None).unwrap(), &out, "", 1, 1, false);
    verify(&raw, &out, 64 * MIB);

    let good = std::fs::read(&out).unwrap();
    let try_open = |bytes: &[u8]| {
        let p = dir.path().join("edited.vhdx");
        std::fs::write(&p, bytes).unwrap();
        open_image(&p, Format::from_name("vhdx").ok()).map(|_| ())
    };
    // A damaged header is passed over for the other one; with both damaged the file is corrupt.
    let mut one_bad = good.clone();
    one_bad[0x20100] = 1;
    try_open(&one_bad).unwrap();
    one_bad[0x10100] = 1;
    assert_eq!(try_open(&one_bad).unwrap_err().kind(), ErrorKind::Corrupt);

    let mut log = good.clone();
    for h in [0x10000, 0x20000] {
        patch(&mut log, h, 4096, |s| s[48] = 1);
    }
    // A log GUID over an empty log: nothing to replay (tests/vhdx_read.rs replays real ones).
    let p = dir.path().join("log.vhdx");
    std::fs::write(&p, &log).unwrap();
    let warnings = open_image(&p, Format::from_name("vhdx").ok()).unwrap().info().warnings.clone();
    assert!(warnings.iter().any(|w| w.contains("nothing to replay")), "{warnings:?}");

    let mut parent = good.clone();
    parent[3 * MIB as usize + 0x10004] = 2; // File Parameters: HasParent, but no parent locator
    let e = try_open(&parent).unwrap_err();
    assert!(e.kind() == ErrorKind::Corrupt && e.message().contains("no parent locator"), "{}", e.message());

    let mut bad_region = good.clone();
    // BAT offset 2 MiB → 1 MiB, over the log, in both copies.
    patch(&mut bad_region, 0x30000, 65536, |s| s[0x20 + 2] = 0x10);
    patch(&mut bad_region, 0x40000, 65536, |s| s[0x20 + 2] = 0x10);
    assert_eq!(try_open(&bad_region).unwrap_err().kind(), ErrorKind::Corrupt);

    let mut overlap = good.clone();
    overlap[2 * MIB as usize + 8 + 2] = 0x30; // BAT[1] now points at the metadata region (3 MiB)
    let p = dir.path().join("overlap.vhdx");
    std::fs::write(&p, &overlap).unwrap();
    let e = open_image(&p, None).unwrap().read_at(MIB, &mut [0u8; 512]).unwrap_err();
    assert!(e.message().contains("overlaps"), "{}", e.message());

    let mut beyond = good.clone();
    beyond[2 * MIB as usize + 8 + 3] = 0x40; // BAT[1] now points 1 GiB past its place, beyond the file's end
    let p = dir.path().join("beyond.vhdx");
    std::fs::write(&p, &beyond).unwrap();
    let mut image = open_image(&p, None).unwrap();
    let e = image.read_at(MIB, &mut [0u8; 512]).unwrap_err();
    assert_eq!((e.kind(), e.offset()), (ErrorKind::Corrupt, Some(2 * MIB + 8)));
}

#[test]
fn bad_options_are_refused_before_writing() {
    let dir = tmp();
    let out = dir.path().join("x.vhdx");
    for options in ["block_size=3M", "subformat=diff", "logical_sector_size=2048", "cluster_size=64k"] {
        let sink = Box::new(OutputFile::create(&out).unwrap());
        let e = writer(&target(options, 1), MIB, &mut OneOutput::new(sink)).err().expect(options);
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{options}");
    }
    assert_eq!(file_len(&out), 0);
    for size in [(64 << 40) + 512, 0] {
        let e = writer(&target("", 1), size, &mut OneOutput::new(Box::new(OutputFile::create(&out).unwrap())))
            .err()
            .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{size}");
    }
}

#[test]
fn tiny_disk_and_empty_disk_refusal() {
    let dir = tmp();
    let tiny = dir.path().join("tiny.raw");
    sparse_raw(&tiny, 512, &[(0, 100)]);
    for stream in [false, true] {
        let out = dir.path().join("tiny.vhdx");
        convert_image(open_image(&tiny, Some(Format::raw())).unwrap(), &out, "", 1, 1, stream);
        verify(&tiny, &out, 512);
        assert_eq!(file_len(&out), 5 * MIB);
    }
}
