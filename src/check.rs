//! `check`: whether an image's own metadata is consistent, with qemu-img check's meaning — corruptions
//! (metadata that would make a write destroy data), leaks (space marked used that nothing uses) — for the
//! formats that have something to cross-check. Formats without a check say so instead of claiming "clean".

use crate::error::{Error, Result};
use crate::image::Format;
use crate::io::ReadAt;

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
