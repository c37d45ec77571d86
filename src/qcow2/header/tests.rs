//! Header parsing on hand-built cluster-0 images (512-byte clusters), one field per line.

use super::*;
use crate::error::ErrorKind;

/// A file length that holds every table the fixtures point at.
const FILE_LEN: u64 = 0x1000;

fn put(b: &mut [u8], at: usize, bytes: &[u8]) {
    b[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A version 3 header as qemu writes it, with a backing file, a backing format and a feature-name table.
fn v3() -> Vec<u8> {
    let mut b = vec![0u8; 512];
    put(&mut b, 0, b"QFI\xfb"); //                           magic
    put(&mut b, 4, &3u32.to_be_bytes()); //                  version
    put(&mut b, 8, &0x1c0u64.to_be_bytes()); //              backing_file_offset
    put(&mut b, 16, &7u32.to_be_bytes()); //                 backing_file_size
    put(&mut b, 20, &9u32.to_be_bytes()); //                 cluster_bits: 512-byte clusters
    put(&mut b, 24, &100_000u64.to_be_bytes()); //           size: 196 clusters, 4 L2 tables of 64 entries
    put(&mut b, 32, &0u32.to_be_bytes()); //                 crypt_method
    put(&mut b, 36, &4u32.to_be_bytes()); //                 l1_size
    put(&mut b, 40, &0x400u64.to_be_bytes()); //             l1_table_offset
    put(&mut b, 48, &0x200u64.to_be_bytes()); //             refcount_table_offset
    put(&mut b, 56, &1u32.to_be_bytes()); //                 refcount_table_clusters
    put(&mut b, 60, &0u32.to_be_bytes()); //                 nb_snapshots
    put(&mut b, 64, &0u64.to_be_bytes()); //                 snapshots_offset
    put(&mut b, 72, &1u64.to_be_bytes()); //                 incompatible_features: dirty
    put(&mut b, 80, &1u64.to_be_bytes()); //                 compatible_features: lazy refcounts
    put(&mut b, 88, &0u64.to_be_bytes()); //                 autoclear_features
    put(&mut b, 96, &4u32.to_be_bytes()); //                 refcount_order: 16-bit refcounts
    put(&mut b, 100, &112u32.to_be_bytes()); //              header_length
    put(&mut b, 104, &[0]); //                               compression_type: deflate, then 7 bytes padding
    put(&mut b, 112, &0xe279_2acau32.to_be_bytes()); //      extension: backing format
    put(&mut b, 116, &5u32.to_be_bytes()); //                  length
    put(&mut b, 120, b"qcow2\0\0\0"); //                       "qcow2", padded to 8
    put(&mut b, 128, &0x6803_f857u32.to_be_bytes()); //      extension: feature-name table
    put(&mut b, 132, &96u32.to_be_bytes()); //                 length: two entries
    put(&mut b, 136, &[0, 0]); //                              incompatible bit 0
    put(&mut b, 138, b"dirty bit"); //                         its name
    put(&mut b, 184, &[0, 9]); //                              incompatible bit 9
    put(&mut b, 186, b"teleportation"); //                     its name
    put(&mut b, 232, &0x1234_5678u32.to_be_bytes()); //      extension: unknown, skipped
    put(&mut b, 236, &3u32.to_be_bytes()); //                  length 3, padded to 8
    put(&mut b, 248, &0u32.to_be_bytes()); //                end of extensions
    put(&mut b, 0x1c0, b"base.qc"); //                       backing file name
    b
}

/// A version 2 header: 72 bytes, nothing after it but the end-of-extensions record.
fn v2() -> Vec<u8> {
    let mut b = vec![0u8; 512];
    put(&mut b, 0, b"QFI\xfb"); //                           magic
    put(&mut b, 4, &2u32.to_be_bytes()); //                  version
    put(&mut b, 20, &9u32.to_be_bytes()); //                 cluster_bits
    put(&mut b, 24, &(1u64 << 20).to_be_bytes()); //         size: 1 MiB, 32 L2 tables
    put(&mut b, 36, &64u32.to_be_bytes()); //                l1_size
    put(&mut b, 40, &0x400u64.to_be_bytes()); //             l1_table_offset
    put(&mut b, 48, &0x200u64.to_be_bytes()); //             refcount_table_offset
    put(&mut b, 56, &1u32.to_be_bytes()); //                 refcount_table_clusters
    b
}

fn error(b: &[u8]) -> (ErrorKind, String, Option<u64>) {
    let e = Header::parse(b, FILE_LEN).unwrap_err();
    (e.kind(), e.message().to_string(), e.offset())
}

#[test]
fn parses_a_version_3_header_with_extensions() {
    let h = Header::parse(&v3(), FILE_LEN).unwrap();
    assert_eq!(h.version, 3);
    assert_eq!(h.layout, Layout { cluster_bits: 9, extended_l2: false, zero_flag: true });
    assert_eq!((h.size, h.l1_table_offset, h.l1_entries), (100_000, 0x400, 4));
    assert!(h.dirty() && !h.corrupt() && h.lazy_refcounts());
    assert_eq!((h.refcount_order, h.compression), (4, Compression::Deflate));
    assert_eq!(h.backing_file.as_deref(), Some("base.qc"));
    assert_eq!(h.backing_format.as_deref(), Some("qcow2"));
    assert_eq!(Header::cluster_size(&v3()[..128]).unwrap(), 512);
}

#[test]
fn parses_a_version_2_header() {
    let h = Header::parse(&v2(), FILE_LEN).unwrap();
    assert_eq!((h.version, h.layout.zero_flag, h.refcount_order, h.l1_entries), (2, false, 4, 32));
    assert_eq!((h.backing_file, h.backing_format, h.incompatible), (None, None, 0));
    // Version 2 has no feature fields: extensions start where version 3 keeps its features.
    let mut b = v2();
    put(&mut b, 72, &0xe279_2acau32.to_be_bytes()); // extension: backing format
    put(&mut b, 76, &3u32.to_be_bytes()); //            length
    put(&mut b, 80, b"raw"); //                         "raw"
    let h = Header::parse(&b, FILE_LEN).unwrap();
    assert_eq!((h.incompatible, h.backing_format.as_deref()), (0, Some("raw")));
}

#[test]
fn zstd_needs_its_feature_bit() {
    let mut b = v3();
    put(&mut b, 104, &[1]);
    assert_eq!(
        error(&b),
        (ErrorKind::Corrupt, "Compression type feature bit is clear with zstd compression".into(), Some(104))
    );
    put(&mut b, 72, &(1u64 << 3).to_be_bytes());
    assert_eq!(Header::parse(&b, FILE_LEN).unwrap().compression, Compression::Zstd);
    put(&mut b, 104, &[0]);
    assert_eq!(error(&b).0, ErrorKind::Corrupt);
    put(&mut b, 104, &[2]);
    assert_eq!(error(&b).0, ErrorKind::Unsupported);
    // Without the compression_type field (header_length 104) the type is deflate.
    let mut b = v3();
    put(&mut b, 100, &104u32.to_be_bytes());
    put(&mut b, 104, &[1]);
    assert_eq!(Header::parse(&b, FILE_LEN).unwrap().compression, Compression::Deflate);
}

#[test]
fn unknown_incompatible_features_are_named() {
    let mut b = v3();
    put(&mut b, 72, &((1u64 << 9) | (1 << 40)).to_be_bytes());
    let (kind, msg, at) = error(&b);
    assert_eq!((kind, at), (ErrorKind::Unsupported, Some(72)));
    assert_eq!(
        msg,
        "Unsupported qcow2 feature: 'teleportation' (incompatible feature bit 9), unknown incompatible feature bit 40"
    );
}

#[test]
fn external_data_files_and_encryption_are_unsupported() {
    let mut b = v3();
    put(&mut b, 72, &(1u64 << 2).to_be_bytes()); //  incompatible: external data file
    put(&mut b, 232, &0x4441_5441u32.to_be_bytes()); // extension "DATA" replaces the unknown one
    put(&mut b, 236, &6u32.to_be_bytes()); //           length
    put(&mut b, 240, b"d.raw\0"); //                    name
    assert_eq!(
        error(&b),
        (ErrorKind::Unsupported, "Image keeps its data in an external data file 'd.raw'".into(), Some(72))
    );

    for (method, what) in [(1u32, "Image is encrypted (AES)"), (2, "Image is encrypted (LUKS)")] {
        let mut b = v3();
        put(&mut b, 32, &method.to_be_bytes());
        assert_eq!(error(&b), (ErrorKind::Unsupported, what.into(), Some(32)));
    }
}

#[test]
fn refuses_fields_out_of_range() {
    let cases: &[(usize, &[u8], ErrorKind, u64)] = &[
        (0, b"QFI\xfa", ErrorKind::InvalidFormat, 0),                      // magic
        (4, &4u32.to_be_bytes(), ErrorKind::Unsupported, 4),               // version 4
        (4, &1u32.to_be_bytes(), ErrorKind::Unsupported, 4),               // version 1 (qcow)
        (20, &8u32.to_be_bytes(), ErrorKind::Unsupported, 20),             // cluster_bits 8
        (20, &22u32.to_be_bytes(), ErrorKind::Unsupported, 20),            // cluster_bits 22
        (20, &63u32.to_be_bytes(), ErrorKind::Unsupported, 20),            // cluster_bits 63
        (100, &100u32.to_be_bytes(), ErrorKind::Corrupt, 100),             // header_length < 104
        (100, &108u32.to_be_bytes(), ErrorKind::Corrupt, 100),             // header_length not a multiple of 8
        (100, &1024u32.to_be_bytes(), ErrorKind::Corrupt, 100),            // header_length > cluster
        (96, &7u32.to_be_bytes(), ErrorKind::Corrupt, 96),                 // refcount_order 7
        (32, &3u32.to_be_bytes(), ErrorKind::Unsupported, 32),             // crypt_method 3
        (36, &3u32.to_be_bytes(), ErrorKind::Corrupt, 36),                 // L1 too small for 100000 bytes
        (36, &0x0080_0000u32.to_be_bytes(), ErrorKind::LimitExceeded, 36), // L1 of 64 MiB
        (24, &(1u64 << 62).to_be_bytes(), ErrorKind::LimitExceeded, 24),   // virtual size beyond any L1
        (24, &u64::MAX.to_be_bytes(), ErrorKind::LimitExceeded, 24),       // virtual size 2^64-1
        (40, &0x408u64.to_be_bytes(), ErrorKind::Corrupt, 40),             // L1 unaligned
        (40, &0x1000u64.to_be_bytes(), ErrorKind::Corrupt, 40),            // L1 beyond the end of the file
        (56, &0u32.to_be_bytes(), ErrorKind::Corrupt, 56),                 // no refcount table
        (56, &0x10000u32.to_be_bytes(), ErrorKind::LimitExceeded, 56),     // refcount table of 32 MiB
        (48, &0x208u64.to_be_bytes(), ErrorKind::Corrupt, 48),             // refcount table unaligned
        (60, &70000u32.to_be_bytes(), ErrorKind::LimitExceeded, 60),       // too many snapshots
        (8, &0x400u64.to_be_bytes(), ErrorKind::Corrupt, 8),               // backing name offset beyond cluster 0
        (16, &1024u32.to_be_bytes(), ErrorKind::Corrupt, 16),              // backing name of 1024 bytes
        (16, &0x41u32.to_be_bytes(), ErrorKind::Corrupt, 16),              // backing name crossing cluster 0's end
        (116, &0x1000u32.to_be_bytes(), ErrorKind::Corrupt, 112),          // extension longer than cluster 0
        (116, &16u32.to_be_bytes(), ErrorKind::Corrupt, 112),              // backing format of 16 bytes
        (72, &(1u64 << 4).to_be_bytes(), ErrorKind::Corrupt, 20),          // extended L2 with 512-byte clusters
    ];
    for &(at, bytes, kind, offset) in cases {
        let mut b = v3();
        put(&mut b, at, bytes);
        let (k, msg, o) = error(&b);
        assert_eq!((k, o), (kind, Some(offset)), "field at {at} = {bytes:02x?}: {msg}");
    }
}

#[test]
fn snapshot_table_must_be_aligned() {
    let mut b = v3();
    put(&mut b, 60, &1u32.to_be_bytes());
    put(&mut b, 64, &0x600u64.to_be_bytes());
    Header::parse(&b, FILE_LEN).unwrap();
    put(&mut b, 64, &0x610u64.to_be_bytes());
    assert_eq!(error(&b).2, Some(64));
}

#[test]
fn truncated_headers_are_errors_not_panics() {
    let b = v3();
    for len in 0..b.len() {
        let _ = Header::parse(&b[..len], FILE_LEN);
        let _ = Header::cluster_size(&b[..len]);
    }
    assert_eq!(error(&b[..50]), (ErrorKind::Corrupt, "File ends inside the qcow2 header".into(), Some(50)));
    assert_eq!(error(&b[..80]).2, Some(80));
    assert_eq!(error(&[]).0, ErrorKind::InvalidFormat);
}

#[test]
fn empty_image_needs_no_l1_table() {
    let mut b = v2();
    put(&mut b, 24, &0u64.to_be_bytes()); // size 0
    put(&mut b, 36, &0u32.to_be_bytes()); // l1_size 0
    put(&mut b, 40, &0u64.to_be_bytes()); // l1_table_offset 0, as qemu-img writes it
    assert_eq!(Header::parse(&b, FILE_LEN).unwrap().l1_entries, 0);
}

#[test]
fn serialized_headers_parse_back() {
    let (incompatible, compatible) = Header::features(Compression::Zstd, true);
    let header = Header {
        version: 3,
        layout: Layout { cluster_bits: 9, extended_l2: false, zero_flag: true },
        size: 100_000,
        l1_table_offset: 0x600,
        l1_entries: 4,
        l1_size: 4,
        refcount_table_offset: 0x200,
        refcount_table_clusters: 2,
        nb_snapshots: 0,
        snapshots_offset: 0,
        bitmaps: false,
        incompatible,
        compatible,
        refcount_order: REFCOUNT_ORDER_16,
        compression: Compression::Zstd,
        backing_file: None,
        backing_format: None,
    };
    let b = header.to_cluster();
    let mut expected = vec![0u8; 512];
    put(&mut expected, 0, b"QFI\xfb"); //                    magic
    put(&mut expected, 4, &3u32.to_be_bytes()); //           version
    put(&mut expected, 20, &9u32.to_be_bytes()); //          cluster_bits
    put(&mut expected, 24, &100_000u64.to_be_bytes()); //    size
    put(&mut expected, 36, &4u32.to_be_bytes()); //          l1_size
    put(&mut expected, 40, &0x600u64.to_be_bytes()); //      l1_table_offset
    put(&mut expected, 48, &0x200u64.to_be_bytes()); //      refcount_table_offset
    put(&mut expected, 56, &2u32.to_be_bytes()); //          refcount_table_clusters
    put(&mut expected, 72, &8u64.to_be_bytes()); //          incompatible_features: compression type
    put(&mut expected, 80, &1u64.to_be_bytes()); //          compatible_features: lazy refcounts
    put(&mut expected, 96, &4u32.to_be_bytes()); //          refcount_order
    put(&mut expected, 100, &112u32.to_be_bytes()); //       header_length
    put(&mut expected, 104, &[1]); //                        compression_type: zstd; 112..120 end of extensions
    assert_eq!(b, expected);
    assert_eq!(Header::parse(&b, FILE_LEN).unwrap(), header);

    // Version 2: nothing past byte 72, whose 8 zero bytes end the (empty) extension area.
    let v2 = Header {
        version: 2,
        layout: Layout { zero_flag: false, ..header.layout },
        incompatible: 0,
        compatible: 0,
        compression: Compression::Deflate,
        ..header
    };
    let b = v2.to_cluster();
    assert!(b[72..].iter().all(|&x| x == 0));
    assert_eq!((&b[..4], &b[4..8], &b[8..72]), (&expected[..4], &2u32.to_be_bytes()[..], &expected[8..72]));
    assert_eq!(Header::parse(&b, FILE_LEN).unwrap(), v2);
}
