//! Boot-aware defaults: partition tables written by sfdisk (util-linux), read back through `info` and used
//! for the OVF firmware.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// A 64 MiB raw disk partitioned by sfdisk from `script`, with boot code in the MBR if `boot_code`.
fn disk(dir: &Path, name: &str, script: &str, boot_code: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::File::create(&path).unwrap().set_len(64 << 20).unwrap();
    if !script.is_empty() {
        let mut child = Command::new(require("sfdisk"))
            .args(["--quiet", "--no-reread", "--no-tell-kernel", path.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "sfdisk failed on {name}");
    }
    if boot_code {
        use std::os::unix::fs::FileExt;
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().write_all_at(&[0xEB, 0x63, 0x90], 0).unwrap();
    }
    path
}

fn guest_json(path: &Path) -> String {
    let out = diskbridge_run(&["info", "-f", "raw", "--output=json", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let start = text.find("\"guest\"").expect("guest key");
    text[start..].split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn info_reports_partition_table_and_boot_methods() {
    let dir = tmp();
    let d = dir.path();
    let hybrid = disk(
        d,
        "hybrid.raw",
        &format!("label: gpt\nsize=1MiB, type={BIOS_BOOT}\nsize=16MiB, type={ESP}\ntype={LINUX}\n"),
        true,
    );
    let esp_only = disk(d, "esp.raw", &format!("label: gpt\nsize=16MiB, type={ESP}\ntype={LINUX}\n"), false);
    let mbr = disk(d, "mbr.raw", "label: dos\ntype=83, bootable\n", true);
    let blank = disk(d, "blank.raw", "", false);
    assert_eq!(guest_json(&hybrid), r#""guest": { "partition-table": "gpt", "boot": [ "bios", "uefi" ] } }"#);
    assert_eq!(guest_json(&esp_only), r#""guest": { "partition-table": "gpt", "boot": [ "uefi" ] } }"#);
    assert_eq!(guest_json(&mbr), r#""guest": { "partition-table": "mbr", "boot": [ "bios" ] } }"#);
    assert_eq!(guest_json(&blank), r#""guest": { "partition-table": "none", "boot": [ ] } }"#);
}

#[test]
fn a_gpt_with_bad_header_checksums_is_reported_not_trusted() {
    let dir = tmp();
    let path = disk(dir.path(), "bad.raw", &format!("label: gpt\nsize=16MiB, type={ESP}\ntype={LINUX}\n"), false);
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        for header in [512u64, (64 << 20) - 512] {
            let mut crc = [0u8; 1];
            f.read_exact_at(&mut crc, header + 16).unwrap();
            f.write_all_at(&[crc[0] ^ 0xFF], header + 16).unwrap();
        }
    }
    let json = guest_json(&path);
    assert!(json.starts_with(r#""guest": { "partition-table": "mbr", "boot": [ ], "problems": [ "GPT primary header: header checksum mismatch""#), "{json}");
}

#[test]
fn ova_firmware_follows_the_guest() {
    let dir = tmp();
    let d = dir.path();
    let esp_only = disk(d, "esp.raw", &format!("label: gpt\nsize=16MiB, type={ESP}\ntype={LINUX}\n"), false);
    let hybrid =
        disk(d, "hybrid.raw", &format!("label: gpt\nsize=1MiB, type={BIOS_BOOT}\nsize=16MiB, type={ESP}\n"), true);
    for (src, firmware) in [(&esp_only, "efi"), (&hybrid, "bios")] {
        let ovf = d.join(format!("{firmware}.ovf"));
        let out = diskbridge_run(&["convert", "-f", "raw", "-O", "ovf", src.to_str().unwrap(), ovf.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let xml = std::fs::read_to_string(&ovf).unwrap();
        assert!(xml.contains(&format!(r#"vmw:key="firmware" vmw:value="{firmware}""#)), "{firmware}");
    }
}
