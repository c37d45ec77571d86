//! The `diskbridge` command line: `info`, `convert`, `create` and `check`, with qemu-img's flags, so qemu-img
//! command lines work with `qemu-img` replaced by `diskbridge`.

mod args;
mod check;
mod info;
mod json;
mod output;
mod seed;

use args::{Arg, UsageError};
use diskbridge::convert::{RunOptions, run};
use diskbridge::formats::Format;
use diskbridge::image::{Blank, Grown, Image};
use diskbridge::options::{OptionList, parse_size};
use diskbridge::target::{self, Target};
use diskbridge::writer::Settings;
use diskbridge::{Error, ErrorKind};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

const COMMANDS: &str = "\
usage: diskbridge COMMAND [OPTIONS]

  info [-f FMT] [--output=human|json] [--backing-chain] FILE
  convert [-p] [-q] [-c] [-f FMT] [-O FMT] [-o OPTIONS] [-o size=SIZE] INPUT OUTPUT
          with -O ova|ovf also [--hostname NAME] [--ssh-key FILE]... [--password-file FILE] [--user-data FILE]
  create [-q] [-f FMT] [-o OPTIONS] OUTPUT [SIZE]
  compare [-f FMT] [-F FMT] [-s] [-p] [-q] IMAGE1 IMAGE2   (exit 0 identical, 1 different, 2 error)
  check [-q] [-f FMT] [--output=human|json] FILE             (exit 0 clean, 2 corrupt, 3 leaks, 1 cannot check)
  seed [--hostname NAME] [--ssh-key FILE]... [--password-file FILE] [--user-data FILE] [-O FMT] OUTPUT
                                      (a cloud-init NoCloud disk that gives a cloud image its first login)
";

const NOTES: &str = "\
-c compresses qcow2 clusters (-o compression_type=zlib|zstd); VMDK grains are always compressed.
OUTPUT '-' writes to standard output. DISKBRIDGE_SEED=N makes random fields reproducible;
SOURCE_DATE_EPOCH=SECS fixes timestamps; DISKBRIDGE_THREADS=N limits encoder threads. convert accepts and
ignores qemu-img's I/O tuning options -m N, -W, -S N, -t CACHE and -T CACHE.
See README.md for every option.
";

/// The usage text, its list of formats and their `-o` keys taken from the table of formats.
fn usage() -> String {
    let named = |f: Format| match f.spec().aliases {
        [] => f.name().to_string(),
        aliases => format!("{} (alias {})", f.name(), aliases.join(", ")),
    };
    let read: Vec<String> = Format::readable().map(named).collect();
    let mut text = format!("{COMMANDS}\nFormats read: {}.\nFormats written, with their -o keys:\n", read.join(", "));
    for format in Format::writable() {
        let spec = format.spec();
        let mut keys = spec.options.join(", ");
        if let Some(disk) = spec.disk_format {
            keys += &format!(", and {disk}'s");
        }
        text += &wrap(&format!("  {:<18} {}", named(format), if keys.is_empty() { "none" } else { &keys }), 21);
    }
    text + NOTES
}

/// `line` broken at spaces into lines of at most 110 characters, the later ones indented by `indent`.
fn wrap(line: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut current = String::new();
    for word in line.split(' ') {
        if current.len() + word.len() + 1 > 110 && !current.trim().is_empty() {
            out += current.trim_end();
            out.push('\n');
            current = " ".repeat(indent);
        }
        current += word;
        current.push(' ');
    }
    out += current.trim_end();
    out.push('\n');
    out
}

/// Set by Ctrl-C; the conversion stops at the next unit and removes its partial output.
static CANCEL: AtomicBool = AtomicBool::new(false);

/// How a command failed: a usage mistake (exit 2) or an error about a file (exit 1, 130 if cancelled).
enum Failure {
    Usage(String),
    Error(Option<String>, Error),
}

impl From<UsageError> for Failure {
    fn from(e: UsageError) -> Self {
        Failure::Usage(e.0)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(None, e)
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = match argv.first().map(String::as_str) {
        Some("info") => cmd_info(&argv[1..]),
        Some("convert") => cmd_convert(&argv[1..]),
        Some("create") => cmd_create(&argv[1..]),
        Some("compare") => return cmd_compare(&argv[1..]),
        Some("check") => return check::run(&argv[1..]),
        Some("seed") => seed::run(&argv[1..]),
        Some("-h" | "--help" | "help") => {
            say(usage().trim_end());
            Ok(())
        }
        Some("-V" | "--version") => {
            say(&format!("diskbridge {}", env!("CARGO_PKG_VERSION")));
            Ok(())
        }
        Some(other) => Err(Failure::Usage(format!("unknown command '{other}'"))),
        None => Err(Failure::Usage("no command given".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => ExitCode::from(report(failure)),
    }
}

/// Prints a failure on stderr and returns its exit status: 2 for usage mistakes, 130 after Ctrl-C, else 1.
fn report(failure: Failure) -> u8 {
    match failure {
        Failure::Usage(msg) => {
            tell(&format!("diskbridge: {msg}\n{}", usage()));
            2
        }
        Failure::Error(fallback_file, e) => {
            match e.file().map(str::to_string).or(fallback_file) {
                Some(file) => tell(&format!("diskbridge: {file}: {e}")),
                None => tell(&format!("diskbridge: {e}")),
            }
            if e.kind() == ErrorKind::Cancelled { 130 } else { 1 }
        }
    }
}

/// Prints a report line on stdout.
fn say(text: &str) {
    emit(std::io::stdout().lock(), format_args!("{text}\n"));
}

/// Prints a message line on stderr.
fn tell(text: &str) {
    emit(std::io::stderr().lock(), format_args!("{text}\n"));
}

/// Every line the commands print goes through here (println! would panic). A reader that went away
/// (`| head`) is not an error: what it would have read is dropped and the command ends with its own status,
/// as qemu-img does (it ignores SIGPIPE and its printf failures).
fn emit(mut stream: impl Write, text: std::fmt::Arguments<'_>) {
    let _ = stream.write_fmt(text).and_then(|()| stream.flush());
}

/// qemu-img's `-p` line, `    (12.00/100%)` rewritten in place: printed at 0 %, whenever the progress has moved by
/// more than `step` percent since the last line (qemu-img: 1 for convert, 2 for compare), and at 100 % — at most
/// about a hundred lines however large the image — on stdout, as qemu-img prints it, or on stderr when stdout
/// carries the image itself.
struct Progress {
    /// Hundredths of a percent.
    step: u64,
    to_stderr: bool,
    shown: Option<u64>,
}

impl Progress {
    fn new(step_percent: u64, to_stderr: bool) -> Self {
        Progress { step: step_percent * 100, to_stderr, shown: None }
    }

    fn show(&mut self, done: u64, total: u64) {
        // Rounded down, so that 100.00 % means done.
        let hundredths = (u128::from(done.min(total)) * 10_000).checked_div(u128::from(total)).unwrap_or(10_000) as u64;
        let due = match self.shown {
            None => true,
            Some(shown) => hundredths > shown + self.step || (hundredths == 10_000 && shown < 10_000),
        };
        if due {
            self.shown = Some(hundredths);
            self.print(format_args!("    ({}.{:02}/100%)\r", hundredths / 100, hundredths % 100));
        }
    }

    /// Ends the line, as qemu-img does when the work is done.
    fn end(&self) {
        self.print(format_args!("\n"));
    }

    fn print(&self, text: std::fmt::Arguments<'_>) {
        if self.to_stderr { emit(std::io::stderr().lock(), text) } else { emit(std::io::stdout().lock(), text) }
    }
}

fn warn(message: &str) {
    tell(&format!("diskbridge: warning: {message}"));
}

fn format_arg(value: &str) -> Result<Format, Failure> {
    Format::from_name(value).map_err(|e| Failure::Usage(e.message().to_string()))
}

fn positionals(args: &[Arg]) -> Vec<&str> {
    args.iter().filter_map(|a| if let Arg::Positional(p) = a { Some(p.as_str()) } else { None }).collect()
}

fn open_input(path: &str, format: Option<Format>) -> Result<Box<dyn Image>, Failure> {
    open_input_disk(path, format, 0)
}

fn open_input_disk(path: &str, format: Option<Format>, disk: usize) -> Result<Box<dyn Image>, Failure> {
    let image = diskbridge::native::open_image_disk(Path::new(path), format, disk)
        .map_err(|e| Failure::Error(Some(path.into()), e))?;
    warn_about(path, image.as_ref());
    Ok(image)
}

fn warn_about(path: &str, image: &dyn Image) {
    for w in &image.info().warnings {
        warn(&format!("{path}: {w}"));
    }
}

/// `--output=human|json`, as qemu-img takes it: whether JSON was asked for.
fn output_is_json(value: &str) -> Result<bool, Failure> {
    match value {
        "json" => Ok(true),
        "human" => Ok(false),
        _ => Err(Failure::Usage(format!("--output must be human or json, not '{value}'"))),
    }
}

fn cmd_info(argv: &[String]) -> Result<(), Failure> {
    let parsed = args::parse(argv, "f", &["output"])?;
    let (mut format, mut json, mut chain) = (None, false, false);
    for a in &parsed {
        match a {
            Arg::Short('f', Some(f)) => format = Some(format_arg(f)?),
            Arg::Long(o, Some(v)) if o == "output" => json = output_is_json(v)?,
            Arg::Long(o, None) if o == "backing-chain" => chain = true,
            Arg::Positional(_) => {}
            other => return Err(Failure::Usage(format!("info: unexpected {other:?}"))),
        }
    }
    let [path] = positionals(&parsed)[..] else {
        return Err(Failure::Usage("info needs exactly one FILE".into()));
    };
    // As qemu-img info, an overlay is shown even when its backing file is not there.
    let (mut image, missing) = diskbridge::native::open_image_alone(Path::new(path), format)
        .map_err(|e| Failure::Error(Some(path.into()), e))?;
    warn_about(path, image.as_ref());
    for e in &missing {
        warn(&format!("{}: {}; shown without it", e.file().unwrap_or(path), e.message()));
    }
    let reports = info::collect(path, image.as_mut(), chain, missing.is_empty())
        .map_err(|e| Failure::Error(Some(path.into()), e))?;
    let text = if json { info::json(&reports, chain) } else { info::human(&reports) };
    say(text.trim_end());
    Ok(())
}

/// Seed for random fields: `DISKBRIDGE_SEED`, or fresh randomness from the OS (std's hasher keys).
fn seed() -> Result<u64, Failure> {
    match std::env::var("DISKBRIDGE_SEED") {
        Ok(v) => v.parse().map_err(|_| Failure::Usage(format!("DISKBRIDGE_SEED must be a whole number, not '{v}'"))),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            );
            Ok(h.finish())
        }
    }
}

/// Timestamp for the output: `SOURCE_DATE_EPOCH`, or now.
fn epoch() -> Result<u64, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.parse().map_err(|_| Failure::Usage(format!("SOURCE_DATE_EPOCH must be a whole number, not '{v}'"))),
        Err(_) => {
            Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
        }
    }
}

fn target_for(format: Format, options: OptionList, output: &str, compressed: bool) -> Result<Target, Failure> {
    let output_name = if output == "-" {
        "disk".to_string()
    } else {
        Path::new(output).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| output.to_string())
    };
    Ok(Target {
        format,
        options,
        settings: Settings { seed: seed()?, epoch: epoch()?, output_name, compressed, seed_disk: None },
    })
}

/// Converts `source` into `output` (a path or `-`), removing any partial output on failure or Ctrl-C.
fn write_image(
    source: Box<dyn Image>,
    reopen: Option<diskbridge::convert::Reopen<'_>>,
    target: &Target,
    output: &str,
    progress: bool,
) -> Result<(), Failure> {
    let size = source.virtual_size();
    let threads = match std::env::var("DISKBRIDGE_THREADS") {
        Ok(v) => {
            v.parse().map_err(|_| Failure::Usage(format!("DISKBRIDGE_THREADS must be a whole number, not '{v}'")))?
        }
        Err(_) => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    let _ = ctrlc::set_handler(|| CANCEL.store(true, Ordering::Relaxed));
    let mut shown = Progress::new(1, output == "-");
    let mut show = |done: u64, total: u64| shown.show(done, total);
    let failed = |e: Error| Failure::Error(Some(output.to_string()), e);
    // A format of several files (OVF) stages each of them; all appear together when complete.
    let mut files = output::Files::new(output);
    let writer = target::writer(target, size, &mut files).map_err(failed)?;
    for w in writer.warnings() {
        warn(&format!("{output}: {w}"));
    }
    let opts = RunOptions { threads, progress: progress.then_some(&mut show as _), cancel: Some(&CANCEL), reopen };
    run(source, writer, opts).map_err(failed)?;
    files.commit().map_err(failed)?;
    if progress {
        shown.end();
    }
    Ok(())
}

fn cmd_convert(argv: &[String]) -> Result<(), Failure> {
    // Which flags take a value follows qemu-img: `-W` takes none, so `-W in out` keeps both positionals.
    let long: Vec<&str> = ["target-is-zero"].into_iter().chain(seed::FLAGS).collect();
    let parsed = args::parse(argv, "fOomStTlrF", &long)?;
    let (mut in_format, mut out_format, mut options) = (None, None, OptionList::default());
    let (mut progress, mut quiet, mut compressed) = (false, false, false);
    for a in &parsed {
        match a {
            Arg::Short('f', Some(f)) => in_format = Some(format_arg(f)?),
            Arg::Short('O', Some(f)) => out_format = Some(format_arg(f)?),
            Arg::Short('o', Some(o)) => options.extend(o).map_err(|e| Failure::Usage(e.message().into()))?,
            Arg::Short('p', None) => progress = true,
            Arg::Short('q', None) => quiet = true,
            // Accepted for qemu-img compatibility; they tune qemu's own I/O and mean nothing here.
            Arg::Short('m' | 'S' | 't' | 'T', Some(_)) | Arg::Short('W', None) => {}
            Arg::Short('c', None) => compressed = true,
            Arg::Long(name, Some(_)) if seed::FLAGS.contains(&name.as_str()) => {}
            Arg::Positional(_) => {}
            other => return Err(Failure::Usage(format!("convert: unsupported option {other:?}"))),
        }
    }
    let [input, output] = positionals(&parsed)[..] else {
        return Err(Failure::Usage("convert needs INPUT and OUTPUT".into()));
    };
    let (first_login, login_files) = seed::config(&parsed)?;
    seed::refuse_overwriting(&login_files, output)?;
    if output != "-" {
        if output::same_file(Path::new(input), Path::new(output)) {
            return Err(Failure::Error(Some(output.into()), Error::argument("Refusing to overwrite the input image")));
        }
        // Before the input is read: a conversion of many GiB must not end in "cannot write there".
        output::check_place(Path::new(output))?;
    }
    // Without -O the output is raw, as in qemu-img; a name like disk.vmdk says that was not meant.
    let out_format = out_format.unwrap_or_else(|| {
        let named = Path::new(output).extension().and_then(|e| Format::from_extension(&e.to_string_lossy()));
        if let Some(named) = named.filter(|&f| f != Format::raw()) {
            warn(&format!(
                "{output} is written as raw, qemu-img's default without -O; add -O {named} for a {named} image"
            ));
        }
        Format::raw()
    });
    if !first_login.is_empty() && out_format.spec().disk_format.is_none() {
        return Err(Failure::Usage(format!(
            "--hostname, --ssh-key, --password-file and --user-data go into an OVA or OVF package; for {out_format} \
             output write the seed disk beside it with `diskbridge seed`"
        )));
    }
    let chosen_disk = options.take_u64("disk").map_err(|e| Failure::Usage(e.message().into()))?;
    let grown_to = options.take_size("size").map_err(|e| Failure::Usage(e.message().into()))?;
    // A package of several disks (an OVA) converts each, or the one disk=N picks.
    let format = probe(input, in_format)?;
    let package = format.spec().disks.is_some();
    let disks = match chosen_disk {
        Some(_) if !package => return Err(Failure::Usage("disk=N selects a disk of an OVA input".into())),
        Some(0) => return Err(Failure::Usage("disk=N counts from 1".into())),
        Some(n) => vec![(n as usize - 1, output.to_string())],
        None if package => {
            let count = diskbridge::native::disk_count(Path::new(input), format)
                .map_err(|e| Failure::Error(Some(input.into()), e))?;
            (0..count).map(|i| (i, numbered_output(output, i))).collect()
        }
        None => vec![(0, output.to_string())],
    };
    for (disk, output) in disks {
        let source = open_input_disk(input, in_format, disk)?;
        let source = match grown_to {
            // A size below the source's is the caller's mistake, named with both sizes.
            Some(size) => Box::new(Grown::new(source, size).map_err(|e| Failure::Usage(e.message().into()))?),
            None => source,
        };
        let mut target = target_for(out_format, options.clone(), &output, compressed)?;
        if !first_login.is_empty() {
            let settings = &target.settings;
            let seed_disk = diskbridge::seed::for_package(&first_login, settings.seed, settings.epoch);
            target.settings.seed_disk = Some(seed_disk.map_err(|e| Failure::Usage(e.message().into()))?);
        }
        // Each encoder thread opens the input itself, so decompressing it runs on every core too.
        let reopen = || {
            let source = diskbridge::native::open_image_disk(Path::new(input), in_format, disk)?;
            Ok(match grown_to {
                Some(size) => Box::new(Grown::new(source, size)?) as Box<dyn Image>,
                None => source,
            })
        };
        // As in qemu-img, -q silences progress whatever the order of -p and -q.
        write_image(source, Some(&reopen), &target, &output, progress && !quiet)?;
    }
    Ok(())
}

/// The input's format: as given, or probed from its bytes.
fn probe(path: &str, format: Option<Format>) -> Result<Format, Failure> {
    if let Some(f) = format {
        return Ok(f);
    }
    let file =
        diskbridge::native::InputFile::open(Path::new(path)).map_err(|e| Failure::Error(Some(path.into()), e))?;
    diskbridge::open::probe_file(&file).map_err(|e| Failure::Error(Some(path.into()), e))
}

/// Output name for disk `index` of a multi-disk OVA: the first keeps the name, the others get `-diskN`.
fn numbered_output(output: &str, index: usize) -> String {
    if index == 0 || output == "-" {
        return output.to_string();
    }
    let path = Path::new(output);
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-disk{}.{}", index + 1, ext.to_string_lossy()),
        None => format!("{stem}-disk{}", index + 1),
    };
    path.with_file_name(name).to_string_lossy().into_owned()
}

/// `compare` has qemu-img's exit codes: 0 identical, 1 different, 2 for any error, usage included.
fn cmd_compare(argv: &[String]) -> ExitCode {
    use diskbridge::compare::{Comparison, compare};
    let fail = |message: String| {
        tell(&format!("diskbridge: {message}"));
        ExitCode::from(2)
    };
    let parsed = match args::parse(argv, "fF", &[]) {
        Ok(p) => p,
        Err(e) => return fail(e.0),
    };
    let (mut formats, mut strict, mut progress, mut quiet) = ([None, None], false, false, false);
    for a in &parsed {
        match a {
            Arg::Short(c @ ('f' | 'F'), Some(f)) => match Format::from_name(f) {
                Ok(f) => formats[usize::from(*c == 'F')] = Some(f),
                Err(e) => return fail(e.message().to_string()),
            },
            Arg::Short('s', None) => strict = true,
            Arg::Short('p', None) => progress = true,
            Arg::Short('q', None) => quiet = true,
            Arg::Positional(_) => {}
            other => return fail(format!("compare: unsupported option {other:?}")),
        }
    }
    let [first, second] = positionals(&parsed)[..] else {
        return fail("compare needs two images".into());
    };
    let open = |path: &str, format| match open_input(path, format) {
        Ok(image) => Ok(image),
        Err(Failure::Error(file, e)) => {
            Err(format!("{}: {e}", e.file().map(str::to_string).or(file).unwrap_or_default()))
        }
        Err(Failure::Usage(m)) => Err(m),
    };
    let (mut a, mut b) = match (open(first, formats[0]), open(second, formats[1])) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(m), _) | (_, Err(m)) => return fail(m),
    };
    // As in convert, -q silences progress whatever the order of -p and -q.
    let progress = progress && !quiet;
    let mut shown = Progress::new(2, false);
    let mut show = |done: u64, total: u64| {
        if progress {
            shown.show(done, total);
        }
    };
    let result = compare(a.as_mut(), b.as_mut(), strict, &mut show);
    if progress {
        shown.end();
    }
    let say = |line: &str| {
        if !quiet {
            say(line);
        }
    };
    match result {
        Err(e) => fail(format!("{}{e}", e.file().map(|f| format!("{f}: ")).unwrap_or_default())),
        Ok(Comparison::SizeMismatch) => {
            say("Strict mode: Image size mismatch!");
            ExitCode::from(1)
        }
        Ok(Comparison::Identical { sizes_differ }) => {
            if sizes_differ {
                say("Warning: Image size mismatch!");
            }
            say("Images are identical.");
            ExitCode::SUCCESS
        }
        Ok(Comparison::Mismatch { offset, sizes_differ }) => {
            if sizes_differ {
                say("Warning: Image size mismatch!");
            }
            say(&format!("Content mismatch at offset {offset}!"));
            ExitCode::from(1)
        }
    }
}

fn cmd_create(argv: &[String]) -> Result<(), Failure> {
    let parsed = args::parse(argv, "foFbu", &[])?;
    let (mut format, mut options) = (Format::raw(), OptionList::default());
    for a in &parsed {
        match a {
            Arg::Short('f', Some(f)) => format = format_arg(f)?,
            Arg::Short('o', Some(o)) => options.extend(o).map_err(|e| Failure::Usage(e.message().into()))?,
            Arg::Short('q', None) => {}
            Arg::Positional(_) => {}
            other => return Err(Failure::Usage(format!("create: unsupported option {other:?}"))),
        }
    }
    let pos = positionals(&parsed);
    let option_size = options.take_size("size").map_err(|e| Failure::Usage(e.message().into()))?;
    let (output, size) = match (&pos[..], option_size) {
        ([output, size], _) => (*output, parse_size(size).map_err(|e| Failure::Usage(e.message().into()))?),
        ([output], Some(size)) => (*output, size),
        _ => return Err(Failure::Usage("create needs OUTPUT and SIZE".into())),
    };
    if output != "-" {
        output::check_place(Path::new(output))?;
    }
    let target = target_for(format, options, output, false)?;
    write_image(Box::new(Blank::new(size.div_ceil(512) * 512)), None, &target, output, false)?;
    if output != "-" {
        say(&format!("Formatting '{output}', fmt={} size={size}", format.name()));
    }
    Ok(())
}
