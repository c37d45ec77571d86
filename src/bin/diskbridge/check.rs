//! `diskbridge check`: qemu-img check's report and exit status — 0 clean, 2 corruptions, 3 leaks, 1 when the
//! image could not be checked (including formats without a check, where qemu-img says the same with 63).
//! Usage mistakes also exit 1 here, as in qemu-img: 2 would read as "corruptions".

use crate::args::{self, Arg};
use crate::json::Json;
use crate::{Failure, format_arg, output_is_json, positionals, report};
use diskbridge::Error;
use diskbridge::formats::Format;
use diskbridge::native::{DirResolver, InputFile};
use diskbridge::report::Report;
use std::path::Path;
use std::process::ExitCode;

/// Runs `check` with its arguments and returns the exit status.
pub fn run(argv: &[String]) -> ExitCode {
    match check(argv) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            report(failure);
            ExitCode::from(1)
        }
    }
}

fn check(argv: &[String]) -> Result<u8, Failure> {
    let parsed = args::parse(argv, "fT", &["output"])?;
    let (mut format, mut json, mut quiet) = (None, false, false);
    for a in &parsed {
        match a {
            Arg::Short('f', Some(f)) => format = Some(format_arg(f)?),
            Arg::Long(o, Some(v)) if o == "output" => json = output_is_json(v)?,
            Arg::Short('q', None) => quiet = true,
            // qemu's cache mode and shared locking: nothing to tune when the file is only read.
            Arg::Short('T', Some(_)) | Arg::Short('U', None) => {}
            Arg::Long(o, None) if o == "force-share" => {}
            Arg::Positional(_) => {}
            other => return Err(Failure::Usage(format!("check: unsupported option {other:?}"))),
        }
    }
    let [path] = positionals(&parsed)[..] else {
        return Err(Failure::Usage("check needs exactly one FILE".into()));
    };
    let failed = |e: Error| Failure::Error(Some(path.to_string()), e);
    let file = InputFile::open(Path::new(path)).map_err(failed)?;
    let format = match format {
        Some(f) => f,
        None => diskbridge::open::probe_file(&file).map_err(failed)?,
    };
    let mut problem = |p: &str| crate::tell(p);
    let result = diskbridge::check::check(path, Box::new(file), format, &DirResolver, &mut problem).map_err(failed)?;
    if json {
        super::say(&to_json(&result, path, format).render());
    } else if !quiet {
        super::say(human(&result).trim_end_matches('\n'));
    }
    Ok(result.exit_code())
}

/// qemu-img's human report.
fn human(r: &Report) -> String {
    let mut s = String::new();
    if r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0 {
        s += "No errors were found on the image.\n";
    }
    if r.corruptions > 0 {
        s += &format!(
            "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt \
             it.\n",
            r.corruptions
        );
    }
    if r.leaks > 0 {
        s += &format!(
            "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n",
            r.leaks
        );
    }
    if r.check_errors > 0 {
        s += &format!("\n{} internal errors have occurred during the check.\n", r.check_errors);
    }
    if r.total_clusters > 0 && r.allocated_clusters > 0 {
        let allocated = r.allocated_clusters as f64;
        s += &format!(
            "{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters\n",
            r.allocated_clusters,
            r.total_clusters,
            allocated * 100.0 / r.total_clusters as f64,
            r.fragmented_clusters as f64 * 100.0 / allocated,
            r.compressed_clusters as f64 * 100.0 / allocated
        );
    }
    if r.image_end_offset > 0 {
        s += &format!("Image end offset: {}\n", r.image_end_offset);
    }
    s
}

/// qemu-img's JSON report: the same keys, in the order qemu 10 prints them, the counters only when non-zero
/// (`check-errors` always).
fn to_json(r: &Report, filename: &str, format: Format) -> Json {
    let mut fields = Vec::new();
    let nonzero = |fields: &mut Vec<(&'static str, Json)>, key, value| {
        if value != 0 {
            fields.push((key, Json::Number(value)));
        }
    };
    nonzero(&mut fields, "image-end-offset", r.image_end_offset);
    nonzero(&mut fields, "compressed-clusters", r.compressed_clusters);
    nonzero(&mut fields, "total-clusters", r.total_clusters);
    nonzero(&mut fields, "corruptions", r.corruptions);
    fields.push(("check-errors", Json::Number(r.check_errors)));
    nonzero(&mut fields, "leaks", r.leaks);
    nonzero(&mut fields, "allocated-clusters", r.allocated_clusters);
    fields.push(("filename", Json::String(filename.to_string())));
    fields.push(("format", Json::String(format.name().to_string())));
    nonzero(&mut fields, "fragmented-clusters", r.fragmented_clusters);
    Json::Object(fields)
}
