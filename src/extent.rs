//! The guest map's vocabulary: which byte ranges of the virtual disk hold data, read as zeros, or are left to a
//! backing file. [`crate::image::Extents`] walks an image's map with it.

/// What a range of the virtual disk holds, as the image's metadata says, before any guest data is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentKind {
    /// Stored in the image (or its backing chain); may still happen to be all zeros.
    Data,
    /// Explicitly recorded as reading zeros.
    Zero,
    /// Not allocated anywhere in the chain; reads as zeros.
    Unallocated,
}

/// A run of guest bytes `[offset, offset + length)` of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First guest byte.
    pub offset: u64,
    /// Length in bytes, never 0.
    pub length: u64,
    /// What the run holds.
    pub kind: ExtentKind,
}

impl Extent {
    /// One past the last guest byte.
    pub fn end(&self) -> u64 {
        self.offset + self.length
    }
}
