//! Hostile and broken input: every file here must end in one clear error line — within seconds, under a
//! 256 MiB address-space limit, with no panic — and never in an output file.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A valid 4 MiB qcow2 v3 with data, a zero cluster and compressed clusters, 64 KiB clusters.
fn valid(dir: &Path) -> PathBuf {
    let raw = dir.join("valid.raw");
    sparse_raw(&raw, 4 << 20, &[(0, 200_000), (2 << 20, 300_000)]);
    let img = dir.join("valid.qcow2");
    qemu_img(&["convert", "-c", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    ok("qemu-io", &["-f", "qcow2", "-c", "write -z 1M 64k", "-c", "write -P 0x5a 3M 64k", s(&img)]);
    img
}

/// A copy of `src` with big-endian `value` (`width` bytes) written at `offset`.
fn patched(src: &Path, dir: &Path, name: &str, offset: usize, width: usize, value: u64) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    bytes[offset..offset + width].copy_from_slice(&value.to_be_bytes()[8 - width..]);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn be64(bytes: &[u8], offset: usize) -> u64 {
    u64::from_be_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Converts `input` to raw under a 256 MiB address-space limit and asserts one specific error line.
fn assert_refused(input: &Path, keywords: &[&str]) {
    let out_path = input.with_extension("out.raw");
    let start = Instant::now();
    let out = Command::new("sh")
        .args(["-c", "ulimit -v 262144; exec \"$0\" convert -O raw \"$1\" \"$2\""])
        .args([s(&diskbridge()), s(input), s(&out_path)])
        .output()
        .unwrap();
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    let name = input.file_name().unwrap().to_string_lossy();
    assert_eq!(out.status.code(), Some(1), "{name}: expected exit 1, got {:?}: {err}", out.status);
    assert!(took < Duration::from_secs(10), "{name}: took {took:?}");
    assert!(!err.contains("panicked") && err.lines().count() == 1, "{name}: {err}");
    assert!(err.starts_with("diskbridge: "), "{name}: {err}");
    // The broken file is the input (or a file it refers to), never the output being written.
    let out_name = out_path.file_name().unwrap().to_string_lossy();
    assert!(!err.contains(&*out_name), "{name}: the error names the output: {err}");
    let lower = err.to_lowercase();
    assert!(keywords.iter().any(|k| lower.contains(&k.to_lowercase())), "{name}: none of {keywords:?} in: {err}");
    assert!(!out_path.exists(), "{name}: left an output behind");
}

#[test]
fn corrupt_headers_are_refused_with_specific_errors() {
    let dir = tmp();
    let d = dir.path();
    let v = valid(d);
    let bytes = std::fs::read(&v).unwrap();
    let l1_offset = be64(&bytes, 40);
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (patched(&v, d, "version4.qcow2", 4, 4, 4), &["version"]),
        (patched(&v, d, "cluster_bits8.qcow2", 20, 4, 8), &["cluster"]),
        (patched(&v, d, "cluster_bits30.qcow2", 20, 4, 30), &["cluster"]),
        (patched(&v, d, "cluster_bits63.qcow2", 20, 4, 63), &["cluster"]),
        (patched(&v, d, "huge_l1.qcow2", 36, 4, 0x7fff_ffff), &["L1"]),
        (patched(&v, d, "tiny_l1.qcow2", 36, 4, 0), &["L1"]),
        (patched(&v, d, "l1_beyond_eof.qcow2", 40, 8, 1 << 40), &["L1", "end of file", "outside", "beyond"]),
        (patched(&v, d, "l1_unaligned.qcow2", 40, 8, l1_offset + 8), &["L1", "align"]),
        (patched(&v, d, "huge_header_length.qcow2", 100, 4, 0x1000_0000), &["header"]),
        (patched(&v, d, "refcount_order7.qcow2", 96, 4, 7), &["refcount"]),
        (patched(&v, d, "aes.qcow2", 32, 4, 1), &["encrypt", "AES"]),
        (patched(&v, d, "unknown_incompat_bit.qcow2", 72, 8, 1 << 40), &["feature", "incompatible"]),
        (patched(&v, d, "compression_bit_without_type.qcow2", 72, 8, 1 << 3), &["compression"]),
        (patched(&v, d, "huge_virtual_size.qcow2", 24, 8, u64::MAX - 511), &["size", "L1"]),
    ];
    for (path, keywords) in cases {
        assert_refused(&path, keywords);
    }
}

#[test]
fn corrupt_tables_and_data_are_refused() {
    let dir = tmp();
    let d = dir.path();
    let v = valid(d);
    let bytes = std::fs::read(&v).unwrap();
    let l1_offset = be64(&bytes, 40) as usize;
    let l2_offset = (be64(&bytes, l1_offset) & 0x00ff_ffff_ffff_fe00) as usize;
    // L1[0] → an L2 table far beyond the end of the file.
    assert_refused(
        &patched(&v, d, "l2_beyond_eof.qcow2", l1_offset, 8, 1 << 45),
        &["L2", "end of file", "outside", "beyond"],
    );
    // L2[0] (a compressed cluster) → its payload replaced by garbage.
    let entry = be64(&bytes, l2_offset);
    assert!(entry & (1 << 62) != 0, "fixture's first cluster is compressed");
    let coffset = (entry & ((1 << 54) - 1)) as usize;
    let mut garbage = bytes.clone();
    garbage[coffset..coffset + 64].fill(0xff);
    let g = d.join("garbage_deflate.qcow2");
    std::fs::write(&g, garbage).unwrap();
    assert_refused(&g, &["compress", "deflate", "inflate"]);
    // L2[1] → a data cluster beyond the end of the file.
    assert_refused(
        &patched(&v, d, "data_beyond_eof.qcow2", l2_offset + 8, 8, (1 << 63) | (1 << 40)),
        &["end of file", "outside", "beyond", "cluster"],
    );
}

#[test]
fn chains_that_loop_or_miss_a_file_are_refused() {
    let dir = tmp();
    let d = dir.path();
    qemu_img(&["create", "-q", "-f", "qcow2", s(&d.join("a.qcow2")), "1M"]);
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", s(&d.join("b.qcow2"))]);
    // Point a back at b with qemu-img's unsafe rebase: a loop qemu-img itself would hang on.
    qemu_img(&["rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", s(&d.join("a.qcow2"))]);
    assert_refused(&d.join("b.qcow2"), &["loop"]);
    qemu_img(&[
        "create",
        "-q",
        "-u",
        "-f",
        "qcow2",
        "-b",
        "gone.qcow2",
        "-F",
        "qcow2",
        s(&d.join("orphan.qcow2")),
        "1M",
    ]);
    assert_refused(&d.join("orphan.qcow2"), &["gone.qcow2"]);
}

#[test]
fn unsupported_features_are_named() {
    let dir = tmp();
    let d = dir.path();
    let luks = d.join("luks.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "--object",
        "secret,id=s0,data=pw",
        "-f",
        "qcow2",
        "-o",
        "encrypt.format=luks,encrypt.key-secret=s0",
        s(&luks),
        "1M",
    ]);
    assert_refused(&luks, &["LUKS", "encrypt"]);
    let data_file = d.join("external.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", s(&d.join("external.data"))),
        s(&data_file),
        "1M",
    ]);
    std::fs::remove_file(d.join("external.data")).unwrap();
    assert_refused(&data_file, &["external data file", "data file"]);
}

#[test]
fn files_that_are_not_images_or_are_cut_short() {
    let dir = tmp();
    let d = dir.path();
    let v = valid(d);
    let bytes = std::fs::read(&v).unwrap();
    for (i, cut) in [4usize, 71, 104, 500, 0x10000, 0x30008, bytes.len() / 2, bytes.len() - 1].into_iter().enumerate() {
        let path = d.join(format!("cut{i}.qcow2"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        assert_refused(&path, &["end of file", "truncated", "short", "beyond", "outside", "header", "L1", "L2"]);
    }
    // The block tables of a VHDX and a VHD pointing past the end of a cut file: found while reading, and
    // reported under the input's name.
    for format in ["vhdx", "vpc"] {
        let whole = d.join(format!("whole.{format}"));
        qemu_img(&["convert", "-f", "qcow2", "-O", format, s(&v), s(&whole)]);
        let bytes = std::fs::read(&whole).unwrap();
        let cut = d.join(format!("cut.{format}"));
        std::fs::write(&cut, &bytes[..bytes.len() * 3 / 4]).unwrap();
        let out = diskbridge_run(&["convert", "-O", "raw", s(&cut), s(&d.join("cut.raw"))]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{format}: {err}");
        assert!(err.starts_with(&format!("diskbridge: {}: ", cut.display())), "{format}: {err}");
    }
    let text = d.join("notes.qcow2");
    std::fs::write(&text, b"just some text, not a disk image").unwrap();
    let out = diskbridge_run(&["convert", "-f", "qcow2", "-O", "raw", s(&text), s(&d.join("t.raw"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).to_lowercase().contains("qcow2"));
}

/// The library, in-process: every cut of every fixture opens and reads to an error or a value, never a panic.
#[test]
fn truncation_sweep_never_panics() {
    use diskbridge::chain::NoFiles;
    use diskbridge::image::Extents;
    use diskbridge::open::open;
    let dir = tmp();
    let v = valid(dir.path());
    let bytes = std::fs::read(&v).unwrap();
    let step = (bytes.len() / 400).max(1);
    for cut in (0..bytes.len()).step_by(step) {
        let Ok(mut image) = open("cut.qcow2", Box::new(bytes[..cut].to_vec()), None, &NoFiles) else {
            continue;
        };
        let mut buf = vec![0u8; 64 << 10];
        let extents: Vec<_> = Extents::all(image.as_mut()).filter_map(Result::ok).collect();
        for e in extents {
            let len = e.length.min(buf.len() as u64) as usize;
            let _ = image.read_at(e.offset, &mut buf[..len]);
        }
    }
}

/// Found by the fuzzer (read_image, crash-752874ba…): an OVA member header whose 8-byte checksum field sets the
/// GNU base-256 flag made the number parser slice past its start and panic.
#[test]
fn an_ova_header_with_a_base_256_checksum_is_refused() {
    let dir = tmp();
    let raw = dir.path().join("d.raw");
    sparse_raw(&raw, 1 << 20, &[(0, 4096)]);
    let ova = dir.path().join("vm.ova");
    let out = diskbridge_run(&["convert", "-O", "ova", s(&raw), s(&ova)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for (name, value) in [("base256.ova", 0x80), ("base256-negative.ova", 0xff)] {
        let path = patched(&ova, dir.path(), name, 148, 1, value);
        assert_refused(&path, &["checksum", "tar"]);
    }
}
