//! The guest map: which byte ranges of the virtual disk hold data, read as zeros, or are left to a backing file.

use crate::error::Result;
use crate::image::Image;

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

/// Walks an image's guest map from a given offset, merging neighbours of the same kind, one piece of metadata
/// (an L2 table, a grain table, a BAT entry) at a time — never the whole map at once.
pub struct Extents<'a> {
    image: &'a mut dyn Image,
    next: u64,
    end: u64,
    pending: Option<Extent>,
}

impl<'a> Extents<'a> {
    /// The extents covering `[start, end)` of `image`'s guest space (clipped to its virtual size).
    pub fn new(image: &'a mut dyn Image, start: u64, end: u64) -> Self {
        let end = end.min(image.virtual_size());
        Extents { image, next: start, end, pending: None }
    }

    /// The whole disk.
    pub fn all(image: &'a mut dyn Image) -> Self {
        Self::new(image, 0, u64::MAX)
    }
}

impl Iterator for Extents<'_> {
    type Item = Result<Extent>;

    fn next(&mut self) -> Option<Result<Extent>> {
        loop {
            if self.next >= self.end {
                return self.pending.take().map(Ok);
            }
            let mut e = match self.image.extent_at(self.next) {
                Ok(e) => e,
                Err(err) => {
                    self.next = self.end;
                    return Some(Err(err));
                }
            };
            debug_assert!(e.offset == self.next && e.length > 0, "extent_at broke its contract: {e:?}");
            if e.length == 0 || e.offset != self.next {
                self.next = self.end;
                return Some(Err(crate::error::Error::corrupt("Image map does not advance").at(e.offset)));
            }
            e.length = e.length.min(self.end - e.offset);
            self.next = e.end();
            match &mut self.pending {
                Some(p) if p.kind == e.kind => p.length += e.length,
                Some(_) => return self.pending.replace(e).map(Ok),
                None => self.pending = Some(e),
            }
        }
    }
}
