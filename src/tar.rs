//! ustar member headers for OVA packages. DSP0243 asks for ustar; members of 8 GiB and more need GNU's
//! base-256 size field (vSphere reads it; it refuses PAX headers, so those are never written). Reading accepts
//! what other tools write too: ustar and GNU headers, base-256 sizes, and PAX headers' `size` and `path`.

use crate::error::{Error, Result};

/// Tar's block size: headers and padded member data come in 512-byte blocks.
pub const BLOCK: u64 = 512;

/// The largest size the 11-digit octal field holds; above it the size is written base-256.
const OCTAL_SIZE_MAX: u64 = 0o77777777777;

/// A 512-byte ustar header for a regular file `name` of `size` bytes, mode 0644, owned by root, modified at `mtime`.
///
/// # Errors
/// `InvalidArgument` when the name does not fit the 100-byte field (OVA members are flat, short names).
pub fn header(name: &str, size: u64, mtime: u64) -> Result<[u8; 512]> {
    let mut h = [0u8; 512];
    if name.is_empty() || name.len() > 100 || name.contains('/') {
        return Err(Error::argument(format!(
            "Cannot store '{name}' in an OVA: member names are at most 100 bytes, no '/'"
        )));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size > OCTAL_SIZE_MAX {
        // GNU base-256: high bit of the first byte set, the value big-endian in the rest of the field.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    } else {
        octal(&mut h[124..136], size);
    }
    octal(&mut h[136..148], mtime.min(OCTAL_SIZE_MAX));
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    // The checksum is summed with its own field read as spaces, then written as six octal digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    Ok(h)
}

/// Writes `value` as zero-padded octal digits followed by a NUL, filling the field.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
    field[digits] = 0;
}

/// A member header as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Member name (ustar prefix joined).
    pub name: String,
    /// Data size in bytes.
    pub size: u64,
    /// The type flag: `b'0'`/`0` regular file, `b'x'` PAX extended header, `b'L'` GNU long name, others.
    pub kind: u8,
}

/// Parses a 512-byte header block; `None` for the zero block that ends an archive.
///
/// # Errors
/// `InvalidFormat` when the checksum does not match or a numeric field is not a number.
pub fn parse(h: &[u8; 512]) -> Result<Option<Entry>> {
    if h.iter().all(|&b| b == 0) {
        return Ok(None);
    }
    let stored = number(&h[148..156]).ok_or_else(|| Error::invalid("Tar header checksum is not a number"))?;
    let sum: u64 = h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
    if stored != sum {
        return Err(Error::invalid("Tar header checksum mismatch"));
    }
    let size = number(&h[124..136]).ok_or_else(|| Error::invalid("Tar member size is not a number"))?;
    let text = |field: &[u8]| String::from_utf8_lossy(field.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
    let mut name = text(&h[..100]);
    if &h[257..262] == b"ustar" && h[262] == 0 && h[345] != 0 {
        name = format!("{}/{name}", text(&h[345..500]));
    }
    Ok(Some(Entry { name, size, kind: h[156] }))
}

/// A numeric field: octal digits (NUL/space terminated), or GNU base-256 (high bit of the first byte set).
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        // The flag's other bits are the number's highest; anything past 64 bits, or negative, is refused. Fields
        // shorter than 9 bytes (the 8-byte checksum) hold fewer than 8 digits.
        let digits = &field[1..];
        let high = digits.len().saturating_sub(8);
        if field[0] != 0x80 || digits[..high].iter().any(|&b| b != 0) {
            return None;
        }
        return Some(digits[high..].iter().fold(0, |value, &b| value << 8 | u64::from(b)));
    }
    let digits = std::str::from_utf8(field).ok()?.trim_matches(|c| c == '\0' || c == ' ');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// Bytes of zero padding after `size` bytes of member data.
pub fn padding(size: u64) -> u64 {
    size.next_multiple_of(BLOCK) - size
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum_ok(h: &[u8; 512]) -> bool {
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        let sum: u32 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u32::from(b) }).sum();
        stored == sum
    }

    #[test]
    fn small_member_is_plain_ustar() {
        let h = header("vm.ovf", 13824, 1_700_000_000).unwrap();
        assert_eq!(&h[..6], b"vm.ovf");
        assert_eq!(&h[100..108], b"0000644\0"); // mode
        assert_eq!(&h[124..136], b"00000033000\0"); // size 13824 in octal
        assert_eq!(h[156], b'0'); // regular file
        assert_eq!(&h[257..265], b"ustar\x0000"); // POSIX ustar magic + version
        assert!(checksum_ok(&h));
    }

    #[test]
    fn eight_gib_and_more_use_base_256() {
        let h = header("disk.vmdk", 8 << 30, 0).unwrap();
        assert_eq!(h[124], 0x80);
        assert_eq!(u64::from_be_bytes(h[128..136].try_into().unwrap()), 8 << 30);
        assert!(checksum_ok(&h));
        let below = header("disk.vmdk", (8 << 30) - 1, 0).unwrap();
        assert_eq!(&below[124..136], b"77777777777\0");
    }

    #[test]
    fn headers_read_back_including_base_256() {
        for size in [0, 13824, 8 << 30] {
            let h = header("disk.vmdk", size, 5).unwrap();
            assert_eq!(parse(&h).unwrap(), Some(Entry { name: "disk.vmdk".into(), size, kind: b'0' }));
        }
        assert_eq!(parse(&[0; 512]).unwrap(), None);
        let mut bad = header("a", 1, 0).unwrap();
        bad[0] = b'b';
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn base_256_numbers_of_any_width_parse_or_are_refused() {
        assert_eq!(number(&[0x80, 0, 0, 0, 0, 0, 0, 7]), Some(7), "an 8-byte field holds 7 digits");
        assert_eq!(number(&[0x80]), Some(0));
        assert_eq!(number(&[0xff, 0, 0, 0, 0, 0, 0, 7]), None, "negative");
        let mut wide = [0u8; 12];
        wide[0] = 0x80;
        wide[3] = 1;
        assert_eq!(number(&wide), None, "past 64 bits");
    }

    #[test]
    fn refuses_names_tar_cannot_hold() {
        assert!(header(&"x".repeat(101), 1, 0).is_err());
        assert!(header("a/b", 1, 0).is_err());
        assert_eq!(padding(13824), 0);
        assert_eq!(padding(1), 511);
    }
}
