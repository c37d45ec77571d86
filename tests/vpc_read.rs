//! VHD (qemu's `vpc`) input: images written by qemu-img in each subformat, probed by content (fixed ones by
//! their trailing footer), converted to raw through the library and compared with the source and with what
//! qemu-img reads; broken files end in errors, never panics.

mod common;

use common::*;
use diskbridge::convert::RunOptions;
use diskbridge::formats::Format;
use diskbridge::native::{OutputFile, open_image};
use diskbridge::raw::RawWriter;
use diskbridge::{Error, ErrorKind};
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Data at the start, across a 2 MiB block boundary, and in the last sector of a size no CHS geometry hits.
const SOURCE_SIZE: u64 = (10 << 20) + (7 << 9);
const SOURCE_DATA: &[(u64, usize)] = &[(0, 70_000), ((4 << 20) - 5000, 1 << 20), (SOURCE_SIZE - 512, 512)];

/// The raw source and a VHD made from it with `qemu-img convert -O vpc -o OPTIONS`.
fn vhd_from_source(dir: &Path, options: &str) -> (PathBuf, PathBuf) {
    let raw = dir.join("source.raw");
    if !raw.exists() {
        sparse_raw(&raw, SOURCE_SIZE, SOURCE_DATA);
    }
    let vhd = dir.join(format!("{}.vhd", options.replace([',', '='], "-")));
    qemu_img(&["convert", "-f", "raw", "-O", "vpc", "-o", options, s(&raw), s(&vhd)]);
    (raw, vhd)
}

/// The virtual size `qemu-img info -f vpc` reports.
fn qemu_virtual_size(vhd: &Path) -> u64 {
    let json = qemu_img(&["info", "--output=json", "-f", "vpc", s(vhd)]);
    // The image's own key is at the top level; the protocol layer's, nested in "children", comes first.
    let key = "\n    \"virtual-size\": ";
    let rest = &json[json.find(key).expect("virtual-size") + key.len()..];
    rest[..rest.find([',', '\n']).unwrap()].parse().unwrap()
}

/// Opens `vhd` with the format probed, checks it is found to be vpc, and converts it to raw.
fn convert_to_raw(vhd: &Path) -> Result<PathBuf, Error> {
    let image = open_image(vhd, None)?;
    assert_eq!(image.info().format, "vpc", "{} probed as {}", vhd.display(), image.info().format);
    let out = vhd.with_extension("out.raw");
    let writer = RawWriter::new(Box::new(OutputFile::create(&out)?), image.virtual_size());
    diskbridge::convert::run(image, Box::new(writer), RunOptions { threads: 2, ..Default::default() })?;
    Ok(out)
}

/// Converts a qemu-made VHD and checks the result against qemu-img's reading and against the source.
fn check_round_trip(options: &str, expected_size: u64) {
    let dir = tmp();
    let (raw, vhd) = vhd_from_source(dir.path(), options);
    assert_eq!(qemu_virtual_size(&vhd), expected_size, "qemu-img's size for {options}");
    assert_eq!(open_image(&vhd, None).unwrap().virtual_size(), expected_size, "our size for {options}");
    let out = convert_to_raw(&vhd).unwrap();
    let out_bytes = std::fs::read(&out).unwrap();
    assert_eq!(out_bytes.len() as u64, expected_size);
    let out_cmp = run("qemu-img", &["compare", "-f", "vpc", "-F", "raw", s(&vhd), s(&out)]);
    assert!(out_cmp.status.success(), "{options}: {}", String::from_utf8_lossy(&out_cmp.stdout));
    let source = std::fs::read(&raw).unwrap();
    let common = source.len().min(out_bytes.len());
    assert!(out_bytes[..common] == source[..common], "{options}: guest bytes differ from the source");
    assert!(out_bytes[common..].iter().all(|&b| b == 0), "{options}: the rounded-up tail is not zero");
}

/// The size qemu gives SOURCE_SIZE without `force_size`: the geometry the VHD specification's algorithm picks,
/// 302 cylinders × 4 heads × 17 sectors, rounds it up.
const CHS_SIZE: u64 = 302 * 4 * 17 * 512;

#[test]
fn dynamic_vhd_sized_by_geometry_reads_as_qemu_reads_it() {
    check_round_trip("subformat=dynamic", CHS_SIZE);
}

#[test]
fn fixed_vhd_is_probed_by_its_footer_and_reads_as_qemu_reads_it() {
    check_round_trip("subformat=fixed", CHS_SIZE);
}

#[test]
fn force_size_vhds_keep_the_exact_size() {
    check_round_trip("subformat=dynamic,force_size=on", SOURCE_SIZE);
    check_round_trip("subformat=fixed,force_size=on", SOURCE_SIZE);
}

/// Recomputes the checksum at `field` of the `len`-byte footer or header at `at`: the one's complement of the
/// byte sum with the field counted as zero.
fn reseal(file: &mut [u8], at: usize, len: usize, field: usize) {
    let structure = &mut file[at..at + len];
    structure[field..field + 4].fill(0);
    let sum = !structure.iter().fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
    structure[field..field + 4].copy_from_slice(&sum.to_be_bytes());
}

/// Footer fields: creator application at 28, disk type at 60, checksum at 64, unique id at 68.
fn patch_footer(file: &mut [u8], at: usize, offset: usize, value: &[u8]) {
    file[at + offset..at + offset + value.len()].copy_from_slice(value);
    reseal(file, at, 512, 64);
}

#[test]
fn azure_fixed_vhd_reads_its_exact_size() {
    // Azure wants N MiB of guest data plus the footer, and writes "wa\0\0" (Hyper-V writes "win "), which both
    // qemu and diskbridge size by the footer's current size rather than the geometry.
    let dir = tmp();
    let raw = dir.path().join("azure.raw");
    sparse_raw(&raw, 16 << 20, &[(0, 4096), ((16 << 20) - 4096, 4096)]);
    let vhd = dir.path().join("azure.vhd");
    qemu_img(&["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", s(&raw), s(&vhd)]);
    let mut file = std::fs::read(&vhd).unwrap();
    assert_eq!(file.len() as u64, (16 << 20) + 512);
    for creator in [b"wa\0\0", b"win "] {
        let at = file.len() - 512;
        patch_footer(&mut file, at, 28, creator);
        std::fs::write(&vhd, &file).unwrap();
        assert_eq!(qemu_virtual_size(&vhd), 16 << 20);
        let out = convert_to_raw(&vhd).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
    }
    // Against qemu-img, which takes a fixed VHD for raw and so would copy the footer into the guest disk.
    let info = qemu_img(&["info", "--output=json", s(&vhd)]);
    assert!(info.contains("\"format\": \"raw\""), "{info}");
    let ours = diskbridge_run(&["info", "--output=json", s(&vhd)]);
    assert!(String::from_utf8_lossy(&ours.stdout).contains("\"format\": \"vpc\""));
}

#[test]
fn large_sparse_dynamic_vhd_maps_only_its_blocks() {
    let dir = tmp();
    let raw = dir.path().join("big.raw");
    let size = 3u64 << 30;
    sparse_raw(&raw, size, &[(1 << 30, 4096), (size - 4096, 4096)]);
    let vhd = dir.path().join("big.vhd");
    qemu_img(&["convert", "-f", "raw", "-O", "vpc", "-o", "force_size=on", s(&raw), s(&vhd)]);
    let mut image = open_image(&vhd, None).unwrap();
    let data: Vec<_> = diskbridge::image::Extents::all(&mut *image)
        .map(Result::unwrap)
        .filter(|e| e.kind == diskbridge::extent::ExtentKind::Data)
        .map(|e| (e.offset, e.length))
        .collect();
    assert_eq!(data, [(1 << 30, 2 << 20), (size - (2 << 20), 2 << 20)]);
    assert_eq!(image.info().cluster_size, Some(2 << 20));
    drop(image);
    let out = convert_to_raw(&vhd).unwrap();
    assert_same_guest(&raw, &out);
}

#[test]
fn differencing_vhd_reads_through_to_its_parent_beside_it() {
    differencing_vhd_over_parent_of(4 << 20);
}

#[test]
fn differencing_vhd_larger_than_its_parent_reads_zeros_beyond_the_parent() {
    differencing_vhd_over_parent_of(3 << 20);
}

/// A 4 MiB differencing VHD over a parent of `parent_size` bytes, full of data, read through the CLI.
fn differencing_vhd_over_parent_of(parent_size: u64) {
    // qemu-img cannot write differencing VHDs, so one of its dynamic VHDs is turned into one: disk type 4,
    // the parent's unique id, a relative Windows locator (in the header's reserved tail), and a block whose
    // first 8 sectors are left to the parent.
    let dir = tmp();
    let size = 4u64 << 20;
    let (parent_raw, child_raw) = (dir.path().join("parent.raw"), dir.path().join("child.raw"));
    sparse_raw(&parent_raw, parent_size, &[(0, parent_size as usize)]);
    sparse_raw(&child_raw, size, &[(1 << 20, 4096)]);
    let parent = dir.path().join("parent.vhd");
    qemu_img(&["convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", s(&parent_raw), s(&parent)]);
    let child = dir.path().join("child.vhd");
    qemu_img(&["convert", "-f", "raw", "-O", "vpc", "-o", "force_size=on", s(&child_raw), s(&child)]);

    let parent_bytes = std::fs::read(&parent).unwrap();
    let parent_id = &parent_bytes[parent_bytes.len() - 512 + 68..][..16];
    let mut file = std::fs::read(&child).unwrap();
    for at in [0, file.len() - 512] {
        patch_footer(&mut file, at, 60, &4u32.to_be_bytes());
    }
    let (header, locator_data) = (512, 512 + 768);
    file[header + 40..header + 56].copy_from_slice(parent_id);
    let path: Vec<u8> = ".\\parent.vhd".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let locator = header + 576;
    file[locator..locator + 4].copy_from_slice(b"W2ru");
    file[locator + 4..locator + 8].copy_from_slice(&1u32.to_be_bytes()); // data space: one sector
    file[locator + 8..locator + 12].copy_from_slice(&(path.len() as u32).to_be_bytes());
    file[locator + 16..locator + 24].copy_from_slice(&(locator_data as u64).to_be_bytes());
    file[locator_data..locator_data + path.len()].copy_from_slice(&path);
    reseal(&mut file, header, 1024, 36);
    let bat = u32::from_be_bytes(file[1536..1540].try_into().unwrap());
    assert_ne!(bat, u32::MAX, "qemu allocated block 0");
    assert_eq!(u32::from_be_bytes(file[1540..1544].try_into().unwrap()), u32::MAX, "and not block 1");
    file[bat as usize * 512] = 0; // sectors 0-7 of block 0 now come from the parent
    std::fs::write(&child, &file).unwrap();
    // libvhdi, an independent reader, agrees the patched file is a differencing disk.
    let libvhdi = ok("vhdiinfo", &[s(&child)]);
    assert!(libvhdi.contains("Disk type\t\t: Differential"), "{libvhdi}");

    let image = open_image(&child, None).unwrap();
    assert_eq!(image.info().backing_filename.as_deref(), Some("parent.vhd"));
    assert_eq!(image.info().full_backing_filename.as_deref(), Some(s(&parent)));
    drop(image);
    let chain = diskbridge_run(&["info", "--backing-chain", "--output=json", s(&child)]);
    let chain = String::from_utf8_lossy(&chain.stdout);
    assert_eq!(chain.matches("\"format\": \"vpc\"").count(), 2, "{chain}");
    let out = std::fs::read(convert_to_raw(&child).unwrap()).unwrap();
    let (parent_raw, child_raw) = (std::fs::read(&parent_raw).unwrap(), std::fs::read(&child_raw).unwrap());
    let mut want = child_raw[..2 << 20].to_vec();
    want[..4096].copy_from_slice(&parent_raw[..4096]);
    want.extend_from_slice(&parent_raw[2 << 20..]);
    want.resize(size as usize, 0);
    assert!(out == want, "guest bytes differ from child-over-parent");
}

/// Opening and reading a broken file must give an error or the guest bytes, never a panic.
fn open_and_read(path: &Path) -> Result<(), Error> {
    let mut image = open_image(path, Format::from_name("vpc").ok())?;
    let size = image.virtual_size();
    let mut buf = vec![0u8; 1 << 20];
    for offset in (0..size).step_by(buf.len()) {
        let n = (size - offset).min(buf.len() as u64) as usize;
        image.read_at(offset, &mut buf[..n])?;
    }
    diskbridge::image::Extents::all(&mut *image).try_for_each(|e| e.map(drop))
}

#[test]
fn truncated_and_corrupted_vhds_end_in_errors() {
    let dir = tmp();
    let (_, vhd) = vhd_from_source(dir.path(), "subformat=dynamic");
    let file = std::fs::read(&vhd).unwrap();
    let broken = dir.path().join("broken.vhd");

    // Truncated downloads: cut inside the footer copy, the header, the BAT, the blocks and the footer.
    for cut in [0, 100, 511, 600, 1600, 5000, 1 << 20, file.len() - 4096, file.len() - 1] {
        std::fs::write(&broken, &file[..cut]).unwrap();
        let err = open_and_read(&broken).expect_err(&format!("truncated at {cut}"));
        assert!(matches!(err.kind(), ErrorKind::InvalidFormat | ErrorKind::Corrupt), "cut at {cut}: {err}");
    }

    let mut bad = file.clone();
    bad[0x30] ^= 0x10; // current size: the footer checksum no longer matches
    std::fs::write(&broken, &bad).unwrap();
    let err = open_and_read(&broken).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("footer checksum"), "{err}");
    let cli = diskbridge_run(&["info", s(&broken)]);
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("checksum"));

    // Every byte of the metadata flipped in turn: an error or a readable image, never a panic or a hang.
    for at in (0..2048).step_by(7) {
        let mut bad = file.clone();
        bad[at] ^= 0xa5;
        std::fs::write(&broken, &bad).unwrap();
        let _ = open_and_read(&broken);
    }
}
