use crate::banana::TokenLimits;

/// Limits the value deserializer enforces on untrusted input.
///
/// Python foolscap has almost no limits without a schema; these defaults
/// accept everything a Python peer sends in practice (messages of hundreds
/// of MiB, a list of millions of items, `2**100000`) while bounding what
/// one hostile message can make us hold. Exceeding a value-level limit
/// discards that one message ([`super::ErrorScope::Message`]); exceeding a
/// token-level limit ([`TokenLimits`]) breaks framing and is fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Token framing limits (header digits, STRING/LONGINT/ERROR bodies).
    pub tokens: TokenLimits,
    /// Deepest nesting of sequences within one top-level message, the
    /// top-level sequence included. Default: 1000.
    pub max_depth: usize,
    /// Most items in one list, tuple, set, frozenset or copyable, and most
    /// key/value pairs in one dict. Default: 16 Mi.
    pub max_container_items: usize,
    /// Memory budget of one top-level message: its wire bytes plus the
    /// in-memory size of every value decoded from it (`size_of::<Value>()`,
    /// 40 bytes, per value). Default: 600 MiB.
    pub max_message_bytes: usize,
    /// Most `reference` sequences (shared or cyclic occurrences) in one
    /// top-level message. Default: 1 Mi.
    pub max_references: usize,
    /// Longest open-type or copyable type name (index tokens); a longer one
    /// is refused like an unknown type (Python's default is the longest
    /// registered name). Default: 256.
    pub max_index_bytes: usize,
}

impl Limits {
    /// Default `max_depth`.
    pub const DEFAULT_MAX_DEPTH: usize = 1000;
    /// Default `max_container_items`.
    pub const DEFAULT_MAX_CONTAINER_ITEMS: usize = 16 << 20;
    /// Default `max_message_bytes`.
    pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 600 << 20;
    /// Default `max_references`.
    pub const DEFAULT_MAX_REFERENCES: usize = 1 << 20;
    /// Default `max_index_bytes`.
    pub const DEFAULT_MAX_INDEX_BYTES: usize = 256;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tokens: TokenLimits::default(),
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_container_items: Self::DEFAULT_MAX_CONTAINER_ITEMS,
            max_message_bytes: Self::DEFAULT_MAX_MESSAGE_BYTES,
            max_references: Self::DEFAULT_MAX_REFERENCES,
            max_index_bytes: Self::DEFAULT_MAX_INDEX_BYTES,
        }
    }
}
