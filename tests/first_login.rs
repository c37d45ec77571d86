//! A converted cloud image that can be logged in to: an OVA or OVF carrying a NoCloud seed disk, an OVF whose
//! ProductSection asks the deployer for cloud-init's OVF keys, and a disk grown with `-o size=` — checked with
//! Python's tarfile and XML parser, qemu-img, blkid and mtools. (scripts/boot-test boots them.)

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn source(dir: &Path) -> PathBuf {
    let raw = dir.join("cloud.raw");
    sparse_raw(&raw, 24 << 20, &[(0, 300_000), (20 << 20, 1 << 20)]);
    raw
}

/// A public key file and a password file, made by ssh-keygen.
fn login_files(dir: &Path) -> (PathBuf, PathBuf) {
    let key = dir.join("id");
    ok("ssh-keygen", &["-q", "-t", "ed25519", "-N", "", "-C", "me@lab", "-f", s(&key)]);
    let password = dir.join("pw");
    std::fs::write(&password, "correct horse\n").unwrap();
    (dir.join("id.pub"), password)
}

fn run_seeded(args: &[&str]) -> std::process::Output {
    Command::new(diskbridge())
        .args(args)
        .env("DISKBRIDGE_SEED", "7")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap()
}

/// The ovf:key of every ProductSection property, and the VirtualHardwareSection's transport.
const PROPERTIES: &str = r#"
import sys, xml.etree.ElementTree as ET
O = '{http://schemas.dmtf.org/ovf/envelope/1}'
system = ET.parse(sys.argv[1]).getroot().find(f'{O}VirtualSystem')
keys = [(p.get(f'{O}key'), p.get(f'{O}userConfigurable')) for p in system.iter(f'{O}Property')]
print(keys, system.find(f'{O}VirtualHardwareSection').get(f'{O}transport'))
disks = [i.find('{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}Parent')
         for i in system.iter(f'{O}Item')
         if i.find('{http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData}ResourceType').text == '17']
print([d.text for d in disks])
"#;

#[test]
fn an_ova_with_the_login_inside_carries_the_seed_as_a_second_disk() {
    let dir = tmp();
    let raw = source(dir.path());
    let (key, password) = login_files(dir.path());
    let ova = dir.path().join("web.ova");
    let args = [
        "convert",
        "-O",
        "ova",
        "--hostname",
        "web-1",
        "--ssh-key",
        s(&key),
        "--password-file",
        s(&password),
        s(&raw),
        s(&ova),
    ];
    let out = run_seeded(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unpacked = dir.path().join("unpacked");
    assert_eq!(check_ova(&ova, &unpacked, "SHA256"), ["web-disk1.vmdk", "web-seed.vmdk"]);
    assert_same_guest(&raw, &unpacked.join("web-disk1.vmdk"));
    // Both disks on the SCSI controller (instance 3); no ProductSection, which would be a second source.
    let xml = ok("python3", &["-c", PROPERTIES, s(&unpacked.join("web.ovf"))]);
    assert_eq!(xml, "[] None\n['3', '3']\n");

    // The seed: a streamOptimized VMDK holding the FAT labelled CIDATA with the login in its user-data.
    let seed = unpacked.join("web-seed.vmdk");
    assert_check_clean(&seed);
    let seed_raw = dir.path().join("seed.raw");
    qemu_img(&["convert", "-O", "raw", s(&seed), s(&seed_raw)]);
    let blkid = ok("blkid", &["-p", s(&seed_raw)]);
    assert!(blkid.contains("LABEL=\"CIDATA\""), "{blkid}");
    let user_data = ok("mtype", &["-i", s(&seed_raw), "::user-data"]);
    let public_key = std::fs::read_to_string(&key).unwrap();
    assert!(user_data.starts_with("#cloud-config\n") && user_data.contains("web-1"), "{user_data}");
    assert!(user_data.contains(public_key.split_whitespace().nth(1).unwrap()), "{user_data}");
    assert!(!user_data.contains("correct horse"), "only the password's hash is written");

    // The same command, seed and epoch make the same package; `diskbridge seed` makes the same seed disk.
    let again = dir.path().join("again/web.ova");
    std::fs::create_dir(again.parent().unwrap()).unwrap();
    let out = run_seeded(&[&args[..args.len() - 1], &[s(&again)]].concat());
    assert!(out.status.success());
    assert!(std::fs::read(&ova).unwrap() == std::fs::read(&again).unwrap(), "reproducible");
    let alone = dir.path().join("alone.raw");
    let seed_args = ["seed", "--hostname", "web-1", "--ssh-key", s(&key), "--password-file", s(&password), s(&alone)];
    assert!(run_seeded(&seed_args).status.success());
    assert!(std::fs::read(&alone).unwrap() == std::fs::read(&seed_raw).unwrap(), "the seed command's disk");
}

#[test]
fn an_ovf_with_the_login_writes_the_seed_beside_it() {
    let dir = tmp();
    let raw = source(dir.path());
    let (key, _) = login_files(dir.path());
    let ovf = dir.path().join("vm.ovf");
    let out = run_seeded(&["convert", "-O", "ovf", "--ssh-key", s(&key), s(&raw), s(&ovf)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = std::fs::read_to_string(dir.path().join("vm.mf")).unwrap();
    let names: Vec<&str> = manifest.lines().map(|l| l.split(['(', ')']).nth(1).unwrap()).collect();
    assert_eq!(names, ["vm.ovf", "vm-disk1.vmdk", "vm-seed.vmdk"]);
    for name in &names[1..] {
        let digest = ok("sha256sum", &[s(&dir.path().join(name))]);
        assert!(manifest.contains(digest.split_whitespace().next().unwrap()), "{name}");
    }
    assert_check_clean(&dir.path().join("vm-seed.vmdk"));
}

#[test]
fn a_plain_ova_asks_the_deployer_for_cloud_inits_ovf_keys() {
    let dir = tmp();
    let raw = source(dir.path());
    let ova = dir.path().join("vm.ova");
    let out = run_seeded(&["convert", "-O", "ova", "-o", "name=Web Server", s(&raw), s(&ova)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unpacked = dir.path().join("unpacked");
    assert_eq!(check_ova(&ova, &unpacked, "SHA256"), ["vm-disk1.vmdk"]);
    let xml = ok("python3", &["-c", PROPERTIES, s(&unpacked.join("vm.ovf"))]);
    let keys = ["instance-id", "hostname", "public-keys", "password", "user-data"]
        .map(|k| format!("('{k}', 'true')"))
        .join(", ");
    assert_eq!(xml, format!("[{keys}] iso com.vmware.guestInfo\n['3']\n"));
    let descriptor = std::fs::read_to_string(unpacked.join("vm.ovf")).unwrap();
    assert!(
        descriptor
            .contains(r#"ovf:key="hostname" ovf:type="string" ovf:userConfigurable="true" ovf:value="web-server""#)
    );
}

#[test]
fn login_options_need_a_package() {
    let dir = tmp();
    let raw = source(dir.path());
    let out = diskbridge_run(&["convert", "-O", "vhdx", "--hostname", "web-1", s(&raw), s(&dir.path().join("x.vhdx"))]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("diskbridge seed"));
    let out = diskbridge_run(&["convert", "-O", "ova", "--hostname", "-bad-", s(&raw), s(&dir.path().join("x.ova"))]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("x.ova").exists() && !dir.path().join("x.vhdx").exists());
}

#[test]
fn a_disk_grows_to_the_size_asked_in_every_output_format() {
    let dir = tmp();
    let raw = source(dir.path());
    let grown = 64u64 << 20;
    for format in ["raw", "qcow2", "vmdk", "vhdx", "vpc"] {
        let out = dir.path().join(format!("grown.{format}"));
        let run = diskbridge_run(&["convert", "-O", format, "-o", "size=64M", s(&raw), s(&out)]);
        assert!(run.status.success(), "{format}: {}", String::from_utf8_lossy(&run.stderr));
        let info = qemu_img(&["info", "-f", format, "--output=json", s(&out)]);
        assert!(info.contains(&format!("\"virtual-size\": {grown},")), "{format}: {info}");
        // The source's bytes, then zeros to the new end (compare allows the longer image's tail to be zeros).
        let compare = qemu_img_output(&["compare", "-f", "raw", "-F", format, s(&raw), s(&out)]);
        assert!(compare.contains("Images are identical"), "{format}: {compare}");
    }
    let ova = dir.path().join("grown.ova");
    assert!(diskbridge_run(&["convert", "-O", "ova", "-o", "size=64M", s(&raw), s(&ova)]).status.success());
    let unpacked = dir.path().join("unpacked");
    check_ova(&ova, &unpacked, "SHA256");
    let ovf = std::fs::read_to_string(unpacked.join("grown.ovf")).unwrap();
    assert!(ovf.contains(&format!("ovf:capacity=\"{grown}\"")), "the OVF's capacity follows");

    let small = diskbridge_run(&["convert", "-O", "vmdk", "-o", "size=1M", s(&raw), s(&dir.path().join("s.vmdk"))]);
    assert_eq!(small.status.code(), Some(2));
    let err = String::from_utf8_lossy(&small.stderr);
    assert!(err.contains("size=1048576") && err.contains(&(24u64 << 20).to_string()), "{err}");
}

/// `qemu-img ARGS` whose stdout is wanted whatever its exit status says.
fn qemu_img_output(args: &[&str]) -> String {
    let out = run("qemu-img", args);
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}
