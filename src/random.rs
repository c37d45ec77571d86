//! Deterministic pseudo-random values for the fields formats want random (VMDK CID, VHDX GUIDs, OVF ids).
//!
//! The caller supplies the seed: from `DISKBRIDGE_SEED` / `?seed=` for reproducible output, or from the
//! operating system / `crypto.getRandomValues` otherwise. SplitMix64 is enough: these values must be unique,
//! not secret.

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Random {
    state: u64,
}

impl Random {
    /// A generator whose whole output follows from `seed`.
    pub fn new(seed: u64) -> Self {
        Random { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A random (version 4, RFC 4122 variant) GUID.
    pub fn uuid(&mut self) -> uuid::Uuid {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_be_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_be_bytes());
        uuid::Builder::from_random_bytes(b).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_guids_are_version_4() {
        let (mut a, mut b) = (Random::new(42), Random::new(42));
        assert_eq!(a.next_u64(), b.next_u64());
        let g = a.uuid();
        assert_eq!((g.get_version_num(), g.get_variant()), (4, uuid::Variant::RFC4122));
        assert_ne!(Random::new(1).next_u64(), Random::new(2).next_u64());
    }
}
