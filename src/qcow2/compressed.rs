//! Compressed clusters (qcow2 spec, "Compressed Clusters Descriptor" and header `compression_type`): raw deflate
//! or zstd frames, inflated into exactly one cluster — never more, whatever the input claims.

use crate::error::{Error, Result};
use flate2::{Decompress, FlushDecompress, Status};
use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// How compressed clusters are encoded (header byte 104).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Type 0: raw deflate (RFC 1951, no zlib header); qemu calls it "zlib".
    Deflate,
    /// Type 1: one or more zstd frames, no length prefix.
    Zstd,
}

impl Compression {
    /// Every type, in `compression_type` order.
    pub const ALL: [Compression; 2] = [Compression::Deflate, Compression::Zstd];

    /// The header's `compression_type` byte.
    pub fn code(self) -> u8 {
        match self {
            Compression::Deflate => 0,
            Compression::Zstd => 1,
        }
    }

    /// qemu's name, as `qemu-img info` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Deflate => "zlib",
            Compression::Zstd => "zstd",
        }
    }
}

/// Windows larger than this are refused before the decoder allocates them; qemu's frames declare one cluster
/// (2 MiB at most), so this only stops crafted frames from making us allocate.
const MAX_ZSTD_WINDOW: u64 = 8 << 20;

/// Inflates compressed clusters of one image, reusing the decoders' state and buffers from cluster to cluster.
pub struct Decompressor {
    kind: Compression,
    deflate: Decompress,
    zstd: FrameDecoder,
}

impl Decompressor {
    /// A decompressor for clusters of `kind`.
    pub fn new(kind: Compression) -> Self {
        let mut zstd = FrameDecoder::new();
        zstd.set_max_window_size(MAX_ZSTD_WINDOW);
        Decompressor { kind, deflate: Decompress::new(false), zstd }
    }

    /// Fills `out` (one cluster) from the compressed bytes in `input`. Bytes after the end of the data are
    /// ignored: the last sector of a run holds slack or the start of the next cluster.
    ///
    /// # Errors
    /// `Corrupt` when the data is invalid or yields less than a cluster; for zstd also when the frame that fills
    /// the cluster goes on (qemu refuses that too).
    pub fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> Result<()> {
        match self.kind {
            Compression::Deflate => self.inflate(input, out),
            Compression::Zstd => self.unzstd(input, out),
        }
    }

    fn inflate(&mut self, input: &[u8], out: &mut [u8]) -> Result<()> {
        let d = &mut self.deflate;
        d.reset(false);
        loop {
            let (read, written) = (d.total_in() as usize, d.total_out() as usize);
            // qemu inflates with Z_FINISH into one cluster and accepts a full buffer even when the stream goes on.
            let status = d
                .decompress(&input[read..], &mut out[written..], FlushDecompress::Finish)
                .map_err(|e| Error::corrupt(format!("Compressed cluster is not valid deflate data: {e}")))?;
            if d.total_out() as usize == out.len() {
                return Ok(());
            }
            if status == Status::StreamEnd || (d.total_in() as usize, d.total_out() as usize) == (read, written) {
                return Err(short());
            }
        }
    }

    fn unzstd(&mut self, mut input: &[u8], out: &mut [u8]) -> Result<()> {
        let bad = |e: FrameDecoderError| Error::corrupt(format!("Compressed cluster is not valid zstd data: {e}"));
        let decoder = &mut self.zstd;
        let mut filled = 0;
        while filled < out.len() {
            if input.is_empty() {
                return Err(short());
            }
            match decoder.reset(&mut input) {
                Ok(()) => {}
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    input = input.get(length as usize..).ok_or_else(short)?;
                    continue;
                }
                Err(e) => return Err(bad(e)),
            }
            // One block at a time (at most 128 KiB) and drained at once, so a frame that claims more than a
            // cluster is caught after one block too many, not after decoding all of it.
            loop {
                filled += std::io::Read::read(decoder, &mut out[filled..])
                    .map_err(|e| Error::corrupt(format!("Compressed cluster is not valid zstd data: {e}")))?;
                if decoder.can_collect() > 0 && filled == out.len() {
                    return Err(Error::corrupt("Compressed cluster holds more than one cluster of data"));
                }
                if decoder.is_finished() {
                    break;
                }
                decoder.decode_blocks(&mut input, BlockDecodingStrategy::UptoBlocks(1)).map_err(bad)?;
            }
        }
        Ok(())
    }
}

fn short() -> Error {
    Error::corrupt("Compressed cluster holds less than one cluster of data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut c = flate2::Compress::new(flate2::Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, flate2::FlushCompress::Finish).unwrap();
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn cluster() -> Vec<u8> {
        (0..4096u32).map(|i| (i * 7 / 13) as u8).collect()
    }

    #[test]
    fn deflate_fills_one_cluster_and_ignores_trailing_bytes() {
        let data = cluster();
        let mut input = raw_deflate(&data);
        input.extend_from_slice(&[0xee; 300]); // slack to the end of the last sector
        let mut out = vec![0; 4096];
        Decompressor::new(Compression::Deflate).decompress(&input, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn deflate_output_is_capped_at_one_cluster() {
        let bomb = raw_deflate(&vec![0; 64 << 20]); // 64 MiB of zeros in ~64 KiB
        let mut out = vec![1; 4096];
        Decompressor::new(Compression::Deflate).decompress(&bomb, &mut out).unwrap();
        assert!(out.iter().all(|&b| b == 0));
    }

    #[test]
    fn short_or_garbage_deflate_is_corrupt() {
        let input = raw_deflate(&[5; 100]);
        let mut out = vec![0; 4096];
        assert_eq!(
            Decompressor::new(Compression::Deflate).decompress(&input, &mut out).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            Decompressor::new(Compression::Deflate).decompress(&[0xff; 64], &mut out).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            Decompressor::new(Compression::Deflate).decompress(&[], &mut out).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }

    #[test]
    fn zstd_fills_one_cluster_across_frames_and_ignores_trailing_bytes() {
        let data = cluster();
        let mut input = zstd(&data[..1000]);
        input.extend_from_slice(&zstd(&data[1000..]));
        input.extend_from_slice(&[0xee; 100]);
        let mut out = vec![0; 4096];
        Decompressor::new(Compression::Zstd).decompress(&input, &mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn zstd_refuses_more_or_less_than_a_cluster() {
        let mut out = vec![0; 4096];
        let bomb = zstd(&vec![0; 16 << 20]);
        assert_eq!(
            Decompressor::new(Compression::Zstd).decompress(&bomb, &mut out).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        let short = zstd(&[1; 100]);
        assert_eq!(
            Decompressor::new(Compression::Zstd).decompress(&short, &mut out).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
        assert_eq!(
            Decompressor::new(Compression::Zstd)
                .decompress(&[0x28, 0xb5, 0x2f, 0xfd, 0xff], &mut out)
                .unwrap_err()
                .kind(),
            ErrorKind::Corrupt
        );
    }
}
