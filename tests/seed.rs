//! `diskbridge seed` read back by other programs: the FAT volume by fsck.fat, blkid and mtools; the user-data by
//! `cloud-init schema` and cloud-init's own Python modules (Debian 12's 22.4); keys by ssh-keygen; the password
//! hash by the C library's crypt; every container by qemu-img.

mod common;

use common::*;
use diskbridge::seed::{Contents, SeedConfig};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EPOCH: u64 = 1_700_000_000;
const PASSWORD: &str = "p@ss: \"w'rd\" #1 \\ é";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `diskbridge seed ARGS`, with `DISKBRIDGE_SEED=seed` when given and a fixed `SOURCE_DATE_EPOCH`.
fn seed(args: &[&str], seed: Option<u64>) -> Output {
    let mut cmd = Command::new(diskbridge());
    cmd.arg("seed").args(args).env("SOURCE_DATE_EPOCH", EPOCH.to_string()).env_remove("DISKBRIDGE_SEED");
    if let Some(seed) = seed {
        cmd.env("DISKBRIDGE_SEED", seed.to_string());
    }
    cmd.output().expect("run diskbridge seed")
}

fn seed_ok(args: &[&str], with: Option<u64>) {
    let out = seed(args, with);
    assert!(out.status.success(), "seed {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh OpenSSH key pair of `kind` made by ssh-keygen; returns the public key file and its line.
fn keygen(dir: &Path, kind: &str, comment: &str) -> (PathBuf, String) {
    let private = dir.join(format!("id_{kind}"));
    ok("ssh-keygen", &["-q", "-t", kind, "-N", "", "-C", comment, "-f", s(&private)]);
    let public = private.with_extension("pub");
    let line = std::fs::read_to_string(&public).unwrap().trim_end().to_string();
    (public, line)
}

/// A file of the FAT volume `image`, read by mtools.
fn mtype(image: &Path, name: &str) -> Vec<u8> {
    let out = run("mtype", &["-i", s(image), &format!("::{name}")]);
    assert!(out.status.success(), "mtype {name}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// What cloud-init's own modules make of `user_data`: one `part TYPE JSON` line per part and one
/// `config KEY JSON` line per merged key; the merged config and its keys are left in `dir`.
fn cloud_init_reads(user_data: &[u8], dir: &Path) -> String {
    // cloud-init's modules are Debian's, installed for Debian's python3, not the one first in PATH.
    let python = Path::new("/usr/bin/python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/cloud_init_userdata.py");
    let file = dir.join("user-data");
    std::fs::write(&file, user_data).unwrap();
    let out = Command::new(python).args([script, s(&file), s(dir)]).output().expect("/usr/bin/python3");
    assert!(
        out.status.success(),
        "cloud-init's modules could not read the user-data (./scripts/test installs cloud-init): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cloud-init schema --config-file PATH` accepts the file.
fn assert_schema_valid(path: &Path) {
    let out = ok("cloud-init", &["schema", "--config-file", s(path)]);
    assert!(out.contains("Valid cloud-config"), "{out}");
}

/// `text` as Python's `json.dumps` writes it (ASCII, short escapes for `"`, `\`, newline, CR and tab,
/// `\uXXXX` for the rest), to find it in [`cloud_init_reads`].
fn json(text: &str) -> String {
    let mut out = String::from("\"");
    for unit in text.encode_utf16() {
        match unit {
            0x22 => out += "\\\"",
            0x5c => out += "\\\\",
            0x0a => out += "\\n",
            0x0d => out += "\\r",
            0x09 => out += "\\t",
            0x20..=0x7e => out.push(unit as u8 as char),
            _ => out += &format!("\\u{unit:04x}"),
        }
    }
    out + "\""
}

/// The fingerprints ssh-keygen finds in a key file.
fn fingerprints(path: &Path) -> Vec<String> {
    ok("ssh-keygen", &["-l", "-f", s(path)]).lines().map(|l| l.split(' ').nth(1).unwrap().to_string()).collect()
}

#[test]
fn the_disk_is_a_clean_fat_volume_labelled_cidata_holding_both_files() {
    let dir = tmp();
    let (ed25519, _) = keygen(dir.path(), "ed25519", "me@host");
    let (rsa, _) = keygen(dir.path(), "rsa", "other@host");
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\r\nsecond line\n")).unwrap();
    let disk = dir.path().join("seed.img");
    seed_ok(
        &[
            "--hostname",
            "web-1",
            "--ssh-key",
            s(&ed25519),
            "--ssh-key",
            s(&rsa),
            "--password-file",
            s(&password),
            s(&disk),
        ],
        Some(42),
    );

    assert_eq!(std::fs::metadata(&disk).unwrap().len(), 1 << 20);
    let fsck = run("fsck.vfat", &["-n", s(&disk)]);
    let report = String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(fsck.status.success(), "fsck.vfat -n: {report}");
    assert!(report.contains("3 files, 2/502 clusters") && report.lines().count() == 2, "{report}");
    let blkid = ok("blkid", &["-p", s(&disk)]);
    assert!(blkid.contains("LABEL=\"CIDATA\"") && blkid.contains("TYPE=\"vfat\""), "{blkid}");
    let listing = ok("mdir", &["-i", s(&disk), "::"]);
    assert!(listing.contains("Volume in drive : is CIDATA") && listing.contains("2 files"), "{listing}");
    assert!(listing.contains(" meta-data\n") && listing.contains(" user-data\n"), "{listing}");
    assert!(listing.contains("2023-11-14  22:13"), "timestamps from SOURCE_DATE_EPOCH: {listing}");

    // The files hold what the library writes for the same inputs, and the disk is the library's, byte for byte.
    let keys = [&ed25519, &rsa].map(|p| std::fs::read_to_string(p).unwrap().trim_end().to_string()).to_vec();
    let config =
        SeedConfig { hostname: Some("web-1".into()), ssh_keys: keys, password: Some(PASSWORD.into()), user_data: None };
    let contents = Contents::new(&config, 42).unwrap();
    assert_eq!(mtype(&disk, "meta-data"), contents.meta_data.as_bytes());
    assert_eq!(mtype(&disk, "user-data"), contents.user_data);
    assert_eq!(std::fs::read(&disk).unwrap(), contents.disk(EPOCH).unwrap());
    let meta = String::from_utf8(mtype(&disk, "meta-data")).unwrap();
    assert!(meta.starts_with("instance-id: \"iid-") && meta.ends_with("\nlocal-hostname: \"web-1\"\n"), "{meta}");
}

#[test]
fn cloud_init_accepts_the_user_data_and_reads_the_login_from_it() {
    let dir = tmp();
    // A comment with YAML's special characters must stay part of its key.
    let (ed25519, line) = keygen(dir.path(), "ed25519", "x\": y #z 'é' - [1]");
    let (ecdsa, _) = keygen(dir.path(), "ecdsa", "e@host");
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let disk = dir.path().join("seed.img");
    let args = ["--hostname", "web-1.example.com", "--ssh-key", s(&ed25519), "--ssh-key", s(&ecdsa)];
    seed_ok(&[&args[..], &["--password-file", s(&password), s(&disk)]].concat(), None);

    let user_data = mtype(&disk, "user-data");
    let file = dir.path().join("user-data.yaml");
    std::fs::write(&file, &user_data).unwrap();
    assert_schema_valid(&file);
    let facts = cloud_init_reads(&user_data, dir.path());
    assert!(facts.starts_with("part text/cloud-config "), "{facts}");
    assert!(facts.contains("\nconfig hostname \"web-1.example.com\"\n"), "{facts}");
    assert!(facts.contains("\nconfig chpasswd {\"expire\": false}\n"), "{facts}");
    assert!(facts.contains("\nconfig ssh_pwauth true\n"), "{facts}");
    assert!(facts.contains(&format!("config ssh_authorized_keys [{}, ", json(&line))), "{facts}");
    let keys = fingerprints(&dir.path().join("authorized_keys"));
    assert_eq!(keys, [fingerprints(&ed25519), fingerprints(&ecdsa)].concat());

    // The password is only there as a hash, which the C library's crypt verifies.
    assert!(!String::from_utf8_lossy(&user_data).contains("w'rd"));
    let hash = facts.lines().find_map(|l| l.strip_prefix("config password ")).unwrap().trim_matches('"');
    assert!(hash.starts_with("$6$"), "{hash}");
    let verify = "import crypt, sys; sys.exit(crypt.crypt(sys.argv[1], sys.argv[2]) != sys.argv[2])";
    let out = Command::new("/usr/bin/python3").args(["-W", "ignore", "-c", verify, PASSWORD, hash]).output().unwrap();
    assert!(out.status.success(), "crypt(3) does not verify {hash}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_user_data_file_is_kept_as_given_and_merged_with_the_options_by_cloud_init() {
    let dir = tmp();
    let (key, line) = keygen(dir.path(), "ed25519", "me@host");
    let own = "#cloud-config\n# the user's own\nruncmd:\n  - echo héllo > /dev/ttyS0\nssh_authorized_keys:\n  - \
               ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwn7s4Ud3sJ0X+VtNuFgbO7Gu6zCYjMmkF/C8A8RNNQ user@own\n\
               chpasswd: {expire: true}\n";
    let config = dir.path().join("own.yaml");
    std::fs::write(&config, own).unwrap();

    // Alone, the file is the user-data, byte for byte.
    let alone = dir.path().join("alone.img");
    seed_ok(&["--user-data", s(&config), s(&alone)], None);
    assert_eq!(mtype(&alone, "user-data"), own.as_bytes());

    // With options, cloud-init finds both parts and merges them: keys joined, the file's own values kept.
    let merged = dir.path().join("merged.img");
    seed_ok(&["--user-data", s(&config), "--hostname", "web", "--ssh-key", s(&key), s(&merged)], None);
    let facts = cloud_init_reads(&mtype(&merged, "user-data"), dir.path());
    let parts: Vec<&str> = facts.lines().filter(|l| l.starts_with("part ")).collect();
    assert_eq!(parts.len(), 2, "{facts}");
    assert_eq!(parts[0], format!("part text/cloud-config {}", json(own)));
    assert!(parts[1].starts_with("part text/cloud-config \"#cloud-config\\nhostname: \\\"web\\\""), "{facts}");
    let own_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOwn7s4Ud3sJ0X+VtNuFgbO7Gu6zCYjMmkF/C8A8RNNQ user@own";
    assert!(facts.contains(&format!("config ssh_authorized_keys [{}, {}]\n", json(own_key), json(&line))), "{facts}");
    assert!(facts.contains("config chpasswd {\"expire\": true}\n"), "{facts}");
    assert!(facts.contains("config hostname \"web\"\n"), "{facts}");
    assert!(facts.contains(&format!("config runcmd [{}]\n", json("echo héllo > /dev/ttyS0"))), "{facts}");
    assert_schema_valid(&dir.path().join("cloud-config.yaml"));

    // A script stays a script, byte for byte, beside the options' cloud-config.
    let script = dir.path().join("hello.sh");
    std::fs::write(&script, "#!/bin/sh\necho 'héllo' > /dev/ttyS0\n").unwrap();
    let with_script = dir.path().join("script.img");
    seed_ok(&["--user-data", s(&script), "--ssh-key", s(&key), s(&with_script)], None);
    let facts = cloud_init_reads(&mtype(&with_script, "user-data"), dir.path());
    assert!(
        facts.starts_with(&format!("part text/x-shellscript {}\n", json("#!/bin/sh\necho 'héllo' > /dev/ttyS0\n")))
    );
    assert!(facts.contains(&format!("config ssh_authorized_keys [{}]\n", json(&line))), "{facts}");
    assert_schema_valid(&dir.path().join("cloud-config.yaml"));

    // A MIME message of the user's own is nested whole; its parts come first.
    let mime = dir.path().join("own.mime");
    std::fs::write(
        &mime,
        "Content-Type: multipart/mixed; boundary=\"OWN\"\nMIME-Version: 1.0\n\n--OWN\nContent-Type: text/x-shellscript\n\n\
         #!/bin/sh\necho mime\n--OWN\nContent-Type: text/cloud-config\n\n#cloud-config\npackages: [htop]\n--OWN--\n",
    )
    .unwrap();
    let with_mime = dir.path().join("mime.img");
    seed_ok(&["--user-data", s(&mime), "--hostname", "web", s(&with_mime)], None);
    let facts = cloud_init_reads(&mtype(&with_mime, "user-data"), dir.path());
    let types: Vec<&str> = facts.lines().filter_map(|l| l.strip_prefix("part ")?.split(' ').next()).collect();
    assert_eq!(types, ["text/x-shellscript", "text/cloud-config", "text/cloud-config"], "{facts}");
    assert!(facts.contains("config hostname \"web\"\nconfig packages [\"htop\"]\n"), "{facts}");
}

#[test]
fn every_format_holds_the_same_guest_bytes_and_its_own_disk_ids() {
    let dir = tmp();
    let raw = dir.path().join("seed.raw");
    seed_ok(&["--hostname", "web", s(&raw)], Some(9));
    assert!(qemu_img(&["info", "--output=json", s(&raw)]).contains("\"format\": \"raw\""));
    for format in ["qcow2", "vmdk", "vhdx"] {
        for by_flag in [true, false] {
            let out = dir.path().join(format!("seed-{by_flag}.{format}"));
            let args = if by_flag {
                vec!["-O", format, "--hostname", "web", s(&out)]
            } else {
                vec!["--hostname", "web", s(&out)]
            };
            seed_ok(&args, Some(9));
            let info = qemu_img(&["info", "--output=json", s(&out)]);
            assert!(info.contains(&format!("\"format\": \"{format}\"")), "{info}");
            assert_same_guest(&raw, &out);
            assert_check_clean(&out);
        }
    }
    // A seed VHDX and a disk converted with the same DISKBRIDGE_SEED still have different disk identifiers.
    let disk = dir.path().join("disk.vhdx");
    let made = Command::new(diskbridge())
        .args(["create", "-f", "vhdx", s(&disk), "1M"])
        .env("DISKBRIDGE_SEED", "9")
        .output()
        .unwrap();
    assert!(made.status.success());
    let identifier = |p: &Path| ok("vhdiinfo", &[s(p)]).lines().find(|l| l.contains("Identifier")).unwrap().to_string();
    assert_ne!(identifier(&disk), identifier(&dir.path().join("seed-true.vhdx")));
}

#[test]
fn the_same_seed_writes_the_same_bytes_and_no_seed_a_new_instance() {
    let dir = tmp();
    let password = dir.path().join("password");
    std::fs::write(&password, "secret\n").unwrap();
    for format in ["raw", "vmdk", "vhdx", "qcow2"] {
        // One output name in three folders: a VMDK's descriptor names its extent by it.
        let path = |run: &str| dir.path().join(run).join(format!("seed.{format}"));
        for (run, with) in [("a", Some(5)), ("b", Some(5)), ("c", Some(6))] {
            std::fs::create_dir_all(dir.path().join(run)).unwrap();
            seed_ok(&["-O", format, "--hostname", "web", "--password-file", s(&password), s(&path(run))], with);
        }
        let read = |name: &str| std::fs::read(path(name)).unwrap();
        assert!(read("a") == read("b"), "{format}: same DISKBRIDGE_SEED, different bytes");
        assert!(read("a") != read("c"), "{format}: another seed, same bytes");
    }
    let (x, y) = (dir.path().join("x.img"), dir.path().join("y.img"));
    seed_ok(&["--hostname", "web", s(&x)], None);
    seed_ok(&["--hostname", "web", s(&y)], None);
    assert_ne!(mtype(&x, "meta-data"), mtype(&y, "meta-data"), "a fresh instance-id without DISKBRIDGE_SEED");
}

#[test]
fn hostile_inputs_get_one_clear_error_and_leave_no_output() {
    let dir = tmp();
    let file = |name: &str, content: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (public, _) = keygen(dir.path(), "ed25519", "me@host");
    let good_key = s(&public).to_string();
    let private = good_key.strip_suffix(".pub").unwrap().to_string();
    let not_key = file("notes.txt", b"remember the milk\n");
    let big = file("big.yaml", format!("#cloud-config\n#{}\n", "x".repeat(64 << 10)).as_bytes());
    let bad_yaml = file("bad.yaml", b"#cloud-config\nruncmd: [ls\n");
    let plain = file("plain.txt", b"echo hi\n");
    let empty_password = file("empty", b"\n");
    let sets_hostname = file("host.yaml", b"#cloud-config\nhostname: other\n");
    let missing = dir.path().join("missing.pub").to_str().unwrap().to_string();
    let out = dir.path().join("seed.img");
    let o = s(&out);
    let overwrite = format!("diskbridge: {good_key}: Refusing to overwrite '{good_key}'");
    let cases: Vec<(Vec<&str>, u8, String)> = vec![
        (
            vec![o],
            2,
            "diskbridge: seed needs at least one of --hostname, --ssh-key, --password-file, --user-data".into(),
        ),
        (vec!["--hostname", "web_1", o], 2, "diskbridge: 'web_1' is not a valid host name: '_' is not allowed".into()),
        (vec!["--hostname", "a", "--hostname", "b", o], 2, "diskbridge: --hostname given twice".into()),
        (vec!["-O", "ova", "--hostname", "a", o], 2, "diskbridge: A seed disk is one disk".into()),
        (vec!["--hostname", "a"], 2, "diskbridge: seed needs one OUTPUT".into()),
        (vec!["--ssh-key", &private, o], 1, format!("diskbridge: {private}: This is a private key")),
        (vec!["--ssh-key", &not_key, o], 1, format!("diskbridge: {not_key}: Line 1: 'remember' is not an SSH key")),
        (vec!["--ssh-key", &missing, o], 1, format!("diskbridge: {missing}: Cannot read: No such file")),
        (vec!["--user-data", &big, o], 1, format!("diskbridge: {big}: User data over 64 KiB is refused")),
        (
            vec!["--user-data", &bad_yaml, o],
            1,
            format!("diskbridge: {bad_yaml}: User data #cloud-config: Not valid YAML"),
        ),
        (vec!["--user-data", &plain, o], 1, format!("diskbridge: {plain}: User data is none of the kinds")),
        (
            vec!["--password-file", &empty_password, o],
            1,
            format!("diskbridge: {empty_password}: The password is empty"),
        ),
        (
            vec!["--user-data", &sets_hostname, "--hostname", "web", o],
            1,
            "diskbridge: The user data sets 'hostname' itself; give that setting there or as an option, not both"
                .into(),
        ),
        (vec!["--ssh-key", &good_key, &good_key], 1, overwrite.clone()),
    ];
    for (args, code, message) in cases {
        let result = seed(&args, None);
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(i32::from(code)), "{args:?}: {stderr}");
        assert!(stderr.starts_with(&message), "{args:?}: {stderr}");
        if code == 1 {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        }
        assert!(!out.exists(), "{args:?} left an output");
    }
    assert!(std::fs::read_to_string(&good_key).unwrap().starts_with("ssh-ed25519 "), "the key file is untouched");
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    assert!(!leftovers.iter().any(|n| n.to_string_lossy().contains(".tmp")), "{leftovers:?}");
}
