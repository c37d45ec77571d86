//! An opened disk image of any input format, seen as its guest map and its guest bytes: the abstraction every
//! reader implements and every operation (convert, compare, check, info) consumes. It names no format; the
//! registry ([`crate::formats`]) knows them all.

use crate::error::{Error, Result};
use crate::extent::{Extent, ExtentKind};

/// Format-specific facts for `info`, as qemu-img's `format-specific` `data`: its JSON keys (`compat`,
/// `compression-type`, `create-type`, …) with their values, in the order qemu-img lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Specific(pub Vec<(&'static str, Fact)>);

/// One format-specific value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A string, such as qcow2's `compat` ("1.1").
    Text(String),
    /// A whole number, such as a VMDK's `cid`.
    Number(u64),
    /// A flag, such as qcow2's `lazy-refcounts`.
    Flag(bool),
}

impl Specific {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Fact> {
        self.0.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The string under `key`.
    pub fn text(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Fact::Text(t)) => Some(t),
            _ => None,
        }
    }

    /// The number under `key`.
    pub fn number(&self, key: &str) -> Option<u64> {
        match self.get(key) {
            Some(Fact::Number(n)) => Some(*n),
            _ => None,
        }
    }

    /// The flag under `key`.
    pub fn flag(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Fact::Flag(f)) => Some(*f),
            _ => None,
        }
    }
}

/// What `info` reports about one image of a chain (not its backing files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// The format, by qemu-img's name for it (`qcow2`, `vpc`, …).
    pub format: &'static str,
    /// Guest size in bytes.
    pub virtual_size: u64,
    /// Allocation unit, where the format has one.
    pub cluster_size: Option<u64>,
    /// Whether the image was not closed cleanly (qcow2 dirty bit).
    pub dirty: bool,
    /// The backing file name as stored in the image.
    pub backing_filename: Option<String>,
    /// The backing file as resolved by the caller's resolver (a path in the CLI).
    pub full_backing_filename: Option<String>,
    /// The backing format as stored, if any.
    pub backing_format: Option<String>,
    /// Format-specific facts.
    pub specific: Option<Specific>,
    /// Things a user should know that do not stop reading (a corrupt or dirty flag).
    pub warnings: Vec<String>,
}

impl ImageInfo {
    /// Info with only the format and size filled in.
    pub fn basic(format: &'static str, virtual_size: u64) -> Self {
        ImageInfo {
            format,
            virtual_size,
            cluster_size: None,
            dirty: false,
            backing_filename: None,
            full_backing_filename: None,
            backing_format: None,
            specific: None,
            warnings: Vec::new(),
        }
    }
}

/// A readable disk image: its guest map (lazily, from metadata) and its guest bytes.
pub trait Image {
    /// Facts about this image (not its backing file).
    fn info(&self) -> &ImageInfo;

    /// Guest size in bytes.
    fn virtual_size(&self) -> u64 {
        self.info().virtual_size
    }

    /// The extent that starts at `offset` (which must be below the virtual size), as far as the metadata at
    /// hand reaches — typically to the end of one L2 table. Never empty. Backing files are consulted, so
    /// `Unallocated` means nothing in the chain holds the range.
    fn extent_at(&mut self, offset: u64) -> Result<Extent>;

    /// Reads guest bytes; `offset + buf.len()` must not exceed the virtual size. Reading 0 bytes does nothing.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()>;

    /// The backing image, if there is one.
    fn backing(&mut self) -> Option<&mut dyn Image> {
        None
    }

    /// Bytes of the image file itself (qemu's `actual-size` is the allocated size; this is the length).
    fn file_length(&self) -> u64;
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
                return Some(Err(Error::corrupt("Image map does not advance").at(e.offset)));
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

/// An image seen with a larger virtual size: past the inner image's end it is unallocated and reads as zeros — a
/// disk grown for its guest to fill (`convert -o size=`; cloud-init's growpart grows the root file system into
/// it at first boot).
pub struct Grown {
    inner: Box<dyn Image>,
    info: ImageInfo,
}

impl Grown {
    /// `inner` as a disk of `virtual_size` bytes, rounded up to whole sectors.
    ///
    /// # Errors
    /// `InvalidArgument` when that is smaller than `inner`, naming both sizes.
    pub fn new(inner: Box<dyn Image>, virtual_size: u64) -> Result<Grown> {
        let size = virtual_size.div_ceil(512) * 512;
        if size < inner.virtual_size() {
            return Err(Error::argument(format!(
                "size={virtual_size} is smaller than the source's virtual size of {} bytes: a disk is only ever grown",
                inner.virtual_size()
            )));
        }
        let info = ImageInfo { virtual_size: size, ..inner.info().clone() };
        Ok(Grown { inner, info })
    }
}

impl Image for Grown {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        let inner_size = self.inner.virtual_size();
        if offset >= inner_size {
            return Ok(Extent { offset, length: self.info.virtual_size - offset, kind: ExtentKind::Unallocated });
        }
        self.inner.extent_at(offset)
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let inside = self.inner.virtual_size().saturating_sub(offset).min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(inside);
        if !head.is_empty() {
            self.inner.read_at(offset, head)?;
        }
        tail.fill(0);
        Ok(())
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        self.inner.backing()
    }

    fn file_length(&self) -> u64 {
        self.inner.file_length()
    }
}

/// A disk of a given size with nothing in it — the source for `create`.
pub struct Blank {
    info: ImageInfo,
}

impl Blank {
    /// An empty disk of `virtual_size` bytes (reported as raw).
    pub fn new(virtual_size: u64) -> Self {
        Blank { info: ImageInfo::basic("raw", virtual_size) }
    }
}

impl Image for Blank {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        Ok(Extent { offset, length: self.info.virtual_size - offset, kind: ExtentKind::Unallocated })
    }

    fn read_at(&mut self, _offset: u64, buf: &mut [u8]) -> Result<()> {
        buf.fill(0);
        Ok(())
    }

    fn file_length(&self) -> u64 {
        0
    }
}
