//! Backing chains whose levels differ in size. qemu reads the part of an overlay that lies beyond its backing
//! file's end as zeros; every output, `compare`, `check` and `info` must see the chain as qemu-img does.
//! qemu-img builds each chain (qcow2 backing files, VMDK delta disks) and is the judge of every output.

mod common;

use common::*;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Builds a chain of `format` images, base first, one per size (in MiB), and returns the top. The base is full of
/// data; each overlay writes its own pattern across its backing file's end (or its own end, when smaller), zeroes a
/// range that hides backing data, and leaves the rest to the chain — including, where it is larger, a stretch past
/// its backing file's end that only the zeros beyond that end can fill.
fn chain(dir: &Path, format: &str, sizes_mib: &[u64]) -> PathBuf {
    let mut below: Option<(PathBuf, u64)> = None;
    for (level, &size_mib) in sizes_mib.iter().enumerate() {
        let size = size_mib * MIB;
        let path = dir.join(format!("level{level}.{format}"));
        let mut create = vec!["create", "-q", "-f", format];
        let backing;
        if let Some((b, _)) = &below {
            backing = b.file_name().unwrap().to_str().unwrap().to_string();
            create.extend(["-b", &backing, "-F", format]);
        }
        let size_arg = size.to_string();
        create.extend([s(&path), &size_arg]);
        qemu_img(&create);
        let pattern = format!("0x{:x}", 0x11 * (level + 1));
        let writes = match below {
            None => vec![format!("write -P {pattern} 0 {size}")],
            Some((_, below_size)) => {
                let at = if below_size < size { below_size - MIB / 2 } else { size - MIB };
                vec![format!("write -z 0 {MIB}"), format!("write -P {pattern} {at} {MIB}")]
            }
        };
        let mut io = vec!["-f".to_string(), format.to_string()];
        for w in writes {
            io.extend(["-c".to_string(), w]);
        }
        io.push(s(&path).to_string());
        ok("qemu-io", &io.iter().map(String::as_str).collect::<Vec<_>>());
        below = Some((path, size));
    }
    below.unwrap().0
}

/// Every output format, `compare`, `check` and `info` see the chain's top as qemu-img does.
fn assert_read_like_qemu(top: &Path) {
    let dir = top.parent().unwrap();
    for format in ["raw", "qcow2", "vmdk", "vhdx"] {
        let out = dir.join(format!("out.{format}"));
        let result = diskbridge_run(&["convert", "-O", format, s(top), s(&out)]);
        assert!(result.status.success(), "-O {format}: {}", String::from_utf8_lossy(&result.stderr));
        assert_same_guest(top, &out);
        let ours = diskbridge_run(&["compare", s(top), s(&out)]);
        assert!(ours.status.success(), "diskbridge compare, {format}: {}", String::from_utf8_lossy(&ours.stdout));
    }
    let check = diskbridge_run(&["check", s(top)]);
    assert!(check.status.success(), "check: {}", String::from_utf8_lossy(&check.stdout));
    let info = diskbridge_run(&["info", "--backing-chain", "--output=json", s(top)]);
    assert!(info.status.success(), "info: {}", String::from_utf8_lossy(&info.stderr));
    let qemu = qemu_img(&["info", "--backing-chain", "--output=json", s(top)]);
    let sizes = |json: &str| {
        let script = "import json, sys; print([i['virtual-size'] for i in json.loads(sys.argv[1])])";
        ok("python3", &["-c", script, json])
    };
    assert_eq!(sizes(&String::from_utf8_lossy(&info.stdout)), sizes(&qemu));
}

#[test]
fn qcow2_overlays_larger_than_their_backing_files() {
    for sizes in [&[16, 24][..], &[16, 16, 24], &[8, 16, 24]] {
        let dir = tmp();
        assert_read_like_qemu(&chain(dir.path(), "qcow2", sizes));
    }
}

#[test]
fn qcow2_chain_whose_middle_level_shrinks() {
    let dir = tmp();
    assert_read_like_qemu(&chain(dir.path(), "qcow2", &[16, 8, 24]));
}

#[test]
fn vmdk_delta_disks_larger_than_their_parents() {
    for sizes in [&[16, 24][..], &[8, 16, 24], &[16, 8, 24]] {
        let dir = tmp();
        assert_read_like_qemu(&chain(dir.path(), "vmdk", sizes));
    }
}
