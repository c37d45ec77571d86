//! Comparing the guest contents of two images, as `qemu-img compare` does: ranges that neither image maps as
//! data are skipped from metadata alone, everything else is read and compared; a size difference is allowed
//! when the longer tail reads as zeros (unless strict).

use crate::error::Result;
use crate::extent::ExtentKind;
use crate::image::Image;
use crate::io::zeroed_buffer;

/// What a comparison found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same guest contents (`sizes_differ`: one image is longer, and its tail reads as zeros).
    Identical {
        /// Whether the virtual sizes differ.
        sizes_differ: bool,
    },
    /// The first difference lies in the 512-byte sector starting at `offset` (qemu-img's granularity).
    Mismatch {
        /// Start of the first differing sector.
        offset: u64,
        /// Whether the virtual sizes differ too.
        sizes_differ: bool,
    },
    /// Strict mode and the sizes differ.
    SizeMismatch,
}

const CHUNK: u64 = 1 << 20;
const SECTOR: u64 = 512;

/// Compares `a` and `b`. `progress` is called with (bytes compared, total), first with none compared.
pub fn compare(
    a: &mut dyn Image,
    b: &mut dyn Image,
    strict: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Comparison> {
    let (size_a, size_b) = (a.virtual_size(), b.virtual_size());
    let sizes_differ = size_a != size_b;
    if strict && sizes_differ {
        return Ok(Comparison::SizeMismatch);
    }
    let total = size_a.max(size_b);
    let mut buf_a = zeroed_buffer(CHUNK, "a comparison buffer")?;
    let mut buf_b = zeroed_buffer(CHUNK, "a comparison buffer")?;
    let mut pos = 0;
    progress(0, total);
    while pos < total {
        let (data_a, end_a) = span(a, pos)?;
        let (data_b, end_b) = span(b, pos)?;
        let end = end_a.min(end_b).min(pos + CHUNK);
        if data_a || data_b {
            let len = (end - pos) as usize;
            read_or_zero(a, pos, &mut buf_a[..len], data_a)?;
            read_or_zero(b, pos, &mut buf_b[..len], data_b)?;
            if let Some(i) = buf_a[..len].iter().zip(&buf_b[..len]).position(|(x, y)| x != y) {
                let offset = (pos + i as u64) / SECTOR * SECTOR;
                return Ok(Comparison::Mismatch { offset, sizes_differ });
            }
        }
        pos = end;
        progress(pos, total);
    }
    Ok(Comparison::Identical { sizes_differ })
}

/// Whether `image` maps data at `pos`, and where that run ends; past its end an image reads as zeros.
fn span(image: &mut dyn Image, pos: u64) -> Result<(bool, u64)> {
    if pos >= image.virtual_size() {
        return Ok((false, u64::MAX));
    }
    let e = image.extent_at(pos)?;
    Ok((e.kind == ExtentKind::Data, e.end()))
}

fn read_or_zero(image: &mut dyn Image, pos: u64, buf: &mut [u8], data: bool) -> Result<()> {
    if data {
        return image.read_at(pos, buf);
    }
    buf.fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::RawImage;

    fn raw(bytes: Vec<u8>) -> RawImage {
        RawImage::new(Box::new(bytes))
    }

    fn cmp(a: Vec<u8>, b: Vec<u8>, strict: bool) -> Comparison {
        compare(&mut raw(a), &mut raw(b), strict, &mut |_, _| {}).unwrap()
    }

    #[test]
    fn finds_the_first_differing_sector_at_both_ends() {
        let a = vec![0u8; 3 << 20];
        let mut b = a.clone();
        b[1000] = 1;
        assert_eq!(cmp(a.clone(), b, false), Comparison::Mismatch { offset: 512, sizes_differ: false });
        let mut b = a.clone();
        *b.last_mut().unwrap() = 1;
        assert_eq!(cmp(a.clone(), b, false), Comparison::Mismatch { offset: (3 << 20) - 512, sizes_differ: false });
        assert_eq!(cmp(a.clone(), a, false), Comparison::Identical { sizes_differ: false });
    }

    #[test]
    fn a_longer_image_must_end_in_zeros_unless_strict() {
        let a = vec![7u8; 1 << 20];
        let mut b = a.clone();
        b.resize(2 << 20, 0);
        assert_eq!(cmp(a.clone(), b.clone(), false), Comparison::Identical { sizes_differ: true });
        assert_eq!(cmp(a.clone(), b.clone(), true), Comparison::SizeMismatch);
        b[1_500_000] = 1;
        assert_eq!(cmp(a, b, false), Comparison::Mismatch { offset: 1_499_648, sizes_differ: true });
    }
}
