//! One bit per block (or per unit): the writer's compact summary of what it stores. A 64 TiB disk in 1 MiB
//! pieces costs 8 MiB, whatever the data looks like — a list of allocated blocks or of runs could cost far
//! more on a fragmented disk.

use crate::error::{Error, Result};

/// A fixed-size set of indices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitmap {
    words: Vec<u64>,
    len: u64,
}

impl Bitmap {
    /// An empty set of `len` indices.
    ///
    /// # Errors
    /// `LimitExceeded` when the memory cannot be had.
    pub fn new(len: u64) -> Result<Bitmap> {
        let n = len.div_ceil(64) as usize;
        let mut words = Vec::new();
        words.try_reserve_exact(n).map_err(|_| Error::limit(format!("Cannot allocate a bitmap of {len} bits")))?;
        words.resize(n, 0);
        Ok(Bitmap { words, len })
    }

    /// Number of indices.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether there are no indices at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `i`.
    pub fn set(&mut self, i: u64) {
        self.words[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// Whether `i` is in.
    pub fn get(&self, i: u64) -> bool {
        self.words[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// How many indices in `from..to` are in.
    pub fn count(&self, from: u64, to: u64) -> u64 {
        let to = to.min(self.len);
        if from >= to {
            return 0;
        }
        let (first, last) = ((from / 64) as usize, ((to - 1) / 64) as usize);
        let low = u64::MAX << (from % 64);
        let high = u64::MAX >> (63 - (to - 1) % 64);
        if first == last {
            return (self.words[first] & low & high).count_ones() as u64;
        }
        let middle: u64 = self.words[first + 1..last].iter().map(|w| w.count_ones() as u64).sum();
        (self.words[first] & low).count_ones() as u64 + middle + (self.words[last] & high).count_ones() as u64
    }
}

/// Ranks of ascending indices, counted incrementally: a writer that stores blocks in guest order finds a
/// block's place from how many stored blocks precede it, without a table of places.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ranks {
    at: u64,
    rank: u64,
}

impl Ranks {
    /// How many indices below `i` are in `bitmap`; `i` must not be below the previous call's.
    pub fn below(&mut self, bitmap: &Bitmap, i: u64) -> u64 {
        self.rank += bitmap.count(self.at, i);
        self.at = i;
        self.rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_matches_a_naive_count_on_every_range() {
        let mut b = Bitmap::new(200).unwrap();
        let set = [0, 1, 63, 64, 65, 127, 128, 150, 199];
        for i in set {
            b.set(i);
        }
        assert!(b.get(63) && !b.get(62));
        for from in 0..=200 {
            for to in from..=210 {
                let naive = set.iter().filter(|&&i| i >= from && i < to).count() as u64;
                assert_eq!(b.count(from, to), naive, "{from}..{to}");
            }
        }
        assert!(Bitmap::new(0).unwrap().is_empty());
        let mut ranks = Ranks::default();
        assert_eq!([1, 64, 65, 151].map(|i| ranks.below(&b, i)), [1, 3, 4, 8]);
    }
}
