//! Golden hashes: the exact bytes of each output format under a fixed DISKBRIDGE_SEED and SOURCE_DATE_EPOCH. A
//! restructuring of the code must leave every one of them unchanged; a deliberate change of an output's bytes
//! updates its hash here, in the same commit, saying why.

mod common;

use common::*;
use sha2::{Digest, Sha256};
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// 12 MiB: pattern data, an all-zero stretch that is stored (so only zero detection leaves it out), a hole, and a
/// short tail past the last whole MiB.
fn source(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("source.raw");
    let mut data = pattern(12 << 20, 7);
    data[(3 << 20)..(5 << 20)].fill(0);
    data[(8 << 20)..(10 << 20)].fill(0);
    data.truncate((12 << 20) - 3 * 512);
    std::fs::write(&raw, &data).unwrap();
    raw
}

fn convert(input: &Path, output: &Path, args: &[&str]) -> Vec<u8> {
    let mut all = vec!["convert"];
    all.extend_from_slice(args);
    all.extend([s(input), s(output)]);
    let out = std::process::Command::new(diskbridge())
        .args(&all)
        .env("DISKBRIDGE_SEED", "42")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{all:?}: {}", String::from_utf8_lossy(&out.stderr));
    if output == Path::new("-") { out.stdout } else { std::fs::read(output).unwrap() }
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_output_keeps_its_bytes() {
    let dir = tmp();
    let raw = source(dir.path());
    let qcow2 = dir.path().join("input.qcow2");
    convert(&raw, &qcow2, &["-c", "-O", "qcow2"]);
    let out = |name: &str| dir.path().join(name);
    let stdout = Path::new("-");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("raw", convert(&qcow2, &out("o.raw"), &["-O", "raw"])),
        ("qcow2", convert(&raw, &out("o.qcow2"), &["-O", "qcow2"])),
        ("qcow2 -c", std::fs::read(&qcow2).unwrap()),
        ("qcow2 zstd", convert(&raw, &out("z.qcow2"), &["-c", "-O", "qcow2", "-o", "compression_type=zstd"])),
        ("vmdk", convert(&qcow2, &out("o.vmdk"), &["-O", "vmdk"])),
        (
            "vmdk seed line",
            convert(
                &qcow2,
                &out("disk-0.vmdk"),
                &["-O", "vmdk", "-o", "adapter_type=lsilogic,subformat=streamOptimized,compat6"],
            ),
        ),
        ("vmdk stdout", convert(&qcow2, stdout, &["-O", "vmdk"])),
        ("vhdx", convert(&qcow2, &out("o.vhdx"), &["-O", "vhdx"])),
        ("vhdx stdout", convert(&qcow2, stdout, &["-O", "vhdx"])),
        ("vhdx fixed", convert(&qcow2, &out("f.vhdx"), &["-O", "vhdx", "-o", "subformat=fixed"])),
        ("ova", convert(&qcow2, &out("vm.ova"), &["-O", "ova"])),
        ("ovf", convert(&qcow2, &out("vm.ovf"), &["-O", "ovf"])),
        ("ovf disk", std::fs::read(out("vm-disk1.vmdk")).unwrap()),
        ("ovf manifest", std::fs::read(out("vm.mf")).unwrap()),
    ];
    let got: Vec<String> = cases.iter().map(|(name, bytes)| format!("{name}: {}", sha256(bytes))).collect();
    let want = [
        "raw: 26bb228006375f99e8078a7bed7c922569c24a7c4c1b8e9cffe7781f5dca47c7",
        "qcow2: fc919090a9d0ba03dced81244fdd631811fef8a05ad1af90d17857978f9a8a71",
        "qcow2 -c: 7cc7510ccd12ff606a27162aa90fc43574574769b31784a41d047c222553ae73",
        "qcow2 zstd: b7269fc54dd74544472b4126300a8daf18abc5f1db67d532b5bb09021c97af2d",
        "vmdk: 4da81cf2611fc3ffbf8a8e99310e51aff8d543dd7ea7b068e18afa1fc28f9288",
        "vmdk seed line: 707b6ce0e93ee40e5d2da6108276902ea0f8e3ab272dce2b4048fbbc46b8d1a0",
        "vmdk stdout: 51960bc5adfbadb0b97433da0c33f6ec1a69d00db4db14889693190b6f32cb35",
        "vhdx: 9d9e73a52e65d0829aa32775eabc4b94a9e4beb65da0294cfb990b4f0b60add4",
        "vhdx stdout: 9d9e73a52e65d0829aa32775eabc4b94a9e4beb65da0294cfb990b4f0b60add4",
        "vhdx fixed: d12313a03132ab2304df792320cc1f1c5f1361a8e69e8aa673c04640d12d81cf",
        "ova: 4c017f7bbb63c8532a53c38f9e46f3246c0394c95212a4a946f7e091a8ba5b11",
        "ovf: aa60de2098fb4b70e2fe803f1adfa866fbb54f97cad83f42a87ce7af6eba5e46",
        "ovf disk: 47150dea7b07ceb9bc3d677a976106e6796383fa3d7932291773e078db387b7a",
        "ovf manifest: e2bf02275b3e439672504ccd9517dc1b29a434477797c1174c0d4f77124071d9",
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
}
