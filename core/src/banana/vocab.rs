use sha1::{Digest, Sha1};

/// A negotiated initial vocabulary table (docs/protocol.md §4.5).
///
/// Both directions of a connection start with the table chosen in the
/// negotiation decision; foolscap never changes it afterwards. Table 0 is
/// empty, table 1 holds the 25 open-type words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VocabTable {
    index: u32,
    words: &'static [&'static [u8]],
}

const TABLE_1: [&[u8]; 25] = [
    b"none",
    b"boolean",
    b"reference",
    b"dict",
    b"list",
    b"tuple",
    b"set",
    b"immutable-set",
    b"unicode",
    b"set-vocab",
    b"add-vocab",
    b"call",
    b"arguments",
    b"answer",
    b"error",
    b"my-reference",
    b"your-reference",
    b"their-reference",
    b"copyable",
    b"instance",
    b"module",
    b"class",
    b"method",
    b"function",
    b"attrdict",
];

impl VocabTable {
    /// Table 0: empty.
    pub const EMPTY: VocabTable = VocabTable {
        index: 0,
        words: &[],
    };
    /// Table 1: the open-type words of foolscap 0.0.6 onwards.
    pub const V1: VocabTable = VocabTable {
        index: 1,
        words: &TABLE_1,
    };
    /// The range of table indices we offer in negotiation.
    pub const RANGE: (u32, u32) = (0, 1);

    /// Looks a table up by its negotiated index.
    pub fn by_index(index: u32) -> Option<VocabTable> {
        match index {
            0 => Some(Self::EMPTY),
            1 => Some(Self::V1),
            _ => None,
        }
    }

    /// This table's negotiated index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The word at `index`, `None` if the index was never defined.
    #[inline]
    pub fn word(&self, index: u64) -> Option<&'static [u8]> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.words.get(i))
            .copied()
    }

    /// The index a sender uses for `bytes`, if it is one of the words.
    #[inline]
    pub fn index_of(&self, bytes: &[u8]) -> Option<u64> {
        // Every word is 3..=15 bytes long: most strings are rejected here.
        if self.words.is_empty() || !(3..=15).contains(&bytes.len()) {
            return None;
        }
        self.words
            .iter()
            .position(|w| *w == bytes)
            .map(|i| i as u64)
    }

    /// The short hash both sides compare in negotiation: the first four hex
    /// digits of SHA-1 over the words joined by NUL bytes.
    pub fn hash(&self) -> String {
        let mut h = Sha1::new();
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                h.update([0u8]);
            }
            h.update(w);
        }
        let digest = h.finalize();
        format!("{:02x}{:02x}", digest[0], digest[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        assert_eq!(VocabTable::V1.index_of(b"list"), Some(4));
        assert_eq!(VocabTable::V1.index_of(b"attrdict"), Some(24));
        assert_eq!(VocabTable::V1.index_of(b"decimal"), None);
        assert_eq!(VocabTable::EMPTY.index_of(b"list"), None);
        assert_eq!(VocabTable::V1.word(13), Some(&b"answer"[..]));
        assert_eq!(VocabTable::V1.word(25), None);
        assert_eq!(VocabTable::V1.word(u64::MAX), None);
    }

    #[test]
    fn hashes_match_python() {
        // hashVocabTable(0) and hashVocabTable(1) in foolscap 24.9.0
        assert_eq!(VocabTable::EMPTY.hash(), "da39");
        assert_eq!(VocabTable::V1.hash(), "bb33");
    }
}
