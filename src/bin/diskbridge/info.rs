//! `diskbridge info`: what qemu-img info prints, in its human and JSON forms, plus the bytes the guest map
//! says are allocated and zero.

use crate::json::Json;
use diskbridge::Result;
use diskbridge::extent::{ExtentKind, Extents};
use diskbridge::guest::{self, Guest};
use diskbridge::image::{FormatSpecific, Image, ImageInfo};
use diskbridge::native::InputFile;
use std::path::Path;

/// What is shown for one image of a chain.
pub struct Report {
    filename: String,
    guest: Option<Guest>,
    info: ImageInfo,
    actual_size: u64,
    allocated: u64,
    zero: u64,
}

/// Reports on `image` (named `filename`) and, if `chain`, on each backing image below it. Without the `whole`
/// chain (a backing file is missing) the guest's partition table is not looked for: it may lie in the missing file.
pub fn collect(filename: &str, image: &mut dyn Image, chain: bool, whole: bool) -> Result<Vec<Report>> {
    let mut reports = Vec::new();
    let mut name = filename.to_string();
    let mut current = Some(image);
    while let Some(img) = current {
        let (allocated, zero) = tally(img)?;
        // The guest's partition table describes the whole chain's view, so it is read on the top image only.
        let guest = if reports.is_empty() && whole { Some(guest::inspect(img)?) } else { None };
        let info = img.info().clone();
        let next_name = info.full_backing_filename.clone();
        reports.push(Report {
            guest,
            actual_size: InputFile::allocated(Path::new(&name)),
            filename: name,
            info,
            allocated,
            zero,
        });
        if !chain {
            break;
        }
        current = img.backing();
        match next_name {
            Some(n) => name = n,
            None => break,
        }
    }
    Ok(reports)
}

/// Guest bytes mapped as data and as explicit zeros (the backing chain included).
fn tally(image: &mut dyn Image) -> Result<(u64, u64)> {
    let (mut data, mut zero) = (0, 0);
    for extent in Extents::all(image) {
        let e = extent?;
        match e.kind {
            ExtentKind::Data => data += e.length,
            ExtentKind::Zero => zero += e.length,
            ExtentKind::Unallocated => {}
        }
    }
    Ok((data, zero))
}

/// qemu's human size: three significant digits and a binary unit (`64 KiB`, `954 MiB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{text} {}", UNITS[unit])
}

/// The human form, one block per image separated by a blank line.
pub fn human(reports: &[Report]) -> String {
    let mut blocks = Vec::new();
    for r in reports {
        let i = &r.info;
        let mut s = format!(
            "image: {}\nfile format: {}\nvirtual size: {} ({} bytes)\ndisk size: {}\n",
            r.filename,
            i.format,
            human_size(i.virtual_size),
            i.virtual_size,
            human_size(r.actual_size)
        );
        if let Some(c) = i.cluster_size {
            s += &format!("cluster_size: {c}\n");
        }
        if let Some(b) = &i.backing_filename {
            s += &format!("backing file: {b}");
            match &i.full_backing_filename {
                Some(full) if full != b => s += &format!(" (actual path: {full})\n"),
                _ => s += "\n",
            }
        }
        if let Some(f) = &i.backing_format {
            s += &format!("backing file format: {f}\n");
        }
        if i.dirty {
            s += "cleanly shut down: no\n";
        }
        s += &format!(
            "allocated: {} ({} bytes)\nzero: {} ({} bytes)\n",
            human_size(r.allocated),
            r.allocated,
            human_size(r.zero),
            r.zero
        );
        if let Some(g) = &r.guest {
            let boot: Vec<&str> = g.boot.iter().map(|b| b.name()).collect();
            let boot = if boot.is_empty() { "none found".to_string() } else { boot.join(", ") };
            s += &format!("partition table: {}\nboots with: {boot}\n", g.table.name());
            for p in &g.problems {
                s += &format!("partition table problem: {p}\n");
            }
        }
        if let Some((_, fields)) = i.specific.as_ref().map(specific_fields) {
            s += "Format specific information:\n";
            for (key, value) in fields {
                s += &format!("    {}: {}\n", key.replace('-', " "), value.plain());
            }
        }
        blocks.push(s);
    }
    blocks.join("\n")
}

fn json_one(r: &Report) -> Json {
    let i = &r.info;
    let mut f = vec![("virtual-size", Json::Number(i.virtual_size)), ("filename", Json::String(r.filename.clone()))];
    if let Some(c) = i.cluster_size {
        f.push(("cluster-size", Json::Number(c)));
    }
    f.push(("format", Json::String(i.format.name().into())));
    f.push(("actual-size", Json::Number(r.actual_size)));
    if let Some(b) = &i.backing_filename {
        f.push(("backing-filename", Json::String(b.clone())));
    }
    if let Some(b) = &i.full_backing_filename {
        f.push(("full-backing-filename", Json::String(b.clone())));
    }
    if let Some(b) = &i.backing_format {
        f.push(("backing-filename-format", Json::String(b.clone())));
    }
    if let Some((kind, fields)) = i.specific.as_ref().map(specific_fields) {
        let data = Json::Object(fields);
        f.push(("format-specific", Json::Object(vec![("type", Json::String(kind.into())), ("data", data)])));
    }
    f.push(("dirty-flag", Json::Bool(i.dirty)));
    f.push(("allocated-bytes", Json::Number(r.allocated)));
    f.push(("zero-bytes", Json::Number(r.zero)));
    if let Some(g) = &r.guest {
        let mut fields = vec![
            ("partition-table", Json::String(g.table.name().into())),
            ("boot", Json::Array(g.boot.iter().map(|b| Json::String(b.name().into())).collect())),
        ];
        if !g.problems.is_empty() {
            fields.push(("problems", Json::Array(g.problems.iter().map(|p| Json::String(p.clone())).collect())));
        }
        f.push(("guest", Json::Object(fields)));
    }
    Json::Object(f)
}

/// Format-specific facts: qemu's type name and its (JSON key, value) pairs; the human form prints the same
/// keys with spaces, as qemu-img does.
fn specific_fields(specific: &FormatSpecific) -> (&'static str, Vec<(&'static str, Json)>) {
    match specific {
        FormatSpecific::Qcow2 { compat, compression_type, lazy_refcounts, refcount_bits, corrupt, extended_l2 } => (
            "qcow2",
            vec![
                ("compat", Json::String(compat.clone())),
                ("compression-type", Json::String(compression_type.clone())),
                ("lazy-refcounts", Json::Bool(*lazy_refcounts)),
                ("refcount-bits", Json::Number(u64::from(*refcount_bits))),
                ("corrupt", Json::Bool(*corrupt)),
                ("extended-l2", Json::Bool(*extended_l2)),
            ],
        ),
        FormatSpecific::Vmdk { create_type, cid, parent_cid } => (
            "vmdk",
            vec![
                ("cid", Json::Number(u64::from(*cid))),
                ("parent-cid", Json::Number(u64::from(*parent_cid))),
                ("create-type", Json::String(create_type.clone())),
            ],
        ),
        FormatSpecific::Vpc { subformat, creator } => {
            ("vpc", vec![("subformat", Json::String(subformat.clone())), ("creator", Json::String(creator.clone()))])
        }
    }
}

/// The JSON form: one object, or an array with `--backing-chain`, as qemu-img prints them.
pub fn json(reports: &[Report], chain: bool) -> String {
    if chain { Json::Array(reports.iter().map(json_one).collect()).render() } else { json_one(&reports[0]).render() }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn sizes_read_like_qemu_img() {
        assert_eq!(human_size(65536), "64 KiB");
        assert_eq!(human_size(1_000_000_000), "954 MiB");
        assert_eq!(human_size(2 << 40), "2 TiB");
        assert_eq!(human_size(3 << 29), "1.5 GiB");
        assert_eq!(human_size(512), "512 B");
    }
}
