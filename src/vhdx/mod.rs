//! VHDX dynamic writer. PLACEHOLDER — being written.

use crate::convert::{ImageWriter, UnitEncoder};
use crate::error::{Error, Result};
use crate::io::Sink;
use crate::options::OptionList;
use std::sync::Arc;

/// `-o` options for VHDX output.
#[derive(Debug, Clone)]
pub struct VhdxOptions {}

impl VhdxOptions {
    /// Takes the VHDX keys out of `options`.
    pub fn from_options(_options: &mut OptionList) -> Result<Self> {
        Ok(VhdxOptions {})
    }
}

/// Writes a streamOptimized VHDX.
pub struct VhdxWriter {}

impl VhdxWriter {
    /// A writer on `sink` for a disk of `virtual_size` bytes.
    pub fn new(_sink: Box<dyn Sink>, _virtual_size: u64, _opts: &VhdxOptions, _seed: u64) -> Result<Self> {
        Err(Error::unsupported("VHDX writer not written yet"))
    }
}

impl ImageWriter for VhdxWriter {
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
