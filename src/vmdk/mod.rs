//! VMDK streamOptimized writer. PLACEHOLDER — being written.

use crate::convert::{ImageWriter, UnitEncoder};
use crate::error::{Error, Result};
use crate::io::Sink;
use crate::options::OptionList;
use std::sync::Arc;

/// `-o` options for VMDK output.
#[derive(Debug, Clone)]
pub struct VmdkOptions {}

impl VmdkOptions {
    /// Takes the VMDK keys out of `options`.
    pub fn from_options(_options: &mut OptionList) -> Result<Self> {
        Ok(VmdkOptions {})
    }
}

/// Writes a streamOptimized VMDK.
pub struct VmdkWriter {}

impl VmdkWriter {
    /// A writer on `sink` for a disk of `virtual_size` bytes.
    pub fn new(_sink: Box<dyn Sink>, _virtual_size: u64, _opts: &VmdkOptions, _seed: u64, _name: &str) -> Result<Self> {
        Err(Error::unsupported("VMDK writer not written yet"))
    }
}

impl ImageWriter for VmdkWriter {
    fn unit_size(&self) -> u64 {
        65536
    }
    fn encoder(&self) -> Arc<dyn UnitEncoder> {
        unimplemented!()
    }
    fn write_unit(&mut self, _index: u64, _encoded: Option<Vec<u8>>) -> Result<()> {
        unimplemented!()
    }
    fn finish(self: Box<Self>) -> Result<Box<dyn Sink>> {
        unimplemented!()
    }
}
