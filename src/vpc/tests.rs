//! The VHD reader on disks built here byte by byte, and on hostile variants of them.

use super::header::tests::{footer_bytes, header_bytes};
use super::*;
use crate::chain::FileResolver;
use crate::error::ErrorKind;
use crate::formats::Format;
use crate::image::Extents;

/// Bytes of each block in the fixtures: 8 sectors, so one bitmap byte covers a block.
const BLOCK: u64 = 4096;

/// Named in-memory files, for parents.
struct Files(Vec<(&'static str, Vec<u8>)>);

impl FileResolver for Files {
    fn open(&self, name: &str, _referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        match self.0.iter().find(|(n, _)| *n == name) {
            Some((_, data)) => Ok((name.to_string(), Box::new(data.clone()))),
            None => Err(Error::new(ErrorKind::NotFound, format!("No file '{name}'"))),
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
    crate::open::open("child.vhd", Box::new(data), None, files)
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
    assert_eq!((info.format, info.virtual_size, info.cluster_size), ("vpc", 10 << 10, Some(BLOCK)));
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
    assert_eq!(image.backing().unwrap().info().format, "vpc");
}

#[test]
fn differencing_disk_without_its_parent_names_what_it_tried() {
    let (child, _) = differencing();
    let err = open(child, &Files(vec![])).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::NotFound);
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
    assert_eq!(Format::probe(&disk[..32], &disk[disk.len() - 512..]).name(), "vpc");
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
    /// Opens, reads whole and walks `bytes` as a VHD.
    fn examine(bytes: &[u8], files: &Files) -> Result<()> {
        let vpc = Some(Format::from_name("vpc")?);
        let mut image = crate::open::open("child.vhd", Box::new(bytes.to_vec()), vpc, files)?;
        read_all(&mut *image)?;
        Extents::all(&mut *image).collect::<Result<Vec<_>>>().map(drop)
    }
    let damage = |e: &Error| {
        matches!(
            e.kind(),
            ErrorKind::Corrupt | ErrorKind::InvalidFormat | ErrorKind::LimitExceeded | ErrorKind::Unsupported
        )
    };
    let (child, files) = differencing();
    for image in [child, sparse_disk(3, 10 << 10, &[(0, 0xff, 1), (2, 0x0f, 3)], None), fixed_disk(4096)] {
        examine(&image, &files).unwrap();
        // Every VHD ends with its footer, and dynamic ones keep their blocks before it: no cut reads whole.
        for cut in (0..image.len()).step_by(97) {
            let e = examine(&image[..cut], &files).expect_err("a truncated VHD read whole");
            assert!(damage(&e), "cut at {cut}: {e:?}");
        }
        let (mut refused, mut read) = (0, 0);
        for at in (0..image.len()).step_by(53) {
            let mut bad = image.clone();
            bad[at] ^= 0x5a;
            match examine(&bad, &files) {
                Ok(()) => read += 1,
                // A damaged locator may name a parent that is not there.
                Err(e) if damage(&e) || e.kind() == ErrorKind::NotFound => refused += 1,
                Err(e) => panic!("flip at {at}: {e:?}"),
            }
        }
        // Flips in guest data read back; flips in the footer, header or tables are caught by checksums and checks.
        assert!(refused > 0 && read > 0, "{refused} refused, {read} read");
    }
}
