//! Encoding one grain: zero detection, then a zlib stream framed by its grain marker and padded to a
//! sector, so the writer only has to place the bytes.
//!
//! The technote says the data is RFC 1951 deflate, but every producer and reader (qemu's `compress()` /
//! `uncompress()`, open-vmdk's `deflateInit()`, libvmdk) uses the zlib wrapper of RFC 1950 — so do we.

use super::header::GRAIN_SECTORS;
use super::marker::{GRAIN_HEADER_LEN, write_grain_header};
use crate::error::{Error, ErrorKind, Result};
use crate::writer::{UnitEncoder, is_zero};
use flate2::{Compress, Compression, FlushCompress, Status};

/// Compresses grains at a fixed zlib level (1..=9).
#[derive(Debug, Clone, Copy)]
pub struct GrainEncoder {
    level: u32,
}

impl GrainEncoder {
    /// An encoder compressing at `level`.
    pub fn new(level: u32) -> Self {
        GrainEncoder { level }
    }
}

/// The most compressed bytes a grain may take: open-vmdk's reader (and VMware's own code it mirrors) reads
/// a grain marker and its data into `grainSize + 1` sectors.
const MAX_COMPRESSED: usize = (GRAIN_SECTORS as usize + 1) * 512 - GRAIN_HEADER_LEN;

impl UnitEncoder for GrainEncoder {
    fn encode(&self, index: u64, mut data: Vec<u8>) -> Result<Option<Vec<u8>>> {
        if is_zero(&data) {
            return Ok(None);
        }
        // The last grain holds only the disk's tail. Readers inflate it into whole sectors of `capacity`,
        // so a tail that is not a whole sector is completed with zeros rather than dropped.
        data.resize(data.len().next_multiple_of(512), 0);
        let mut out = Vec::with_capacity(GRAIN_HEADER_LEN + data.len() + data.len() / 64 + 512);
        out.resize(GRAIN_HEADER_LEN, 0);
        zlib(&data, self.level, &mut out, index)?;
        if out.len() - GRAIN_HEADER_LEN > MAX_COMPRESSED {
            // Level 1 (zlib-rs's quick strategy, static Huffman codes) can grow incompressible data by up to
            // 1/8; stored blocks add only a few bytes.
            out.truncate(GRAIN_HEADER_LEN);
            zlib(&data, 0, &mut out, index)?;
        }
        let size = (out.len() - GRAIN_HEADER_LEN) as u32;
        write_grain_header(&mut out, index * GRAIN_SECTORS, size);
        out.resize(out.len().next_multiple_of(512), 0);
        Ok(Some(out))
    }
}

/// Appends the zlib stream of `data` at `level` to `out`.
fn zlib(data: &[u8], level: u32, out: &mut Vec<u8>, index: u64) -> Result<()> {
    let mut z = Compress::new(Compression::new(level), true);
    loop {
        let consumed = z.total_in() as usize;
        match z.compress_vec(&data[consumed..], out, FlushCompress::Finish) {
            Ok(Status::StreamEnd) => return Ok(()),
            // Incompressible data can outgrow the first guess.
            Ok(_) => out.reserve(out.capacity()),
            Err(e) => {
                return Err(Error::new(ErrorKind::Io, format!("Compressing grain {index} failed: {e}")));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::ZlibDecoder;
    use std::io::Read;

    fn inflate(z: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ZlibDecoder::new(z).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn zero_grain_is_dropped() {
        assert_eq!(GrainEncoder::new(6).encode(3, vec![0; 65536]).unwrap(), None);
    }

    #[test]
    fn grain_is_framed_zlib_padded_to_a_sector() {
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let out = GrainEncoder::new(6).encode(5, data.clone()).unwrap().unwrap();
        assert_eq!(out.len() % 512, 0);
        assert_eq!(out[0..8], (5u64 * 128).to_le_bytes(), "lba = grain index × 128 sectors");
        let size = u32::from_le_bytes(out[8..12].try_into().unwrap()) as usize;
        assert_eq!(out[12..14], [0x78, 0x9C], "zlib header, level 6");
        assert!(out.len() - 512 < 12 + size && 12 + size <= out.len(), "no more than one sector of padding");
        assert!(out[12 + size..].iter().all(|&b| b == 0));
        assert_eq!(inflate(&out[12..12 + size]), data);
    }

    #[test]
    fn incompressible_grain_fits_in_grain_size_plus_one_sector_at_every_level() {
        let mut x = 0x0123_4567_89AB_CDEF_u64;
        let data: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for level in 1..=9 {
            let out = GrainEncoder::new(level).encode(0, data.clone()).unwrap().unwrap();
            let size = u32::from_le_bytes(out[8..12].try_into().unwrap()) as usize;
            assert!(out.len() <= 129 * 512, "level {level}: {size} bytes");
            assert_eq!(inflate(&out[12..12 + size]), data);
        }
    }

    #[test]
    fn tail_grain_compresses_only_the_tail_completed_to_a_sector() {
        let out = GrainEncoder::new(1).encode(1, vec![7; 1000]).unwrap().unwrap();
        let size = u32::from_le_bytes(out[8..12].try_into().unwrap()) as usize;
        let mut expected = vec![7; 1000];
        expected.resize(1024, 0);
        assert_eq!(inflate(&out[12..12 + size]), expected);
    }
}
