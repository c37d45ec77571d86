//! Golden hashes: the exact bytes of each output format under a fixed DISKBRIDGE_SEED and SOURCE_DATE_EPOCH. A
//! restructuring of the code must leave every one of them unchanged; a deliberate change of an output's bytes
//! updates its hash here, in the same commit, saying why. (The OVA and OVF descriptors gained cloud-init's
//! ProductSection with issue 15.)

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
        ("vpc", convert(&qcow2, &out("o.vhd"), &["-O", "vpc"])),
        ("vpc fixed", convert(&qcow2, &out("f.vhd"), &["-O", "vpc", "-o", "subformat=fixed"])),
        ("vmdk grown", convert(&qcow2, &out("g.vmdk"), &["-O", "vmdk", "-o", "size=20M"])),
        ("ova", convert(&qcow2, &out("vm.ova"), &["-O", "ova"])),
        ("ova with a seed", convert(&qcow2, &out("login.ova"), &["-O", "ova", "--hostname", "golden"])),
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
        "vpc: f27d325301dc562e7d50cf2bd01a78463f465fc839eb8a7921d5f09db3fecd1e",
        "vpc fixed: d18a8595ba9582102410d5e0f99be0be9be87d788bc98223d15b4fb1230f76b6",
        "vmdk grown: 1ec9a09ddd593e1bc9caf03361ca623e7577d8b14e1f755ca8dc22e07bef79cd",
        "ova: ea2c4b31d16a0b256f65ed69adca401e8e877c6190b266190aaf4fb5b4811315",
        "ova with a seed: 218a5e7953b4c8cdc53732bc4d06bdbce8e143cb38ee5f3cee7db5f0dc06f559",
        "ovf: 9c82cbb3dda596e5c54bef3bf7120ce94f75c2f7163c4f60b0454ebf24d0bd82",
        "ovf disk: 47150dea7b07ceb9bc3d677a976106e6796383fa3d7932291773e078db387b7a",
        "ovf manifest: cae8ff836c5bc08da0be200ae05a69246a40c55b4323908f6b8ba5af18a8d093",
    ];
    assert_eq!(got, want, "\n{}", got.join("\n"));
}
