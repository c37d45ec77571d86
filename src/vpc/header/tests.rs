//! The VHD structures against bytes built field by field, and their checksums.

use super::*;
use crate::error::ErrorKind;

/// Stores the checksum of a footer or header whose checksum field is at `field`.
pub fn seal(buf: &mut [u8], field: usize) {
    let sum = checksum(buf, field);
    BigEndian::write_u32(&mut buf[field..], sum);
}

/// A footer for a `disk_type` disk of `size` bytes made by `creator`, with CHS geometry c/h/s.
pub fn footer_bytes(disk_type: u32, creator: &[u8; 4], size: u64, chs: (u16, u8, u8)) -> Vec<u8> {
    let footer = Footer {
        disk_type: match disk_type {
            2 => DiskType::Fixed,
            3 => DiskType::Dynamic,
            _ => DiskType::Differencing,
        },
        data_offset: if disk_type == 2 { u64::MAX } else { FOOTER_SIZE as u64 },
        creator_app: *creator,
        creator_version: 0x0001_0000,
        timestamp: 0,
        current_size: size,
        geometry: Geometry { cylinders: chs.0, heads: chs.1, sectors_per_track: chs.2 },
        unique_id: [disk_type as u8; 16],
    };
    let mut f = footer.to_bytes().to_vec();
    if disk_type > 4 {
        BigEndian::write_u32(&mut f[footer::DISK_TYPE..], disk_type);
        seal(&mut f, footer::CHECKSUM);
    }
    f
}

/// A dynamic disk header with its BAT at `table_offset`, and `locators` as (platform, offset, length).
pub fn header_bytes(table_offset: u64, entries: u32, block_size: u32, locators: &[(&[u8; 4], u64, u32)]) -> Vec<u8> {
    let mut h = dynamic_header_bytes(table_offset, entries, block_size).to_vec();
    h[dynamic::PARENT_UNIQUE_ID..dynamic::PARENT_UNIQUE_ID + 16].fill(2); // a fixed disk's, from footer_bytes
    for (i, (platform, offset, length)) in locators.iter().enumerate() {
        let e = &mut h[dynamic::PARENT_LOCATORS + i * dynamic::LOCATOR_SIZE..];
        e[..4].copy_from_slice(*platform);
        BigEndian::write_u32(&mut e[4..], length.div_ceil(512)); // data space, in sectors
        BigEndian::write_u32(&mut e[8..], *length);
        BigEndian::write_u64(&mut e[16..], *offset);
    }
    seal(&mut h, dynamic::CHECKSUM);
    h
}

/// The footer qemu-img 10.0 wrote for `qemu-img create -f vpc -o subformat=dynamic x.vhd 10M` (zero bytes
/// after the saved-state byte left out).
const QEMU_FOOTER: &[u8] = &[
    b'c', b'o', b'n', b'e', b'c', b't', b'i', b'x', // cookie
    0x00, 0x00, 0x00, 0x02, // features: reserved bit
    0x00, 0x01, 0x00, 0x00, // format version 1.0
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, // data offset: header at 0x200
    0x32, 0x99, 0x7a, 0x7e, // timestamp
    b'q', b'e', b'm', b'u', // creator app
    0x00, 0x05, 0x00, 0x03, // creator version 5.3 (Virtual PC 2007)
    b'W', b'i', b'2', b'k', // creator host OS
    0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x70, 0x00, // original size
    0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x70, 0x00, // current size 10514432
    0x01, 0x2e, 0x04, 0x11, // geometry: 302 cylinders, 4 heads, 17 sectors
    0x00, 0x00, 0x00, 0x03, // disk type: dynamic
    0xff, 0xff, 0xed, 0x55, // checksum
    0x82, 0xa5, 0xc7, 0x28, 0x39, 0xd8, 0x4c, 0x55, // unique id, bytes 0-7
    0x9a, 0xac, 0x20, 0x3d, 0xae, 0xf7, 0x11, 0xe0, // unique id, bytes 8-15
    0x00, // saved state
];

fn qemu_footer() -> Vec<u8> {
    let mut f = QEMU_FOOTER.to_vec();
    f.resize(FOOTER_SIZE, 0);
    f
}

#[test]
fn parses_a_footer_written_by_qemu() {
    let f = Footer::parse(&qemu_footer(), 0).unwrap();
    assert_eq!(f.disk_type, DiskType::Dynamic);
    assert_eq!(f.data_offset, 0x200);
    assert_eq!(f.creator_app, *b"qemu");
    assert_eq!(f.geometry, Geometry { cylinders: 302, heads: 4, sectors_per_track: 17 });
    assert_eq!((f.creator_version, f.timestamp), (0x0005_0003, 0x3299_7a7e));
    assert_eq!(f.unique_id[..4], [0x82, 0xa5, 0xc7, 0x28]);
    assert_eq!(f.virtual_size().unwrap(), 10_514_432);
}

#[test]
fn footer_checksum_mismatch_is_corrupt_and_named() {
    let mut f = qemu_footer();
    f[0x30] ^= 1;
    let err = Footer::parse(&f, 0).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.message().contains("footer checksum"), "{err}");
    assert_eq!(err.offset(), Some(64));
}

#[test]
fn footer_rejects_bad_cookie_version_and_type() {
    let mut f = qemu_footer();
    f[0] = b'C';
    assert_eq!(Footer::parse(&f, 0).unwrap_err().kind(), ErrorKind::InvalidFormat);
    let mut f = qemu_footer();
    f[footer::FORMAT_VERSION + 1] = 2;
    seal(&mut f, footer::CHECKSUM);
    assert_eq!(Footer::parse(&f, 0).unwrap_err().kind(), ErrorKind::Unsupported);
    let f = footer_bytes(5, b"win ", 1 << 20, (1, 1, 1));
    assert_eq!(Footer::parse(&f, 0).unwrap_err().kind(), ErrorKind::Corrupt);
}

#[test]
fn size_rule_follows_the_creator_app() {
    let size =
        |creator: &[u8; 4], chs| Footer::parse(&footer_bytes(2, creator, 10 << 20, chs), 0).unwrap().virtual_size();
    // Virtual PC and qemu without force_size: the geometry (here 20 sectors short of 10 MiB).
    assert_eq!(size(b"vpc ", (301, 4, 17)).unwrap(), 301 * 4 * 17 * 512);
    assert_eq!(size(b"qemu", (301, 4, 17)).unwrap(), 301 * 4 * 17 * 512);
    // ... unless the geometry is the CHS maximum.
    assert_eq!(size(b"qemu", (65535, 16, 255)).unwrap(), 10 << 20);
    // Everyone else: the current size (Hyper-V, Azure, qemu force_size, disk2vhd, XenServer, unknown).
    for creator in [b"win ", b"wa\0\0", b"qem2", b"d2v ", b"tap\0", b"CTXS", b"????"] {
        assert_eq!(size(creator, (301, 4, 17)).unwrap(), 10 << 20);
    }
}

#[test]
fn size_rounds_up_to_a_sector_and_is_bounded() {
    let size = |bytes| Footer::parse(&footer_bytes(2, b"win ", bytes, (1, 1, 1)), 0).unwrap().virtual_size();
    assert_eq!(size(1000).unwrap(), 1024);
    assert_eq!(size(MAX_VIRTUAL_SIZE).unwrap(), MAX_VIRTUAL_SIZE);
    assert_eq!(size(MAX_VIRTUAL_SIZE + 1).unwrap_err().kind(), ErrorKind::LimitExceeded);
    assert_eq!(size(u64::MAX).unwrap_err().kind(), ErrorKind::LimitExceeded);
}

#[test]
fn parses_a_dynamic_header_with_locators_relative_first() {
    let h = header_bytes(0x600, 5, 2 << 20, &[(b"W2ku", 0x1000, 20), (b"Mac ", 0, 0), (b"W2ru", 0x1200, 12)]);
    let h = DynamicHeader::parse(&h, 0).unwrap();
    assert_eq!((h.table_offset, h.max_table_entries, h.block_size), (0x600, 5, 2 << 20));
    assert_eq!(h.parent_unique_id, [2; 16]);
    let platforms: Vec<_> = h.locators.iter().map(|l| l.platform).collect();
    assert_eq!(platforms, [Platform::WindowsRelative, Platform::WindowsAbsolute]);
    assert_eq!((h.locators[0].offset, h.locators[0].length), (0x1200, 12));
}

#[test]
fn dynamic_header_checks_cookie_and_checksum() {
    let mut h = header_bytes(0x600, 5, 2 << 20, &[]);
    h[40] = 9;
    let err = DynamicHeader::parse(&h, 0).unwrap_err();
    assert!(err.message().contains("header checksum"), "{err}");
    h[0] = 0;
    assert_eq!(DynamicHeader::parse(&h, 0).unwrap_err().kind(), ErrorKind::Corrupt);
}

#[test]
fn locator_paths_decode_to_resolver_names() {
    let utf16le = |s: &str| s.encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<u8>>();
    let at = |platform| ParentLocator { platform, offset: 0, length: 0 };
    assert_eq!(at(Platform::WindowsRelative).decode(&utf16le(".\\base\\p.vhd\0")).unwrap(), "base/p.vhd");
    assert_eq!(at(Platform::WindowsAbsolute).decode(&utf16le("C:\\vms\\p.vhd")).unwrap(), "C:/vms/p.vhd");
    assert_eq!(at(Platform::MacX).decode(b"file://localhost/Users/a/p.vhd").unwrap(), "/Users/a/p.vhd");
    assert_eq!(at(Platform::WindowsRelative).decode(&[0x00, 0xd8]).unwrap_err().kind(), ErrorKind::Corrupt);
}

#[test]
fn bat_entries_and_bitmaps_decode() {
    assert_eq!(BatEntry(0xffff_ffff).state(), BlockState::Absent);
    assert_eq!(BatEntry(4).state(), BlockState::At(0x800));
    // 2 MiB blocks: 4096 sectors, 512 bytes of bitmap; 512 KiB blocks still take a whole sector.
    assert_eq!(bitmap_size(2 << 20), 512);
    assert_eq!(bitmap_size(512 << 10), 512);
    assert_eq!(bitmap_size(16 << 20), 4096);
    let bitmap = [0b1000_0001, 0b0100_0000];
    let present: Vec<u64> = (0..16).filter(|&i| sector_present(&bitmap, i)).collect();
    assert_eq!(present, [0, 7, 9]);
}

#[test]
fn geometry_follows_the_specification_and_caps_at_127_gib() {
    let chs = |sectors| {
        let g = Geometry::for_sectors(sectors);
        (g.cylinders, g.heads, g.sectors_per_track)
    };
    // qemu's footer above: 10 MiB + 3.5 KiB.
    assert_eq!(chs(20487), (301, 4, 17));
    assert_eq!(chs(2 << 20), (2080, 16, 63)); // 1 GiB
    assert_eq!(chs(20 << 21), (41610, 16, 63)); // 20 GiB
    assert_eq!(chs(65535 * 16 * 63), (16191, 16, 255));
    assert_eq!(chs(u64::MAX), (65535, 16, 255));
    assert_eq!(Geometry::for_sectors(1 << 40), Geometry::MAX);
    // 31 sectors per track in between.
    assert_eq!(chs(400_000), (806, 16, 31));
}

#[test]
fn written_footer_and_header_parse_back() {
    let footer = Footer {
        disk_type: DiskType::Dynamic,
        data_offset: 512,
        creator_app: *b"test",
        creator_version: 0x0002_0001,
        timestamp: 12345,
        current_size: 10 << 20,
        geometry: Geometry::MAX,
        unique_id: [7; 16],
    };
    let bytes = footer.to_bytes();
    assert_eq!(Footer::parse(&bytes, 0).unwrap(), footer);
    assert_eq!(&bytes[36..40], b"Wi2k");
    assert_eq!(BigEndian::read_u64(&bytes[40..]), 10 << 20, "original size");
    let h = DynamicHeader::parse(&dynamic_header_bytes(1536, 5, 2 << 20), 512).unwrap();
    assert_eq!((h.table_offset, h.max_table_entries, h.block_size), (1536, 5, 2 << 20));
    assert_eq!((h.parent_unique_id, h.parent_name.as_str(), h.locators.len()), ([0; 16], "", 0));
}
