//! Keeping outputs sparse: writing only the non-zero pages of a buffer, and a first read pass that finds the
//! units of a source holding non-zero bytes — for writers on an append-only sink, whose tables must precede
//! the data they describe.

use crate::bitmap::Bitmap;
use crate::convert::is_zero;
use crate::error::{Error, Result};
use crate::extent::ExtentKind;
use crate::image::Image;
use crate::io::{Sink, zeroed_buffer};

/// Zero pages of this size are left as holes in a seekable output (qemu-img's default `-S 4k`).
const HOLE: usize = 4096;

/// Writes the non-zero pages of `data` at `offset`, pages counted from `offset`: the zero ones stay holes in a
/// file, and an append-only sink fills them with zeros itself. Keeps the allocated size close to qemu-img's.
pub fn write_nonzero(sink: &mut dyn Sink, offset: u64, data: &[u8]) -> Result<()> {
    let mut run_start = None;
    for (i, page) in data.chunks(HOLE).enumerate() {
        match (is_zero(page), run_start) {
            (false, None) => run_start = Some(i * HOLE),
            (true, Some(start)) => {
                sink.write_at(offset + start as u64, &data[start..i * HOLE])?;
                run_start = None;
            }
            _ => {}
        }
    }
    match run_start {
        Some(start) => sink.write_at(offset + start as u64, &data[start..]),
        None => Ok(()),
    }
}

/// The units of `unit` bytes holding non-zero bytes, found by reading every unit the extent map marks as data.
/// The map is walked an extent at a time, never collected (it may have millions of extents).
pub fn nonzero_units(source: &mut dyn Image, unit: u64) -> Result<Bitmap> {
    let size = source.virtual_size();
    let mut units = Bitmap::new(size.div_ceil(unit))?;
    let mut buf = zeroed_buffer(unit, "a unit of guest data")?;
    let (mut pos, mut next_unit) = (0, 0);
    while pos < size {
        let extent = source.extent_at(pos)?;
        if extent.offset != pos || extent.length == 0 {
            return Err(Error::corrupt("Image map does not advance").at(pos));
        }
        pos = extent.end().min(size);
        if extent.kind != ExtentKind::Data {
            continue;
        }
        // A unit shared with the previous data extent has been read already.
        for index in (extent.offset / unit).max(next_unit)..pos.div_ceil(unit) {
            let len = unit.min(size - index * unit) as usize;
            source.read_at(index * unit, &mut buf[..len])?;
            if !is_zero(&buf[..len]) {
                units.set(index);
            }
        }
        next_unit = pos.div_ceil(unit);
    }
    Ok(units)
}
