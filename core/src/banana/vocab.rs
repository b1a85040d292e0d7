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
        // the only table with words is table 1: a match on the bytes
        // (by length first), not a scan of the 25 words
        if self.index != 1 {
            return None;
        }
        table_1_index(bytes)
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

/// The index of `bytes` in table 1 (`TABLE_1`'s order), if it is a word.
#[inline]
fn table_1_index(bytes: &[u8]) -> Option<u64> {
    Some(match bytes {
        b"none" => 0,
        b"boolean" => 1,
        b"reference" => 2,
        b"dict" => 3,
        b"list" => 4,
        b"tuple" => 5,
        b"set" => 6,
        b"immutable-set" => 7,
        b"unicode" => 8,
        b"set-vocab" => 9,
        b"add-vocab" => 10,
        b"call" => 11,
        b"arguments" => 12,
        b"answer" => 13,
        b"error" => 14,
        b"my-reference" => 15,
        b"your-reference" => 16,
        b"their-reference" => 17,
        b"copyable" => 18,
        b"instance" => 19,
        b"module" => 20,
        b"class" => 21,
        b"method" => 22,
        b"function" => 23,
        b"attrdict" => 24,
        _ => return None,
    })
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
    fn every_word_found_at_its_place() {
        for (i, w) in TABLE_1.iter().enumerate() {
            assert_eq!(VocabTable::V1.index_of(w), Some(i as u64));
            assert_eq!(VocabTable::EMPTY.index_of(w), None);
            // a prefix, an extension or a changed last byte is no word
            assert_eq!(VocabTable::V1.index_of(&w[..w.len() - 1]), None);
            assert_eq!(VocabTable::V1.index_of(&[*w, b"s"].concat()), None);
            let mut changed = w.to_vec();
            *changed.last_mut().unwrap() ^= 0x20;
            assert_eq!(VocabTable::V1.index_of(&changed), None);
        }
        assert_eq!(VocabTable::V1.index_of(b""), None);
    }

    #[test]
    fn hashes_match_python() {
        // hashVocabTable(0) and hashVocabTable(1) in foolscap 24.9.0
        assert_eq!(VocabTable::EMPTY.hash(), "da39");
        assert_eq!(VocabTable::V1.hash(), "bb33");
    }
}
