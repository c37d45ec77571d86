//! The CLI as a user meets it: qemu-img's command lines, its JSON, one-line errors, exit codes, and outputs
//! that exist only when complete.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A qcow2 with data, zero clusters and holes, made by qemu-img/qemu-io.
fn mixed_qcow2(dir: &Path) -> std::path::PathBuf {
    let raw = dir.join("src.raw");
    sparse_raw(&raw, 8 << 20, &[(0, 70_000), (3 << 20, 1 << 20), ((8 << 20) - 4096, 4096)]);
    let img = dir.join("mixed.qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    ok("qemu-io", &["-f", "qcow2", "-c", "write -z 5M 128k", s(&img)]);
    img
}

#[test]
fn convert_to_raw_is_byte_identical_to_qemu_img() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let ours = dir.path().join("ours.raw");
    let theirs = dir.path().join("theirs.raw");
    let out = diskbridge_run(&["convert", "-p", "-f", "qcow2", "-O", "raw", s(&img), s(&ours)]);
    assert!(out.status.success(), "{}", stderr(&out));
    qemu_img(&["convert", "-f", "qcow2", "-O", "raw", s(&img), s(&theirs)]);
    assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("100.00/100%"), "progress on stdout");
}

/// The `-p` lines as qemu-img prints them: `    (N.NN/100%)` each ended by a carriage return, then a newline.
fn progress_lines(text: &[u8]) -> Vec<f64> {
    let text = String::from_utf8_lossy(text);
    let lines = text.strip_suffix('\n').unwrap_or_else(|| panic!("no final newline: {text:?}"));
    lines
        .split_terminator('\r')
        .map(|l| {
            let n = l.strip_prefix("    (").and_then(|l| l.strip_suffix("/100%)"));
            n.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not a progress line: {l:?}"))
        })
        .collect()
}

#[test]
fn progress_is_printed_as_qemu_img_prints_it() {
    // 48 MiB of data: 768 grains, each of which used to get a line of its own.
    let dir = tmp();
    let raw = dir.path().join("big.raw");
    sparse_raw(&raw, 64 << 20, &[(0, 48 << 20)]);
    let check = |lines: Vec<f64>, what: &str| {
        assert!(lines.len() <= 101 && lines.len() > 20, "{what}: {} updates: {lines:?}", lines.len());
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{what}: not monotonic: {lines:?}");
        assert_eq!((lines[0], *lines.last().unwrap()), (0.0, 100.0), "{what}");
    };
    let vmdk = dir.path().join("out.vmdk");
    let out = diskbridge_run(&["convert", "-p", "-O", "vmdk", s(&raw), s(&vmdk)]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", stderr(&out));
    check(progress_lines(&out.stdout), "convert");

    // With the image on stdout, the progress goes to stderr.
    let out = diskbridge_run(&["convert", "-p", "-O", "raw", s(&vmdk), "-"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout.len(), 64 << 20);
    check(progress_lines(&out.stderr), "convert to stdout");

    let out = diskbridge_run(&["compare", "-p", s(&raw), s(&vmdk)]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let (progress, verdict) = text.rsplit_once('\r').unwrap();
    assert_eq!(verdict, "\nImages are identical.\n");
    check(progress_lines(format!("{progress}\r\n").as_bytes()), "compare");
}

#[test]
fn info_json_uses_qemu_img_keys_and_values() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let ours = diskbridge_run(&["info", "--output=json", s(&img)]);
    assert!(ours.status.success(), "{}", stderr(&ours));
    let ours = String::from_utf8(ours.stdout).unwrap();
    let theirs = qemu_img(&["info", "--output=json", s(&img)]);
    // Python's json module reads both: the top-level keys scripts use must agree in name, type and value.
    let pick = |json: &str| {
        let script = "import json,sys; j=json.loads(sys.argv[1]); \
                      print(json.dumps([j.get(k) for k in ['virtual-size','cluster-size','format','dirty-flag','format-specific']]))";
        ok("python3", &["-c", script, json])
    };
    assert_eq!(pick(&ours), pick(&theirs));
    assert!(ours.contains("\"allocated-bytes\": "), "{ours}");
}

#[test]
fn a_sparse_raw_input_is_read_only_where_the_file_system_stores_data() {
    // 1 TiB apparent, 2 MiB stored: reading the holes would take minutes, and `info` would call it all data.
    let dir = tmp();
    let raw = dir.path().join("sparse.raw");
    let size = 1u64 << 40;
    sparse_raw(&raw, size, &[(1 << 20, 1 << 20), (size - (1 << 20), 1 << 20)]);
    let info = diskbridge_run(&["info", "--output=json", s(&raw)]);
    assert!(info.status.success(), "{}", stderr(&info));
    let script = "import json,sys; j=json.loads(sys.argv[1]); print(j['allocated-bytes'], j['zero-bytes'])";
    let counts = ok("python3", &["-c", script, std::str::from_utf8(&info.stdout).unwrap()]);
    assert_eq!(counts.trim(), format!("{} {}", 2 << 20, size - (2 << 20)));

    let img = dir.path().join("out.qcow2");
    let out = diskbridge_run(&["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&img)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let map = qemu_img(&["map", "--output=json", s(&img)]);
    let script = "import json,sys; print([(e['start'], e['length']) for e in json.loads(sys.argv[1]) if e['data']])";
    let data = ok("python3", &["-c", script, &map]);
    assert_eq!(data.trim(), format!("[({}, {}), ({}, {})]", 1 << 20, 1 << 20, size - (1 << 20), 1 << 20));
    assert_same_guest(&raw, &img);
}

#[test]
fn without_o_the_output_is_raw_with_a_warning_when_its_name_says_otherwise() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let named = dir.path().join("disk.vmdk");
    let out = diskbridge_run(&["convert", s(&img), s(&named)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: ") && stderr(&out).contains("-O vmdk"), "{}", stderr(&out));
    assert!(qemu_img(&["info", "--output=json", s(&named)]).contains("\"format\": \"raw\""));
    let out = diskbridge_run(&["convert", s(&img), s(&dir.path().join("disk.img"))]);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn a_backing_file_that_cannot_be_opened_is_an_error_not_a_missing_file() {
    // A symlink to itself exists but cannot be opened (ELOOP): info must say so, not show the overlay alone as it
    // does when the backing file is simply not there.
    let dir = tmp();
    let top = dir.path().join("top.qcow2");
    std::os::unix::fs::symlink("loop.qcow2", dir.path().join("loop.qcow2")).unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-b", "loop.qcow2", "-F", "qcow2", s(&top), "1M"]);
    let out = diskbridge_run(&["info", s(&top)]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains("Too many levels of symbolic links"), "{}", stderr(&out));
    std::fs::remove_file(dir.path().join("loop.qcow2")).unwrap();
    let out = diskbridge_run(&["info", s(&top)]);
    assert!(out.status.success() && stderr(&out).contains("shown without it"), "{}", stderr(&out));
}

#[test]
fn info_shows_an_overlay_whose_backing_file_is_missing_as_qemu_img_does() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let lone = dir.path().join("lone");
    std::fs::create_dir(&lone).unwrap();
    let overlay = lone.join("overlay.qcow2");
    qemu_img(&["create", "-f", "qcow2", "-b", s(&img), "-F", "qcow2", s(&overlay)]);
    std::fs::rename(&img, dir.path().join("moved.qcow2")).unwrap();
    let out = diskbridge_run(&["info", "--output=json", s(&overlay)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: ") && stderr(&out).contains("mixed.qcow2"), "{}", stderr(&out));
    let pick = |json: &str| {
        let script = "import json,sys; j=json.loads(sys.argv[1]); \
                      print(json.dumps([j.get(k) for k in ['virtual-size','cluster-size','format','backing-filename']]))";
        ok("python3", &["-c", script, json])
    };
    let theirs = qemu_img(&["info", "--output=json", s(&overlay)]);
    assert_eq!(pick(std::str::from_utf8(&out.stdout).unwrap()), pick(&theirs));
    // Only looking is lenient: reading the guest needs the backing file.
    let out = diskbridge_run(&["convert", "-O", "raw", s(&overlay), s(&dir.path().join("x.raw"))]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn errors_are_one_line_naming_the_file_and_exit_1() {
    let dir = tmp();
    let bad = dir.path().join("bad.qcow2");
    std::fs::write(&bad, b"QFI\xfb\x00\x00\x00\x09 this is not a real header").unwrap();
    let out = diskbridge_run(&["info", s(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with(&format!("diskbridge: {}: ", bad.display())), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn usage_mistakes_exit_2() {
    assert_eq!(diskbridge_run(&["convert", "-O"]).status.code(), Some(2));
    assert_eq!(diskbridge_run(&["convert", "-O", "qed", "a", "b"]).status.code(), Some(2));
    assert_eq!(diskbridge_run(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn refuses_to_overwrite_its_input() {
    let dir = tmp();
    let raw = dir.path().join("disk.raw");
    sparse_raw(&raw, 1 << 20, &[(0, 4096)]);
    let before = std::fs::read(&raw).unwrap();
    let out = diskbridge_run(&["convert", "-O", "raw", s(&raw), s(&raw)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("Refusing to overwrite the input"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&raw).unwrap(), before);
}

#[test]
fn a_failed_conversion_leaves_no_output_behind() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    // Cut the image inside its data so opening works but reading fails midway.
    let len = std::fs::metadata(&img).unwrap().len();
    let cut = dir.path().join("cut.qcow2");
    std::fs::write(&cut, &std::fs::read(&img).unwrap()[..(len / 2) as usize]).unwrap();
    let out_path = dir.path().join("out.raw");
    let out = diskbridge_run(&["convert", "-O", "raw", s(&cut), s(&out_path)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!out_path.exists() && left.len() == 3, "left behind: {left:?}");
}

#[test]
fn ctrl_c_stops_removes_the_partial_output_and_exits_130() {
    use std::io::Read;
    let dir = tmp();
    let raw = dir.path().join("big.raw");
    // Enough data to deflate that the conversion runs for seconds.
    sparse_raw(&raw, 3 << 30, &[(0, 64 << 20), (1 << 30, 64 << 20), (2 << 30, 64 << 20)]);
    let out_path = dir.path().join("out.vmdk");
    let mut child = Command::new(diskbridge())
        .args(["convert", "-p", "-O", "vmdk", s(&raw), s(&out_path)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The signal goes once the progress shows units being written and not yet all of them, so it always lands
    // in the middle of the conversion.
    let mut stdout = child.stdout.take().unwrap();
    let (mut text, mut byte) = (String::new(), [0u8]);
    let under_way = |text: &str| {
        text.split('\r')
            .filter_map(|l| l.trim().strip_prefix('(')?.split('/').next()?.parse::<f64>().ok())
            .any(|p| p > 0.0 && p < 50.0)
    };
    while !under_way(&text) {
        assert_eq!(stdout.read(&mut byte).unwrap(), 1, "the conversion ended before it was seen under way: {text:?}");
        text.push(byte[0] as char);
    }
    ok("kill", &["-INT", &child.id().to_string()]);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 1, "left behind: {left:?}");
}

#[test]
fn create_raw_makes_a_sparse_file_of_the_size() {
    let dir = tmp();
    let out = dir.path().join("e.raw");
    let r = diskbridge_run(&["create", "-f", "raw", s(&out), "64k"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 65536);
}

#[test]
fn qemu_img_io_tuning_flags_are_accepted_and_ignored() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let vhdx = dir.path().join("w.vhdx");
    let args = ["convert", "-O", "vhdx", "-W", "-m", "8", "-S", "4k", "-t", "none", "-T", "none", s(&img), s(&vhdx)];
    let out = diskbridge_run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_guest(&img, &vhdx);
    let help = String::from_utf8(diskbridge_run(&["--help"]).stdout).unwrap();
    assert!(help.contains("ignores qemu-img's I/O tuning options -m N, -W,"), "{help}");
}

#[test]
fn quiet_silences_progress_in_either_order() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let raw = dir.path().join("out.raw");
    for flags in [["-q", "-p"], ["-p", "-q"]] {
        let out = diskbridge_run(&["convert", flags[0], flags[1], "-O", "raw", s(&img), s(&raw)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stderr(&out), "", "{flags:?}");
        let out = diskbridge_run(&["compare", flags[0], flags[1], s(&img), s(&raw)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(out.stdout.is_empty() && out.stderr.is_empty(), "compare {flags:?}: {}", stderr(&out));
    }
}

#[test]
fn a_fifo_output_is_written_as_a_stream_and_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let file = dir.path().join("file.raw");
    let out = diskbridge_run(&["convert", "-O", "raw", s(&img), s(&file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let fifo = dir.path().join("out.fifo");
    ok("mkfifo", &[s(&fifo)]);
    // A reader with a deadline, so a conversion that never opens the pipe fails the test instead of hanging it.
    let piped = dir.path().join("piped.raw");
    let mut reader = Command::new("timeout")
        .args(["60", "cat", s(&fifo)])
        .stdout(std::fs::File::create(&piped).unwrap())
        .spawn()
        .unwrap();
    let out = diskbridge_run(&["convert", "-O", "raw", s(&img), s(&fifo)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(reader.wait().unwrap().success());
    assert!(std::fs::read(&piped).unwrap() == std::fs::read(&file).unwrap(), "the pipe carried other bytes");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

#[test]
fn a_symlink_output_is_written_through_and_stays_a_link() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let (real, link) = (dir.path().join("real.vmdk"), dir.path().join("link.vmdk"));
    // A dangling link: its target is created; a second run replaces the target, never the link.
    std::os::unix::fs::symlink("real.vmdk", &link).unwrap();
    for _ in 0..2 {
        let out = diskbridge_run(&["convert", "-O", "vmdk", s(&img), s(&link)]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_same_guest(&img, &real);
    }
}

#[test]
fn a_full_device_is_an_error_and_stays_a_device() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let out = diskbridge_run(&["convert", "-O", "vmdk", s(&img), "/dev/full"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("diskbridge: /dev/full: ") && err.contains("No space left on device"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(std::fs::metadata("/dev/full").unwrap().file_type().is_char_device());
}

#[test]
fn an_output_that_cannot_be_written_is_refused_before_the_input_is_read() {
    let dir = tmp();
    let raw = dir.path().join("big.raw");
    sparse_raw(&raw, 192 << 20, &[(0, 192 << 20)]);
    let timed = |output: &Path| {
        let start = std::time::Instant::now();
        let out = diskbridge_run(&["convert", "-O", "vmdk", s(&raw), s(output)]);
        (out, start.elapsed())
    };
    let (done, conversion) = timed(&dir.path().join("out.vmdk"));
    assert!(done.status.success(), "{}", stderr(&done));
    let not_a_folder = dir.path().join("out.vmdk/disk.vmdk");
    let cases = [
        (dir.path().to_path_buf(), "Is a directory"),
        (dir.path().join("missing/disk.vmdk"), "Cannot create: No such file or directory"),
        (not_a_folder, "Cannot create: Not a directory"),
    ];
    for (output, why) in cases {
        let (out, refusal) = timed(&output);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(err.starts_with(&format!("diskbridge: {}: {why}", output.display())), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(refusal * 20 < conversion, "{why}: refused after {refusal:?}, the conversion takes {conversion:?}");
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 2, "only the input and the first output: {left:?}");
}

#[test]
fn a_missing_output_directory_is_named_as_given() {
    let dir = tmp();
    let img = mixed_qcow2(dir.path());
    let output = dir.path().join("nodir/out.vmdk");
    let out = diskbridge_run(&["convert", "-O", "vmdk", s(&img), s(&output)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with(&format!("diskbridge: {}: Cannot create: No such file", output.display())), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
