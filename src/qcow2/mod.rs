//! qcow2 (QEMU copy-on-write, versions 2 and 3) reader. PLACEHOLDER — being written.

use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::image::{Image, ImageInfo, OpenContext};
use crate::io::ReadAt;

/// An opened qcow2 image.
pub struct Qcow2 {
    info: ImageInfo,
}

impl Qcow2 {
    /// Opens `file` (named `name`), and its backing chain through `ctx`.
    pub fn open(_file: Box<dyn ReadAt>, _name: &str, _ctx: &mut OpenContext<'_>) -> Result<Qcow2> {
        Err(Error::unsupported("qcow2 reader not written yet"))
    }
}

impl Image for Qcow2 {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn extent_at(&mut self, _offset: u64) -> Result<Extent> {
        unimplemented!()
    }
    fn read_at(&mut self, _offset: u64, _buf: &mut [u8]) -> Result<()> {
        unimplemented!()
    }
    fn file_length(&self) -> u64 {
        0
    }
}
