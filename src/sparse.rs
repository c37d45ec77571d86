//! Keeping outputs sparse: writing only the non-zero pages of a buffer, as the VHDX and VHD writers do.

use crate::error::Result;
use crate::io::Sink;
use crate::writer::is_zero;

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
