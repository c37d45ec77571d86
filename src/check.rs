//! `check`: whether an image's own metadata is consistent, with qemu-img check's meaning — corruptions
//! (metadata that would make a write destroy data), leaks (space marked used that nothing uses) — for the
//! formats that have something to cross-check. VMDK, VHDX and VHD have no reference counts, so their check
//! walks the whole map and reads every allocated block through the validating reader: every table entry,
//! marker and compressed grain is checked, and each failure counts as a corruption (they cannot leak in
//! qemu's sense). Raw has nothing to check and says so instead of claiming "clean".

use crate::error::{Error, ErrorKind, Result};
use crate::extent::ExtentKind;
use crate::image::{Format, Image};
use crate::io::{ReadAt, zeroed_buffer};

/// What a check found, with qemu-img check's counters (its JSON keys in comments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `corruptions`: inconsistencies that can lose data.
    pub corruptions: u64,
    /// `leaks`: clusters marked in use that nothing references.
    pub leaks: u64,
    /// `check-errors`: parts that could not be checked.
    pub check_errors: u64,
    /// `image-end-offset`: one past the last host cluster in use or referenced.
    pub image_end_offset: u64,
    /// `total-clusters`: guest clusters of the virtual disk.
    pub total_clusters: u64,
    /// `allocated-clusters`: guest clusters with host storage.
    pub allocated_clusters: u64,
    /// `fragmented-clusters`: allocated clusters not right after the previous one in the file.
    pub fragmented_clusters: u64,
    /// `compressed-clusters`.
    pub compressed_clusters: u64,
}

impl Report {
    /// qemu-img check's exit status: 0 clean, 2 corruptions, 3 leaks only; 1 when parts could not be checked.
    pub fn exit_code(&self) -> u8 {
        if self.check_errors > 0 {
            1
        } else if self.corruptions > 0 {
            2
        } else if self.leaks > 0 {
            3
        } else {
            0
        }
    }
}

/// Checks `file` as `format`; `problem` receives each error or leak found, worded as qemu-img words it.
///
/// # Errors
/// `Unsupported` for formats without a check (the caller reports "could not check"); any error that stops
/// the image from being opened or walked.
pub fn check(file: &dyn ReadAt, format: Format, problem: &mut dyn FnMut(&str)) -> Result<Report> {
    match format {
        Format::Qcow2 => crate::qcow2::check(file, problem),
        other => Err(Error::unsupported(format!("This image format ({other}) does not support checks"))),
    }
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
    match error.kind() {
        ErrorKind::Corrupt | ErrorKind::InvalidFormat | ErrorKind::LimitExceeded => {
            report.corruptions += 1;
            problem(&format!("ERROR {error}"));
            Ok(())
        }
        _ => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extent::Extent;

    /// A disk whose first MiB has a damaged table and whose second MiB cannot be read.
    struct Damaged;
    impl Image for Damaged {
        fn info(&self) -> &crate::image::ImageInfo {
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
