//! The byte reader shared by the fuzz harnesses: small integers, sizes and symmetries from the
//! input (zeros once it is exhausted). Each harness adds its own float distribution.

use sparsegrad::Symmetry;

/// Reads fuzz bytes.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

#[allow(dead_code)] // each harness uses its own subset
impl<'a> Bytes<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    /// Whether the input is used up.
    pub fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
    /// The unread bytes.
    pub fn rest(&self) -> &[u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }
    /// A number in `0..bound` (0 for an empty range).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            usize::from(self.byte()) % bound
        }
    }
    /// A size or index: mostly small, sometimes huge (allocation and overflow paths). The huge
    /// ones are far beyond any allocator, so they must be refused before memory is touched.
    pub fn size(&mut self) -> usize {
        match self.byte() % 16 {
            0 => usize::MAX,
            1 => usize::MAX / 2 + 1,
            2 => 1 << 40,
            3 => 1 << 33,
            b => usize::from(b) - 4,
        }
    }
    /// One of the three storage kinds.
    pub fn symmetry(&mut self) -> Symmetry {
        [Symmetry::General, Symmetry::Full, Symmetry::Lower][self.below(3)]
    }
}
