//! `diskbridge check` against `qemu-img check` on the same files: clean images made by qemu-img and by
//! diskbridge, and images with planted corruption and leaks. Exit status, human report and JSON must be
//! qemu-img's own.

mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Output;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

/// Runs both checks on `path` (human and JSON) and asserts they agree; returns the exit status and our
/// stderr (the per-cluster messages).
fn both(path: &Path) -> (i32, String) {
    let mut status = None;
    for form in ["--output=human", "--output=json"] {
        let ours = diskbridge_run(&["check", form, s(path)]);
        let theirs = run("qemu-img", &["check", form, s(path)]);
        let text = |o: &Output| String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(text(&ours), text(&theirs), "{form} {}", path.display());
        assert_eq!(code(&ours), code(&theirs), "{form} {}: {}", path.display(), String::from_utf8_lossy(&ours.stderr));
        status = Some((code(&ours), String::from_utf8_lossy(&ours.stderr).into_owned()));
    }
    status.unwrap()
}

fn be64(f: &std::fs::File, at: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, at).unwrap();
    u64::from_be_bytes(b)
}

/// Adds `delta` to the stored 16-bit refcount of host cluster `cluster` (which the first refcount block
/// covers).
fn bump_refcount(path: &Path, cluster: u64, delta: i32) {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(path).unwrap();
    let block = be64(&f, be64(&f, 48));
    let mut b = [0u8; 2];
    f.read_exact_at(&mut b, block + 2 * cluster).unwrap();
    let value = (i32::from(u16::from_be_bytes(b)) + delta) as u16;
    f.write_all_at(&value.to_be_bytes(), block + 2 * cluster).unwrap();
}

/// A 4 KiB-cluster image with two internal snapshots sharing some clusters with the active table (one
/// deleted in between, as users do).
fn with_snapshots(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("snapshots.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", s(&img), "20M"]);
    let io = |cmd: &str| ok("qemu-io", &["-f", "qcow2", "-c", cmd, s(&img)]);
    io("write -P 3 100k 300k");
    qemu_img(&["snapshot", "-c", "one", s(&img)]);
    io("write -P 5 200k 300k");
    qemu_img(&["snapshot", "-c", "two", s(&img)]);
    io("write -P 6 0 64k");
    qemu_img(&["snapshot", "-d", "one", s(&img)]);
    qemu_img(&["snapshot", "-c", "three", s(&img)]);
    img
}

#[test]
fn clean_images_from_qemu_and_from_diskbridge() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 6 << 20, &[(0, 200_000), (3 << 20, 70_000), ((6 << 20) - 4096, 4096)]);
    let mut images = Vec::new();
    for (name, options, compress) in [
        ("plain", "", false),
        ("compressed", "", true),
        ("zstd", "compression_type=zstd", true),
        ("small", "cluster_size=512", false),
        ("v2", "compat=0.10", false),
        ("bits1", "refcount_bits=1", false),
        ("bits64", "refcount_bits=64,cluster_size=4k", true),
    ] {
        let img = d.join(format!("{name}.qcow2"));
        let mut args = vec!["convert", "-q", "-O", "qcow2"];
        if compress {
            args.push("-c");
        }
        if !options.is_empty() {
            args.extend(["-o", options]);
        }
        qemu_img(&[&args[..], &[s(&raw), s(&img)]].concat());
        images.push(img);
    }
    images.push(with_snapshots(d));
    let empty = d.join("empty.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&empty), "0"]);
    images.push(empty);
    for (name, args) in [("ours.qcow2", &["-c"][..]), ("ours-plain.qcow2", &[])] {
        let img = d.join(name);
        let out = diskbridge_run(&[&["convert", "-O", "qcow2"], args, &[s(&raw), s(&img)]].concat());
        assert!(out.status.success());
        images.push(img);
    }
    for img in &images {
        assert_eq!(both(img), (0, String::new()), "{}", img.display());
    }
}

#[test]
fn random_histories_are_judged_as_qemu_img_judges_them() {
    let dir = tmp();
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for i in 0..12 {
        let img = dir.path().join(format!("random{i}.qcow2"));
        let cluster = [512u64, 4096, 65536, 2 << 20][next(4) as usize];
        let mut options = format!("cluster_size={cluster}");
        if next(3) == 0 {
            options += [",refcount_bits=1", ",refcount_bits=8", ",lazy_refcounts=on"][next(3) as usize];
        }
        qemu_img(&["create", "-q", "-f", "qcow2", "-o", &options, s(&img), "64M"]);
        // Writes, zero writes, discards and compressed writes, sometimes ended by a crash.
        let mut commands = Vec::new();
        for _ in 0..1 + next(20) {
            let at = next(64 << 11) * 512;
            let len = [512u64, 4096, 65536, 300_000, 1 << 20][next(5) as usize].min((64 << 20) - at);
            commands.push(match next(6) {
                0..=2 => format!("write -P {} {at} {len}", next(256)),
                3 => format!("write -z {at} {len}"),
                4 => format!("discard {at} {len}"),
                _ if cluster > 512 && at / cluster * cluster + cluster <= 64 << 20 => {
                    format!("write -c -P 9 {} {cluster}", at / cluster * cluster)
                }
                _ => format!("write -P 7 {at} {len}"),
            });
        }
        if next(6) == 0 {
            commands.push("abort".to_string());
        }
        let mut args = vec!["-f", "qcow2"];
        for c in &commands {
            args.extend(["-c", c.as_str()]);
        }
        args.push(s(&img));
        run("qemu-io", &args);
        both(&img);
    }
}

#[test]
fn planted_corruptions_and_leaks() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 4 << 20, &[(0, 300_000)]);
    let base = d.join("base.qcow2");
    let compressed = d.join("compressed.qcow2");
    qemu_img(&["convert", "-q", "-O", "qcow2", s(&raw), s(&base)]);
    qemu_img(&["convert", "-q", "-c", "-O", "qcow2", s(&raw), s(&compressed)]);
    // qemu's layout: header 0, refcount table 1, refcount block 2, L1 3, L2 4, data from 5.
    let variant = |name: &str, from: &Path, plant: &dyn Fn(&Path)| {
        let p = d.join(name);
        std::fs::copy(from, &p).unwrap();
        plant(&p);
        p
    };

    // A data cluster's refcount one too low: a corruption, and its COPIED flag now disagrees.
    let low = variant("low.qcow2", &base, &|p| bump_refcount(p, 5, -1));
    let (status, problems) = both(&low);
    assert_eq!(status, 2);
    assert!(problems.contains("ERROR cluster 5 refcount=0 reference=1"), "{problems}");
    assert!(problems.contains("ERROR OFLAG_COPIED data cluster"), "{problems}");

    // The L2 table's refcount one too high: a leak, and its COPIED flag disagrees (a corruption).
    let high = variant("high.qcow2", &base, &|p| bump_refcount(p, 4, 1));
    assert_eq!(both(&high).0, 2);

    // A cluster appended and counted that nothing uses: a leak only.
    let leak = variant("leak.qcow2", &base, &|p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len + 65536).unwrap();
        bump_refcount(p, len / 65536, 1);
    });
    let (status, problems) = both(&leak);
    assert_eq!(status, 3);
    assert!(problems.contains("Leaked cluster"), "{problems}");

    // The host cluster all compressed clusters share, counted once instead of by each.
    let shared = variant("shared.qcow2", &compressed, &|p| {
        let f = std::fs::File::open(p).unwrap();
        let l2 = be64(&f, be64(&f, 40)) & 0x00ff_ffff_ffff_fe00;
        let first = be64(&f, l2) & ((1 << 54) - 1);
        drop(f);
        bump_refcount(p, first / 65536, 1 - 5);
    });
    assert_eq!(both(&shared).0, 2);

    // In an image with snapshots: a cluster the snapshots share with the active table, counted once too few.
    let snapshots = with_snapshots(d);
    let shared_by_snapshots = variant("snapshots-low.qcow2", &snapshots, &|p| {
        let f = std::fs::File::open(p).unwrap();
        let l2 = be64(&f, be64(&f, 40)) & 0x00ff_ffff_ffff_fe00;
        let data = be64(&f, l2 + 8 * 30) & 0x00ff_ffff_ffff_fe00; // guest 120 KiB: written before any snapshot
        drop(f);
        bump_refcount(p, data / 4096, -1);
    });
    let (status, problems) = both(&shared_by_snapshots);
    assert_eq!(status, 2);
    assert!(problems.contains("refcount=2 reference=3"), "{problems}");

    // A real crash: lazy refcounts, qemu-io killed before it wrote the refcounts of what it allocated.
    let crashed = d.join("crashed.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", s(&crashed), "1M"]);
    run("qemu-io", &["-f", "qcow2", "-c", "write -P 3 0 128k", "-c", "abort", s(&crashed)]);
    let (status, problems) = both(&crashed);
    assert_eq!(status, 2);
    assert!(problems.contains("ERROR cluster 5 refcount=0 reference=1"), "{problems}");

    // A refcount block pointing into the data: a corruption (and every refcount read from it is wrong).
    let moved = variant("moved.qcow2", &base, &|p| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        f.write_all_at(&(5u64 * 65536).to_be_bytes(), 65536).unwrap();
    });
    assert_eq!(both(&moved).0, 2);
}

#[test]
fn damaged_tables_are_judged_as_qemu_img_judges_them() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 4 << 20, &[(0, 300_000)]);
    let base = d.join("base.qcow2");
    let compressed = d.join("compressed.qcow2");
    qemu_img(&["convert", "-q", "-O", "qcow2", s(&raw), s(&base)]);
    qemu_img(&["convert", "-q", "-c", "-O", "qcow2", s(&raw), s(&compressed)]);
    let put = |p: &Path, at: u64, value: u64| {
        std::fs::OpenOptions::new().write(true).open(p).unwrap().write_all_at(&value.to_be_bytes(), at).unwrap();
    };
    // qemu's layout: refcount table at 0x10000, L1 at 0x30000, the first L2 table at 0x40000, data at 0x50000.
    const COPIED: u64 = 1 << 63;
    let cases: &[(&str, &Path, u64, u64)] = &[
        ("L1 entry past the end of the file", &base, 0x30000, COPIED | 1 << 40),
        ("L1 entry unaligned: the table is walked where it points", &base, 0x30000, COPIED | 0x40200),
        ("L1 entry with reserved bits", &base, 0x30000, COPIED | 1 << 57 | 0x40000),
        ("data cluster past the end of the file", &base, 0x40000, COPIED | 1 << 40),
        ("data cluster unaligned", &base, 0x40000, COPIED | 0x50200),
        ("L2 entry with reserved bits", &base, 0x40008, COPIED | 1 << 56 | 0x60000),
        ("refcount block unaligned: its refcounts cannot be read", &base, 0x10000, 0x20200),
        ("refcount block past the end: its refcounts read as zeros", &base, 0x10000, 1 << 40),
        ("refcount table entry with reserved bits", &base, 0x10000, 0x20001),
        ("compressed cluster with the COPIED flag", &compressed, 0x40000, COPIED | 0x4000_0000_0005_0000),
    ];
    for (i, (what, from, at, value)) in cases.iter().enumerate() {
        let p = d.join(format!("damaged{i}.qcow2"));
        std::fs::copy(from, &p).unwrap();
        put(&p, *at, *value);
        let (status, _) = both(&p);
        assert_ne!(status, 0, "{what}");
    }
}

#[test]
fn truncated_copies_are_refused_or_judged_as_qemu_img_judges_them() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 4 << 20, &[(0, 200_000), (2 << 20, 300_000)]);
    let img = d.join("img.qcow2");
    qemu_img(&["convert", "-q", "-c", "-o", "cluster_size=4k", "-O", "qcow2", s(&raw), s(&img)]);
    let bytes = std::fs::read(&img).unwrap();
    let cut = d.join("cut.qcow2");
    for len in (0..bytes.len()).step_by(bytes.len() / 60).chain([bytes.len() - 1]) {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let start = std::time::Instant::now();
        let out = std::process::Command::new("sh")
            .args(["-c", "ulimit -v 262144; exec \"$0\" check -f qcow2 \"$1\""])
            .args([s(&diskbridge()), s(&cut)])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "cut at {len}: {err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "cut at {len}");
        // qemu-img reads past the end as zeros: we judge as it does, except that a cut through the header or
        // a table it names is refused (1, naming what is cut off).
        let theirs = run("qemu-img", &["check", "-f", "qcow2", s(&cut)]);
        if code(&out) == 1 {
            let named =
                ["Not a qcow2 image", "ends inside the qcow2 header", "table at", "Refcount table", "Snapshot table"];
            assert!(named.iter().any(|n| err.contains(n)), "cut at {len}: refused without naming the table: {err}");
        } else {
            assert_eq!(code(&out), code(&theirs), "cut at {len}: {err}");
            assert_eq!(out.stdout, theirs.stdout, "cut at {len}");
            assert_eq!(err, String::from_utf8_lossy(&theirs.stderr), "cut at {len}");
        }
    }
}

#[test]
fn formats_without_a_check_and_files_that_cannot_be_checked() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("disk.raw");
    sparse_raw(&raw, 1 << 20, &[(0, 512)]);
    let out = diskbridge_run(&["check", s(&raw)]);
    assert_eq!(code(&out), 1, "raw has nothing to check; never a fake clean");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not support checks"));
    assert!(out.stdout.is_empty());

    let truncated = d.join("truncated.qcow2");
    std::fs::write(&truncated, b"QFI\xfb\0\0\0\x03").unwrap();
    let out = diskbridge_run(&["check", "-f", "qcow2", s(&truncated)]);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated.qcow2"));

    // Only the file itself is checked: an overlay whose backing file is gone is still checked (qemu-img
    // cannot open it).
    let orphan = d.join("orphan.qcow2");
    qemu_img(&["create", "-q", "-u", "-f", "qcow2", "-b", "gone.qcow2", "-F", "qcow2", s(&orphan), "1M"]);
    let out = diskbridge_run(&["check", s(&orphan)]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));

    let out = diskbridge_run(&["check", s(&d.join("missing.qcow2"))]);
    assert_eq!(code(&out), 1);
    let out = diskbridge_run(&["check", "--output=xml", s(&raw)]);
    assert_eq!(code(&out), 1, "usage mistakes are 1 here: 2 means corruptions");
}

/// VMDK, VHDX and VHD have no refcounts: their check reads every table and allocated block through the
/// validating readers. Clean qemu-made files pass; planted damage in each is found (exit 2).
#[test]
fn structural_check_finds_planted_damage_in_vmdk_vhdx_and_vhd() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 4 << 20, &[(0, 300_000), (2 << 20, 100_000)]);
    let path = |name: &str| d.join(name).to_str().unwrap().to_string();
    // (file, format options, where to damage, bytes to write there)
    let cases: [(&str, &str, &str, u64, Vec<u8>); 3] = [
        // The first grain's compressed bytes (grains start at sector 128 in qemu's streamOptimized layout).
        ("s.vmdk", "vmdk", "subformat=streamOptimized", 0x10000 + 12 + 40, vec![0xff; 40]),
        // BAT entry 0 (the BAT is at 2 MiB in qemu's layout): fully present, 1 TiB into the file.
        ("d.vhdx", "vhdx", "subformat=dynamic", 2 << 20, ((1u64 << 40) | 6).to_le_bytes().to_vec()),
        // BAT entry 0 (after the footer copy and the dynamic header): a block far past the end.
        ("d.vhd", "vpc", "subformat=dynamic", 1536, 0x7fff_fff0u32.to_be_bytes().to_vec()),
    ];
    for (name, fmt, opts, at, bytes) in cases {
        qemu_img(&["convert", "-q", "-f", "raw", "-O", fmt, "-o", opts, &path("src.raw"), &path(name)]);
        let clean = diskbridge_run(&["check", &path(name)]);
        assert_eq!(clean.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&clean.stderr));
        let mut data = std::fs::read(d.join(name)).unwrap();
        data[at as usize..at as usize + bytes.len()].copy_from_slice(&bytes);
        let bad = format!("bad-{name}");
        std::fs::write(d.join(&bad), data).unwrap();
        let out = diskbridge_run(&["check", &path(&bad)]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("ERROR "), "{bad}");
    }
}

/// A truncated VMDK or VHDX: each grain or block past the cut is one error, named once, and the count is
/// the number of them — not one per grain of a table or per block of a run that happened to include it.
#[test]
fn truncated_vmdk_and_vhdx_report_each_lost_grain_or_block_once() {
    let dir = tmp();
    let d = dir.path();
    let src = d.join("x.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&src), "1G"]);
    for cmd in ["write -P 5 0 4M", "write -P 7 100M 4M", "write -P 9 600M 4M"] {
        ok("qemu-io", &["-f", "qcow2", "-c", cmd, s(&src)]);
    }
    // (format, where to cut, grains or blocks with data: 12 MiB in 64 KiB grains or 1 MiB blocks)
    for (fmt, cut, allocated) in [("vmdk", 100_000, 192), ("vhdx", 5_000_000, 12)] {
        let whole = d.join(format!("d.{fmt}"));
        assert!(diskbridge_run(&["convert", "-O", fmt, s(&src), s(&whole)]).status.success());
        // Every streamOptimized grain is compressed; VHDX compresses nothing.
        let clean = String::from_utf8_lossy(&diskbridge_run(&["check", s(&whole)]).stdout).into_owned();
        let compressed = if fmt == "vmdk" { "100.00%" } else { "0.00%" };
        assert!(clean.contains(&format!("fragmented, {compressed} compressed clusters")), "{fmt}: {clean}");
        let cut_path = d.join(format!("cut.{fmt}"));
        std::fs::write(&cut_path, &std::fs::read(&whole).unwrap()[..cut]).unwrap();
        let out = diskbridge_run(&["check", s(&cut_path)]);
        assert_eq!(code(&out), 2, "{fmt}");
        let errors: Vec<_> = String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect();
        let distinct: std::collections::BTreeSet<_> = errors.iter().collect();
        assert_eq!(distinct.len(), errors.len(), "{fmt}: {errors:#?}");
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(report.contains(&format!("\n{} errors were found", errors.len())), "{fmt}: {report}");
        // What is not lost is still read: the readable and the lost make up what was written.
        let readable: usize = report.lines().find_map(|l| l.split_once('/')).map_or(0, |(n, _)| n.parse().unwrap());
        assert_eq!(readable + errors.len(), allocated, "{fmt}: {report}");
    }
}

/// Spawns `diskbridge args` with stdout (and stderr unless `keep_stderr`) a pipe nobody reads any more, as
/// in `diskbridge check … 2>&1 | head` once head has had its lines.
fn run_into_closed_pipe(args: &[&str], keep_stderr: bool) -> Output {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe() just opened both descriptors, and nothing else owns them.
    let (read_end, write_end) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read_end);
    let mut command = std::process::Command::new(diskbridge());
    command.args(args).stdout(write_end.try_clone().unwrap());
    if !keep_stderr {
        command.stderr(write_end);
    }
    command.output().unwrap()
}

/// Output to a reader that went away is dropped, never a panic: the command ends with its own status.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 4 << 20, &[(0, 300_000), (2 << 20, 100_000)]);
    let vmdk = d.join("d.vmdk");
    assert!(diskbridge_run(&["convert", "-O", "vmdk", s(&raw), s(&vmdk)]).status.success());
    let cut = d.join("cut.vmdk");
    std::fs::write(&cut, &std::fs::read(&vmdk).unwrap()[..20_000]).unwrap();
    for (args, status) in [
        (&["check", s(&cut)][..], 2),
        (&["check", s(&vmdk)], 0),
        (&["info", s(&vmdk)], 0),
        (&["compare", s(&raw), s(&vmdk)], 0),
        (&["--help"], 0),
    ] {
        let out = run_into_closed_pipe(args, true);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(code(&out), status, "{args:?}: {err}");
        assert_eq!(code(&run_into_closed_pipe(args, false)), status, "{args:?} with stderr closed too");
    }
}
