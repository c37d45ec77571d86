//! OVA and OVF packages checked by readers we did not write: Python's tarfile and XML parser, hashlib, and
//! qemu-img on the extracted disk.

mod common;

use common::*;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Unpacks `ova` into `into` with Python's tarfile and checks the package: member order, ustar headers,
/// the manifest's digests, `ovf:size` against the disk member, and well-formed XML. Prints the disk's name.
const CHECK_OVA: &str = r#"
import hashlib, sys, tarfile, xml.etree.ElementTree as ET
ova, into, algo = sys.argv[1], sys.argv[2], sys.argv[3]
with tarfile.open(ova, format=tarfile.USTAR_FORMAT) as t:
    members = t.getmembers()
    names = [m.name for m in members]
    assert names[0].endswith('.ovf'), names
    assert names[1].endswith('.vmdk') and names[2].endswith('.mf') and len(names) == 3, names
    assert all(m.isreg() and m.mode == 0o644 for m in members)
    t.extractall(into, filter='data')
root = ET.parse(f'{into}/{names[0]}').getroot()
ns = {'o': 'http://schemas.dmtf.org/ovf/envelope/1'}
f = root.find('o:References/o:File', ns)
href = f.get('{http://schemas.dmtf.org/ovf/envelope/1}href')
size = int(f.get('{http://schemas.dmtf.org/ovf/envelope/1}size'))
import os
assert href == names[1], (href, names)
assert size == os.path.getsize(f'{into}/{href}'), (size, os.path.getsize(f'{into}/{href}'))
lines = open(f'{into}/{names[2]}').read().splitlines()
assert len(lines) == 2, lines
for line in lines:
    alg, rest = line.split('(', 1)
    name, digest = rest.split(')= ')
    assert alg == algo, line
    assert hashlib.new(algo.lower(), open(f'{into}/{name}', 'rb').read()).hexdigest() == digest, line
print(href)
"#;

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
    let disk = ok("python3", &["-c", CHECK_OVA, s(&ova), s(&unpacked), "SHA256"]);
    let disk = unpacked.join(disk.trim());
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
    ok("python3", &["-c", CHECK_OVA, s(&ova), s(&unpacked), "SHA1"]);
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
