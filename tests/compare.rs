//! `diskbridge compare` against `qemu-img compare`: the same verdicts, messages and exit codes.

mod common;

use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn both(args: &[&str]) -> ((Option<i32>, String), (Option<i32>, String)) {
    let ours = diskbridge_run(&[&["compare"], args].concat());
    let theirs = run("qemu-img", &[&["compare"], args].concat());
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    ((ours.status.code(), text(&ours)), (theirs.status.code(), text(&theirs)))
}

#[test]
fn a_changed_first_or_last_byte_of_a_multi_gib_image_is_found() {
    let dir = tmp();
    let d = dir.path();
    let base = d.join("base.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", s(&base), "6G"]);
    ok("qemu-io", &["-f", "qcow2", "-c", "write -P 0x11 3G 1M", s(&base)]);
    for (name, at) in [("first", "0"), ("last", "6442450943")] {
        let changed = d.join(format!("{name}.qcow2"));
        std::fs::copy(&base, &changed).unwrap();
        ok("qemu-io", &["-f", "qcow2", "-c", &format!("write -P 0x01 {at} 1"), s(&changed)]);
        let (ours, theirs) = both(&[s(&base), s(&changed)]);
        assert_eq!(ours, theirs, "{name} byte");
        assert_eq!(ours.0, Some(1));
    }
    let copy = d.join("copy.qcow2");
    qemu_img(&["convert", "-f", "qcow2", "-O", "qcow2", s(&base), s(&copy)]);
    let (ours, theirs) = both(&[s(&base), s(&copy)]);
    assert_eq!((ours.0, ours.1.as_str()), (Some(0), "Images are identical.\n"));
    assert_eq!(ours, theirs);
}

#[test]
fn size_mismatch_follows_qemu_img() {
    let dir = tmp();
    let d = dir.path();
    let (small, big) = (d.join("small.raw"), d.join("big.raw"));
    sparse_raw(&small, 1 << 20, &[(0, 4096)]);
    std::fs::copy(&small, &big).unwrap();
    std::fs::OpenOptions::new().write(true).open(&big).unwrap().set_len(2 << 20).unwrap();
    assert_eq!(both(&[s(&small), s(&big)]).0, both(&[s(&small), s(&big)]).1);
    assert_eq!(both(&["-s", s(&small), s(&big)]).0, (Some(1), "Strict mode: Image size mismatch!\n".into()));
    assert_eq!(both(&["-s", s(&small), s(&big)]).0, both(&["-s", s(&small), s(&big)]).1);
    let missing = diskbridge_run(&["compare", s(&small), s(&d.join("missing.raw"))]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn converted_outputs_compare_identical_to_their_source() {
    let dir = tmp();
    let d = dir.path();
    let raw = d.join("src.raw");
    sparse_raw(&raw, 8 << 20, &[(0, 100_000), (5 << 20, 70_000)]);
    for fmt in ["vmdk", "vhdx", "raw"] {
        let out = d.join(format!("out.{fmt}"));
        let r = diskbridge_run(&["convert", "-f", "raw", "-O", fmt, s(&raw), s(&out)]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        // Our readers and qemu-img's must both find the output identical to its source.
        let (ours, theirs) = both(&[s(&raw), s(&out)]);
        assert_eq!((ours.0, theirs.0), (Some(0), Some(0)), "{fmt}: {ours:?} {theirs:?}");
    }
}
