//! Images that need other files: backing files, differencing disks' parents, extents in files of their own.
//! Readers ask an [`Opener`] for them, so no reader knows the others (the registry implements it, in
//! [`crate::open`]); the caller's [`FileResolver`] finds the files. Also what every differencing format
//! shares: reading through to a parent that may be smaller than the child.

use crate::error::{Error, ErrorKind, Result};
use crate::extent::{Extent, ExtentKind};
use crate::image::Image;
use crate::io::ReadAt;

/// Backing chains deeper than this are refused (qemu has no limit and hangs on a loop).
pub const MAX_CHAIN_DEPTH: usize = 16;

/// Opens the files an image refers to: backing files, extents, parents.
pub trait FileResolver {
    /// Opens `name` as written inside `referrer` (a relative name is relative to the referrer's directory).
    /// Returns the resolved name (a path in the CLI, the picked file's name in the page) and the file.
    ///
    /// # Errors
    /// `NotFound` when there is no such file, so that another candidate may be tried or, where allowed, the
    /// file left out; any other kind (permission denied, a broken file) is an error of its own.
    fn open(&self, name: &str, referrer: &str) -> Result<(String, Box<dyn ReadAt>)>;
}

/// A resolver for single files: any reference to another file is not found.
#[derive(Debug, Default)]
pub struct NoFiles;

impl FileResolver for NoFiles {
    fn open(&self, name: &str, _referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        Err(Error::new(ErrorKind::NotFound, format!("Cannot open '{name}': no other files are available")))
    }
}

/// What a reader may ask for while it opens an image.
pub trait Opener {
    /// Opens a backing file named `name` inside `referrer`, in the format named (qemu-img's name) or probed.
    /// Returns the name the resolver gave the file (for `full-backing-filename`) and the image.
    ///
    /// # Errors
    /// `LimitExceeded` past [`MAX_CHAIN_DEPTH`], `Corrupt` on a loop, and whatever opening the file gives.
    fn open_backing(&mut self, name: &str, referrer: &str, format: Option<&str>) -> Result<(String, Box<dyn Image>)>;

    /// Opens a file named inside `referrer` that is part of the same image, such as an extent of a multi-file
    /// VMDK. Unlike a backing file it is not a link of the chain, so it counts neither towards the depth nor
    /// as a loop when two extents name the same file. Returns the resolved name and the file.
    ///
    /// # Errors
    /// Whatever the resolver gives, naming `referrer`.
    fn open_part(&self, name: &str, referrer: &str) -> Result<(String, Box<dyn ReadAt>)>;

    /// Opens `file`, already found and named `name`, as a link of the chain (a parent, a disk inside a package),
    /// in the format named or probed.
    ///
    /// # Errors
    /// As [`Opener::open_backing`].
    fn open_file(&mut self, name: &str, file: Box<dyn ReadAt>, format: Option<&str>) -> Result<Box<dyn Image>>;

    /// Which disk of a package holding several (an OVA) is wanted, counted from 0.
    fn disk_index(&self) -> usize;

    /// Keeps `error`, a failure to open a backing file or parent, when the caller looks at an image alone
    /// (`info`, as qemu-img shows an overlay without its backing file) and the file is not found.
    ///
    /// # Errors
    /// `error` itself otherwise — always when the file was found but could not be read.
    fn excuse_missing(&mut self, error: Error) -> Result<()>;
}

/// A reader's attempt at opening its backing file or parent: `None` when it was not found and the caller allows
/// that ([`Opener::excuse_missing`]).
///
/// # Errors
/// The attempt's error otherwise.
pub fn unless_missing<T>(opener: &mut dyn Opener, opened: Result<T>) -> Result<Option<T>> {
    match opened {
        Ok(value) => Ok(Some(value)),
        Err(e) => opener.excuse_missing(e).map(|()| None),
    }
}

/// The opened parent of a differencing disk.
pub struct Parent {
    /// The name as the child gives it (forward slashes).
    pub name: String,
    /// The name the resolver found it by (a path in the CLI).
    pub resolved: String,
    /// The parent image.
    pub image: Box<dyn Image>,
}

/// Where a differencing disk says its parent is, and how to recognise it.
pub struct ParentSearch<'a> {
    /// Names to try in order (repeats and empty ones skipped).
    pub candidates: Vec<String>,
    /// The format the parent must have (qemu-img's name).
    pub format: &'static str,
    /// The child's format as the error names it ("VHDX").
    pub kind: &'static str,
    /// The error when the child names no candidate at all.
    pub unnamed: &'a str,
}

/// Opens a differencing disk's parent: the first candidate the resolver finds is checked by `verify` (against what
/// the child recorded about its parent) and opened.
///
/// # Errors
/// `NotFound` naming every candidate tried when none is found, `Corrupt` when the child names none, and whatever
/// `verify` or opening the parent gives.
pub fn open_parent(
    opener: &mut dyn Opener,
    search: ParentSearch<'_>,
    referrer: &str,
    verify: &mut dyn FnMut(&dyn ReadAt, &str) -> Result<()>,
) -> Result<Parent> {
    let mut tried: Vec<String> = Vec::new();
    for candidate in search.candidates.into_iter().filter(|c| !c.is_empty()) {
        if tried.contains(&candidate) {
            continue;
        }
        match opener.open_part(&candidate, referrer) {
            Ok((resolved, file)) => {
                verify(&*file, &resolved)?;
                let image = opener.open_file(&resolved, file, Some(search.format))?;
                return Ok(Parent { name: candidate, resolved, image });
            }
            // Not there: the next candidate may point elsewhere.
            Err(e) if e.kind() == ErrorKind::NotFound => tried.push(candidate),
            Err(e) => return Err(e),
        }
    }
    if tried.is_empty() {
        return Err(Error::corrupt(search.unnamed));
    }
    Err(Error::new(
        ErrorKind::NotFound,
        format!("Cannot open the parent of this differencing {}; tried '{}'", search.kind, tried.join("', '")),
    ))
}

/// For a differencing format: the parent's map at `offset`, cut at `end`; beyond a smaller parent (or without
/// one) the child reads zeros.
///
/// # Errors
/// Whatever the parent's map gives.
pub fn parent_extent(parent: Option<&mut (dyn Image + '_)>, offset: u64, end: u64) -> Result<Extent> {
    let unallocated = Extent { offset, length: end - offset, kind: ExtentKind::Unallocated };
    match parent {
        Some(parent) if offset < parent.virtual_size() => {
            let e = parent.extent_at(offset)?;
            Ok(Extent { length: e.end().min(end) - offset, ..e })
        }
        _ => Ok(unallocated),
    }
}

/// For a differencing format: reads the parent's bytes at `offset`, zeros where there is no parent or it is
/// smaller.
///
/// # Errors
/// Whatever reading the parent gives.
pub fn read_parent(parent: Option<&mut (dyn Image + '_)>, offset: u64, buf: &mut [u8]) -> Result<()> {
    let from_parent = match parent {
        Some(parent) => {
            let n = parent.virtual_size().saturating_sub(offset).min(buf.len() as u64) as usize;
            if n > 0 {
                parent.read_at(offset, &mut buf[..n])?;
            }
            n
        }
        None => 0,
    };
    buf[from_parent..].fill(0);
    Ok(())
}

/// For a differencing format: the run of sectors sharing the bitmap bit of the sector holding byte `from`
/// (bytes counted from the bitmap's first sector): whether they are present, and the byte where the run ends
/// (at most `limit`). `present(bitmap, sector)` reads one bit in the format's bit order.
pub fn sector_run(
    bitmap: &[u8],
    present: fn(&[u8], u64) -> bool,
    sector_size: u64,
    from: u64,
    limit: u64,
) -> (bool, u64) {
    let first = present(bitmap, from / sector_size);
    let uniform = if first { 0xff } else { 0 };
    let end = limit.div_ceil(sector_size);
    let mut sector = from / sector_size + 1;
    while sector < end {
        // Whole bytes at a time: runs are asked for once per unit read, and are usually the whole block.
        if sector % 8 == 0 && sector + 8 <= end && bitmap[(sector / 8) as usize] == uniform {
            sector += 8;
        } else if present(bitmap, sector) == first {
            sector += 1;
        } else {
            break;
        }
    }
    (first, (sector * sector_size).min(limit))
}
