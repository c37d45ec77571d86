//! The writer on 512-byte clusters (an L2 table maps 32 KiB, a refcount block counts 256 host clusters), so
//! every structure boundary is reached with a few units: bytes checked field by field, read back through the
//! reader, and cross-checked by the refcount checker.

use super::*;
use crate::chain::NoFiles;
use crate::convert::{RunOptions, run};
use crate::image::{Blank, Image};
use crate::io::MemorySink;
use crate::qcow2::Qcow2;
use crate::raw::RawImage;

fn opts(extra: &str) -> Qcow2Options {
    let mut o = OptionList::parse(&format!("cluster_size=512,{extra}")).unwrap();
    let opts = Qcow2Options::from_options(&mut o).unwrap();
    o.finish("qcow2").unwrap();
    opts
}

/// Converts `source` and returns the file's bytes.
fn write(source: Box<dyn Image>, opts: &Qcow2Options, compressed: bool, threads: usize) -> Vec<u8> {
    let sink = MemorySink::default();
    let w = Qcow2Writer::new(Box::new(sink.clone()), source.virtual_size(), opts, compressed).unwrap();
    run(source, Box::new(w), RunOptions { threads, ..Default::default() }).unwrap();
    sink.take()
}

fn be64(b: &[u8], at: usize) -> u64 {
    BigEndian::read_u64(&b[at..])
}

fn be16(b: &[u8], at: usize) -> u16 {
    BigEndian::read_u16(&b[at..])
}

/// Guest bytes of a qcow2 file, read with the reader.
fn read_back(file: Vec<u8>) -> Vec<u8> {
    let mut image = Qcow2::open(Box::new(file), "out.qcow2", &mut crate::open::OpenContext::new(&NoFiles)).unwrap();
    let mut guest = vec![0; image.virtual_size() as usize];
    image.read_at(0, &mut guest).unwrap();
    guest
}

fn assert_clean(file: &[u8]) -> crate::report::Report {
    let mut problems = Vec::new();
    let report = crate::qcow2::check(&file.to_vec(), &mut |p| problems.push(p.to_string())).unwrap();
    assert_eq!((report.corruptions, report.leaks, report.check_errors), (0, 0, 0), "{problems:?}");
    report
}

#[test]
fn small_image_field_by_field() {
    // 40000 bytes: 79 guest clusters (the last one partial), 2 L2 tables. Data in clusters 0 and 70 only.
    let mut guest = vec![0u8; 40000];
    guest[..512].fill(0xaa);
    guest[70 * 512 + 7] = 1;
    let file = write(Box::new(RawImage::new(Box::new(guest.clone()))), &opts(""), false, 1);

    // Cluster 0: header. Cluster 1: refcount table (1 cluster is plenty). Cluster 2: L1 (2 entries).
    assert_eq!(&file[0..8], b"QFI\xfb\0\0\0\x03"); //             magic, version 3
    assert_eq!(BigEndian::read_u32(&file[20..]), 9); //          cluster_bits
    assert_eq!(be64(&file, 24), 40448); //                       size: 40000 rounded up to a sector by the reader
    assert_eq!(BigEndian::read_u32(&file[36..]), 2); //          l1_size
    assert_eq!(be64(&file, 40), 0x400); //                       l1_table_offset: cluster 2
    assert_eq!(be64(&file, 48), 0x200); //                       refcount_table_offset: cluster 1
    assert_eq!(BigEndian::read_u32(&file[56..]), 1); //          refcount_table_clusters
    assert_eq!(BigEndian::read_u32(&file[100..]), 112); //       header_length
    assert_eq!(be64(&file, 112), 0); //                          end of extensions
    // Then, in stream order: L2 table 0 (cluster 3), data cluster 0 (4), L2 table 1 (5), data cluster 70 (6),
    // and the refcount block (7), which counts itself.
    assert_eq!(be64(&file, 0x400), 0x8000_0000_0000_0600); //    L1[0]: COPIED | L2 at cluster 3
    assert_eq!(be64(&file, 0x408), 0x8000_0000_0000_0a00); //    L1[1]: COPIED | L2 at cluster 5
    assert_eq!(be64(&file, 0x600), 0x8000_0000_0000_0800); //    L2[0]: COPIED | data at cluster 4
    assert!((1..64).all(|i| be64(&file, 0x600 + 8 * i) == 0)); // L2[1..]: unallocated (zeros are not stored)
    assert_eq!(be64(&file, 0xa00 + 6 * 8), 0x8000_0000_0000_0c00); // L2[70 - 64]: COPIED | data at cluster 6
    assert_eq!(be64(&file, 0x200), 0xe00); //                    refcount table[0]: block at cluster 7
    assert_eq!((0..9).map(|i| be16(&file, 0xe00 + 2 * i)).collect::<Vec<_>>(), [1, 1, 1, 1, 1, 1, 1, 1, 0]);
    assert_eq!(file.len(), 8 * 512);

    let mut expected = guest;
    expected.resize(40448, 0);
    assert_eq!(read_back(file.clone()), expected);
    let report = assert_clean(&file);
    assert_eq!((report.total_clusters, report.allocated_clusters, report.image_end_offset), (79, 2, 8 * 512));
}

#[test]
fn compressed_clusters_are_packed_and_share_host_clusters() {
    // Three compressible clusters: each compresses to a few bytes, so all three land in one host cluster.
    let guest: Vec<u8> = (0..1536u32).map(|i| (i / 512 + 1) as u8).collect();
    for compression in ["zlib", "zstd"] {
        let options = opts(&format!("compression_type={compression}"));
        let file = write(Box::new(RawImage::new(Box::new(guest.clone()))), &options, true, 1);
        // Header, refcount table, L1, L2 (cluster 3), the packed streams (cluster 4), the refcount block (5).
        let entries: Vec<u64> = (0..3).map(|i| be64(&file, 0x600 + 8 * i)).collect();
        let runs: Vec<_> = entries.iter().map(|&e| CompressedRun::decode(e & !(1 << 62), 9)).collect();
        assert!(entries.iter().all(|e| e >> 62 == 1), "{compression}: compressed, never COPIED: {entries:x?}");
        assert_eq!(runs[0].offset, 0x800);
        assert!(runs[0].offset < runs[1].offset && runs[1].offset < runs[2].offset && runs[2].offset < 0xa00);
        assert_eq!(be64(&file, 0x200), 0xa00);
        assert_eq!((0..6).map(|i| be16(&file, 0xa00 + 2 * i)).collect::<Vec<_>>(), [1, 1, 1, 1, 3, 1]);
        assert_eq!(read_back(file.clone()), guest, "{compression}: the reader inflates what the writer packed");
        let report = assert_clean(&file);
        assert_eq!((report.compressed_clusters, report.fragmented_clusters), (3, 3));
    }
}

#[test]
fn incompressible_clusters_are_stored_as_they_are() {
    let mut x = 0x1234_5678_9abc_def0_u64;
    let guest: Vec<u8> = (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for compression in ["zlib", "zstd"] {
        let file = write(
            Box::new(RawImage::new(Box::new(guest.clone()))),
            &opts(&format!("compression_type={compression}")),
            true,
            1,
        );
        assert_eq!(be64(&file, 0x600), 0x8000_0000_0000_0800, "{compression}: stored, COPIED");
        assert_eq!(read_back(file.clone()), guest);
        assert_clean(&file);
    }
}

#[test]
fn refcount_blocks_follow_the_stream_across_their_range() {
    // 600 non-zero clusters: the host space passes 256 and 512 clusters, so three refcount blocks are
    // written, the first two in the middle of the data. Compressed and not, one thread and three.
    let guest: Vec<u8> = (0..600 * 512u32).map(|i| (i / 512 % 251 + 1) as u8 ^ (i % 7) as u8).collect();
    for compressed in [false, true] {
        let one = write(Box::new(RawImage::new(Box::new(guest.clone()))), &opts(""), compressed, 1);
        let three = write(Box::new(RawImage::new(Box::new(guest.clone()))), &opts(""), compressed, 3);
        assert_eq!(one, three, "threads change nothing");
        assert_eq!(read_back(one.clone()), guest);
        assert_clean(&one);
        let blocks = (0..4).filter(|i| be64(&one, 0x200 + 8 * i) != 0).count();
        assert_eq!(blocks, if compressed { 1 } else { 3 }, "compressed: {compressed}");
    }
}

#[test]
fn nothing_is_written_before_the_first_unit() {
    // 512-byte clusters and 100 GiB: a 25 MiB L1 table, so the front alone spans many refcount blocks.
    let sink = MemorySink::default();
    let w = Qcow2Writer::new(Box::new(sink.clone()), 100 << 30, &opts(""), true).unwrap();
    assert!(sink.bytes().is_empty());
    let _ = w.encoder();
    assert!(sink.bytes().is_empty());
    // Finished, the front's refcount blocks follow it, each counted.
    let file = write(Box::new(Blank::new(100 << 30)), &opts(""), false, 1);
    let l1 = be64(&file, 40) as usize;
    assert_eq!(l1, 512 + BigEndian::read_u32(&file[56..]) as usize * 512, "L1 right after the refcount table");
    let clusters = file.len() / 512;
    assert_eq!(clusters, (l1 + (100 << 30) / (64 * 512) * 8) / 512 + clusters.div_ceil(256), "front + blocks");
    let blocks = (0..clusters.div_ceil(256)).filter(|i| be64(&file, 512 + 8 * i) != 0).count();
    assert_eq!(blocks, clusters.div_ceil(256));
    assert_clean(&file);
}

#[test]
fn empty_disk_is_header_table_and_block() {
    // As qemu-img create -f qcow2 x 0: no L1 table at all.
    let file = write(Box::new(Blank::new(0)), &opts(""), false, 1);
    assert_eq!((be64(&file, 24), BigEndian::read_u32(&file[36..]), be64(&file, 40)), (0, 0, 0));
    assert_eq!(file.len(), 3 * 512);
    assert_clean(&file);
}

#[test]
fn options_are_checked_like_qemu_img() {
    let parse = |s: &str| Qcow2Options::from_options(&mut OptionList::parse(s).unwrap());
    let o = parse("").unwrap();
    assert_eq!((o.version, o.cluster_bits, o.compression, o.lazy_refcounts), (3, 16, Compression::Deflate, false));
    assert_eq!(parse("compat=0.10").unwrap().version, 2);
    assert_eq!(parse("cluster_size=2M").unwrap().cluster_bits, 21);
    assert!(parse("lazy_refcounts=on").unwrap().lazy_refcounts);
    for bad in ["cluster_size=256", "cluster_size=4M", "cluster_size=3000", "compat=2", "compression_type=lz4"] {
        assert_eq!(parse(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad}");
    }
    for bad in ["compat=0.10,compression_type=zstd", "compat=0.10,lazy_refcounts=on"] {
        assert_eq!(parse(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad}");
    }
    for unsupported in ["preallocation=metadata", "extended_l2=on", "refcount_bits=1", "backing_file=x"] {
        assert_eq!(parse(unsupported).unwrap_err().kind(), ErrorKind::Unsupported, "{unsupported}");
    }
    assert!(parse("preallocation=off,extended_l2=off,refcount_bits=16").is_ok());
}

#[test]
fn pipes_and_oversized_disks_are_refused() {
    let pipe = Box::new(crate::io::StreamSink::new(Vec::new()));
    let err = Qcow2Writer::new(pipe, 1 << 20, &opts(""), false).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // 512-byte clusters: the 32 MiB L1 table maps 128 GiB.
    let err = Qcow2Writer::new(Box::new(MemorySink::default()), 129 << 30, &opts(""), false).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
}
