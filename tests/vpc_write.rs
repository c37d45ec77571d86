//! VHD output (`-O vpc`/`vhd`) from every input format, checked against qemu-img (compare, info — also in the
//! CHS-sized reading qemu before 10.0 gives unknown creators), libvhdi (vhdiinfo, and its Python bindings reading
//! every byte back), and diskbridge's own info and check. `qemu-img check` does not apply: qemu has no check
//! for vpc.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MIB: u64 = 1 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the CLI with a fixed seed and epoch, so outputs are reproducible.
fn diskbridge_seeded(args: &[&str], seed: &str) -> Output {
    Command::new(diskbridge())
        .args(args)
        .env("DISKBRIDGE_SEED", seed)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .expect("run diskbridge")
}

/// `diskbridge convert -O FORMAT -o OPTIONS input output`, which must succeed; returns its stderr.
fn convert(input: &Path, output: &Path, format: &str, options: &str) -> String {
    let out = diskbridge_seeded(&["convert", "-O", format, "-o", options, s(input), s(output)], "7");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "convert {} -O {format} -o {options}: {stderr}", input.display());
    stderr
}

/// The top-level `"key": value` of qemu-img's or diskbridge's JSON (qemu's nested protocol layer comes first).
fn json_value(json: &str, key: &str) -> String {
    let pat = format!("\n    \"{key}\": ");
    let at = json.find(&pat).unwrap_or_else(|| panic!("no {key} in {json}")) + pat.len();
    json[at..].split([',', '\n']).next().unwrap().trim_matches('"').to_string()
}

/// qemu-img's virtual size for `vhd`, as qemu 10 reads it, and as it reads when told to size the disk by its
/// CHS geometry — what qemu before 10.0 does for every creator application it does not know.
fn qemu_sizes(vhd: &Path) -> (u64, u64) {
    let now = qemu_img(&["info", "--output=json", "-f", "vpc", s(vhd)]);
    let opts = format!("driver=vpc,force_size_calc=chs,file.filename={}", s(vhd));
    let chs = qemu_img(&["info", "--output=json", "--image-opts", &opts]);
    (json_value(&now, "virtual-size").parse().unwrap(), json_value(&chs, "virtual-size").parse().unwrap())
}

/// libvhdi's Python bindings (Debian's python3-libvhdi, for the system Python) read `size` bytes of `vhd` and
/// compare them, a MiB at a time, with `raw` followed by zeros.
const LIBVHDI_READ_ALL: &str = r#"
import sys, pyvhdi
vhd, raw, size, disk_type = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
f = pyvhdi.file()
f.open(vhd)
if f.get_media_size() != size or f.get_disk_type() != disk_type:
    sys.exit(f"libvhdi: media size {f.get_media_size()}, disk type {f.get_disk_type()}")
with open(raw, "rb") as src:
    pos = 0
    while pos < size:
        n = min(1 << 20, size - pos)
        want = src.read(n)
        want += bytes(n - len(want))
        if f.read_buffer_at_offset(n, pos) != want:
            sys.exit(f"libvhdi reads different bytes in the MiB at {pos}")
        pos += n
"#;

fn libvhdi_reads_all(vhd: &Path, raw: &Path, size: u64, fixed: bool) {
    let python = Path::new("/usr/bin/python3");
    assert!(python.exists(), "/usr/bin/python3 is needed for python3-libvhdi; ./scripts/install-deps installs it");
    let disk_type = if fixed { "2" } else { "3" };
    let out = Command::new(python)
        .args(["-c", LIBVHDI_READ_ALL, s(vhd), s(raw), &size.to_string(), disk_type])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}\n(python3-libvhdi missing? ./scripts/install-deps installs it)",
        vhd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every check on a VHD made from `raw`: each reader finds `size` bytes (the source's, or the fixed disk's
/// rounded size), the source's bytes and zeros after them.
fn verify(raw: &Path, vhd: &Path, size: u64, fixed: bool) {
    let out = run("qemu-img", &["compare", "-f", "raw", "-F", "vpc", s(raw), s(vhd)]);
    assert!(out.status.success(), "qemu-img compare {}: {}", vhd.display(), String::from_utf8_lossy(&out.stdout));
    assert_eq!(qemu_sizes(vhd), (size, size), "qemu-img's sizes for {}", vhd.display());
    let info = ok("vhdiinfo", &[s(vhd)]);
    assert!(info.contains(&format!("({size} bytes)")), "vhdiinfo media size:\n{info}");
    let kind = if fixed { "Fixed" } else { "Dynamic" };
    assert!(info.contains(&format!("Disk type\t\t: {kind}")), "vhdiinfo disk type:\n{info}");
    libvhdi_reads_all(vhd, raw, size, fixed);

    let ours = diskbridge_run(&["info", "--output=json", s(vhd)]);
    let json = String::from_utf8_lossy(&ours.stdout);
    assert_eq!(json_value(&json, "format"), "vpc", "{json}");
    assert_eq!(json_value(&json, "virtual-size"), size.to_string());
    assert!(json.contains(&format!("\"subformat\": \"{}\"", kind.to_lowercase())), "{json}");
    assert!(json.contains("\"creator\": \"dbrg\""), "{json}");
    let check = diskbridge_run(&["check", s(vhd)]);
    assert!(check.status.success(), "diskbridge check: {}", String::from_utf8_lossy(&check.stdout));
}

/// Not whole MiB, no CHS geometry: data at the start, across the 2 MiB block boundary, in the last sector.
const ODD_SIZE: u64 = 10 * MIB + 7 * 512;
/// A size the specification's geometry 301 × 4 × 17 covers exactly (and not a whole MiB).
const CHS_SIZE: u64 = 301 * 4 * 17 * 512;
/// A whole number of MiB, as Azure wants.
const MIB_SIZE: u64 = 64 * MIB;

/// A sparse raw source of `size` bytes: data at the start, straddling block 0/1, around 5 MiB, in the last
/// sector, with holes between.
fn source(dir: &Path, name: &str, size: u64) -> PathBuf {
    let raw = dir.join(format!("{name}.raw"));
    sparse_raw(&raw, size, &[(0, 70_000), (2 * MIB - 5000, 10_000), (5 * MIB + 4096, 300_000), (size - 512, 512)]);
    raw
}

/// The same guest disk in `format`, made by qemu-img.
fn made_by_qemu(raw: &Path, format: &str) -> PathBuf {
    let out = raw.with_extension(format);
    qemu_img(&["convert", "-f", "raw", "-O", format, s(raw), s(&out)]);
    out
}

#[test]
fn qcow2_vmdk_and_vhdx_inputs_to_dynamic_and_fixed_vhd() {
    let dir = tmp();
    for (format, size) in [("qcow2", ODD_SIZE), ("vmdk", CHS_SIZE), ("vhdx", MIB_SIZE)] {
        let raw = source(dir.path(), format, size);
        let input = made_by_qemu(&raw, format);
        for (subformat, output_format) in [("dynamic", "vpc"), ("fixed", "vhd")] {
            let vhd = dir.path().join(format!("{format}-{subformat}.vhd"));
            let stderr = convert(&input, &vhd, output_format, &format!("subformat={subformat}"));
            let fixed = subformat == "fixed";
            assert_eq!(stderr.contains("rounded up"), fixed && size % MIB != 0, "{stderr}");
            verify(&raw, &vhd, if fixed { size.div_ceil(MIB) * MIB } else { size }, fixed);
        }
    }
}

#[test]
fn fixed_vhd_of_a_size_not_whole_mib_is_rounded_up_and_the_rest_reads_as_zeros() {
    let dir = tmp();
    let raw = source(dir.path(), "odd", ODD_SIZE);
    let vhd = dir.path().join("azure.vhd");
    let stderr = convert(&raw, &vhd, "vpc", "subformat=fixed");
    let rounded = 11 * MIB;
    assert!(
        stderr.contains(&format!(
            "warning: {}: The fixed VHD's size is rounded up from {ODD_SIZE} to {rounded}",
            s(&vhd)
        )),
        "{stderr}"
    );
    // Azure's shape: N MiB of guest data and the footer, nothing else; the footer records the rounded size.
    let file = std::fs::read(&vhd).unwrap();
    assert_eq!(file.len() as u64, rounded + 512);
    let footer = &file[rounded as usize..];
    assert_eq!(&footer[..8], b"conectix");
    assert_eq!(u64::from_be_bytes(footer[48..56].try_into().unwrap()), rounded, "current size");
    assert_eq!(u64::from_be_bytes(footer[40..48].try_into().unwrap()), rounded, "original size");
    assert!(file[ODD_SIZE as usize..rounded as usize].iter().all(|&b| b == 0), "the added bytes are zeros");
    // The guest data keeps its holes (the file system stores little more than the data).
    assert!(diskbridge::native::InputFile::allocated(&vhd) < 2 * MIB, "fixed VHD is sparse");
    verify(&raw, &vhd, rounded, true);
    // force_size, as Azure's guides write it for qemu-img, is accepted: the same disk, the CHS maximum.
    let forced = dir.path().join("forced.vhd");
    convert(&raw, &forced, "vpc", "subformat=fixed,force_size");
    assert_eq!(std::fs::read(&forced).unwrap(), file, "this size has no exact geometry anyway");
}

/// Cylinders, heads and sectors per track from a footer.
fn geometry(footer: &[u8]) -> (u16, u8, u8) {
    (u16::from_be_bytes([footer[56], footer[57]]), footer[58], footer[59])
}

#[test]
fn size_is_exact_and_the_geometry_is_the_specifications_or_the_maximum() {
    let dir = tmp();
    for (size, exact) in [(CHS_SIZE, true), (ODD_SIZE, false), (MIB_SIZE, false)] {
        let raw = source(dir.path(), "src", size);
        let ours = dir.path().join("ours.vhd");
        convert(&raw, &ours, "vpc", "");
        let footer = std::fs::read(&ours).unwrap()[..512].to_vec();
        assert_eq!(&footer[28..32], b"dbrg", "diskbridge's own creator application");
        if exact {
            // The geometry qemu-img writes for a size it can represent, which it then reads as that size.
            let theirs = dir.path().join("qemu.vhd");
            qemu_img(&["create", "-q", "-f", "vpc", s(&theirs), &size.to_string()]);
            let qemu_footer = std::fs::read(&theirs).unwrap()[..512].to_vec();
            assert_eq!(geometry(&footer), geometry(&qemu_footer));
            assert_eq!(geometry(&footer), (301, 4, 17));
        } else {
            assert_eq!(geometry(&footer), (65535, 16, 255), "{size}");
        }
        assert_eq!(qemu_sizes(&ours), (size, size));
        let forced = dir.path().join("forced.vhd");
        convert(&raw, &forced, "vpc", "force_size=on");
        assert_eq!(geometry(&std::fs::read(&forced).unwrap()[..512]), (65535, 16, 255));
        verify(&raw, &forced, size, false);
    }
}

#[test]
fn zero_blocks_are_not_stored() {
    let dir = tmp();
    // A raw file whose second and fourth blocks are written zeros (data to the file system, zeros to the guest)
    // and whose third block is a hole: only blocks 0 and 4 are stored.
    let raw = dir.path().join("zeros.raw");
    sparse_raw(&raw, 10 * MIB, &[(100, 1000), (8 * MIB + 3, 5)]);
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
    for block in [1, 3] {
        f.write_all_at(&vec![0u8; 2 * MIB as usize], block * 2 * MIB).unwrap();
    }
    let vhd = dir.path().join("zeros.vhd");
    convert(&raw, &vhd, "vpc", "");
    let file = std::fs::read(&vhd).unwrap();
    let bat: Vec<u32> = file[1536..1556].chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect();
    let first = 1536 / 512 + 1;
    let slot = (2 * MIB as u32 + 512) / 512;
    assert_eq!(bat, [first, u32::MAX, u32::MAX, u32::MAX, first + slot]);
    assert_eq!(file.len() as u64, 2048 + 2 * (2 * MIB + 512) + 512);
    verify(&raw, &vhd, 10 * MIB, false);
}

#[test]
fn standard_output_gets_the_same_bytes_as_a_file() {
    let dir = tmp();
    let raw = source(dir.path(), "src", ODD_SIZE);
    let qcow2 = made_by_qemu(&raw, "qcow2");
    for options in ["subformat=dynamic", "subformat=fixed"] {
        let file = dir.path().join("file.vhd");
        convert(&qcow2, &file, "vpc", options);
        let streamed = diskbridge_seeded(&["convert", "-O", "vpc", "-o", options, s(&qcow2), "-"], "7");
        assert!(streamed.status.success(), "{}", String::from_utf8_lossy(&streamed.stderr));
        assert!(streamed.stdout == std::fs::read(&file).unwrap(), "{options}: stdout differs from the file");
    }
}

#[test]
fn seed_and_epoch_decide_the_bytes() {
    let dir = tmp();
    let raw = source(dir.path(), "src", ODD_SIZE);
    let out = |name: &str, seed: &str| {
        let p = dir.path().join(name);
        let o = diskbridge_seeded(&["convert", "-O", "vpc", s(&raw), s(&p)], seed);
        assert!(o.status.success());
        std::fs::read(p).unwrap()
    };
    let one = out("a.vhd", "5");
    assert!(one == out("b.vhd", "5"), "same seed, different bytes");
    let other = out("c.vhd", "6");
    assert_eq!(one.len(), other.len());
    // Only the unique id (68..84) and the checksum (64..68), in the footer copy and in the footer.
    let tail = one.len() - 512;
    let differing: Vec<usize> = (0..one.len()).filter(|&i| one[i] != other[i]).collect();
    assert!(!differing.is_empty());
    assert!(
        differing.iter().all(|&i| (64..84).contains(&i) || (tail + 64..tail + 84).contains(&i)),
        "the seed changed bytes outside the unique id: {differing:?}"
    );
    // SOURCE_DATE_EPOCH 1700000000 is 753315200 seconds after 2000-01-01.
    assert_eq!(u32::from_be_bytes(one[24..28].try_into().unwrap()), 753_315_200);
}

#[test]
fn bad_options_are_refused_before_writing() {
    let dir = tmp();
    let raw = source(dir.path(), "src", ODD_SIZE);
    let vhd = dir.path().join("x.vhd");
    for args in [
        &["convert", "-O", "vpc", "-o", "subformat=streamOptimized"][..],
        &["convert", "-O", "vpc", "-o", "block_size=4M"],
        &["convert", "-O", "vpc", "-c"],
    ] {
        let out = diskbridge_run(&[args, &[s(&raw), s(&vhd)]].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(!vhd.exists(), "{args:?} left an output");
    }
    // Over 2040 GiB, VHD's limit, even where Azure would take more.
    let out = diskbridge_run(&["create", "-f", "vhd", s(&vhd), "2041G"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("at most 2040 GiB"), "{stderr}");
    // `vhd` names the format for input too.
    let back = dir.path().join("back.raw");
    convert(&raw, &vhd, "vhd", "");
    let o = diskbridge_run(&["convert", "-f", "vhd", "-O", "raw", s(&vhd), s(&back)]);
    assert!(o.status.success());
    assert_same_guest(&raw, &back);
}
