//! Negotiation blocks inside TLS (docs/protocol.md §3.5-3.7):
//! `key: value` lines ended by a blank line. Hellos go both ways, then the
//! master sends a decision; a side that gives up sends an error block.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::identity::TubId;

/// A parsed block: lowercase keys, values as sent (leading whitespace
/// stripped). A `BTreeMap` iterates in the sorted key order Python writes.
pub type Block = BTreeMap<String, String>;

/// The banana versions this implementation speaks (Python 24.9.0: 3 only).
pub const BANANA_VERSIONS: (u32, u32) = (3, 3);

/// A block Python's parser would choke on (reported to the peer as an
/// internal error).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum BlockError {
    #[error("negotiation block line {line:?} has no ':'")]
    NoColon { line: String },
    #[error("negotiation block is not UTF-8")]
    NotUtf8,
}

/// Parses a block (without its blank line) the way Python's `parseLines`
/// does: lines split on `\r\n`, each at its first `:`; the key is
/// lowercased (ASCII), leading ASCII whitespace is stripped from the
/// value; a later duplicate key wins. An empty block is an error (its one
/// empty line has no colon).
pub fn parse_block(header: &[u8]) -> Result<Block, BlockError> {
    let mut block = Block::new();
    let mut rest = header;
    loop {
        let (line, next) = match rest.windows(2).position(|w| w == b"\r\n") {
            Some(i) => (&rest[..i], Some(&rest[i + 2..])),
            None => (rest, None),
        };
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(BlockError::NoColon {
                line: String::from_utf8_lossy(line).into_owned(),
            });
        };
        let key = std::str::from_utf8(&line[..colon]).map_err(|_| BlockError::NotUtf8)?;
        let value = &line[colon + 1..];
        let start = value
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
            .unwrap_or(value.len());
        let value = std::str::from_utf8(&value[start..]).map_err(|_| BlockError::NotUtf8)?;
        block.insert(key.to_ascii_lowercase(), value.to_string());
        match next {
            Some(n) => rest = n,
            None => return Ok(block),
        }
    }
}

/// Writes a block as Python's `sendBlock`: sorted keys, `key: value\r\n`,
/// then the blank line.
pub fn format_block(block: &Block) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for (k, v) in block {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Our hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `my-tub-id`.
    pub tubid: TubId,
    /// `my-incarnation`: 16 hex digits, fixed per Tub instance.
    pub incarnation: String,
    /// `last-connection`, sent by the TCP client only: `none 0` or the
    /// master's `current-connection` from our last connection to it.
    pub last_connection: Option<String>,
    /// `initial-vocab-table-range`.
    pub vocab_range: (u32, u32),
}

impl Hello {
    /// The block, with `banana-negotiation-range: 3 3`.
    pub fn to_block(&self) -> Block {
        let mut b = Block::new();
        b.insert(
            "banana-negotiation-range".into(),
            format!("{} {}", BANANA_VERSIONS.0, BANANA_VERSIONS.1),
        );
        b.insert(
            "initial-vocab-table-range".into(),
            format!("{} {}", self.vocab_range.0, self.vocab_range.1),
        );
        b.insert("my-tub-id".into(), self.tubid.to_string());
        b.insert("my-incarnation".into(), self.incarnation.clone());
        if let Some(lc) = &self.last_connection {
            b.insert("last-connection".into(), lc.clone());
        }
        b
    }
}

/// The master's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `banana-decision-version`: the agreed banana version.
    pub version: u32,
    /// `current-connection`: `"<master incarnation> <seqnum>"`.
    pub current_connection: String,
    /// `initial-vocab-table-index`: the agreed table.
    pub vocab: crate::banana::VocabTable,
}

impl Decision {
    /// The block; the vocab entry carries the table's short hash.
    pub fn to_block(&self) -> Block {
        let mut b = Block::new();
        b.insert("banana-decision-version".into(), self.version.to_string());
        b.insert("current-connection".into(), self.current_connection.clone());
        b.insert(
            "initial-vocab-table-index".into(),
            format!("{} {}", self.vocab.index(), self.vocab.hash()),
        );
        b
    }
}

/// The block a side sends when it gives up after its hello: version 1 and
/// the reason (CR and LF become spaces).
pub fn error_block(text: &str) -> Block {
    let mut b = Block::new();
    b.insert("banana-decision-version".into(), "1".into());
    b.insert("error".into(), text.replace(['\r', '\n'], " "));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banana::VocabTable;

    #[test]
    fn blocks_are_pythons_bytes() {
        // transcript 01-add, client (tub-low) hello and the server's decision
        let hello = Hello {
            tubid: TubId::parse("5ikfv7dz4s7kjm2cs6mnui7pekmu2wmp").unwrap(),
            incarnation: "5761a580b29fca9a".into(),
            last_connection: Some("none 0".into()),
            vocab_range: (0, 1),
        };
        assert_eq!(
            format_block(&hello.to_block()),
            b"banana-negotiation-range: 3 3\r\ninitial-vocab-table-range: 0 1\r\nlast-connection: none 0\r\nmy-incarnation: 5761a580b29fca9a\r\nmy-tub-id: 5ikfv7dz4s7kjm2cs6mnui7pekmu2wmp\r\n\r\n"
        );
        let decision = Decision {
            version: 3,
            current_connection: "c88a1b93917df02f 1".into(),
            vocab: VocabTable::V1,
        };
        assert_eq!(
            format_block(&decision.to_block()),
            b"banana-decision-version: 3\r\ncurrent-connection: c88a1b93917df02f 1\r\ninitial-vocab-table-index: 1 bb33\r\n\r\n"
        );
        // transcript 07-negotiation, connection 6 refusal
        assert_eq!(
            format_block(&error_block("Duplicate\r\nconnection")),
            b"banana-decision-version: 1\r\nerror: Duplicate  connection\r\n\r\n"
        );
    }

    #[test]
    fn parsing_follows_parse_lines() {
        let b =
            parse_block(b"My-Tub-ID:   abc  \r\nx:\r\nk: 1\r\nk: 2\r\nurl: http://a:b").unwrap();
        assert_eq!(b["my-tub-id"], "abc  ");
        assert_eq!(b["x"], "");
        assert_eq!(b["k"], "2");
        assert_eq!(b["url"], "http://a:b");
        assert_eq!(
            parse_block(b"a: 1\r\nno colon here"),
            Err(BlockError::NoColon {
                line: "no colon here".into()
            })
        );
        assert!(matches!(parse_block(b""), Err(BlockError::NoColon { .. })));
        assert_eq!(parse_block(b"a: \xff"), Err(BlockError::NotUtf8));
        assert_eq!(parse_block(b"\xff: 1"), Err(BlockError::NotUtf8));
        let round = Hello {
            tubid: TubId::parse("vfbzu4bxrxknny4zy66zjcdszk5wc4k5").unwrap(),
            incarnation: "00".into(),
            last_connection: None,
            vocab_range: (0, 0),
        }
        .to_block();
        let bytes = format_block(&round);
        assert_eq!(parse_block(&bytes[..bytes.len() - 4]).unwrap(), round);
    }
}
