//! Writing tokens exactly as Python foolscap writes them: minimal base-128
//! headers, `00` for a zero header, no header digits on FLOAT, and none on
//! PING/PONG with the number 0.

use bytes::{BufMut, BytesMut};

use super::{Token, TypeByte};

/// Writes `v` as a minimal little-endian base-128 header (`00` for zero).
#[inline]
pub fn put_header(buf: &mut BytesMut, mut v: u64) {
    if v < 0x80 {
        buf.put_u8(v as u8);
        return;
    }
    let mut tmp = [0u8; 10];
    let mut n = 0;
    while v != 0 {
        tmp[n] = (v & 0x7f) as u8;
        v >>= 7;
        n += 1;
    }
    buf.put_slice(&tmp[..n]);
}

/// Writes a header and its type byte.
#[inline]
pub fn put_token_header(buf: &mut BytesMut, v: u64, ty: TypeByte) {
    // headers of up to four digits (below 2**28: every length, count and
    // OPEN number of a connection's first 268 million sequences) as one
    // copy of a fixed size, which compiles to plain stores: a copy of a
    // variable size is a call to memcpy
    let d = |shift: u32| ((v >> shift) & 0x7f) as u8;
    let t = ty as u8;
    if v < 1 << 7 {
        buf.put_slice(&[v as u8, t]);
    } else if v < 1 << 14 {
        buf.put_slice(&[d(0), d(7), t]);
    } else if v < 1 << 21 {
        buf.put_slice(&[d(0), d(7), d(14), t]);
    } else if v < 1 << 28 {
        buf.put_slice(&[d(0), d(7), d(14), d(21), t]);
    } else {
        put_header(buf, v);
        buf.put_u8(t);
    }
}

/// Writes an integer that fits in `i64` choosing INT, NEG, LONGINT or
/// LONGNEG exactly as Python does (INT for `0 <= v < 2**31`, NEG for
/// `-2**31 <= v < 0`, the long forms beyond).
#[inline]
pub fn put_i64(buf: &mut BytesMut, v: i64) {
    const LIM: i64 = 1 << 31;
    if (0..LIM).contains(&v) {
        put_token_header(buf, v as u64, TypeByte::Int);
    } else if (-LIM..0).contains(&v) {
        put_token_header(buf, v.unsigned_abs(), TypeByte::Neg);
    } else {
        let mag = v.unsigned_abs().to_be_bytes();
        let skip = mag.iter().take_while(|b| **b == 0).count();
        let ty = if v < 0 {
            TypeByte::LongNeg
        } else {
            TypeByte::LongInt
        };
        put_token_header(buf, (8 - skip) as u64, ty);
        buf.put_slice(&mag[skip..]);
    }
}

/// Writes a big integer given as sign and big-endian magnitude (no leading
/// zero bytes), choosing the token type as Python does.
pub fn put_big(buf: &mut BytesMut, negative: bool, magnitude_be: &[u8]) {
    let skip = magnitude_be.iter().take_while(|b| **b == 0).count();
    let mag = &magnitude_be[skip..];
    if mag.len() <= 8 {
        let mut b = [0u8; 8];
        b[8 - mag.len()..].copy_from_slice(mag);
        let m = u64::from_be_bytes(b);
        let lim = 1u64 << 31;
        if !negative && m < lim {
            return put_token_header(buf, m, TypeByte::Int);
        }
        if negative && m <= lim {
            if m == 0 {
                return put_token_header(buf, 0, TypeByte::Int);
            }
            return put_token_header(buf, m, TypeByte::Neg);
        }
    }
    let ty = if negative {
        TypeByte::LongNeg
    } else {
        TypeByte::LongInt
    };
    put_token_header(buf, mag.len() as u64, ty);
    buf.put_slice(mag);
}

/// Writes a FLOAT (no header digits, 8 bytes big-endian).
#[inline]
pub fn put_float(buf: &mut BytesMut, v: f64) {
    buf.put_u8(TypeByte::Float as u8);
    buf.put_f64(v);
}

/// Writes a STRING token with its body.
#[inline]
pub fn put_string(buf: &mut BytesMut, s: &[u8]) {
    put_token_header(buf, s.len() as u64, TypeByte::String);
    buf.put_slice(s);
}

/// Writes an ERROR token, truncating the message the way Python does
/// (at most 1000 bytes: the first 990 followed by `...`).
pub fn put_error(buf: &mut BytesMut, msg: &[u8]) {
    if msg.len() > 1000 {
        put_token_header(buf, 993, TypeByte::Error);
        buf.put_slice(&msg[..990]);
        buf.put_slice(b"...");
    } else {
        put_token_header(buf, msg.len() as u64, TypeByte::Error);
        buf.put_slice(msg);
    }
}

/// Writes PING or PONG: no header digits for 0, as Python does.
#[inline]
pub fn put_ping_pong(buf: &mut BytesMut, n: u64, ty: TypeByte) {
    if n != 0 {
        put_header(buf, n);
    }
    buf.put_u8(ty as u8);
}

/// Writes any token in Python's canonical form.
pub fn put_token(buf: &mut BytesMut, token: &Token) {
    match token {
        Token::Int(v) => put_token_header(buf, *v, TypeByte::Int),
        Token::Neg(v) => put_token_header(buf, *v, TypeByte::Neg),
        Token::LongInt(b) => {
            put_token_header(buf, b.len() as u64, TypeByte::LongInt);
            buf.put_slice(b);
        }
        Token::LongNeg(b) => {
            put_token_header(buf, b.len() as u64, TypeByte::LongNeg);
            buf.put_slice(b);
        }
        Token::Float(f) => put_float(buf, *f),
        Token::String(s) => put_string(buf, s),
        Token::Vocab(i) => put_token_header(buf, *i, TypeByte::Vocab),
        Token::Open(i) => put_token_header(buf, *i, TypeByte::Open),
        Token::Close(i) => put_token_header(buf, *i, TypeByte::Close),
        Token::Abort(i) => put_token_header(buf, *i, TypeByte::Abort),
        Token::Error(m) => {
            put_token_header(buf, m.len() as u64, TypeByte::Error);
            buf.put_slice(m);
        }
        Token::Ping(n) => put_ping_pong(buf, *n, TypeByte::Ping),
        Token::Pong(n) => put_ping_pong(buf, *n, TypeByte::Pong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(f: impl FnOnce(&mut BytesMut)) -> String {
        let mut b = BytesMut::new();
        f(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn integers_as_python_writes_them() {
        assert_eq!(hex(|b| put_i64(b, 0)), "0081");
        assert_eq!(hex(|b| put_i64(b, 300)), "2c0281");
        assert_eq!(hex(|b| put_i64(b, (1 << 31) - 1)), "7f7f7f7f0781");
        assert_eq!(hex(|b| put_i64(b, 1 << 31)), "048580000000");
        assert_eq!(
            hex(|b| put_i64(b, -(1 << 31))),
            "0000000008".to_owned() + "83"
        );
        assert_eq!(hex(|b| put_i64(b, -(1 << 31) - 1)), "048680000001");
        assert_eq!(
            hex(|b| put_i64(b, -(1 << 40))),
            "06860100000000".to_owned() + "00"
        );
        assert_eq!(hex(|b| put_i64(b, i64::MIN)), "08868000000000000000");
        assert_eq!(
            hex(|b| put_big(b, true, &[0x80, 0, 0, 0])),
            "0000000008".to_owned() + "83"
        );
        assert_eq!(hex(|b| put_big(b, false, &[0, 0, 5])), "0581");
    }

    #[test]
    fn other_tokens() {
        assert_eq!(hex(|b| put_float(b, 1.5)), "843ff8000000000000");
        assert_eq!(hex(|b| put_ping_pong(b, 0, TypeByte::Ping)), "8e");
        assert_eq!(hex(|b| put_ping_pong(b, 5, TypeByte::Pong)), "058f");
        assert_eq!(hex(|b| put_string(b, b"")), "0082");
        let long = vec![b'x'; 1200];
        let mut b = BytesMut::new();
        put_error(&mut b, &long);
        assert_eq!(&b[..3], &[0x61, 0x07, 0x8d]);
        assert_eq!(b.len(), 3 + 993);
    }

    #[test]
    fn token_headers_of_every_width() {
        // the fixed-size paths write what the digit loop writes, at each
        // width's edges
        for v in [
            0u64,
            1,
            0x7f,
            0x80,
            0x81,
            0x3fff,
            0x4000,
            0x1f_ffff,
            0x20_0000,
            0x0fff_ffff,
            0x1000_0000,
            u64::MAX,
        ] {
            let mut want = BytesMut::new();
            put_header(&mut want, v);
            want.put_u8(TypeByte::Open as u8);
            let mut got = BytesMut::new();
            put_token_header(&mut got, v, TypeByte::Open);
            assert_eq!(got, want, "header {v:#x}");
        }
        assert_eq!(
            hex(|b| put_token_header(b, 0x4000, TypeByte::Int)),
            "00000181"
        );
    }
}
