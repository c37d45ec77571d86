//! Every reader feeds every writer: each input kind (made by qemu-img, and by diskbridge itself) converts to
//! each output format, and qemu-img finds the result identical to the source.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The inputs: (name, path), all holding the guest of `src.raw`.
fn inputs(dir: &Path) -> (PathBuf, Vec<(String, PathBuf)>) {
    let raw = dir.join("src.raw");
    sparse_raw(&raw, 6 << 20, &[(0, 70_000), (2 << 20, 1 << 20), ((6 << 20) - 512, 512)]);
    let mut list = vec![("raw".to_string(), raw.clone())];
    for (name, fmt, opts) in [
        ("qcow2", "qcow2", "compat=1.1"),
        ("qcow2-v2", "qcow2", "compat=0.10"),
        ("vmdk-monolithicSparse", "vmdk", "subformat=monolithicSparse"),
        ("vmdk-streamOptimized", "vmdk", "subformat=streamOptimized"),
        ("vmdk-twoGbMaxExtentSparse", "vmdk", "subformat=twoGbMaxExtentSparse"),
        ("vmdk-monolithicFlat", "vmdk", "subformat=monolithicFlat"),
        ("vhdx-dynamic", "vhdx", "subformat=dynamic"),
        ("vhdx-fixed", "vhdx", "subformat=fixed"),
        ("vpc-dynamic", "vpc", "subformat=dynamic,force_size=on"),
        ("vpc-fixed", "vpc", "subformat=fixed,force_size=on"),
    ] {
        let path = dir.join(format!("in-{name}.{fmt}"));
        qemu_img(&["convert", "-q", "-f", "raw", "-O", fmt, "-o", opts, s(&raw), s(&path)]);
        list.push((name.to_string(), path));
    }
    for (name, fmt, opts) in [("ova", "ova", ""), ("ours-vhd-fixed", "vhd", "subformat=fixed")] {
        let path = dir.join(format!("in-{name}.{fmt}"));
        let r = diskbridge_run(&["convert", "-f", "raw", "-O", fmt, "-o", opts, s(&raw), s(&path)]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        list.push((name.to_string(), path));
    }
    (raw, list)
}

#[test]
fn every_input_converts_to_every_output() {
    let dir = tmp();
    let (raw, inputs) = inputs(dir.path());
    for (name, input) in &inputs {
        for fmt in ["raw", "qcow2", "vmdk", "vhdx", "vpc", "ova"] {
            let out = dir.path().join(format!("out-{name}.{fmt}"));
            let r = diskbridge_run(&["convert", "-O", fmt, s(input), s(&out)]);
            assert!(r.status.success(), "{name} → {fmt}: {}", String::from_utf8_lossy(&r.stderr));
            // qemu-img reads an OVA as raw tar bytes, so the OVA's disk is checked through our reader instead,
            // which the tests of the OVA itself hold to Python's tarfile and qemu-img.
            let check = if fmt == "ova" { dir.path().join(format!("back-{name}.qcow2")) } else { out.clone() };
            if fmt == "ova" {
                let r = diskbridge_run(&["convert", "-O", "qcow2", s(&out), s(&check)]);
                assert!(r.status.success(), "{name} → ova → qcow2: {}", String::from_utf8_lossy(&r.stderr));
            }
            let cmp = run("qemu-img", &["compare", "-F", "raw", s(&check), s(&raw)]);
            assert!(cmp.status.success(), "{name} → {fmt}: {}", String::from_utf8_lossy(&cmp.stdout));
            if fmt == "qcow2" {
                assert_check_clean(&out);
            }
            std::fs::remove_file(&out).unwrap();
        }
    }
}
