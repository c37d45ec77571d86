//! Opening an image of any format, and the files it names, through the table of formats: the registry's half of
//! [`crate::chain::Opener`].

use crate::chain::{FileResolver, MAX_CHAIN_DEPTH, Opener};
use crate::error::{Error, ErrorKind, Result};
use crate::extent::Extent;
use crate::formats::Format;
use crate::image::{Image, ImageInfo};
use crate::io::ReadAt;

/// State carried while opening an image and, recursively, its backing chain.
pub struct OpenContext<'a> {
    resolver: &'a dyn FileResolver,
    /// Resolved names of the images opened so far, outermost first.
    chain: Vec<String>,
    /// Which disk of a package to open (0-based).
    disk: usize,
    /// Whether a backing file or parent that cannot be found is left out rather than failing the open.
    missing_allowed: bool,
    /// Why each left-out backing file or parent could not be opened.
    missing: Vec<Error>,
}

impl<'a> OpenContext<'a> {
    /// A context for opening one top-level image.
    pub fn new(resolver: &'a dyn FileResolver) -> Self {
        OpenContext { resolver, chain: Vec::new(), disk: 0, missing_allowed: false, missing: Vec::new() }
    }

    /// Opens disk `index` (0-based) when the image turns out to be a package of several (an OVA).
    pub fn with_disk(mut self, index: usize) -> Self {
        self.disk = index;
        self
    }

    /// For looking at an image alone (`info`, as qemu-img shows an overlay without its backing file): a backing
    /// file or parent that cannot be found is left out, and [`OpenContext::into_missing`] says why. Reads then see
    /// zeros where the missing file would have supplied data.
    pub fn allowing_missing_backing(mut self) -> Self {
        self.missing_allowed = true;
        self
    }

    /// Why each backing file or parent left out could not be opened.
    pub fn into_missing(self) -> Vec<Error> {
        self.missing
    }

    /// Opens `file` (named `name`) in the format given, or the probed one.
    ///
    /// # Errors
    /// `LimitExceeded` past [`MAX_CHAIN_DEPTH`], `Corrupt` on a loop, `Unsupported` for a format that is not a
    /// disk, and whatever the format's reader finds; every error names the file it concerns.
    pub fn open(&mut self, name: &str, file: Box<dyn ReadAt>, format: Option<Format>) -> Result<Box<dyn Image>> {
        if self.chain.iter().any(|n| n == name) {
            // Named by the image that refers back, which adds its name on the way out.
            return Err(Error::corrupt(format!("Backing chain loops back to '{name}'")));
        }
        if self.chain.len() >= MAX_CHAIN_DEPTH {
            return Err(Error::limit(format!("Backing chain is deeper than {MAX_CHAIN_DEPTH} images")));
        }
        let format = match format {
            Some(f) => f,
            None => probe_file(file.as_ref()).map_err(|e| e.in_file(name))?,
        };
        let spec = format.spec();
        let Some(open) = spec.open else {
            return Err(Error::unsupported(spec.not_a_disk).in_file(name));
        };
        self.chain.push(name.to_string());
        let image = open(file, name, self);
        self.chain.pop();
        match image {
            Ok(image) => Ok(Box::new(Named { image, name: name.to_string() })),
            Err(e) => Err(e.in_file(name)),
        }
    }
}

impl Opener for OpenContext<'_> {
    fn open_backing(&mut self, name: &str, referrer: &str, format: Option<&str>) -> Result<(String, Box<dyn Image>)> {
        let (resolved, file) = self.open_part(name, referrer)?;
        let image = Opener::open_file(self, &resolved, file, format)?;
        Ok((resolved, image))
    }

    fn open_part(&self, name: &str, referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        self.resolver.open(name, referrer).map_err(|e| e.in_file(referrer))
    }

    fn open_file(&mut self, name: &str, file: Box<dyn ReadAt>, format: Option<&str>) -> Result<Box<dyn Image>> {
        // A format name the image records but nobody knows is probed, as qemu does without one.
        let format = format.and_then(|f| Format::from_name(f).ok());
        self.open(name, file, format)
    }

    fn disk_index(&self) -> usize {
        self.disk
    }

    fn excuse_missing(&mut self, error: Error) -> Result<()> {
        if self.missing_allowed && error.kind() == ErrorKind::NotFound {
            self.missing.push(error);
            return Ok(());
        }
        Err(error)
    }
}

/// An opened image whose errors found later, while mapping or reading it, name its file as those found while
/// opening it do — for every format in one place. A name set deeper (a backing file, a VMDK extent) stays.
struct Named {
    image: Box<dyn Image>,
    name: String,
}

impl Image for Named {
    fn info(&self) -> &ImageInfo {
        self.image.info()
    }

    fn extent_at(&mut self, offset: u64) -> Result<Extent> {
        self.image.extent_at(offset).map_err(|e| e.in_file(self.name.clone()))
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.image.read_at(offset, buf).map_err(|e| e.in_file(self.name.clone()))
    }

    fn backing(&mut self) -> Option<&mut dyn Image> {
        self.image.backing()
    }

    fn file_length(&self) -> u64 {
        self.image.file_length()
    }
}

/// Recognises `file`'s format from its first and last bytes ([`Format::probe`]).
///
/// # Errors
/// Whatever reading those bytes gives.
pub fn probe_file(file: &dyn ReadAt) -> Result<Format> {
    let mut head = [0u8; 512];
    let n = file.len().min(head.len() as u64) as usize;
    file.read_exact_at(0, &mut head[..n])?;
    let mut tail = [0u8; 512];
    let tail = match file.len().checked_sub(tail.len() as u64) {
        Some(at) => {
            file.read_exact_at(at, &mut tail)?;
            &tail[..]
        }
        None => &[],
    };
    Ok(Format::probe(&head[..n], tail))
}

/// Opens an image and its backing chain.
///
/// # Errors
/// Any error names the file it concerns (see [`Error::file`]).
pub fn open(
    name: &str,
    file: Box<dyn ReadAt>,
    format: Option<Format>,
    resolver: &dyn FileResolver,
) -> Result<Box<dyn Image>> {
    OpenContext::new(resolver).open(name, file, format)
}

/// Like [`open`], choosing disk `index` (0-based) when the image is a package of several.
///
/// # Errors
/// As [`open`].
pub fn open_disk(
    name: &str,
    file: Box<dyn ReadAt>,
    format: Option<Format>,
    resolver: &dyn FileResolver,
    index: usize,
) -> Result<Box<dyn Image>> {
    OpenContext::new(resolver).with_disk(index).open(name, file, format)
}
