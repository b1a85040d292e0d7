use bytes::{Buf, Bytes, BytesMut};

use super::error::HEADER_ERROR_CONTEXT;
use super::{Token, TokenError, TokenLimits, TypeByte};

/// Incremental banana token decoder.
///
/// Feed it bytes as they arrive, split at any position (one byte at a time
/// works), then pull tokens with [`TokenDecoder::next_token`] until it
/// returns `Ok(None)`. STRING, LONGINT and ERROR bodies are returned as
/// [`Bytes`] slices of the internal buffer: a body that arrived whole in one
/// [`TokenDecoder::feed`] call is never copied again.
///
/// Errors are fatal: after one, the stream is out of sync and the decoder
/// must be dropped (further calls return the same error).
#[derive(Debug)]
pub struct TokenDecoder {
    buf: BytesMut,
    /// Bytes at the front of `buf` already consumed but not yet released.
    pos: usize,
    /// Stream offset of `buf[0]`.
    offset: u64,
    limits: TokenLimits,
    failed: Option<TokenError>,
    /// Body bytes of a token being skipped ([`TokenDecoder::skip_token`])
    /// still to come: dropped as they arrive, never buffered.
    skip: u64,
}

impl Default for TokenDecoder {
    fn default() -> Self {
        Self::new(TokenLimits::default())
    }
}

/// Result of scanning one header.
struct Header {
    /// Number of header digits.
    digits: usize,
    /// The header's value, if it fits in 64 bits.
    value: Option<u64>,
}

impl TokenDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: TokenLimits) -> Self {
        TokenDecoder {
            buf: BytesMut::new(),
            pos: 0,
            offset: 0,
            limits,
            failed: None,
            skip: 0,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &TokenLimits {
        &self.limits
    }

    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let data = self.skip_incoming(data);
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Appends received bytes that are already in a [`Bytes`]; when nothing
    /// is buffered and the handle is unique this takes it over without a copy.
    pub fn feed_bytes(&mut self, mut data: Bytes) {
        if self.failed.is_some() {
            return;
        }
        let skipped = data.len() - self.skip_incoming(&data).len();
        data.advance(skipped);
        self.compact();
        if self.buf.is_empty() {
            match data.try_into_mut() {
                Ok(m) => self.buf = m,
                Err(data) => self.buf.extend_from_slice(&data),
            }
        } else {
            self.buf.extend_from_slice(&data);
        }
    }

    /// Number of received bytes not yet returned as tokens.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Stream offset of the next byte to be decoded (bytes consumed so far).
    pub fn offset(&self) -> u64 {
        self.offset + self.pos as u64
    }

    /// Takes the bytes not yet decoded out of the decoder (for a layer that
    /// switches protocols mid-stream).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.compact();
        self.offset += self.buf.len() as u64;
        std::mem::take(&mut self.buf)
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.advance(self.pos);
            self.offset += self.pos as u64;
            self.pos = 0;
        }
    }

    /// Drops bytes of a skipped body from the front of `data` (nothing is
    /// buffered while a body is skipped); returns the rest.
    fn skip_incoming<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        if self.skip == 0 {
            return data;
        }
        let n = (self.skip.min(data.len() as u64)) as usize;
        self.skip -= n as u64;
        self.offset += n as u64;
        &data[n..]
    }

    /// The type and header value of the next token, once its header has
    /// arrived (its body may not have). `None` when more bytes are needed
    /// or the header is malformed ([`TokenDecoder::next_token`] reports
    /// that).
    pub fn peek_header(&self) -> Option<(TypeByte, Option<u64>)> {
        if self.failed.is_some() || self.skip > 0 {
            return None;
        }
        let data = &self.buf[self.pos..];
        let header = self.scan_header(data, 0).ok()??;
        let ty = TypeByte::from_byte(data[header.digits])?;
        Some((ty, header.value))
    }

    /// [`TokenDecoder::peek_header`] of a STRING, LONGINT or LONGNEG (the
    /// tokens with a body); `None` for any other token, which the common
    /// short header tells without reading its value.
    #[inline]
    pub fn peek_body_header(&self) -> Option<(TypeByte, Option<u64>)> {
        if self.skip == 0 {
            for &b in self.buf[self.pos..].iter().take(9) {
                if b & 0x80 != 0 {
                    if !matches!(b, 0x82 | 0x85 | 0x86) {
                        return None;
                    }
                    break;
                }
            }
        }
        self.peek_header().filter(|(ty, _)| {
            matches!(ty, TypeByte::String | TypeByte::LongInt | TypeByte::LongNeg)
        })
    }

    /// Drops the next token, whose header [`TokenDecoder::peek_header`]
    /// saw: a STRING, LONGINT or LONGNEG body is discarded as it arrives,
    /// never buffered (a schema refused it by its announced size). Returns
    /// the token's type, or `None` (nothing dropped) if it cannot be
    /// skipped so: no complete header, or a body over the limits (then
    /// [`TokenDecoder::next_token`] fails as usual).
    pub fn skip_token(&mut self) -> Option<TypeByte> {
        let (ty, len) = self.peek_header()?;
        let limit = match ty {
            TypeByte::String => self.limits.max_string_bytes,
            TypeByte::LongInt | TypeByte::LongNeg => self.limits.max_longint_bytes,
            _ => return None,
        };
        let len = len.filter(|&l| l <= limit as u64)?;
        let data = &self.buf[self.pos..];
        let digits = data.iter().position(|b| b & 0x80 != 0)?;
        self.pos += digits + 1;
        self.compact();
        let now = (len.min(self.buf.len() as u64)) as usize;
        self.buf.advance(now);
        self.offset += now as u64;
        self.skip = len - now as u64;
        Some(ty)
    }

    /// Whether a skipped body is still arriving.
    pub fn skipping(&self) -> bool {
        self.skip > 0
    }

    /// Decodes the next complete token, `Ok(None)` if more bytes are needed.
    #[inline]
    pub fn next_token(&mut self) -> Result<Option<Token>, TokenError> {
        if self.skip > 0 {
            return Ok(None);
        }
        match self.next_small_token() {
            Some(t) => Ok(Some(t)),
            None => self.next_token_slow(),
        }
    }

    /// The next token if it is an INT, NEG, OPEN, CLOSE or VOCAB whose
    /// header has at most 9 digits (the common token, decoded without
    /// the general path); `None` for anything else, or while a skipped
    /// body is arriving ([`TokenDecoder::next_token`] then decodes or
    /// reports it). Never a STRING, LONGINT or LONGNEG.
    #[inline]
    pub fn next_small_token(&mut self) -> Option<Token> {
        if self.skip > 0 {
            return None;
        }
        // A header of at most 9 digits (no overflow possible) and a token
        // without a body. After an error the buffer is empty, so the slow
        // path reports it.
        let data = &self.buf[self.pos..];
        let mut v: u64 = 0;
        let mut i = 0;
        while i < 9 && i < data.len() {
            let b = data[i];
            if b & 0x80 != 0 {
                let tok = match b {
                    0x81 => Token::Int(v),
                    0x83 => Token::Neg(v),
                    0x88 => Token::Open(v),
                    0x89 => Token::Close(v),
                    0x87 => Token::Vocab(v),
                    _ => break,
                };
                self.pos += i + 1;
                return Some(tok);
            }
            v |= (b as u64) << (7 * i);
            i += 1;
        }
        None
    }

    fn fail(&mut self, e: TokenError) -> Result<Option<Token>, TokenError> {
        self.failed = Some(e.clone());
        self.buf.clear();
        self.pos = 0;
        Err(e)
    }

    fn scan_header(&self, data: &[u8], start: u64) -> Result<Option<Header>, TokenError> {
        let max = self.limits.max_header_digits;
        let mut value: u64 = 0;
        let mut fits = true;
        for (i, &b) in data.iter().enumerate() {
            if b & 0x80 != 0 {
                return Ok(Some(Header {
                    digits: i,
                    value: fits.then_some(value),
                }));
            }
            if i >= max {
                return Err(header_too_long(data, start, max));
            }
            if fits && b != 0 {
                let shift = 7 * i as u32;
                if shift >= 64 || (shift > 57 && (b as u64) >> (64 - shift) != 0) {
                    fits = false;
                } else {
                    value |= (b as u64) << shift;
                }
            }
        }
        if data.len() > max {
            return Err(header_too_long(data, start, max));
        }
        Ok(None)
    }

    #[cold]
    fn next_token_slow(&mut self) -> Result<Option<Token>, TokenError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let start = self.offset();
        let data = &self.buf[self.pos..];
        let header = match self.scan_header(data, start) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) => return self.fail(e),
        };
        let n = header.digits;
        let type_byte = data[n];
        let body_start = n + 1;
        let available = data.len() - body_start;
        let Some(ty) = TypeByte::from_byte(type_byte) else {
            return self.fail(TokenError::InvalidTypeByte {
                offset: start,
                byte: type_byte,
            });
        };
        let small = |kind: &'static str| -> Result<u64, TokenError> {
            header.value.ok_or(TokenError::HeaderOverflow {
                offset: start,
                kind,
            })
        };
        let token = match ty {
            TypeByte::List => return self.fail(TokenError::OldBanana { offset: start }),
            TypeByte::Int | TypeByte::Neg => {
                let negative = ty == TypeByte::Neg;
                match header.value {
                    Some(v) if negative => Token::Neg(v),
                    Some(v) => Token::Int(v),
                    None => {
                        let mag = Bytes::from(base128_to_be_bytes(&data[..n]));
                        if negative {
                            Token::LongNeg(mag)
                        } else {
                            Token::LongInt(mag)
                        }
                    }
                }
            }
            TypeByte::Float => {
                if available < 8 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&data[body_start..body_start + 8]);
                self.pos += body_start + 8;
                return Ok(Some(Token::Float(f64::from_be_bytes(b))));
            }
            TypeByte::String | TypeByte::LongInt | TypeByte::LongNeg | TypeByte::Error => {
                let limit = match ty {
                    TypeByte::String => self.limits.max_string_bytes,
                    TypeByte::Error => self.limits.max_error_bytes,
                    _ => self.limits.max_longint_bytes,
                };
                let len = match header.value {
                    Some(v) if v <= limit as u64 => v as usize,
                    v => {
                        return self.fail(TokenError::BodyTooLong {
                            offset: start,
                            kind: ty.name(),
                            len: v.unwrap_or(u64::MAX),
                            limit,
                        })
                    }
                };
                if available < len {
                    // Grow towards the announced size, but never trust the
                    // announcement with more than what already arrived.
                    let want = len - available;
                    self.buf.reserve(want.min(self.buf.len().max(4096)));
                    return Ok(None);
                }
                self.pos += body_start;
                self.compact();
                let body = self.buf.split_to(len).freeze();
                self.offset += len as u64;
                return Ok(Some(match ty {
                    TypeByte::String => Token::String(body),
                    TypeByte::Error => Token::Error(body),
                    TypeByte::LongInt => Token::LongInt(body),
                    _ => Token::LongNeg(body),
                }));
            }
            TypeByte::Vocab => match small("VOCAB") {
                Ok(v) => Token::Vocab(v),
                Err(e) => return self.fail(e),
            },
            TypeByte::Open => match small("OPEN") {
                Ok(v) => Token::Open(v),
                Err(e) => return self.fail(e),
            },
            TypeByte::Close => match small("CLOSE") {
                Ok(v) => Token::Close(v),
                Err(e) => return self.fail(e),
            },
            TypeByte::Abort => match small("ABORT") {
                Ok(v) => Token::Abort(v),
                Err(e) => return self.fail(e),
            },
            TypeByte::Ping => match small("PING") {
                Ok(v) => Token::Ping(v),
                Err(e) => return self.fail(e),
            },
            TypeByte::Pong => match small("PONG") {
                Ok(v) => Token::Pong(v),
                Err(e) => return self.fail(e),
            },
        };
        self.pos += body_start;
        Ok(Some(token))
    }
}

/// Converts little-endian base-128 digits to a big-endian magnitude without
/// leading zero bytes.
fn base128_to_be_bytes(digits: &[u8]) -> Vec<u8> {
    let mut le = Vec::with_capacity(digits.len() * 7 / 8 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &d in digits {
        acc |= (d as u32) << bits;
        bits += 7;
        if bits >= 8 {
            le.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        le.push(acc as u8);
    }
    while le.last() == Some(&0) {
        le.pop();
    }
    le.reverse();
    le
}

fn header_too_long(data: &[u8], offset: u64, limit: usize) -> TokenError {
    TokenError::HeaderTooLong {
        offset,
        limit,
        received: data[..data.len().min(HEADER_ERROR_CONTEXT)].to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Vec<Token>, TokenError> {
        let mut d = TokenDecoder::default();
        d.feed(input);
        let mut out = Vec::new();
        while let Some(t) = d.next_token()? {
            out.push(t);
        }
        assert_eq!(d.buffered(), 0, "trailing bytes");
        Ok(out)
    }

    fn decode_bytewise(input: &[u8]) -> Result<Vec<Token>, TokenError> {
        let mut d = TokenDecoder::default();
        let mut out = Vec::new();
        for b in input {
            d.feed(std::slice::from_ref(b));
            while let Some(t) = d.next_token()? {
                out.push(t);
            }
        }
        Ok(out)
    }

    #[test]
    fn headers_from_the_reference() {
        assert_eq!(decode_all(&[0x00, 0x81]).unwrap(), vec![Token::Int(0)]);
        assert_eq!(decode_all(&[0x7f, 0x81]).unwrap(), vec![Token::Int(127)]);
        assert_eq!(
            decode_all(&[0x00, 0x01, 0x81]).unwrap(),
            vec![Token::Int(128)]
        );
        assert_eq!(
            decode_all(&[0x2c, 0x02, 0x81]).unwrap(),
            vec![Token::Int(300)]
        );
        assert_eq!(
            decode_all(&[0x7f, 0x7f, 0x7f, 0x7f, 0x07, 0x81]).unwrap(),
            vec![Token::Int((1 << 31) - 1)]
        );
        // zero digits means 0; NEG 0 is "negative zero"
        assert_eq!(
            decode_all(&[0x81, 0x83]).unwrap(),
            vec![Token::Int(0), Token::Neg(0)]
        );
        assert_eq!(
            decode_all(&[0x8e, 0x8f]).unwrap(),
            vec![Token::Ping(0), Token::Pong(0)]
        );
    }

    #[test]
    fn u64_boundary_and_big_int_headers() {
        // u64::MAX = 9 digits of 0x7f plus a final 0x01
        let mut max = vec![0x7f; 9];
        max.push(0x01);
        max.push(0x81);
        assert_eq!(decode_all(&max).unwrap(), vec![Token::Int(u64::MAX)]);
        // 2**64 -> delivered as LONGINT magnitude
        let mut big = vec![0x00; 9];
        big.push(0x02);
        big.push(0x83);
        assert_eq!(
            decode_all(&big).unwrap(),
            vec![Token::LongNeg(Bytes::from_static(&[
                1, 0, 0, 0, 0, 0, 0, 0, 0
            ]))]
        );
        // non-minimal zero digits are fine
        let mut padded = vec![0x05];
        padded.extend([0u8; 40]);
        padded.push(0x81);
        assert_eq!(decode_all(&padded).unwrap(), vec![Token::Int(5)]);
        // an OPEN header that does not fit is an error
        let mut open = vec![0x00; 9];
        open.push(0x02);
        open.push(0x88);
        assert!(matches!(
            decode_all(&open),
            Err(TokenError::HeaderOverflow { .. })
        ));
    }

    #[test]
    fn header_limit_is_64_digits() {
        let mut ok = vec![0u8; 64];
        ok.push(0x81);
        assert_eq!(decode_all(&ok).unwrap(), vec![Token::Int(0)]);
        let bad = [0u8; 65];
        let mut d = TokenDecoder::default();
        d.feed(&bad[..64]);
        assert_eq!(d.next_token(), Ok(None));
        d.feed(&bad[64..]);
        assert!(matches!(
            d.next_token(),
            Err(TokenError::HeaderTooLong {
                offset: 0,
                limit: 64,
                ..
            })
        ));
        // errors are sticky, even when more input arrives
        assert!(d.next_token().is_err());
        d.feed(&[0x01, 0x81]);
        assert!(d.next_token().is_err());
    }

    #[test]
    fn bodies_split_anywhere() {
        let input = [
            &[0x05, 0x82][..],
            b"bytes",
            &[0x84, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
            &[0x04, 0x85, 0x80, 0, 0, 0],
            &[0x02, 0x8d],
            b"no",
        ]
        .concat();
        let expect = vec![
            Token::String(Bytes::from_static(b"bytes")),
            Token::Float(1.5),
            Token::LongInt(Bytes::from_static(&[0x80, 0, 0, 0])),
            Token::Error(Bytes::from_static(b"no")),
        ];
        assert_eq!(decode_all(&input).unwrap(), expect);
        assert_eq!(decode_bytewise(&input).unwrap(), expect);
    }

    #[test]
    fn bad_type_bytes_and_limits() {
        for b in [0x8b, 0x8c, 0x90, 0xff] {
            assert!(matches!(
                decode_all(&[0x01, b]),
                Err(TokenError::InvalidTypeByte { offset: 0, .. })
            ));
        }
        assert!(matches!(
            decode_all(&[0x80]),
            Err(TokenError::OldBanana { offset: 0 })
        ));
        // ERROR longer than 1000 bytes is refused before its body arrives
        let mut d = TokenDecoder::default();
        d.feed(&[0x69, 0x07, 0x8d]); // 1001
        assert!(matches!(
            d.next_token(),
            Err(TokenError::BodyTooLong { len: 1001, .. })
        ));
        let mut d = TokenDecoder::new(TokenLimits {
            max_string_bytes: 3,
            ..TokenLimits::default()
        });
        d.feed(&[0x04, 0x82]);
        assert!(matches!(
            d.next_token(),
            Err(TokenError::BodyTooLong {
                len: 4,
                limit: 3,
                ..
            })
        ));
    }

    #[test]
    fn strings_are_not_copied() {
        let mut d = TokenDecoder::default();
        let payload = vec![7u8; 100_000];
        let mut input = vec![0x20, 0x0d, 0x06, 0x82];
        input.extend_from_slice(&payload);
        d.feed(&input);
        let Some(Token::String(s)) = d.next_token().unwrap() else {
            panic!()
        };
        assert_eq!(s.len(), 100_000);
        let base = d.buf.as_ptr() as usize;
        assert_eq!(
            s.as_ptr() as usize + s.len(),
            base,
            "body is a slice of the input buffer"
        );
    }

    #[test]
    fn a_skipped_body_is_dropped_as_it_arrives() {
        // STRING of 300 bytes (header 0x2c 0x02), then INT 5
        let mut input = vec![0x2c, 0x02, 0x82];
        input.extend(std::iter::repeat_n(b'x', 300));
        input.extend([0x05, 0x81]);
        let mut d = TokenDecoder::default();
        d.feed(&input[..10]);
        assert_eq!(d.peek_header(), Some((TypeByte::String, Some(300))));
        assert_eq!(d.skip_token(), Some(TypeByte::String));
        assert!(d.skipping());
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.next_token(), Ok(None));
        for chunk in input[10..].chunks(7) {
            d.feed(chunk);
            assert!(d.buffered() <= 2, "nothing of the body is kept");
        }
        assert!(!d.skipping());
        assert_eq!(d.next_token(), Ok(Some(Token::Int(5))));
        assert_eq!(d.offset(), input.len() as u64);
        // the same with feed_bytes, and a header only partly there
        let mut d = TokenDecoder::default();
        d.feed_bytes(Bytes::copy_from_slice(&input[..1]));
        assert_eq!(d.peek_header(), None);
        assert_eq!(d.skip_token(), None);
        d.feed_bytes(Bytes::copy_from_slice(&input[1..]));
        assert_eq!(d.skip_token(), Some(TypeByte::String));
        assert_eq!(d.next_token(), Ok(Some(Token::Int(5))));
        assert_eq!(d.offset(), input.len() as u64);
        // a body over the limit is not skipped: next_token fails as before
        let limits = TokenLimits {
            max_string_bytes: 10,
            ..TokenLimits::default()
        };
        let mut d = TokenDecoder::new(limits);
        d.feed(&input);
        assert_eq!(d.skip_token(), None);
        assert!(d.next_token().is_err());
    }
}
