//! Native files for the CLI and tests: a file as [`ReadAt`], a file or stdout as [`Sink`], and backing files
//! resolved relative to the image that names them, as qemu-img does. Not built for wasm32.

use crate::chain::FileResolver;
use crate::error::{Error, Result};
use crate::formats::Format;
use crate::image::Image;
use crate::io::{ReadAt, Sink};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An input file opened read-only; its length is taken once, at open.
#[derive(Debug)]
pub struct InputFile {
    file: File,
    len: u64,
}

impl InputFile {
    /// Opens `path` read-only.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(e, "Cannot open"))?;
        let meta = file.metadata().map_err(|e| Error::io(e, "Cannot stat"))?;
        if meta.is_dir() {
            return Err(Error::argument("Is a directory"));
        }
        Ok(InputFile { len: meta.len(), file })
    }

    /// Bytes the file occupies on disk (qemu-img's `actual-size`).
    pub fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
    }
}

impl ReadAt for InputFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let n = buf.len().min((self.len - offset) as usize);
        loop {
            match self.file.read_at(&mut buf[..n], offset) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => return r.map_err(|e| Error::io(e, "Read failed").at(offset)),
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn allocation_at(&self, offset: u64) -> Option<(bool, u64)> {
        use std::os::fd::AsRawFd;
        if offset >= self.len {
            return None;
        }
        let seek = |whence| {
            // SAFETY: lseek on a descriptor this file owns only moves its position, which pread never uses.
            let at = unsafe { libc::lseek(self.file.as_raw_fd(), offset as libc::off_t, whence) };
            if at < 0 { Err(std::io::Error::last_os_error()) } else { Ok((at as u64).min(self.len)) }
        };
        match seek(libc::SEEK_DATA) {
            Ok(data) if data > offset => Some((false, data)),
            Ok(_) => seek(libc::SEEK_HOLE).ok().filter(|&hole| hole > offset).map(|hole| (true, hole)),
            // No data after `offset`: a hole to the end.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Some((false, self.len)),
            // A file system without SEEK_DATA: taken as all data.
            Err(_) => None,
        }
    }
}

/// An output file, written with positioned writes; holes are left where nothing is written.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
}

impl OutputFile {
    /// Creates (or truncates) `path` for writing.
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io(e, "Cannot create"))?;
        Ok(OutputFile { file })
    }
}

impl Sink for OutputFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, offset).map_err(|e| Error::io(e, "Write failed").at(offset))
    }

    fn is_seekable(&self) -> bool {
        true
    }

    fn finish(&mut self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(|e| Error::io(e, "Cannot set the output's length"))?;
        self.file.sync_all().map_err(|e| Error::io(e, "Cannot flush the output"))
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| Error::io(e, "Cannot read the output back").at(offset))
    }
}

/// Resolves names found inside an image against the directory of the image that names them.
#[derive(Debug, Default)]
pub struct DirResolver;

impl DirResolver {
    /// Where `name`, written inside `referrer`, points to.
    pub fn resolve(name: &str, referrer: &str) -> PathBuf {
        let name = Path::new(name);
        if name.is_absolute() {
            return name.to_path_buf();
        }
        match Path::new(referrer).parent() {
            Some(dir) => dir.join(name),
            None => name.to_path_buf(),
        }
    }
}

impl FileResolver for DirResolver {
    fn open(&self, name: &str, referrer: &str) -> Result<(String, Box<dyn ReadAt>)> {
        let path = Self::resolve(name, referrer);
        let shown = path.to_string_lossy().into_owned();
        let file = InputFile::open(&path).map_err(|e| {
            let why = e.message().strip_prefix("Cannot open: ").unwrap_or(e.message());
            Error::new(e.kind(), format!("Cannot open backing file '{shown}': {why}"))
        })?;
        Ok((shown, Box::new(file)))
    }
}

/// Opens the image at `path` (and its backing chain, relative to it) in the given or probed format.
pub fn open_image(path: &Path, format: Option<Format>) -> Result<Box<dyn Image>> {
    open_image_disk(path, format, 0)
}

/// Like [`open_image`], opening disk `disk` (0-based) when the file is a package of several (an OVA).
pub fn open_image_disk(path: &Path, format: Option<Format>, disk: usize) -> Result<Box<dyn Image>> {
    let (name, file) = named_input(path)?;
    crate::open::open_disk(&name, Box::new(file), format, &DirResolver, disk)
}

/// Opens the image at `path` to look at it alone, as `qemu-img info` does: a backing file that cannot be found is
/// left out. Returns why each one left out could not be opened.
pub fn open_image_alone(path: &Path, format: Option<Format>) -> Result<(Box<dyn Image>, Vec<Error>)> {
    let (name, file) = named_input(path)?;
    let mut ctx = crate::open::OpenContext::new(&DirResolver).allowing_missing_backing();
    let image = ctx.open(&name, Box::new(file), format)?;
    Ok((image, ctx.into_missing()))
}

/// How many disks the file at `path` holds as `format`: more than one only for a package of several (an OVA).
///
/// # Errors
/// Whatever reading the file gives.
pub fn disk_count(path: &Path, format: Format) -> Result<usize> {
    let (name, file) = named_input(path)?;
    match format.spec().disks {
        Some(count) => count(&file).map_err(|e| e.in_file(name)),
        None => Ok(1),
    }
}

/// The input file at `path` and the name its errors carry.
fn named_input(path: &Path) -> Result<(String, InputFile)> {
    let name = path.to_string_lossy().into_owned();
    let file = InputFile::open(path).map_err(|e| e.in_file(name.clone()))?;
    Ok((name, file))
}
