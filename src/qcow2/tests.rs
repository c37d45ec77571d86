//! The reader on a tiny hand-built image (512-byte clusters: an L2 table maps 32 KiB), for what qemu-img
//! fixtures cannot show: how many file reads a guest read costs, and what happens with bad offsets.

use super::*;
use crate::chain::NoFiles;
use crate::error::ErrorKind;
use crate::image::Extents;
use crate::open::OpenContext;
use std::cell::Cell;

/// An in-memory file that counts its reads.
struct Counted {
    bytes: Vec<u8>,
    reads: std::rc::Rc<Cell<usize>>,
}

impl ReadAt for Counted {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.reads.set(self.reads.get() + 1);
        ReadAt::read_at(self.bytes.as_slice(), offset, buf)
    }
}

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

const COMPRESSED_AT: usize = 0x1210;

fn compressed_cluster() -> Vec<u8> {
    (0..512u32).map(|i| (i / 16) as u8).collect()
}

/// A 64 KiB version 3 image. Clusters 0-1 are stored contiguously, 2 elsewhere, 3 is a zero cluster, 4 is
/// compressed, the rest unallocated (L1 entry 1 is empty).
fn image() -> Vec<u8> {
    let mut b = vec![0u8; 0x1400];
    put(&mut b, 0, b"QFI\xfb"); //                           magic
    put(&mut b, 4, &3u32.to_be_bytes()); //                  version
    put(&mut b, 20, &9u32.to_be_bytes()); //                 cluster_bits
    put(&mut b, 24, &65536u64.to_be_bytes()); //             size
    put(&mut b, 36, &2u32.to_be_bytes()); //                 l1_size
    put(&mut b, 40, &0x400u64.to_be_bytes()); //             l1_table_offset
    put(&mut b, 48, &0x200u64.to_be_bytes()); //             refcount_table_offset
    put(&mut b, 56, &1u32.to_be_bytes()); //                 refcount_table_clusters
    put(&mut b, 96, &4u32.to_be_bytes()); //                 refcount_order
    put(&mut b, 100, &104u32.to_be_bytes()); //              header_length
    put(&mut b, 0x400, &0x8000_0000_0000_0600u64.to_be_bytes()); // L1[0]: L2 table at 0x600
    put(&mut b, 0x408, &0u64.to_be_bytes()); //                       L1[1]: unallocated
    put(&mut b, 0x600, &0x8000_0000_0000_0800u64.to_be_bytes()); // L2[0]: data at 0x800
    put(&mut b, 0x608, &0x8000_0000_0000_0a00u64.to_be_bytes()); // L2[1]: data at 0xa00, right after
    put(&mut b, 0x610, &0x8000_0000_0000_1000u64.to_be_bytes()); // L2[2]: data at 0x1000
    put(&mut b, 0x618, &1u64.to_be_bytes()); //                       L2[3]: zero
    let mut deflate = flate2::Compress::new(flate2::Compression::default(), false);
    let mut packed = Vec::with_capacity(600);
    deflate.compress_vec(&compressed_cluster(), &mut packed, flate2::FlushCompress::Finish).unwrap();
    assert!(packed.len() < 0x1400 - COMPRESSED_AT, "fits in the sector");
    put(&mut b, COMPRESSED_AT, &packed);
    let entry = (1u64 << 62) | COMPRESSED_AT as u64; //             sector field 0: one sector
    put(&mut b, 0x620, &entry.to_be_bytes()); //                      L2[4]: compressed
    for (i, at) in [0x800, 0xa00, 0x1000].into_iter().enumerate() {
        b[at..at + 512].fill(0x11 * (i as u8 + 1));
    }
    b
}

fn open(bytes: Vec<u8>) -> Result<(Qcow2, std::rc::Rc<Cell<usize>>)> {
    let reads = std::rc::Rc::new(Cell::new(0));
    let file = Box::new(Counted { bytes, reads: reads.clone() });
    let image = Qcow2::open(file, "t.qcow2", &mut OpenContext::new(&NoFiles))?;
    Ok((image, reads))
}

fn extents(image: &mut Qcow2) -> Result<Vec<(u64, u64, ExtentKind)>> {
    Extents::all(image).map(|e| e.map(|e| (e.offset, e.length, e.kind))).collect()
}

#[test]
fn maps_each_kind_of_cluster() {
    let (mut image, _) = open(image()).unwrap();
    assert_eq!(
        extents(&mut image).unwrap(),
        [
            (0, 1536, ExtentKind::Data),
            (1536, 512, ExtentKind::Zero),
            (2048, 512, ExtentKind::Data),
            (2560, 62976, ExtentKind::Unallocated)
        ]
    );
}

#[test]
fn contiguous_clusters_are_one_file_read() {
    let (mut image, reads) = open(image()).unwrap();
    let mut buf = vec![0u8; 1536];
    image.read_at(0, &mut buf[..512]).unwrap(); // loads L1 and L2
    reads.set(0);
    image.read_at(0, &mut buf).unwrap();
    assert_eq!(reads.get(), 2, "clusters 0-1 in one read, cluster 2 in another");
    assert!(buf[..512].iter().all(|&b| b == 0x11) && buf[512..1024].iter().all(|&b| b == 0x22));
    assert!(buf[1024..].iter().all(|&b| b == 0x33));
}

#[test]
fn compressed_and_zero_clusters_read_back() {
    let (mut image, reads) = open(image()).unwrap();
    let mut buf = vec![0xffu8; 2048];
    image.read_at(1536, &mut buf).unwrap();
    assert!(buf[..512].iter().all(|&b| b == 0), "zero cluster");
    assert_eq!(buf[512..1024], compressed_cluster()[..]);
    assert!(buf[1024..].iter().all(|&b| b == 0), "unallocated, no backing");
    reads.set(0);
    image.read_at(2048 + 100, &mut buf[..10]).unwrap();
    assert_eq!(reads.get(), 0, "the last inflated cluster is kept");
    assert_eq!(buf[..10], compressed_cluster()[100..110]);
}

#[test]
fn info_reports_the_header() {
    let (image, _) = open(image()).unwrap();
    let info = image.info();
    assert_eq!((info.virtual_size, info.cluster_size, info.dirty), (65536, Some(512), false));
    assert_eq!(
        info.specific,
        Some(Specific(vec![
            ("compat", Fact::Text("1.1".into())),
            ("compression-type", Fact::Text("zlib".into())),
            ("lazy-refcounts", Fact::Flag(false)),
            ("refcount-bits", Fact::Number(16)),
            ("corrupt", Fact::Flag(false)),
            ("extended-l2", Fact::Flag(false)),
        ]))
    );
    assert_eq!(image.file_length(), 0x1400);
}

#[test]
fn dirty_and_corrupt_images_are_read_with_warnings() {
    let mut b = image();
    put(&mut b, 72, &3u64.to_be_bytes()); // incompatible: dirty | corrupt
    let (mut image, _) = open(b).unwrap();
    assert!(image.info().dirty);
    assert_eq!(image.info().warnings.len(), 2);
    assert_eq!(extents(&mut image).unwrap().len(), 4);
}

#[test]
fn odd_virtual_size_rounds_up_and_the_tail_reads_zeros() {
    let mut b = image();
    put(&mut b, 24, &1000u64.to_be_bytes()); // size: cluster 1 only partly in the disk
    let (mut image, _) = open(b).unwrap();
    assert_eq!(image.virtual_size(), 1024);
    let mut buf = vec![0xffu8; 1024];
    image.read_at(0, &mut buf).unwrap();
    assert!(buf[512..1000].iter().all(|&b| b == 0x22) && buf[1000..].iter().all(|&b| b == 0));
    assert_eq!(extents(&mut image).unwrap(), [(0, 1024, ExtentKind::Data)]);
    assert_eq!(image.read_at(1000, &mut buf[..25]).unwrap_err().kind(), ErrorKind::InvalidArgument);
}

#[test]
fn offsets_outside_the_file_are_corrupt_at_their_entry() {
    let cases: &[(usize, u64, u64)] = &[
        (0x400, 0x1400, 0x400),                         // L1[0] -> L2 table past the end
        (0x408, 0x8000_0000_0000_0600, 0x408),          // L1[1] -> the same L2 table as L1[0]
        (0x600, 0x2000, 0x600),                         // L2[0] -> data past the end
        (0x620, (1 << 62) | 0x1400, 0x620),             // L2[4] -> compressed data past the end
        (0x620, (1 << 62) | (1 << 61) | 0x1210, 0x620), // L2[4] -> compressed run a full sector past the end
    ];
    for &(at, entry, offset) in cases {
        let mut b = image();
        put(&mut b, at, &entry.to_be_bytes());
        // Opened as the CLI and the page open it, which names the file in every later error.
        let mut image = crate::open::open("t.qcow2", Box::new(b), None, &NoFiles).unwrap();
        let e = Extents::all(image.as_mut()).collect::<Result<Vec<_>>>().expect_err(&format!("{entry:#x} at {at:#x}"));
        assert_eq!(
            (e.kind(), e.offset(), e.file()),
            (ErrorKind::Corrupt, Some(offset), Some("t.qcow2")),
            "{entry:#x}: {e}"
        );
    }
}

#[test]
fn garbage_compressed_data_is_corrupt_at_its_offset() {
    let mut b = image();
    b[COMPRESSED_AT..COMPRESSED_AT + 64].fill(0xff);
    let (mut image, _) = open(b).unwrap();
    let e = image.read_at(2048, &mut [0u8; 512]).unwrap_err();
    assert_eq!((e.kind(), e.offset()), (ErrorKind::Corrupt, Some(COMPRESSED_AT as u64)));
}

#[test]
fn every_truncation_is_an_error_or_a_clean_read() {
    let full = image();
    for len in (0..full.len()).step_by(7) {
        let Ok((mut image, _)) = open(full[..len].to_vec()) else { continue };
        let size = image.virtual_size();
        let mut buf = vec![0u8; size as usize];
        let walked = extents(&mut image);
        let read = image.read_at(0, &mut buf);
        assert!(walked.is_err() || read.is_err() || len > COMPRESSED_AT, "truncated at {len} but read fine");
    }
}
