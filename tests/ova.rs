//! OVA and OVF packages checked by readers we did not write: Python's tarfile and XML parser, hashlib, and
//! qemu-img on the extracted disk.

mod common;

use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn source(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("src.raw");
    sparse_raw(&raw, 40 << 20, &[(0, 300_000), (33 << 20, 1 << 20)]);
    raw
}

#[test]
fn ova_unpacks_verifies_and_holds_the_guest() {
    let dir = tmp();
    let raw = source(dir.path());
    let ova = dir.path().join("vm.ova");
    let out =
        diskbridge_run(&["convert", "-f", "raw", "-O", "ova", "-o", "cpus=4,controller=pvscsi", s(&raw), s(&ova)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let disks = check_ova(&ova, &unpacked, "SHA256");
    assert_eq!(disks, ["vm-disk1.vmdk"]);
    let disk = unpacked.join(&disks[0]);
    assert_same_guest(&raw, &disk);
    assert_check_clean(&disk);
    let ovf = std::fs::read_to_string(unpacked.join("vm.ovf")).unwrap();
    assert!(ovf.contains("<rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>"));
    assert!(ovf.contains("<rasd:VirtualQuantity>4</rasd:VirtualQuantity>"));
    assert!(ovf.contains(&format!("ovf:capacity=\"{}\"", 40 << 20)));
}

#[test]
fn ovf_writes_three_files_that_match_the_ova_members() {
    let dir = tmp();
    let raw = source(dir.path());
    std::fs::create_dir(dir.path().join("ovf")).unwrap();
    let ovf = dir.path().join("ovf/vm.ovf");
    let ova = dir.path().join("vm.ova");
    let env = [("DISKBRIDGE_SEED", "7"), ("SOURCE_DATE_EPOCH", "1700000000")];
    for (fmt, out) in [("ovf", &ovf), ("ova", &ova)] {
        let r = std::process::Command::new(diskbridge())
            .args(["convert", "-O", fmt, "-o", "hw=vmx-11", s(&raw), s(out)])
            .envs(env)
            .output()
            .unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    check_ova(&ova, &unpacked, "SHA1");
    let disk = std::fs::read(dir.path().join("ovf/vm-disk1.vmdk")).unwrap();
    assert_eq!(disk, std::fs::read(unpacked.join("vm-disk1.vmdk")).unwrap(), "same disk bytes");
    let manifest = std::fs::read_to_string(dir.path().join("ovf/vm.mf")).unwrap();
    assert!(manifest.starts_with("SHA1(vm.ovf)= "), "{manifest}");
    assert_same_guest(&raw, &dir.path().join("ovf/vm-disk1.vmdk"));
}

#[test]
fn ova_refuses_a_pipe() {
    let dir = tmp();
    let raw = source(dir.path());
    let r = diskbridge_run(&["convert", "-O", "ova", s(&raw), "-"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("seekable"), "{}", String::from_utf8_lossy(&r.stderr));
}

/// An OVA made by another tool (Python's tarfile) around a raw disk: read in place, disk chosen by `disk=N`.
#[test]
fn ova_inputs_are_read_in_place_one_disk_or_all() {
    let dir = tmp();
    let d = dir.path();
    let (one, two) = (d.join("one.raw"), d.join("two.raw"));
    sparse_raw(&one, 2 << 20, &[(4096, 10_000)]);
    sparse_raw(&two, 3 << 20, &[(1 << 20, 50_000)]);
    let ova = d.join("two-disks.ova");
    let pack = r#"
import sys, tarfile, io
ova, one, two = sys.argv[1:4]
ovf = b'''<?xml version="1.0"?><Envelope xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"><References>
<File ovf:href="a.img" ovf:id="f1"/><File ovf:href="b.img" ovf:id="f2"/></References><DiskSection>
<Disk ovf:diskId="d1" ovf:fileRef="f1"/><Disk ovf:diskId="d2" ovf:fileRef="f2"/></DiskSection></Envelope>'''
with tarfile.open(ova, 'w', format=tarfile.USTAR_FORMAT) as t:
    info = tarfile.TarInfo('vm.ovf'); info.size = len(ovf); t.addfile(info, io.BytesIO(ovf))
    t.add(one, 'a.img'); t.add(two, 'b.img')
"#;
    ok("python3", &["-c", pack, s(&ova), s(&one), s(&two)]);
    let out = d.join("disk.raw");
    let r = diskbridge_run(&["convert", "-O", "raw", "-o", "disk=2", s(&ova), s(&out)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_guest(&two, &out);
    let all = d.join("all.raw");
    let r = diskbridge_run(&["convert", "-O", "raw", s(&ova), s(&all)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_guest(&one, &all);
    assert_same_guest(&two, &d.join("all-disk2.raw"));
    let r = diskbridge_run(&["convert", "-O", "raw", "-o", "disk=3", s(&ova), s(&d.join("x.raw"))]);
    assert!(String::from_utf8_lossy(&r.stderr).contains("no disk 3"), "{}", String::from_utf8_lossy(&r.stderr));
}

/// diskbridge's own OVA converts back to the guest it came from.
#[test]
fn our_ova_reads_back() {
    let dir = tmp();
    let raw = source(dir.path());
    let ova = dir.path().join("vm.ova");
    assert!(diskbridge_run(&["convert", "-f", "raw", "-O", "ova", s(&raw), s(&ova)]).status.success());
    let back = dir.path().join("back.qcow2");
    let r = diskbridge_run(&["convert", "-O", "qcow2", s(&ova), s(&back)]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_same_guest(&raw, &back);
}
