//! `check`: whether an image's own metadata is consistent, with qemu-img check's meaning — corruptions
//! (metadata that would make a write destroy data), leaks (space marked used that nothing uses) — for the
//! formats that have something to cross-check. VMDK, VHDX and VHD have no reference counts, so their check
//! walks the whole map and reads every allocated block through the validating reader: every table entry,
//! marker and compressed grain is checked, and each failure counts as a corruption (they cannot leak in
//! qemu's sense). Raw has nothing to check and says so instead of claiming "clean". Which check a format gets
//! is its entry in the table of formats.

use crate::chain::FileResolver;
use crate::error::{Error, ErrorKind, Result};
use crate::extent::ExtentKind;
use crate::formats::{Check, Format};
use crate::image::Image;
use crate::io::{ReadAt, zeroed_buffer};
use crate::report::Report;

/// Checks `file` (named `name`) as `format`, opening any file it names through `resolver`; `problem` receives
/// each error or leak found, worded as qemu-img words it. Damage found while opening an image that is walked
/// counts as a corruption too, as qemu-img check reports an image it cannot make sense of.
///
/// # Errors
/// `Unsupported` for formats without a check (the caller reports "could not check"); any error that stops
/// the image from being examined at all.
pub fn check(
    name: &str,
    file: Box<dyn ReadAt>,
    format: Format,
    resolver: &dyn FileResolver,
    problem: &mut dyn FnMut(&str),
) -> Result<Report> {
    match format.spec().check {
        Check::None => Err(Error::unsupported(format!("This image format ({format}) does not support checks"))),
        Check::Tables(check_tables) => check_tables(&*file, problem),
        Check::Walk(all_compressed) => match crate::open::open(name, file, Some(format), resolver) {
            Ok(mut image) => {
                let unit = image.info().cluster_size.unwrap_or(1 << 16);
                let compressed = all_compressed.is_some_and(|f| f(image.info()));
                let mut report = check_structure(image.as_mut(), unit, problem)?;
                if compressed {
                    report.compressed_clusters = report.allocated_clusters;
                }
                Ok(report)
            }
            Err(e) if is_damage(&e) => {
                problem(&format!("ERROR {e}"));
                Ok(Report { corruptions: 1, ..Report::default() })
            }
            Err(e) => Err(e),
        },
    }
}

/// Whether an error is damage in the image, rather than the environment failing.
fn is_damage(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::InvalidFormat | ErrorKind::LimitExceeded)
}

/// Checks an opened VMDK, VHDX or VHD image by walking its whole map and reading every allocated byte.
/// `unit` is the size counted as one cluster (the format's grain or block size).
///
/// # Errors
/// Only what stops the walk altogether (an I/O failure); damage is counted in the report.
pub fn check_structure(image: &mut dyn Image, unit: u64, problem: &mut dyn FnMut(&str)) -> Result<Report> {
    const CHUNK: u64 = 1 << 20;
    let size = image.virtual_size();
    let mut report = Report { total_clusters: size.div_ceil(unit), ..Report::default() };
    let mut buf = zeroed_buffer(CHUNK, "a check buffer")?;
    // Where the metadata that failed the map at the previous unit is: a damaged table fails every unit it
    // covers, and is one problem however many that is.
    let mut failed_at = None;
    let mut pos = 0;
    while pos < size {
        let extent = match image.extent_at(pos) {
            Ok(e) => e,
            Err(e) => {
                let at = e.offset().map(|offset| (e.file().map(str::to_string), offset));
                if at.is_none() || at != failed_at {
                    count(&mut report, e, problem)?;
                }
                failed_at = at;
                // The damaged table covers an unknown range: go on with the next unit.
                pos = (pos / unit + 1) * unit;
                continue;
            }
        };
        failed_at = None;
        if extent.kind == ExtentKind::Data {
            report.allocated_clusters += extent.end().div_ceil(unit) - extent.offset / unit;
            let mut at = extent.offset;
            while at < extent.end() {
                let n = (extent.end() - at).min(CHUNK) as usize;
                if let Err(e) = image.read_at(at, &mut buf[..n]) {
                    count(&mut report, e, problem)?;
                }
                at += n as u64;
            }
        }
        pos = extent.end();
    }
    report.image_end_offset = image.file_length();
    Ok(report)
}

/// Counts damage as a corruption and tells `problem`; environment failures stop the check.
fn count(report: &mut Report, error: Error, problem: &mut dyn FnMut(&str)) -> Result<()> {
    if !is_damage(&error) {
        return Err(error);
    }
    report.corruptions += 1;
    problem(&format!("ERROR {error}"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extent::Extent;
    use crate::image::ImageInfo;

    /// A disk whose first MiB has a damaged table and whose second MiB cannot be read.
    struct Damaged;
    impl Image for Damaged {
        fn info(&self) -> &ImageInfo {
            unreachable!("not asked")
        }
        fn virtual_size(&self) -> u64 {
            3 << 20
        }
        fn extent_at(&mut self, offset: u64) -> Result<Extent> {
            if offset < 1 << 20 {
                return Err(Error::corrupt("Grain table 0 lies beyond the end of the file").at(7));
            }
            Ok(Extent { offset, length: (3 << 20) - offset, kind: ExtentKind::Data })
        }
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
            if offset == 1 << 20 {
                return Err(Error::corrupt("Grain marker names the wrong LBA").at(9));
            }
            buf.fill(1);
            Ok(())
        }
        fn file_length(&self) -> u64 {
            42
        }
    }

    #[test]
    fn each_damaged_table_or_unreadable_block_is_one_corruption() {
        let mut seen = Vec::new();
        let r = check_structure(&mut Damaged, 65536, &mut |p| seen.push(p.to_string())).unwrap();
        assert_eq!((r.corruptions, r.total_clusters, r.allocated_clusters, r.exit_code()), (2, 48, 32, 2));
        assert_eq!(
            seen,
            [
                "ERROR Grain table 0 lies beyond the end of the file (at offset 0x7)",
                "ERROR Grain marker names the wrong LBA (at offset 0x9)"
            ]
        );
    }
}
