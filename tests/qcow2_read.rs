//! The qcow2 reader against qemu: fixtures made at test time with qemu-img and qemu-io, read through
//! `native::open_image`, converted to raw, and compared with `qemu-img compare`; extent maps against
//! `qemu-img map`; backing chains, loops and missing files.

mod common;

use common::{assert_same_guest, qemu_img, tmp};
use diskbridge::chain::NoFiles;
use diskbridge::convert::{RunOptions, run};
use diskbridge::extent::ExtentKind;
use diskbridge::formats::Format;
use diskbridge::image::Extents;
use diskbridge::image::ImageInfo;
use diskbridge::native::{OutputFile, open_image};
use diskbridge::raw::RawWriter;
use diskbridge::{Error, ErrorKind};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `qemu-img create -f qcow2 -o OPTIONS PATH SIZE`.
fn create(path: &Path, options: &str, size: &str) {
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !options.is_empty() {
        args.extend(["-o", options]);
    }
    args.extend([s(path), size]);
    qemu_img(&args);
}

/// Runs qemu-io commands on a qcow2 image.
fn qemu_io(path: &Path, commands: &[&str]) {
    let mut args = vec!["-f", "qcow2"];
    for c in commands {
        args.extend(["-c", c]);
    }
    args.push(s(path));
    common::ok("qemu-io", &args);
}

fn open(path: &Path) -> Result<Box<dyn diskbridge::image::Image>, Error> {
    open_image(path, None)
}

/// Converts `image` to raw next to it with our reader, checks the result with `qemu-img compare`, and returns
/// the image's info.
fn check(image: &Path) -> ImageInfo {
    let source = open(image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    let info = source.info().clone();
    let out = image.with_extension("out.raw");
    let writer = RawWriter::new(Box::new(OutputFile::create(&out).unwrap()), source.virtual_size());
    run(source, Box::new(writer), RunOptions { threads: 2, ..Default::default() }).unwrap();
    assert_same_guest(image, &out);
    std::fs::remove_file(&out).unwrap();
    assert_info_matches_qemu(image, &info);
    info
}

/// Compares our info with `qemu-img info --output=json`: its top-level keys are indented 4 spaces, those of
/// `format-specific.data` 12.
fn assert_info_matches_qemu(image: &Path, info: &ImageInfo) {
    let json = qemu_img(&["info", "--output=json", s(image)]);
    let value = |indent: usize, key: &str| -> Option<String> {
        let prefix = format!("{}\"{key}\": ", " ".repeat(indent));
        let line = json.lines().find(|l| l.starts_with(&prefix))?;
        Some(line[prefix.len()..].trim_end_matches(',').trim_matches('"').to_string())
    };
    let top = |key: &str| value(4, key);
    let ours = |v: Option<&String>| v.cloned();
    assert_eq!(top("virtual-size"), Some(info.virtual_size.to_string()), "virtual-size");
    assert_eq!(top("cluster-size"), info.cluster_size.map(|c| c.to_string()), "cluster-size");
    assert_eq!(top("dirty-flag"), Some(info.dirty.to_string()), "dirty-flag");
    assert_eq!(top("backing-filename"), ours(info.backing_filename.as_ref()), "backing-filename");
    assert_eq!(top("full-backing-filename"), ours(info.full_backing_filename.as_ref()), "full-backing-filename");
    assert_eq!(top("backing-filename-format"), ours(info.backing_format.as_ref()), "backing-filename-format");
    let specific = info.specific.as_ref().unwrap_or_else(|| panic!("not qcow2: {info:?}"));
    let data = |key: &str| value(12, key);
    assert_eq!(data("compat").as_deref(), specific.text("compat"));
    assert_eq!(data("compression-type").as_deref(), specific.text("compression-type"));
    assert_eq!(data("refcount-bits"), specific.number("refcount-bits").map(|n| n.to_string()));
    // qemu leaves out the version 3 features for a version 2 image.
    for key in ["lazy-refcounts", "corrupt", "extended-l2"] {
        let ours = specific.flag(key).unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(data(key).unwrap_or_else(|| "false".into()), ours.to_string(), "{key}");
    }
}

/// Bytes in a qemu size ("512", "4k", "2M").
fn qemu_size(text: &str) -> u64 {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k') => (&text[..text.len() - 1], 10),
        Some(b'M') => (&text[..text.len() - 1], 20),
        _ => (text, 0),
    };
    digits.parse::<u64>().unwrap() << shift
}

fn specific(info: &ImageInfo) -> (&str, &str, bool) {
    let specific = info.specific.as_ref().unwrap_or_else(|| panic!("not qcow2: {info:?}"));
    let facts = (specific.text("compat"), specific.text("compression-type"), specific.flag("extended-l2"));
    match facts {
        (Some(compat), Some(compression), Some(extended_l2)) => (compat, compression, extended_l2),
        other => panic!("not qcow2: {other:?}"),
    }
}

/// Data, zeros written explicitly, a partial cluster, and data at the very end.
fn mixed(path: &Path, options: &str) {
    create(path, options, "8M");
    qemu_io(
        path,
        &[
            "write -P 0xab 0 64k",
            "write -P 0xcd 1000k 100k",
            "write -z 256k 128k",
            "write -P 0x11 300k 1k",
            "write -P 0xef 8190k 2k",
        ],
    );
}

#[test]
fn versions_and_cluster_sizes() {
    let dir = tmp();
    for compat in ["0.10", "1.1"] {
        for cluster in ["512", "4k", "64k", "2M"] {
            let path = dir.path().join(format!("mixed-{compat}-{cluster}.qcow2"));
            mixed(&path, &format!("compat={compat},cluster_size={cluster}"));
            let info = check(&path);
            assert_eq!(specific(&info).0, compat);
            assert_eq!(info.virtual_size, 8 << 20);
            assert_eq!(info.cluster_size, Some(qemu_size(cluster)));
            assert_map_matches_qemu(&path);
        }
    }
}

#[test]
fn compressed_zlib_and_zstd() {
    let dir = tmp();
    let raw = dir.path().join("data.raw");
    common::sparse_raw(&raw, 6 << 20, &[(0, 1 << 20), (3 << 20, 200_000), ((6 << 20) - 4096, 4096)]);
    let variants = [("zlib", "64k"), ("zstd", "64k"), ("zlib", "512"), ("zstd", "2M"), ("zlib", "2M"), ("zlib", "1M")];
    for (i, (kind, cluster)) in variants.into_iter().enumerate() {
        let path = dir.path().join(format!("{kind}-{cluster}.qcow2"));
        // The last variant is version 2, which knows only deflate.
        let compat = if i + 1 == variants.len() { ",compat=0.10" } else { "" };
        let opts = format!("compression_type={kind},cluster_size={cluster}{compat}");
        qemu_img(&["convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", &opts, s(&raw), s(&path)]);
        // An uncompressed write on top, so compressed and standard clusters sit side by side.
        qemu_io(&path, &["write -P 0x5a 64k 64k"]);
        let info = check(&path);
        assert_eq!(specific(&info).1, kind);
        assert_map_matches_qemu(&path);
    }
}

#[test]
fn extended_l2_subclusters_over_a_backing_file() {
    let dir = tmp();
    let base = dir.path().join("base.qcow2");
    create(&base, "", "4M");
    qemu_io(&base, &["write -P 0x11 0 4M"]);
    let top = dir.path().join("top.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on,cluster_size=64k",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        s(&top),
    ]);
    qemu_io(
        &top,
        &[
            "write -P 0xab 2k 4k",    // subclusters 1-2 of cluster 0; the others still read the base
            "write -z 20k 6k",        // zero subclusters 10-12 in the same cluster
            "write -z 128k 64k",      // a whole zero cluster
            "write -P 0xcd 200k 70k", // crossing a cluster boundary
            "write -c -P 0xee 1M 64k",
        ],
    );
    let info = check(&top);
    assert!(specific(&info).2);
    // The same subclusters without a backing file read as zeros; from the smallest cluster extended L2 allows
    // (512-byte subclusters) to the largest.
    for cluster in ["16k", "128k", "2M"] {
        let alone = dir.path().join(format!("alone-{cluster}.qcow2"));
        create(&alone, &format!("extended_l2=on,cluster_size={cluster}"), "4M");
        qemu_io(&alone, &["write -P 0xab 2k 4k", "write -z 20k 6k", "write -P 0xcd 4092k 4k"]);
        check(&alone);
        assert_map_matches_qemu(&alone);
    }
    assert_map_matches_qemu(&top);
}

#[test]
fn zero_clusters_hide_the_backing_file() {
    let dir = tmp();
    let base = dir.path().join("base.qcow2");
    create(&base, "", "2M");
    qemu_io(&base, &["write -P 0x77 0 2M"]);
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", s(&top)]);
    qemu_io(&top, &["write -z 64k 192k", "write -P 0x1 1M 4k"]);
    check(&top);
    assert_map_matches_qemu(&top);
}

#[test]
fn backing_chain_of_three_on_a_raw_base() {
    let dir = tmp();
    let base = dir.path().join("base.raw");
    common::sparse_raw(&base, 3 << 20, &[(0, 2 << 20), ((5 << 19) + 100, 5000)]);
    let mid = dir.path().join("mid.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", s(&mid), "4M"]);
    qemu_io(&mid, &["write -P 0x22 512k 512k", "write -z 1536k 64k"]);
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", "compat=0.10", "-b", "mid.qcow2", "-F", "qcow2", s(&top)]);
    qemu_io(&top, &["write -P 0x33 768k 64k", "write -P 0x44 3900k 10k"]);

    let info = check(&top);
    assert_eq!(info.backing_filename.as_deref(), Some("mid.qcow2"));
    assert_eq!(info.full_backing_filename.as_deref(), Some(s(&mid)));
    assert_eq!(info.backing_format.as_deref(), Some("qcow2"));
    let mut image = open(&top).unwrap();
    let mid_image = image.backing().expect("mid");
    assert_eq!(mid_image.info().backing_format.as_deref(), Some("raw"));
    let base_image = mid_image.backing().expect("base");
    assert_eq!(base_image.virtual_size(), 3 << 20);
}

#[test]
fn overlay_without_a_backing_format_probes_it() {
    let dir = tmp();
    let base = dir.path().join("base.qcow2");
    create(&base, "", "1M");
    qemu_io(&base, &["write -P 0x66 0 1M"]);
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", s(&top)]);
    qemu_io(&top, &["write -P 0x1 128k 64k"]);
    // qemu-img no longer creates such images; older ones exist. Turn the backing-format extension into an
    // unknown one, which readers skip.
    let mut bytes = std::fs::read(&top).unwrap();
    let at = bytes[..4096].windows(4).position(|w| w == [0xe2, 0x79, 0x2a, 0xca]).expect("backing format extension");
    bytes[at..at + 4].copy_from_slice(&[0x0b, 0xad, 0xf0, 0x0d]);
    std::fs::write(&top, &bytes).unwrap();
    let info = check(&top);
    assert_eq!((info.backing_format, info.backing_filename.as_deref()), (None, Some("base.qcow2")));
}

#[test]
fn odd_and_empty_virtual_sizes() {
    let dir = tmp();
    let billion = dir.path().join("billion.qcow2");
    create(&billion, "", "1000000000");
    qemu_io(&billion, &["write -P 0x9 0 4k", "write -P 0x8 999999488 512"]);
    assert_eq!(check(&billion).virtual_size, 1_000_000_000);

    // qemu-img rounds 100000 up to a sector, 100352; the header keeps what qemu wrote.
    let small = dir.path().join("small.qcow2");
    create(&small, "", "100000");
    qemu_io(&small, &["write -P 0x9 90k 2k", "write -P 0x7 99840 512"]);
    assert_eq!(check(&small).virtual_size, 100_352);

    let empty = dir.path().join("empty.qcow2");
    create(&empty, "", "0");
    let info = check(&empty);
    assert_eq!(info.virtual_size, 0);
    let mut image = open(&empty).unwrap();
    assert_eq!(Extents::all(image.as_mut()).count(), 0);
}

#[test]
fn two_tib_sparse_image_is_mapped_from_metadata_alone() {
    let dir = tmp();
    let big = dir.path().join("big.qcow2");
    create(&big, "", "2T");
    let end = (2u64 << 40) - 65536;
    qemu_io(&big, &["write -P 0x1 0 64k", &format!("write -P 0x2 {end} 64k")]);
    let started = std::time::Instant::now();
    let mut image = open(&big).unwrap();
    let extents: Vec<_> = Extents::all(image.as_mut()).map(|e| e.unwrap()).collect();
    let kinds: Vec<_> = extents.iter().map(|e| (e.offset, e.kind)).collect();
    assert_eq!(kinds, [(0, ExtentKind::Data), (65536, ExtentKind::Unallocated), (end, ExtentKind::Data)]);
    check(&big);
    assert!(started.elapsed().as_secs() < 20, "took {:?}", started.elapsed());
}

#[test]
fn backing_loop_is_an_error_not_a_hang() {
    let dir = tmp();
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "b.qcow2", "-F", "qcow2", s(&a), "1M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", s(&b), "1M"]);
    let e = open(&a).err().expect("a loop must not open");
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.message().contains("loops back") && e.message().contains("a.qcow2"), "{e}");
}

#[test]
fn missing_backing_file_is_named() {
    let dir = tmp();
    let top = dir.path().join("top.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2", s(&top), "1M"]);
    let e = open(&top).err().expect("missing backing file");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.message().contains(s(&dir.path().join("gone.qcow2"))), "{e}");
    assert_eq!(e.file(), Some(s(&top)));
}

#[test]
fn dirty_lazy_refcount_image_reads_with_a_warning() {
    let dir = tmp();
    let path = dir.path().join("lazy.qcow2");
    create(&path, "lazy_refcounts=on", "1M");
    qemu_io(&path, &["write -P 0x3 0 128k"]);
    // qemu clears the dirty bit on a clean close; set it as a crash would leave it.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[79] |= 1; // incompatible_features, bit 0
    std::fs::write(&path, &bytes).unwrap();
    let info = check(&path);
    assert!(info.dirty && !info.warnings.is_empty());
    assert_eq!(info.specific.as_ref().and_then(|s| s.flag("lazy-refcounts")), Some(true));
}

#[test]
fn unsupported_features_are_refused_by_name() {
    let dir = tmp();
    let luks = dir.path().join("luks.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "--object",
        "secret,id=s,data=x",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10",
        s(&luks),
        "1M",
    ]);
    let e = open(&luks).err().expect("encrypted");
    assert_eq!((e.kind(), e.message()), (ErrorKind::Unsupported, "Image is encrypted (LUKS)"));

    let data = dir.path().join("ext.qcow2");
    create(&data, &format!("data_file={}", s(&dir.path().join("ext.raw"))), "1M");
    let e = open(&data).err().expect("external data file");
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.message().contains("external data file") && e.message().contains("ext.raw"), "{e}");
}

/// `qemu-img map --output=json` as extents: data anywhere in the chain, zeros recorded, or nothing.
fn qemu_map(path: &Path) -> Vec<(u64, u64, ExtentKind)> {
    let json = qemu_img(&["map", "--output=json", s(path)]);
    let field = |line: &str, name: &str| -> String {
        let start = line.find(&format!("\"{name}\": ")).unwrap_or_else(|| panic!("{name} in {line}")) + name.len() + 4;
        line[start..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
    };
    let mut map: Vec<(u64, u64, ExtentKind)> = Vec::new();
    for line in json.lines().filter(|l| l.contains("\"start\"")) {
        let (start, length) = (field(line, "start").parse().unwrap(), field(line, "length").parse().unwrap());
        let kind = match (field(line, "present").as_str(), field(line, "data").as_str()) {
            (_, "true") => ExtentKind::Data,
            ("true", _) => ExtentKind::Zero,
            _ => ExtentKind::Unallocated,
        };
        match map.last_mut() {
            Some(last) if last.2 == kind && last.0 + last.1 == start => last.1 += length,
            _ => map.push((start, length, kind)),
        }
    }
    map
}

fn assert_map_matches_qemu(path: &Path) {
    let mut image = open(path).unwrap();
    let ours: Vec<_> = Extents::all(image.as_mut()).map(|e| e.map(|e| (e.offset, e.length, e.kind)).unwrap()).collect();
    assert_eq!(ours, qemu_map(path), "{}", path.display());
}

#[test]
fn extent_map_matches_qemu_img_map() {
    let dir = tmp();
    let path = dir.path().join("mixed.qcow2");
    mixed(&path, "");
    qemu_io(&path, &["write -c -P 0x12 2M 64k"]);
    assert_map_matches_qemu(&path);
}

/// Returns at most 1000 bytes a call, as a slow Blob might.
struct Trickle(Vec<u8>);

impl diskbridge::io::ReadAt for Trickle {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> diskbridge::Result<usize> {
        let n = buf.len().min(1000);
        diskbridge::io::ReadAt::read_at(self.0.as_slice(), offset, &mut buf[..n])
    }
}

/// Opens `bytes` as an image, walks its map and reads the whole guest disk.
fn read_all(bytes: Vec<u8>) -> diskbridge::Result<Vec<u8>> {
    let mut image =
        diskbridge::open::open("t.qcow2", Box::new(Trickle(bytes)), Format::from_name("qcow2").ok(), &NoFiles)?;
    for extent in Extents::all(image.as_mut()) {
        extent?;
    }
    let mut guest = vec![0u8; image.virtual_size() as usize];
    image.read_at(0, &mut guest)?;
    Ok(guest)
}

#[test]
fn truncated_copies_fail_or_read_the_same_never_differently() {
    let dir = tmp();
    for kind in ["zlib", "zstd"] {
        let path = dir.path().join(format!("{kind}.qcow2"));
        create(&path, &format!("cluster_size=4k,compression_type={kind}"), "2M");
        qemu_io(
            &path,
            &[
                "write -c -P 0x21 0 64k",
                "write -P 0x22 64k 64k",
                "write -z 128k 64k",
                "write -c -P 0x23 1M 8k",
                "write -P 0x24 2040k 8k",
            ],
        );
        let raw = dir.path().join(format!("{kind}.raw"));
        qemu_img(&["convert", "-f", "qcow2", "-O", "raw", s(&path), s(&raw)]);
        let bytes = std::fs::read(&path).unwrap();
        let reference = read_all(bytes.clone()).unwrap();
        assert!(reference == std::fs::read(&raw).unwrap(), "{kind}: full image differs from qemu-img's");
        let mut failures = 0;
        for len in (0..bytes.len()).step_by(bytes.len() / 400) {
            match read_all(bytes[..len].to_vec()) {
                Ok(guest) => assert!(guest == reference, "{kind} truncated at {len} reads different data"),
                Err(e) => {
                    assert!(matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::InvalidFormat), "{kind} at {len}: {e}");
                    failures += 1;
                }
            }
        }
        assert!(failures > 300, "{kind}: only {failures} truncations were noticed");
    }
}

/// A 4 KiB-cluster image with standard, compressed and zero clusters, and where its tables are.
struct Layout {
    bytes: Vec<u8>,
    l1: usize,
    l2: usize,
    compressed_entry: usize,
}

fn small_mixed_image(dir: &Path) -> Layout {
    let path = dir.join("victim.qcow2");
    create(&path, "cluster_size=4k", "1M");
    qemu_io(&path, &["write -P 0x22 0 8k", "write -c -P 0x23 8k 4k", "write -z 12k 4k"]);
    let bytes = std::fs::read(&path).unwrap();
    let be = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
    let l1 = be(40) as usize;
    let l2 = (be(l1) & 0x00ff_ffff_ffff_fe00) as usize;
    assert_eq!(be(l2 + 16) >> 62 & 1, 1, "cluster 2 is compressed");
    Layout { l1, l2, compressed_entry: l2 + 16, bytes }
}

#[test]
fn hostile_variants_of_a_real_image_fail_cleanly() {
    let dir = tmp();
    let v = small_mixed_image(dir.path());
    let compressed_at =
        (u64::from_be_bytes(v.bytes[v.compressed_entry..][..8].try_into().unwrap()) & ((1 << 58) - 1)) as usize;
    let eof = v.bytes.len() as u64;
    let cases: Vec<(&str, usize, Vec<u8>, ErrorKind)> = vec![
        ("bad magic", 0, b"QFI\0".to_vec(), ErrorKind::InvalidFormat),
        ("version 4", 4, 4u32.to_be_bytes().to_vec(), ErrorKind::Unsupported),
        ("cluster_bits 8", 20, 8u32.to_be_bytes().to_vec(), ErrorKind::Unsupported),
        ("cluster_bits 30", 20, 30u32.to_be_bytes().to_vec(), ErrorKind::Unsupported),
        ("cluster_bits 63", 20, 63u32.to_be_bytes().to_vec(), ErrorKind::Unsupported),
        ("huge L1", 36, 0x7fff_ffffu32.to_be_bytes().to_vec(), ErrorKind::LimitExceeded),
        ("tiny L1", 36, 0u32.to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("huge virtual size", 24, (1u64 << 60).to_be_bytes().to_vec(), ErrorKind::LimitExceeded),
        ("L1 beyond EOF", 40, (eof + 4096).next_multiple_of(4096).to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("L1 unaligned", 40, (v.l1 as u64 + 8).to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("huge header length", 100, 0xffff_fff8u32.to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("huge extension", 112, [0x1234_5678u32, 0x7fff_ffff].map(u32::to_be_bytes).concat(), ErrorKind::Corrupt),
        ("zstd type without its bit", 104, vec![1], ErrorKind::Corrupt),
        ("compression bit without zstd", 79, vec![8], ErrorKind::Corrupt),
        ("AES", 35, vec![1], ErrorKind::Unsupported),
        ("unknown feature", 72, vec![0x80], ErrorKind::Unsupported),
        ("L2 beyond EOF", v.l1, (eof.next_multiple_of(4096) + 4096).to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("L2 unaligned", v.l1, (v.l2 as u64 + 0x800).to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("data beyond EOF", v.l2, (eof.next_multiple_of(4096) + 8192).to_be_bytes().to_vec(), ErrorKind::Corrupt),
        ("data unaligned", v.l2, 0x5200u64.to_be_bytes().to_vec(), ErrorKind::Corrupt),
        (
            "compressed beyond EOF",
            v.compressed_entry,
            ((1u64 << 62) | (eof + 512)).to_be_bytes().to_vec(),
            ErrorKind::Corrupt,
        ),
        ("garbage compressed data", compressed_at, vec![0xff; 8], ErrorKind::Corrupt),
    ];
    for (what, at, patch, kind) in cases {
        let mut bytes = v.bytes.clone();
        bytes[at..at + patch.len()].copy_from_slice(&patch);
        let started = std::time::Instant::now();
        let e = read_all(bytes).err().unwrap_or_else(|| panic!("{what}: read fine"));
        assert_eq!(e.kind(), kind, "{what}: {e}");
        assert!(started.elapsed().as_secs() < 2, "{what}: took {:?}", started.elapsed());
    }
}

#[test]
fn random_corruption_of_the_metadata_never_panics() {
    let dir = tmp();
    let v = small_mixed_image(dir.path());
    let metadata = v.l2 + 4096; // header, refcounts, L1, L2
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut bytes = v.bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % metadata as u64) as usize;
            bytes[at] ^= 1 << (next() % 8);
        }
        // A flipped size bit can make the disk huge: walk its map, but read only a small one whole.
        let Ok(mut image) = diskbridge::open::open("t", Box::new(bytes), Format::from_name("qcow2").ok(), &NoFiles)
        else {
            continue;
        };
        let walked: Result<Vec<_>, _> = Extents::all(image.as_mut()).take(10_000).collect();
        if walked.is_ok() && image.virtual_size() <= 16 << 20 {
            let mut guest = vec![0u8; image.virtual_size() as usize];
            let _ = image.read_at(0, &mut guest);
        }
    }
}

#[test]
fn internal_snapshots_are_ignored_and_preallocation_reads_back() {
    let dir = tmp();
    let path = dir.path().join("snap.qcow2");
    create(&path, "", "4M");
    qemu_io(&path, &["write -P 0x1 0 1M"]);
    qemu_img(&["snapshot", "-c", "before", s(&path)]);
    qemu_io(&path, &["write -P 0x2 512k 1M", "write -z 0 64k"]);
    check(&path);
    assert_map_matches_qemu(&path);

    // A persistent dirty bitmap adds the bitmaps extension and autoclear bit 0; neither matters for reading.
    let bitmap = dir.path().join("bitmap.qcow2");
    create(&bitmap, "refcount_bits=1", "2M");
    qemu_img(&["bitmap", "--add", s(&bitmap), "b0"]);
    qemu_io(&bitmap, &["write -P 0x4 0 64k"]);
    check(&bitmap);

    for prealloc in ["metadata", "falloc"] {
        let path = dir.path().join(format!("{prealloc}.qcow2"));
        create(&path, &format!("preallocation={prealloc}"), "3M");
        qemu_io(&path, &["write -P 0x3 1M 4k"]);
        check(&path);
    }
}

#[test]
fn backing_file_in_another_directory_resolves_like_qemu() {
    let dir = tmp();
    std::fs::create_dir_all(dir.path().join("base")).unwrap();
    std::fs::create_dir_all(dir.path().join("top")).unwrap();
    let base = dir.path().join("base/b.qcow2");
    create(&base, "", "1M");
    qemu_io(&base, &["write -P 0x5 0 1M"]);
    let top = dir.path().join("top/t.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "../base/b.qcow2", "-F", "qcow2", s(&top)]);
    qemu_io(&top, &["write -P 0x6 64k 64k"]);
    let info = check(&top);
    assert_eq!(info.full_backing_filename.as_deref(), Some(s(&dir.path().join("top/../base/b.qcow2"))));
}

#[test]
fn chains_deeper_than_sixteen_are_refused() {
    let dir = tmp();
    create(&dir.path().join("0.qcow2"), "", "1M");
    for i in 1..=16 {
        let (below, path) = (format!("{}.qcow2", i - 1), dir.path().join(format!("{i}.qcow2")));
        qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", &below, "-F", "qcow2", s(&path), "1M"]);
    }
    check(&dir.path().join("15.qcow2")); // sixteen images
    let e = open(&dir.path().join("16.qcow2")).err().expect("seventeen images");
    assert_eq!(e.kind(), ErrorKind::LimitExceeded, "{e}");
}
