//! qcow2 output through the CLI, judged by qemu: `qemu-img check` clean, `qemu-img compare` identical,
//! `qemu-img info` as asked, for raw and qcow2 sources, every option, odd and empty sizes, a 2 TiB sparse
//! disk in a small file, and the same bytes whatever the thread count.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `diskbridge convert ARGS… -O qcow2 INPUT OUTPUT` with `threads` encoder threads; must succeed.
fn convert(args: &[&str], input: &Path, output: &Path, threads: usize) {
    let out = Command::new(diskbridge())
        .env("DISKBRIDGE_THREADS", threads.to_string())
        .args(["convert", "-O", "qcow2"])
        .args(args)
        .args([s(input), s(output)])
        .output()
        .unwrap();
    assert!(out.status.success(), "convert {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The output is a qcow2 qemu finds clean and identical to the source, and our own check agrees.
fn assert_good(source: &Path, output: &Path) {
    assert_check_clean(output);
    assert_same_guest(source, output);
    let ours = diskbridge_run(&["check", s(output)]);
    assert!(ours.status.success(), "diskbridge check: {}", String::from_utf8_lossy(&ours.stderr));
}

/// Fields of `qemu-img info --output=json`, through Python's json module.
fn info(path: &Path, keys: &str) -> String {
    let json = qemu_img(&["info", "--output=json", s(path)]);
    let script = format!("import json,sys; j=json.loads(sys.argv[1]); d=j['format-specific']['data']; print({keys})");
    ok("python3", &["-c", &script, &json]).trim().to_string()
}

fn raw_source(dir: &Path) -> PathBuf {
    let raw = dir.join("src.raw");
    // Data at the start, across an L2 boundary of 4 KiB clusters (2 MiB), in the middle and at the very end.
    sparse_raw(&raw, 8 << 20, &[(0, 70_000), ((2 << 20) - 3000, 6000), (5 << 20, 300_000), ((8 << 20) - 512, 512)]);
    raw
}

#[test]
fn every_option_from_a_raw_source() {
    let dir = tmp();
    let raw = raw_source(dir.path());
    let cases: &[(&[&str], &str)] = &[
        (&[], "65536 1.1 zlib False"),
        (&["-c"], "65536 1.1 zlib False"),
        (&["-o", "cluster_size=4096"], "4096 1.1 zlib False"),
        (&["-c", "-o", "cluster_size=4k"], "4096 1.1 zlib False"),
        // 512-byte clusters: a refcount block counts 128 KiB of file, so blocks land between the data.
        (&["-o", "cluster_size=512"], "512 1.1 zlib False"),
        (&["-c", "-o", "cluster_size=512"], "512 1.1 zlib False"),
        (&["-c", "-o", "cluster_size=2M"], "2097152 1.1 zlib False"),
        (&["-c", "-o", "compression_type=zstd"], "65536 1.1 zstd False"),
        (&["-o", "compression_type=zstd,lazy_refcounts=on"], "65536 1.1 zstd True"),
        (&["-c", "-o", "compat=0.10"], "65536 0.10 zlib False"),
        (&["-o", "preallocation=off,extended_l2=off,refcount_bits=16"], "65536 1.1 zlib False"),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{i}.qcow2"));
        convert(args, &raw, &out, 2);
        assert_good(&raw, &out);
        let got = info(
            &out,
            "j['cluster-size'], d['compat'], d.get('compression-type', 'zlib'), d.get('lazy-refcounts', False)",
        );
        assert_eq!(got, *expected, "{args:?}");
        assert_eq!(info(&out, "j['virtual-size'], j['format']"), "8388608 qcow2");
    }
    // Compressed output is smaller than plain, which holds each non-zero cluster whole.
    let size = |i: usize| std::fs::metadata(dir.path().join(format!("out{i}.qcow2"))).unwrap().len();
    assert!(size(1) < size(0) / 2, "{} vs {}", size(1), size(0));
}

#[test]
fn qcow2_sources_with_compressed_zero_and_odd_sized_tails() {
    let dir = tmp();
    let d = dir.path();
    let raw = raw_source(d);
    // A compressed source, with zero clusters and a discarded range written by qemu-io.
    let src = d.join("src.qcow2");
    qemu_img(&["convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "cluster_size=16k", s(&raw), s(&src)]);
    ok("qemu-io", &["-f", "qcow2", "-c", "write -z 5M 64k", "-c", "discard 0 16k", s(&src)]);
    // 1000000000 bytes: not a multiple of any cluster size; data up to the last byte.
    let odd = d.join("odd.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&odd), "1000000000"]);
    ok("qemu-io", &["-f", "qcow2", "-c", "write -P 7 999999000 1000", "-c", "write -P 9 0 4096", s(&odd)]);
    for source in [&src, &odd] {
        for args in [&[][..], &["-c"], &["-c", "-o", "compression_type=zstd,cluster_size=8k"]] {
            let out = d.join("out.qcow2");
            convert(args, source, &out, 2);
            assert_good(source, &out);
        }
    }
    // A raw source of 1000001 bytes reads as 1000448 (rounded up to a sector, the tail zero).
    let short = d.join("short.raw");
    std::fs::write(&short, pattern(1_000_001, 5)).unwrap();
    let out = d.join("short.qcow2");
    convert(&["-c"], &short, &out, 2);
    assert_check_clean(&out);
    assert_eq!(info(&out, "j['virtual-size']"), "1000448");
    let back = d.join("back.raw");
    qemu_img(&["convert", "-O", "raw", s(&out), s(&back)]);
    let mut expected = pattern(1_000_001, 5);
    expected.resize(1_000_448, 0);
    assert_eq!(std::fs::read(&back).unwrap(), expected);
}

#[test]
fn empty_disks() {
    let dir = tmp();
    let d = dir.path();
    let empty = d.join("empty.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&empty), "0"]);
    let out = d.join("out.qcow2");
    convert(&[], &empty, &out, 1);
    assert_good(&empty, &out);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), std::fs::metadata(&empty).unwrap().len(), "as qemu-img's");
    // create: a disk with nothing in it is metadata only.
    let created = d.join("created.qcow2");
    let r = diskbridge_run(&["create", "-f", "qcow2", "-o", "cluster_size=4096", s(&created), "1G"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_check_clean(&created);
    assert_eq!(info(&created, "j['virtual-size'], j['cluster-size']"), "1073741824 4096");
    assert!(std::fs::metadata(&created).unwrap().len() < 64 << 10);
}

#[test]
fn two_tib_sparse_disk_stays_small() {
    let dir = tmp();
    let d = dir.path();
    let src = d.join("big.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&src), "2T"]);
    let last = (2u64 << 40) - 65536;
    ok("qemu-io", &["-f", "qcow2", "-c", "write -P 1 0 1M", "-c", &format!("write -P 2 {last} 64k"), s(&src)]);
    for args in [&[][..], &["-c"]] {
        let out = d.join("out.qcow2");
        convert(args, &src, &out, 2);
        assert_good(&src, &out);
        let len = std::fs::metadata(&out).unwrap().len();
        assert!(len < 2 << 20, "{args:?}: {len} bytes for 1.06 MiB of data");
    }
}

#[test]
fn threads_and_runs_change_no_byte() {
    let dir = tmp();
    let d = dir.path();
    let raw = raw_source(d);
    for args in [&["-c"][..], &["-c", "-o", "compression_type=zstd"], &["-o", "cluster_size=1k"]] {
        let one = d.join("one.qcow2");
        let four = d.join("four.qcow2");
        let again = d.join("again.qcow2");
        convert(args, &raw, &one, 1);
        convert(args, &raw, &four, 4);
        convert(args, &raw, &again, 4);
        let bytes = std::fs::read(&one).unwrap();
        assert_eq!(bytes, std::fs::read(&four).unwrap(), "{args:?}: 1 vs 4 threads");
        assert_eq!(bytes, std::fs::read(&again).unwrap(), "{args:?}: two runs");
    }
}

#[test]
fn random_sources_and_options() {
    let dir = tmp();
    let d = dir.path();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for i in 0..12 {
        // Sizes not a multiple of any cluster; data runs of every length, incompressible or not.
        let size = 1 + next(16 << 20);
        let runs: Vec<(u64, usize)> = (0..next(12))
            .map(|_| {
                let at = next(size);
                (at, [1u64, 100, 4096, 70_000, 1 << 20][next(5) as usize].min(size - at) as usize)
            })
            .collect();
        let raw = d.join(format!("random{i}.raw"));
        sparse_raw(&raw, size, &runs);
        let mut options = vec![format!("cluster_size={}", [512, 1024, 4096, 65536, 262144, 2 << 20][next(6) as usize])];
        if next(3) == 0 {
            options.push("compression_type=zstd".into());
        }
        let options = options.join(",");
        let mut args = vec!["-o", options.as_str()];
        if next(2) == 0 {
            args.push("-c");
        }
        let out = d.join(format!("random{i}.qcow2"));
        convert(&args, &raw, &out, 1 + next(3) as usize);
        assert_good(&raw, &out);
    }
}

#[test]
fn refused_cleanly() {
    let dir = tmp();
    let d = dir.path();
    let raw = raw_source(d);
    let cases: &[(&[&str], &str)] = &[
        (&["convert", "-O", "qcow2", s(&raw), "-"], "must be a file"),
        (&["convert", "-c", "-O", "raw", s(&raw), "x.raw"], "Compression (-c) is not supported for raw"),
        (&["convert", "-O", "qcow2", "-o", "cluster_size=1M1", s(&raw), "x.qcow2"], "cluster_size"),
        (&["convert", "-O", "qcow2", "-o", "compat=0.10,compression_type=zstd", s(&raw), "x.qcow2"], "compat=1.1"),
        (&["convert", "-O", "qcow2", "-o", "preallocation=full", s(&raw), "x.qcow2"], "preallocation"),
        (&["convert", "-O", "qcow2", "-o", "bogus=1", s(&raw), "x.qcow2"], "Invalid parameter 'bogus'"),
    ];
    for (args, message) in cases {
        let out = Command::new(diskbridge()).current_dir(d).args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
    assert!(!d.join("x.qcow2").exists() && !d.join("x.raw").exists());
}
