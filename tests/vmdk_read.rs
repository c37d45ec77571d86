//! VMDK input, end to end: every hosted layout qemu-img writes (sparse, stream-optimized, split, flat, zeroed
//! grains, overlays), diskbridge's own output in both layouts, ESXi's and hand-made descriptors — each opened
//! by probing, converted to raw and compared with its source by `qemu-img compare`. Then the other side:
//! unsupported kinds named, corrupt structures refused, truncations never panicking.

mod common;

use common::{assert_same_guest, ok, qemu_img, sparse_raw, tmp};
use diskbridge::chain::NoFiles;
use diskbridge::convert::{RunOptions, run};
use diskbridge::extent::ExtentKind;
use diskbridge::formats::Format;
use diskbridge::image::Extents;
use diskbridge::image::Image;
use diskbridge::io::{MemorySink, Sink, StreamSink};
use diskbridge::native::{OutputFile, open_image};
use diskbridge::options::OptionList;
use diskbridge::raw::RawWriter;
use diskbridge::target::{Target, writer};
use diskbridge::writer::{OneOutput, Settings};
use diskbridge::{ErrorKind, Result};
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Converts `image` to a raw file at `out`.
fn to_raw(image: Box<dyn Image>, out: &Path) -> Result<()> {
    let size = image.virtual_size();
    let sink = Box::new(OutputFile::create(out)?);
    run(image, Box::new(RawWriter::new(sink, size)), RunOptions::default()).map(|_| ())
}

/// Opens `vmdk` by probing, checks it is taken for a VMDK of `size` bytes, converts it to raw and compares
/// that with `expected` (any format qemu-img reads).
fn assert_reads_as(vmdk: &Path, expected: &Path, size: u64) {
    let image = open_image(vmdk, None).unwrap_or_else(|e| panic!("{}: {e}", vmdk.display()));
    assert_eq!(image.info().format, "vmdk");
    assert_eq!(image.virtual_size(), size, "{}", vmdk.display());
    let out = vmdk.with_extension("out.raw");
    to_raw(image, &out).unwrap_or_else(|e| panic!("{}: {e}", vmdk.display()));
    assert_same_guest(expected, &out);
}

/// A raw source of `size` bytes with data islands: at the start, a third of the way, at the very end, and
/// across the 32 MiB grain-table boundary when the disk reaches it.
fn source(dir: &Path, size: u64) -> PathBuf {
    let raw = dir.join("src.raw");
    let mut islands = vec![(0, 200_000), (size / 3 + 4096, 70_000), (size - 10_000, 10_000)];
    if size > 33 * MIB {
        islands.push((32 * MIB - 30_000, 90_000));
    }
    sparse_raw(&raw, size, &islands);
    raw
}

fn qemu_vmdk(raw: &Path, out: &Path, options: &str) {
    qemu_img(&["convert", "-f", "raw", "-O", "vmdk", "-o", options, s(raw), s(out)]);
}

fn kinds(image: &mut dyn Image) -> Vec<(u64, u64, ExtentKind)> {
    Extents::all(image).map(|e| e.map(|e| (e.offset, e.length, e.kind))).collect::<Result<_>>().unwrap()
}

#[test]
fn every_qemu_subformat_reads_like_its_source() {
    let dir = tmp();
    let d = dir.path();
    // 100 MiB and a few sectors: a partial last grain, four grain tables.
    let size = 100 * MIB + 1536;
    let raw = source(d, size);
    for sub in ["monolithicSparse", "streamOptimized", "monolithicFlat", "twoGbMaxExtentFlat"] {
        let vmdk = d.join(format!("{sub}.vmdk"));
        qemu_vmdk(&raw, &vmdk, &format!("subformat={sub}"));
        assert_reads_as(&vmdk, &raw, size);
    }
    let mut sparse = open_image(&d.join("monolithicSparse.vmdk"), None).unwrap();
    assert_eq!(sparse.info().cluster_size, Some(65536));
    let specific = sparse.info().specific.clone().unwrap();
    assert_eq!(
        (specific.text("create-type"), specific.number("parent-cid")),
        (Some("monolithicSparse"), Some(0xffff_ffff))
    );
    let map = kinds(sparse.as_mut());
    assert_eq!(map[0], (0, 4 * 65536, ExtentKind::Data), "200,000 bytes take 4 grains");
    assert_eq!(map[1], (4 * 65536, 511 * 65536 - 4 * 65536, ExtentKind::Unallocated), "up to 32 MiB - 30,000");
    let flat = open_image(&d.join("monolithicFlat.vmdk"), None).unwrap();
    assert_eq!(flat.info().cluster_size, None);
}

#[test]
fn split_sparse_extents_over_2_gib() {
    let dir = tmp();
    let d = dir.path();
    let size = 4 * 1024 * MIB + 512 * 3;
    let raw = d.join("src.raw");
    // Data across both extent boundaries (qemu splits at 2047 MiB) and at the very end.
    let boundary = 2047 * MIB;
    sparse_raw(&raw, size, &[(0, 4096), (boundary - 3000, 9000), (2 * boundary - 70_000, 140_000), (size - 700, 700)]);
    let vmdk = d.join("split.vmdk");
    qemu_vmdk(&raw, &vmdk, "subformat=twoGbMaxExtentSparse");
    assert!(d.join("split-s003.vmdk").exists());
    assert_reads_as(&vmdk, &raw, size);
    // An extent file alone is a disk too, with a blank descriptor area; qemu gives each header a capacity of
    // 2 GiB, more than the 2047 MiB the descriptor uses of it.
    let alone = open_image(&d.join("split-s002.vmdk"), None).unwrap();
    assert_eq!((alone.virtual_size(), &alone.info().specific), (2048 * MIB, &None));
}

#[test]
fn zeroed_grains_map_as_zero() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 40 * MIB);
    let vmdk = d.join("zg.vmdk");
    qemu_vmdk(&raw, &vmdk, "subformat=monolithicSparse,zeroed_grain=on");
    ok("qemu-io", &["-f", "vmdk", "-c", "write -z 64k 128k", "-c", "write -z 20M 64k", s(&vmdk)]);
    let expected = d.join("expected.raw");
    qemu_img(&["convert", "-O", "raw", s(&vmdk), s(&expected)]);
    let mut image = open_image(&vmdk, None).unwrap();
    let map = kinds(image.as_mut());
    assert_eq!(
        map[..3],
        [(0, 65536, ExtentKind::Data), (65536, 131072, ExtentKind::Zero), (196608, 65536, ExtentKind::Data)]
    );
    assert!(map.contains(&(20 * MIB, 65536, ExtentKind::Zero)), "{map:?}");
    assert_reads_as(&vmdk, &expected, 40 * MIB);
}

#[test]
fn an_overlay_reads_through_to_its_parent() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 40 * MIB);
    let base = d.join("base.vmdk");
    qemu_vmdk(&raw, &base, "subformat=monolithicSparse");
    let overlay = d.join("overlay.vmdk");
    qemu_img(&["create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", s(&overlay)]);
    ok("qemu-io", &["-f", "vmdk", "-c", "write -P 0x33 100k 100k", "-c", "write -P 0x44 39M 1M", s(&overlay)]);
    let expected = d.join("expected.raw");
    qemu_img(&["convert", "-O", "raw", s(&overlay), s(&expected)]);
    let mut image = open_image(&overlay, None).unwrap();
    let info = image.info().clone();
    assert_eq!(info.backing_filename.as_deref(), Some("base.vmdk"));
    assert_eq!(info.full_backing_filename.as_deref(), Some(s(&base)));
    assert!(info.warnings.is_empty(), "{:?}", info.warnings);
    let parent_cid = info.specific.as_ref().and_then(|s| s.number("parent-cid"));
    let cid = image.backing().unwrap().info().specific.as_ref().and_then(|s| s.number("cid"));
    assert!(parent_cid.is_some() && parent_cid == cid);
    let cid = cid.unwrap();
    let map = kinds(image.as_mut());
    // The base's grain 0 and the overlay's grains 1..=3 make one run.
    assert_eq!(map[0], (0, 4 * 65536, ExtentKind::Data));
    assert_eq!(map[1].2, ExtentKind::Unallocated);
    assert_reads_as(&overlay, &expected, 40 * MIB);
    // Workstation records a linked clone's parent as a path on the machine that made it.
    let windows = d.join("windows.vmdk");
    let hint = r#"parentFileNameHint="C:\Users\me\VMs\base.vmdk""#;
    std::fs::write(
        &windows,
        edit_descriptor(&std::fs::read(&overlay).unwrap(), r#"parentFileNameHint="base.vmdk""#, hint),
    )
    .unwrap();
    let image = open_image(&windows, None).unwrap();
    assert_eq!(image.info().backing_filename.as_deref(), Some(r"C:\Users\me\VMs\base.vmdk"));
    assert_eq!(image.info().full_backing_filename.as_deref(), Some(s(&base)));
    assert_reads_as(&windows, &expected, 40 * MIB);
    // A parent changed since the delta was made still reads, with a warning.
    let stale = d.join("stale.vmdk");
    let text = edit_descriptor(&std::fs::read(&overlay).unwrap(), &format!("parentCID={cid:x}"), "parentCID=1234abcd");
    std::fs::write(&stale, text).unwrap();
    let image = open_image(&stale, None).unwrap();
    assert!(image.info().warnings.iter().any(|w| w.contains("1234abcd")), "{:?}", image.info().warnings);
}

/// `vmdk` with `from` replaced by `to` in its embedded descriptor (sectors 1..21), which stays NUL-padded.
fn edit_descriptor(vmdk: &[u8], from: &str, to: &str) -> Vec<u8> {
    let area = 512..21 * 512;
    let text = String::from_utf8(vmdk[area.clone()].iter().copied().take_while(|&b| b != 0).collect()).unwrap();
    assert!(text.contains(from), "{text}");
    let mut new = text.replacen(from, to, 1).into_bytes();
    new.resize(area.len(), 0);
    let mut out = vmdk.to_vec();
    out[area].copy_from_slice(&new);
    out
}

#[test]
fn diskbridges_own_output_in_both_layouts() {
    let dir = tmp();
    let d = dir.path();
    let size = 70 * MIB + 512;
    let raw = source(d, size);
    for stream in [false, true] {
        let out = d.join(if stream { "stream.vmdk" } else { "file.vmdk" });
        let sink: Box<dyn Sink> = if stream {
            Box::new(StreamSink::new(std::fs::File::create(&out).unwrap()))
        } else {
            Box::new(OutputFile::create(&out).unwrap())
        };
        let target = Target {
            format: Format::from_name("vmdk").unwrap(),
            options: OptionList::default(),
            settings: Settings { seed: 1, epoch: 0, output_name: "x.vmdk".into(), compressed: false, seed_disk: None },
        };
        let source = open_image(&raw, Some(Format::raw())).unwrap();
        run(source, writer(&target, size, &mut OneOutput::new(sink)).unwrap(), RunOptions::default()).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(bytes[56..64] == [0xff; 8], stream, "GD at the end exactly for the stream");
        assert_reads_as(&out, &raw, size);
    }
}

#[test]
fn qemus_empty_stream_ends_at_its_overhead() {
    let dir = tmp();
    let vmdk = dir.path().join("empty.vmdk");
    qemu_img(&["create", "-f", "vmdk", "-o", "subformat=streamOptimized", s(&vmdk), "64K"]);
    assert_eq!(std::fs::metadata(&vmdk).unwrap().len(), 65536);
    let mut image = open_image(&vmdk, None).unwrap();
    assert_eq!(kinds(image.as_mut()), [(0, 65536, ExtentKind::Unallocated)]);
}

/// ESXi's pair: a `createType="vmfs"` descriptor and the `-flat.vmdk` it names, with a space in the name.
#[test]
fn esxi_descriptor_and_flat_file() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 36 * MIB);
    std::fs::rename(&raw, d.join("web 01-flat.vmdk")).unwrap();
    let text = format!(
        "# Disk DescriptorFile\nversion=1\nencoding=\"UTF-8\"\nCID=fffffffe\nparentCID=ffffffff\n\
         isNativeSnapshot=\"no\"\ncreateType=\"vmfs\"\n\n# Extent description\nRW {} VMFS \"web 01-flat.vmdk\"\n\n\
         # The Disk Data Base\n#DDB\n\nddb.adapterType = \"lsilogic\"\nddb.thinProvisioned = \"1\"\n\
         ddb.uuid = \"60 00 C2 9b 5d 8a 9e 6e-4f 17 1f 85 6b 3b 3e 0a\"\nddb.virtualHWVersion = \"13\"\n",
        36 * MIB / 512
    );
    let vmdk = d.join("web 01.vmdk");
    std::fs::write(&vmdk, text).unwrap();
    let mut image = open_image(&vmdk, None).unwrap();
    assert_eq!(kinds(image.as_mut()), [(0, 36 * MIB, ExtentKind::Data)]);
    assert_reads_as(&vmdk, &d.join("web 01-flat.vmdk"), 36 * MIB);
}

/// A descriptor mixing every readable extent kind: a flat extent from an offset, a ZERO extent, a sparse
/// extent (a qemu monolithicSparse) used for less than its capacity, and a second flat file.
#[test]
fn mixed_extents_with_offsets() {
    let dir = tmp();
    let d = dir.path();
    let a: Vec<u8> = common::pattern(3 * 65536, 7);
    std::fs::write(d.join("a.bin"), &a).unwrap();
    let sparse_src = source(d, 40 * MIB);
    qemu_vmdk(&sparse_src, &d.join("s.vmdk"), "subformat=monolithicSparse");
    let b: Vec<u8> = common::pattern(4096, 9);
    std::fs::write(d.join("b.bin"), &b).unwrap();
    // a.bin from sector 10 for 300 sectors; 1000 zero sectors; the first 6 MiB of s.vmdk; b.bin.
    let text = "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"custom\"\n\
                RW 300 FLAT \"a.bin\" 10\nRW 1000 ZERO\nRDONLY 12288 SPARSE \"s.vmdk\"\nRW 8 FLAT \"b.bin\" 0\n";
    let vmdk = d.join("mixed.vmdk");
    std::fs::write(&vmdk, text).unwrap();
    let mut expected = a[5120..5120 + 300 * 512].to_vec();
    expected.resize(expected.len() + 1000 * 512, 0);
    expected.extend_from_slice(&std::fs::read(&sparse_src).unwrap()[..6 * MIB as usize]);
    expected.extend_from_slice(&b);
    let expected_path = d.join("expected.raw");
    std::fs::write(&expected_path, &expected).unwrap();
    let mut image = open_image(&vmdk, None).unwrap();
    let map = kinds(image.as_mut());
    assert_eq!(
        map[..3],
        [
            (0, 300 * 512, ExtentKind::Data),
            (300 * 512, 1000 * 512, ExtentKind::Zero),
            (1300 * 512, 4 * 65536, ExtentKind::Data)
        ]
    );
    assert_eq!(*map.last().unwrap(), (expected.len() as u64 - 4096, 4096, ExtentKind::Data));
    assert_reads_as(&vmdk, &expected_path, expected.len() as u64);
}

/// Thousands of extents, the same sparse file among them many times over: one cache serves them all, and the
/// map and the data come out right.
#[test]
fn many_extents_share_one_cache() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, MIB);
    qemu_vmdk(&raw, &d.join("s.vmdk"), "subformat=streamOptimized");
    let src = std::fs::read(&raw).unwrap();
    let mut text = String::from("# Disk DescriptorFile\ncreateType=\"custom\"\n");
    let mut expected = Vec::new();
    for i in 0..3000 {
        if i % 3 == 0 {
            text += "RW 128 SPARSE \"s.vmdk\"\n";
            expected.extend_from_slice(&src[..65536]);
        } else {
            text += "RW 1 ZERO\n";
            expected.extend_from_slice(&[0; 512]);
        }
    }
    let vmdk = d.join("many.vmdk");
    std::fs::write(&vmdk, text).unwrap();
    let expected_path = d.join("expected.raw");
    std::fs::write(&expected_path, &expected).unwrap();
    let mut image = open_image(&vmdk, None).unwrap();
    assert_eq!(kinds(image.as_mut()).len(), 2000);
    assert_reads_as(&vmdk, &expected_path, expected.len() as u64);
}

/// Opens `path` (probed), maps and reads it whole, and returns the first error; panics if there is none.
fn open_err(path: &Path) -> diskbridge::Error {
    match open_image(path, None) {
        Ok(mut image) => {
            let size = image.virtual_size();
            let mut buf = vec![0; size.min(64 * MIB) as usize];
            let read = kinds_result(image.as_mut()).and_then(|_| image.read_at(0, &mut buf));
            read.expect_err(&format!("{} opened and read", path.display()))
        }
        Err(e) => e,
    }
}

fn kinds_result(image: &mut dyn Image) -> Result<()> {
    Extents::all(image).try_for_each(|e| e.map(|_| ()))
}

fn assert_error(path: &Path, kind: ErrorKind, words: &[&str]) {
    let e = open_err(path);
    let msg = e.to_string();
    assert_eq!(e.kind(), kind, "{}: {msg}", path.display());
    for w in words {
        assert!(msg.to_lowercase().contains(&w.to_lowercase()), "{}: '{w}' not in: {msg}", path.display());
    }
}

#[test]
fn unsupported_disks_are_named() {
    let dir = tmp();
    let d = dir.path();
    std::fs::write(d.join("x.bin"), [0u8; 512]).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("vmfsSparse", "RW 1 VMFSSPARSE \"x.bin\"", &["vmfsSparse"]),
        ("seSparse", "RW 1 SESPARSE \"x.bin\"", &["SEsparse"]),
        ("vmfsRawDeviceMap", "RW 1 VMFSRDM \"x.bin\"", &["raw device"]),
        ("custom", "RW 1 VMFSSPARSE \"x.bin\"", &["vmfsSparse", "extent 1"]),
        ("custom", "RW 1 VMFSRAW \"x.bin\"", &["VMFSRAW"]),
        ("custom", "NOACCESS 1 FLAT \"x.bin\"", &["NOACCESS"]),
        (
            "monolithicFlat\"\nencryption.keySafe = \"vmware:key/list/(pair/(phrase/xyz",
            "RW 1 FLAT \"x.bin\"",
            &["Encrypted"],
        ),
        ("fancyNewType", "RW 1 FLAT \"x.bin\"", &["fancyNewType"]),
    ];
    for (i, (create_type, extent, words)) in cases.iter().enumerate() {
        let path = d.join(format!("u{i}.vmdk"));
        std::fs::write(&path, format!("# Disk DescriptorFile\nversion=1\ncreateType=\"{create_type}\"\n{extent}\n"))
            .unwrap();
        assert_error(&path, ErrorKind::Unsupported, words);
    }
    let mut cowd = vec![0u8; 2048];
    cowd[..4].copy_from_slice(b"COWD");
    std::fs::write(d.join("snap-delta.vmdk"), &cowd).unwrap();
    assert_error(&d.join("snap-delta.vmdk"), ErrorKind::Unsupported, &["COWD"]);
    let mut stream = std::fs::read(d.join("x.bin")).unwrap();
    stream.splice(0..0, *b"# Disk DescriptorFile\nversion=9\n");
    std::fs::write(d.join("v9.vmdk"), &stream).unwrap();
    assert_error(&d.join("v9.vmdk"), ErrorKind::Unsupported, &["version 9"]);
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A copy of `src` with `bytes` at `at`.
fn patched(src: &[u8], dir: &Path, name: &str, at: usize, bytes: &[u8]) -> PathBuf {
    let mut b = src.to_vec();
    b[at..at + bytes.len()].copy_from_slice(bytes);
    let path = dir.join(name);
    std::fs::write(&path, b).unwrap();
    path
}

#[test]
fn corrupt_structures_are_refused_with_specific_errors() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 4 * MIB);
    let sparse = d.join("sparse.vmdk");
    qemu_vmdk(&raw, &sparse, "subformat=monolithicSparse");
    let so = d.join("so.vmdk");
    qemu_vmdk(&raw, &so, "subformat=streamOptimized");
    let sp = std::fs::read(&sparse).unwrap();
    let st = std::fs::read(&so).unwrap();
    let far = (1u32 << 30).to_le_bytes();
    use ErrorKind::*;
    // monolithicSparse: header fields, then the grain directory and tables.
    let gd = le64(&sp, 56) as usize * 512;
    let gt0 = le32(&sp, gd) as usize * 512;
    let cases: Vec<(PathBuf, ErrorKind, &[&str])> = vec![
        (patched(&sp, d, "version4.vmdk", 4, &[4]), Unsupported, &["version 4"]),
        (patched(&sp, d, "flag18.vmdk", 10, &[4]), Unsupported, &["incompatible"]),
        (patched(&sp, d, "grain3.vmdk", 20, &[3]), Corrupt, &["grain size"]),
        (patched(&sp, d, "grain_huge.vmdk", 20, &[0, 0, 0, 1]), Corrupt, &["grain size"]),
        (patched(&sp, d, "gtes0.vmdk", 44, &[0, 0]), Corrupt, &["grain table"]),
        (patched(&sp, d, "newline.vmdk", 75, b"\n"), Corrupt, &["newline"]),
        (patched(&sp, d, "capacity.vmdk", 12, &[0xff; 8]), LimitExceeded, &["capacity"]),
        (patched(&sp, d, "gd_far.vmdk", 56, &far), Corrupt, &["grain directory"]),
        (patched(&sp, d, "overhead.vmdk", 64, &far), Corrupt, &["truncated"]),
        (patched(&sp, d, "desc_huge.vmdk", 36, &far), LimitExceeded, &["descriptor"]),
        (patched(&sp, d, "desc_far.vmdk", 28, &far), Corrupt, &["descriptor"]),
        (patched(&sp, d, "desc_garbage.vmdk", 512, b"garbage!"), Corrupt, &["descriptor line 1"]),
        (patched(&sp, d, "gt_far.vmdk", gd, &far), Corrupt, &["grain table 0"]),
        (patched(&sp, d, "grain_far.vmdk", gt0, &far), Corrupt, &["grain 0", "end of the file"]),
        (patched(&sp, d, "gte_one.vmdk", gt0 + 4, &[1, 0, 0, 0]), Corrupt, &["zeroed"]),
    ];
    for (path, kind, words) in &cases {
        assert_error(path, *kind, words);
    }
    // streamOptimized: grain markers and their zlib streams.
    let so_gd = le64(&st, 56) as usize * 512;
    let so_gt = le32(&st, so_gd) as usize * 512;
    let g0 = le32(&st, so_gt) as usize * 512;
    let size0 = le32(&st, g0 + 8) as usize;
    let mut bomb = st.clone();
    // 128 KiB of zeros compress to a couple of hundred bytes: one grain's space, two grains' worth.
    let z = zlib(&[0; 131072]);
    bomb[g0 + 8..g0 + 12].copy_from_slice(&(z.len() as u32).to_le_bytes());
    bomb[g0 + 12..g0 + 12 + z.len()].copy_from_slice(&z);
    std::fs::write(d.join("bomb.vmdk"), &bomb).unwrap();
    let short = zlib(&[5; 1000]);
    let mut shortg = st.clone();
    shortg[g0 + 8..g0 + 12].copy_from_slice(&(short.len() as u32).to_le_bytes());
    shortg[g0 + 12..g0 + 12 + short.len()].copy_from_slice(&short);
    std::fs::write(d.join("short_grain.vmdk"), &shortg).unwrap();
    let cases: Vec<(PathBuf, ErrorKind, &[&str])> = vec![
        (patched(&st, d, "lba.vmdk", g0, &[128]), Corrupt, &["marker", "LBA 128"]),
        (patched(&st, d, "size_huge.vmdk", g0 + 8, &far), Corrupt, &["claims"]),
        (patched(&st, d, "size0.vmdk", g0 + 8, &[0, 0, 0, 0]), Corrupt, &["claims 0"]),
        (patched(&st, d, "zlib_garbage.vmdk", g0 + 12, &[0x78, 0x9c, 0xff, 0xff, 0xff]), Corrupt, &["zlib"]),
        (patched(&st, d, "zlib_cut.vmdk", g0 + 8, &((size0 / 2) as u32).to_le_bytes()), Corrupt, &["cut short"]),
        (d.join("bomb.vmdk"), Corrupt, &["past the grain size"]),
        (d.join("short_grain.vmdk"), Corrupt, &["less than"]),
        (patched(&st, d, "compress2.vmdk", 77, &[2]), Unsupported, &["compression algorithm 2"]),
    ];
    for (path, kind, words) in &cases {
        assert_error(path, *kind, words);
    }
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn missing_files_and_parent_loops() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 4 * MIB);
    let vmdk = d.join("split.vmdk");
    qemu_vmdk(&raw, &vmdk, "subformat=twoGbMaxExtentFlat");
    std::fs::remove_file(d.join("split-f001.vmdk")).unwrap();
    assert_error(&vmdk, ErrorKind::NotFound, &["split-f001.vmdk"]);
    qemu_vmdk(&raw, &vmdk, "subformat=twoGbMaxExtentFlat");
    std::fs::OpenOptions::new().write(true).open(d.join("split-f001.vmdk")).unwrap().set_len(MIB).unwrap();
    assert_error(&vmdk, ErrorKind::Corrupt, &["shorter"]);

    let base = d.join("base.vmdk");
    qemu_vmdk(&raw, &base, "subformat=monolithicSparse");
    let overlay = d.join("overlay.vmdk");
    qemu_img(&["create", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", s(&overlay)]);
    std::fs::remove_file(&base).unwrap();
    assert_error(&overlay, ErrorKind::NotFound, &["base.vmdk"]);
    // The overlay as its own parent.
    let looped = d.join("loop.vmdk");
    std::fs::write(&looped, edit_descriptor(&std::fs::read(&overlay).unwrap(), "base.vmdk", "loop.vmdk")).unwrap();
    assert_error(&looped, ErrorKind::Corrupt, &["loop"]);
}

/// A directory whose every entry points at the same empty table maps as one run, found without reading a
/// table per entry.
#[test]
fn a_directory_of_one_repeated_empty_table_is_one_run() {
    let dir = tmp();
    let vmdk = dir.path().join("empty.vmdk");
    qemu_img(&["create", "-f", "vmdk", s(&vmdk), "64G"]);
    let mut b = std::fs::read(&vmdk).unwrap();
    let gd = le64(&b, 56) as usize * 512;
    let first = b[gd..gd + 4].to_vec();
    for t in 0..2048 {
        b[gd + t * 4..gd + t * 4 + 4].copy_from_slice(&first);
    }
    std::fs::write(&vmdk, &b).unwrap();
    let mut image = open_image(&vmdk, None).unwrap();
    let e = image.extent_at(0).unwrap();
    assert_eq!((e.length, e.kind), (64 << 30, ExtentKind::Unallocated), "one query");
}

/// Reads `bytes` as a VMDK in memory (no other files): the result of mapping and reading it all, or the
/// first error. Never panics, whatever the bytes.
fn read_all(bytes: Vec<u8>) -> Result<Vec<u8>> {
    let image = diskbridge::open::open("t.vmdk", Box::new(bytes), Format::from_name("vmdk").ok(), &NoFiles)?;
    let size = image.virtual_size();
    let out = MemorySink::default();
    run(image, Box::new(RawWriter::new(Box::new(out.clone()), size)), RunOptions::default())?;
    Ok(out.take())
}

#[test]
fn truncations_never_panic_and_a_truncated_stream_is_refused() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 3 * MIB);
    let expected = std::fs::read(&raw).unwrap();
    // The spec's stream (GD at the end): any cut loses the footer.
    let stream = d.join("stream.vmdk");
    {
        let target = Target {
            format: Format::from_name("vmdk").unwrap(),
            options: OptionList::default(),
            settings: Settings { seed: 1, epoch: 0, output_name: String::new(), compressed: false, seed_disk: None },
        };
        let sink = Box::new(StreamSink::new(std::fs::File::create(&stream).unwrap()));
        let source = open_image(&raw, Some(Format::raw())).unwrap();
        run(source, writer(&target, 3 * MIB, &mut OneOutput::new(sink)).unwrap(), RunOptions::default()).unwrap();
    }
    let st = std::fs::read(&stream).unwrap();
    assert_eq!(read_all(st.clone()).unwrap(), expected);
    for len in (0..st.len()).step_by(512).chain((1..st.len()).step_by(4099)) {
        let e = read_all(st[..len].to_vec()).expect_err(&format!("cut at {len}"));
        assert!(matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::InvalidFormat), "cut at {len}: {e}");
    }
    // qemu's layouts: a cut either fails or, past the last structure in use, still reads right.
    for sub in ["streamOptimized", "monolithicSparse"] {
        let vmdk = d.join(format!("{sub}.vmdk"));
        qemu_vmdk(&raw, &vmdk, &format!("subformat={sub}"));
        let b = std::fs::read(&vmdk).unwrap();
        for len in (0..b.len()).step_by(1536).chain((1..b.len()).step_by(7919)) {
            if let Ok(read) = read_all(b[..len].to_vec()) {
                assert!(read == expected, "{sub} cut at {len} read wrong data");
            }
        }
    }
}

/// Bytes of the header, descriptor and grain tables of small images changed: errors or data, never a panic or
/// a hang.
#[test]
fn damaged_metadata_never_panics() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, MIB);
    for sub in ["streamOptimized", "monolithicSparse"] {
        let vmdk = d.join(format!("{sub}.vmdk"));
        qemu_vmdk(&raw, &vmdk, &format!("subformat={sub}"));
        let b = std::fs::read(&vmdk).unwrap();
        let gd = le64(&b, 56) as usize * 512;
        let gt = le32(&b, gd) as usize * 512;
        let first_grain = le32(&b, gt) as usize * 512;
        let places = (0..80)
            .chain(512..540)
            .chain(gd..gd + 8)
            .chain((gt..gt + 64).step_by(3))
            .chain(first_grain..first_grain + 16);
        for at in places {
            for v in [0x00, 0x01, 0xff] {
                let mut m = b.clone();
                m[at] = v;
                let _ = read_all(m);
            }
        }
    }
}

#[test]
fn cli_converts_and_reports_a_vmdk() {
    let dir = tmp();
    let d = dir.path();
    let raw = source(d, 8 * MIB);
    let vmdk = d.join("in.vmdk");
    qemu_vmdk(&raw, &vmdk, "subformat=streamOptimized");
    let out = common::diskbridge_run(&["info", "--output=json", s(&vmdk)]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && json.contains("\"format\": \"vmdk\""), "{json}");
    assert!(
        json.contains("\"create-type\": \"streamOptimized\"") && json.contains("\"cluster-size\": 65536"),
        "{json}"
    );
    let qcow = d.join("out.raw");
    let out = common::diskbridge_run(&["convert", "-O", "raw", s(&vmdk), s(&qcow)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_guest(&raw, &qcow);
    let bad = d.join("bad.vmdk");
    let mut b = std::fs::read(&vmdk).unwrap();
    b.truncate(b.len() / 2);
    b[56..64].copy_from_slice(&[0xff; 8]);
    std::fs::write(&bad, b).unwrap();
    let out = common::diskbridge_run(&["convert", "-O", "raw", s(&bad), s(&d.join("x.raw"))]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("diskbridge: ") && err.lines().count() == 1 && err.contains("footer"), "{err}");
}
