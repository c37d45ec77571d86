//! Shared helpers for integration tests: temporary directories, the independent oracles (qemu-img, libyal's
//! vmdkinfo / vhdiinfo), and deterministic test data. An oracle that is missing fails the test — the README's
//! test command installs them, and a skipped oracle must never look like a pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh temporary directory, removed when dropped.
pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("diskbridge-test-").tempdir().expect("temp dir")
}

/// The path of an oracle tool, or a panic saying how to get it.
pub fn require(tool: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default() + ":/usr/sbin:/sbin";
    for dir in path.split(':') {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "oracle `{tool}` is not installed; ./scripts/test installs it (qemu-utils, libvmdk-utils, libvhdi-utils, fdisk)"
    );
}

/// Runs a command and returns its output, whatever its exit status.
pub fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(require(tool)).args(args).output().unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// Runs a command and panics with its stderr unless it succeeds; returns stdout.
pub fn ok(tool: &str, args: &[&str]) -> String {
    let out = run(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qemu-img ARGS`, which must succeed.
pub fn qemu_img(args: &[&str]) -> String {
    ok("qemu-img", args)
}

/// Asserts `qemu-img compare` finds the two images' guest contents identical.
pub fn assert_same_guest(a: &Path, b: &Path) {
    let out = run("qemu-img", &["compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "qemu-img compare {} {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts `qemu-img check` finds no errors or leaks.
pub fn assert_check_clean(path: &Path) {
    let out = run("qemu-img", &["check", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "qemu-img check {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The diskbridge binary built for this test run.
pub fn diskbridge() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_diskbridge"))
}

/// Runs the diskbridge CLI.
pub fn diskbridge_run(args: &[&str]) -> Output {
    Command::new(diskbridge()).args(args).output().expect("run diskbridge")
}

/// Deterministic, mildly compressible bytes (text-like runs mixed with noise), as real disks hold.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if state % 4 == 0 {
            out.extend_from_slice(&state.to_le_bytes());
        } else {
            let word = b"diskbridge converts qcow2 to vmdk and vhdx ";
            let start = (state % 16) as usize;
            out.extend_from_slice(&word[start..start + 24]);
        }
    }
    out.truncate(len);
    out
}

/// Writes a sparse raw file of `size` bytes with pattern data at each `(offset, len)`.
pub fn sparse_raw(path: &Path, size: u64, data_at: &[(u64, usize)]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    for (i, &(offset, len)) in data_at.iter().enumerate() {
        f.write_all_at(&pattern(len, i as u64 + 1), offset).unwrap();
    }
}

/// Unpacks `ova` into `into` and checks it with Python's tarfile, XML parser and hashlib (tests/common/check_ova.py),
/// the manifest's digests in `algorithm` (`SHA256`, `SHA1`); returns the disks' names in order.
pub fn check_ova(ova: &Path, into: &Path, algorithm: &str) -> Vec<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/check_ova.py");
    std::fs::create_dir_all(into).unwrap();
    let names = ok("python3", &[script, ova.to_str().unwrap(), into.to_str().unwrap(), algorithm]);
    names.lines().map(str::to_string).collect()
}

/// A FUSE mount point (vhdimount's, vmdkmount's), unmounted when dropped.
pub struct Mount(pub PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
