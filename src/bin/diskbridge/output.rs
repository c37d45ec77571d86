//! Where the CLI writes. A file appears under its name only when complete: it is written to a hidden temporary
//! file beside the target and renamed at the end, so a failed, cancelled or killed conversion never leaves a
//! half-written image that looks finished. A device or a pipe cannot be replaced that way (the rename would put
//! a regular file in its place), so it is written in place, as qemu-img does; a symlink is written through.

use diskbridge::Error;
use diskbridge::io::{Sink, StreamSink};
use diskbridge::native::OutputFile;
use diskbridge::writer::Outputs;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

/// Where a writer's files go in the CLI: the output (a path, or `-` for standard output) and files beside it,
/// each staged until [`Files::commit`] makes them all appear.
pub struct Files {
    output: PathBuf,
    staged: Vec<Staged>,
}

impl Files {
    /// The output `output` names (`-`: standard output).
    pub fn new(output: &str) -> Files {
        Files { output: PathBuf::from(output), staged: Vec::new() }
    }

    fn is_stdout(&self) -> bool {
        self.output.as_os_str() == "-"
    }

    /// Moves every finished file to its name.
    pub fn commit(self) -> Result<(), Error> {
        self.staged.into_iter().try_for_each(Staged::commit)
    }
}

impl Outputs for Files {
    fn main(&mut self) -> Result<Box<dyn Sink>, Error> {
        if self.is_stdout() {
            return Ok(stream(std::io::stdout().lock()));
        }
        let (staged, sink) = open(&self.output)?;
        self.staged.extend(staged);
        Ok(sink)
    }

    fn beside(&mut self, name: &str) -> Result<Box<dyn Sink>, Error> {
        if self.is_stdout() {
            return Err(Error::argument(format!("'{name}' goes beside the output, which standard output cannot have")));
        }
        let (staged, sink) = open(&self.output.with_file_name(name))?;
        self.staged.extend(staged);
        Ok(sink)
    }
}

/// Opens the output `path` names: staged when it is a file or does not exist yet, in place when it is a device
/// or a pipe. Errors name `path` as given, not the temporary file or a symlink's target.
fn open(path: &Path) -> Result<(Option<Staged>, Box<dyn Sink>), Error> {
    let opened = resolve_links(path).and_then(|target| match std::fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => Err(Error::argument("Is a directory")),
        Ok(meta) if !meta.is_file() => Ok((None, in_place(&target, meta.file_type())?)),
        _ => {
            let (staged, file) = Staged::create(&target)?;
            Ok((Some(staged), Box::new(file) as Box<dyn Sink>))
        }
    });
    opened.map_err(|e| e.in_file(path.to_string_lossy().into_owned()))
}

/// Refuses, before any work, an output that cannot be written: a directory, or a new file in a folder that is
/// missing, is not a folder, or cannot be written to (read-only, no permission). Errors name `path` as given.
pub fn check_place(path: &Path) -> Result<(), Error> {
    let checked = resolve_links(path).and_then(|target| match std::fs::metadata(&target) {
        Ok(meta) if meta.is_dir() => Err(Error::argument("Is a directory")),
        // An existing file, device or pipe: opening it says whether it can be written.
        Ok(_) => Ok(()),
        Err(_) => {
            let folder = match target.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            writable_folder(folder).map_err(|e| Error::io(e, "Cannot create"))
        }
    });
    checked.map_err(|e| e.in_file(path.to_string_lossy().into_owned()))
}

/// Whether a new file can be made in `folder`, as the kernel judges it (a read-only file system included).
fn writable_folder(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if !std::fs::metadata(folder)?.is_dir() {
        return Err(std::io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    let name = std::ffi::CString::new(folder.as_os_str().as_bytes())?;
    // SAFETY: access only reads the NUL-terminated path it is given.
    if unsafe { libc::access(name.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// An append-only output on `w` (stdout, a pipe), written in large pieces.
fn stream(w: impl Write + 'static) -> Box<dyn Sink> {
    Box::new(StreamSink::new(std::io::BufWriter::with_capacity(1 << 20, w)))
}

/// The file at the end of `path`'s chain of symlinks, existing or not, so the output replaces that file and the
/// links keep pointing at it.
fn resolve_links(path: &Path) -> Result<PathBuf, Error> {
    let mut path = path.to_path_buf();
    // The kernel's own limit on links followed in one lookup (ELOOP).
    for _ in 0..40 {
        let Ok(next) = std::fs::read_link(&path) else { return Ok(path) };
        path = match path.parent() {
            Some(dir) => dir.join(next),
            None => next,
        };
    }
    Err(Error::argument("Too many levels of symbolic links"))
}

fn in_place(path: &Path, kind: std::fs::FileType) -> Result<Box<dyn Sink>, Error> {
    // Opened for reading too, a pipe would not wait for its reader; only a device is read back (an OVA's checksum).
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .read(!kind.is_fifo())
        .open(path)
        .map_err(|e| Error::io(e, "Cannot open"))?;
    Ok(if file.stream_position().is_ok() { Box::new(Device { file, written: BTreeMap::new() }) } else { stream(file) })
}

/// A seekable device (a disk, /dev/null) written in place. Writers skip zeros, counting on a new file's holes,
/// but a device holds old data there, so whatever was not written before the end is zeroed at the end.
struct Device {
    file: File,
    /// Ranges written so far, start to end, disjoint and not touching.
    written: BTreeMap<u64, u64>,
}

impl Device {
    fn record(&mut self, mut start: u64, mut end: u64) {
        let before = self.written.range(..start).next_back().map(|(&s, &e)| (s, e));
        let touching: Vec<(u64, u64)> = before
            .filter(|&(_, e)| e >= start)
            .into_iter()
            .chain(self.written.range(start..=end).map(|(&s, &e)| (s, e)))
            .collect();
        for (s, e) in touching {
            self.written.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.written.insert(start, end);
    }

    fn zero(&self, mut from: u64, to: u64) -> Result<(), Error> {
        static ZEROS: [u8; 1 << 20] = [0; 1 << 20];
        while from < to {
            let n = (to - from).min(ZEROS.len() as u64) as usize;
            self.file.write_all_at(&ZEROS[..n], from).map_err(|e| Error::io(e, "Write failed").at(from))?;
            from += n as u64;
        }
        Ok(())
    }
}

impl Sink for Device {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        self.file.write_all_at(data, offset).map_err(|e| Error::io(e, "Write failed").at(offset))?;
        self.record(offset, offset + data.len() as u64);
        Ok(())
    }

    fn is_seekable(&self) -> bool {
        true
    }

    fn finish(&mut self, len: u64) -> Result<(), Error> {
        let mut from = 0;
        for (&start, &end) in self.written.range(..len) {
            self.zero(from, start)?;
            from = end;
        }
        self.zero(from, len)?;
        match self.file.sync_all() {
            // Character devices such as /dev/null have nothing to flush and say so with EINVAL.
            Err(e) if e.kind() != std::io::ErrorKind::InvalidInput => Err(Error::io(e, "Cannot flush the output")),
            _ => Ok(()),
        }
    }

    fn read_back(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.file.read_exact_at(buf, offset).map_err(|e| Error::io(e, "Cannot read the output back").at(offset))
    }
}

/// A temporary output file that becomes `target` on [`Staged::commit`] and is removed otherwise.
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file in `target`'s directory.
    fn create(target: &Path) -> Result<(Staged, OutputFile), Error> {
        let name = target.file_name().ok_or_else(|| Error::argument("The output must name a file"))?;
        let temp = target.with_file_name(format!(".{}.diskbridge-{}.tmp", name.to_string_lossy(), std::process::id()));
        let file = OutputFile::create(&temp)?;
        Ok((Staged { temp, target: target.to_path_buf(), committed: false }, file))
    }

    /// Moves the finished file to its name.
    pub fn commit(mut self) -> Result<(), Error> {
        std::fs::rename(&self.temp, &self.target)
            .map_err(|e| Error::io(e, "Cannot move the finished output into place"))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Whether two paths name the same existing file (so the input is never overwritten).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_reads_as_zeros_wherever_the_writer_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::write(&path, [0xaa; 64]).unwrap();
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut device = Device { file, written: BTreeMap::new() };
        for (offset, data) in [(8, &b"bb"[..]), (20, b"cc"), (10, b"dd"), (9, b"e"), (40, b"ff")] {
            device.write_at(offset, data).unwrap();
        }
        assert_eq!(device.written, BTreeMap::from([(8, 12), (20, 22), (40, 42)]));
        device.finish(48).unwrap();
        let mut expected = [0; 64];
        expected[48..].fill(0xaa);
        expected[8..12].copy_from_slice(b"bedd");
        expected[20..22].copy_from_slice(b"cc");
        expected[40..42].copy_from_slice(b"ff");
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }
}
