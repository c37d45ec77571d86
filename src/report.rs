//! What a consistency check found, with qemu-img check's counters and exit status: the vocabulary shared by
//! the formats' own checks and the `check` operation ([`crate::check`]).

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
