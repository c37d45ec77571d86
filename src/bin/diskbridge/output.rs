//! Output files that appear under their name only when complete: written to a hidden temporary file beside
//! the target and renamed at the end, so a failed, cancelled or killed conversion never leaves a
//! half-written image that looks finished.

use diskbridge::Error;
use diskbridge::native::OutputFile;
use std::path::{Path, PathBuf};

/// A temporary output file that becomes `target` on [`Staged::commit`] and is removed otherwise.
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file in `target`'s directory.
    pub fn create(target: &Path) -> Result<(Staged, OutputFile), Error> {
        let name = target.file_name().ok_or_else(|| Error::argument("The output must name a file"))?;
        let temp = target.with_file_name(format!(".{}.diskbridge-{}.tmp", name.to_string_lossy(), std::process::id()));
        let file = OutputFile::create(&temp).map_err(|e| e.in_file(temp.to_string_lossy().into_owned()))?;
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
