/// Limits the token decoder enforces on untrusted input.
///
/// Every limit is fatal to the connection when exceeded (the peer broke the
/// framing or tried to make us buffer too much); see [`super::TokenError`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenLimits {
    /// Longest header, in base-128 digits. Python's limit is 64 and it is
    /// not configurable there; lowering it below 10 would reject legitimate
    /// 64-bit headers. Default: 64.
    pub max_header_digits: usize,
    /// Largest STRING body in bytes. Python has no limit. Default: 512 MiB.
    pub max_string_bytes: usize,
    /// Largest LONGINT/LONGNEG body in bytes (1 MiB is a 2.5-million-digit
    /// number; Python has no limit without a schema). Default: 1 MiB.
    pub max_longint_bytes: usize,
    /// Largest ERROR body. Python drops a peer that sends more than 1000
    /// bytes. Default: 1000.
    pub max_error_bytes: usize,
}

impl TokenLimits {
    /// Default largest STRING body: 512 MiB.
    pub const DEFAULT_MAX_STRING_BYTES: usize = 512 << 20;
    /// Default largest LONGINT/LONGNEG body: 1 MiB.
    pub const DEFAULT_MAX_LONGINT_BYTES: usize = 1 << 20;
    /// Python's `SIZE_LIMIT` for ERROR bodies.
    pub const DEFAULT_MAX_ERROR_BYTES: usize = 1000;
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits {
            max_header_digits: super::MAX_HEADER_DIGITS,
            max_string_bytes: Self::DEFAULT_MAX_STRING_BYTES,
            max_longint_bytes: Self::DEFAULT_MAX_LONGINT_BYTES,
            max_error_bytes: Self::DEFAULT_MAX_ERROR_BYTES,
        }
    }
}
