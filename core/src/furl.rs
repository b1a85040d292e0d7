//! FURLs: `pb://TUBID@HINT,HINT,.../SWISSNUM` (docs/protocol.md
//! §2.4-2.6).
//!
//! [`Furl::parse`] accepts what Python's `decode_furl` accepts (with the
//! deliberate exceptions listed there) and [`Furl`]'s `Display` writes it
//! back exactly, the way a SturdyRef carries its URL. Every hint is kept,
//! understood or not; [`Hint::Unknown`] ones are simply never dialled, as
//! Python ignores hints it has no handler for.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use thiserror::Error;

use crate::identity::{base32, TubId, TubIdError};
use crate::rng::Rng;

/// A parsed FURL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Furl {
    /// The Tub that holds the object.
    pub tubid: TubId,
    /// Text after the 32 tubid characters and before `@`: "reserved for
    /// extensions" in Python, which ignores it. Normally empty.
    pub tubid_extension: String,
    /// Connection hints, in FURL order.
    pub hints: Vec<Hint>,
    /// The object's name within its Tub (opaque; may contain `/`).
    pub swissnum: String,
}

/// One connection hint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Hint {
    /// `tcp:HOST:PORT`, or the legacy `HOST:PORT` (`legacy`). HOST is a DNS
    /// name, a dotted quad, or (new form only) an IPv6 address, kept here
    /// without its brackets: `tcp:[::1]:5000` has host `::1`, and writing
    /// the hint adds the brackets back. (A host given with brackets would
    /// be written with two pairs, which no one can dial.)
    Tcp {
        /// Host name or address (IPv6 bare, e.g. `::1` or `fe80::1%eth0`;
        /// [`Hint::from_socket_addr`] makes one from an address).
        host: String,
        /// TCP port.
        port: u16,
        /// Written as `HOST:PORT` rather than `tcp:HOST:PORT`.
        legacy: bool,
    },
    /// `tor:HOST:PORT` (only dialable through a Tor client).
    Tor {
        /// Onion or DNS name, or a dotted quad.
        host: String,
        /// Port.
        port: u16,
    },
    /// `i2p:ADDR` or `i2p:ADDR:PORT` (only dialable through I2P).
    I2p {
        /// I2P destination.
        addr: String,
        /// Optional port.
        port: Option<u16>,
    },
    /// Anything else, kept verbatim and never dialled: hint types Python
    /// has no handler for, and forms its handlers refuse.
    Unknown(String),
}

/// Why a string is not a FURL.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum FurlError {
    #[error("not a FURL: {furl:?} does not start with \"pb://\"")]
    NotPb { furl: String },
    #[error("malformed FURL {furl:?}: no '@' after the tubid")]
    MissingAt { furl: String },
    #[error("malformed FURL {furl:?}: nothing before the '@' (the tubid is missing)")]
    MissingTubId { furl: String },
    #[error("malformed FURL {furl:?}: no '/' and name after the connection hints")]
    MissingName { furl: String },
    #[error("malformed FURL {furl:?}: the name after the last '/' of the hints is empty")]
    EmptyName { furl: String },
    #[error("malformed FURL {furl:?}: control character {ch:?} at byte {position}")]
    ControlCharacter {
        furl: String,
        position: usize,
        ch: char,
    },
    #[error("malformed FURL {furl:?}: {source}")]
    BadTubId {
        furl: String,
        #[source]
        source: TubIdError,
    },
    #[error("malformed FURL {furl:?}: connection hint {index} is empty")]
    EmptyHint { furl: String, index: usize },
}

impl Furl {
    /// A FURL without a tubid extension.
    pub fn new(tubid: TubId, hints: Vec<Hint>, swissnum: impl Into<String>) -> Furl {
        Furl {
            tubid,
            tubid_extension: String::new(),
            hints,
            swissnum: swissnum.into(),
        }
    }

    /// Parses a FURL. Surrounding whitespace (the newline of a furl file)
    /// is ignored. Python's rules apply: the name is everything after the
    /// first `/` that follows the `@` (it may contain `/`), hints are split
    /// on `,` and none may be empty, no hints at all is legal. Stricter than
    /// Python, on purpose: text before `pb://` is refused (Python searches
    /// for the pattern anywhere), so are control characters, tubids shorter
    /// than 32 characters and uppercase tubids (Python would accept them and
    /// then never find the Tub).
    pub fn parse(text: &str) -> Result<Furl, FurlError> {
        let furl = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let owned = || furl.to_string();
        if let Some((position, ch)) = furl.char_indices().find(|(_, c)| c.is_control()) {
            return Err(FurlError::ControlCharacter {
                furl: owned(),
                position,
                ch,
            });
        }
        let rest = furl
            .strip_prefix("pb://")
            .ok_or_else(|| FurlError::NotPb { furl: owned() })?;
        let (tub_part, rest) = rest
            .split_once('@')
            .ok_or_else(|| FurlError::MissingAt { furl: owned() })?;
        if tub_part.is_empty() {
            return Err(FurlError::MissingTubId { furl: owned() });
        }
        let (hints_part, name) = rest
            .split_once('/')
            .ok_or_else(|| FurlError::MissingName { furl: owned() })?;
        if name.is_empty() {
            return Err(FurlError::EmptyName { furl: owned() });
        }
        let split = tub_part
            .char_indices()
            .nth(32)
            .map_or(tub_part.len(), |(i, _)| i);
        let tubid = TubId::parse(&tub_part[..split]).map_err(|source| FurlError::BadTubId {
            furl: owned(),
            source,
        })?;
        let mut hints = Vec::new();
        if !hints_part.is_empty() {
            for (index, hint) in hints_part.split(',').enumerate() {
                if hint.is_empty() {
                    return Err(FurlError::EmptyHint {
                        furl: owned(),
                        index,
                    });
                }
                hints.push(Hint::parse(hint));
            }
        }
        Ok(Furl {
            tubid,
            tubid_extension: tub_part[split..].to_string(),
            hints,
            swissnum: name.to_string(),
        })
    }

    /// The TCP hints a plain TCP client can dial, as (host, port), in FURL
    /// order. (Python starts one attempt per usable hint, all at once.)
    pub fn tcp_hints(&self) -> impl Iterator<Item = (&str, u16)> + '_ {
        self.hints.iter().filter_map(Hint::tcp)
    }

    /// Whether both FURLs name the same object (same Tub, same swissnum),
    /// as SturdyRefs compare.
    pub fn same_object(&self, other: &Furl) -> bool {
        self.tubid == other.tubid && self.swissnum == other.swissnum
    }
}

impl fmt::Display for Furl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pb://{}{}@", self.tubid, self.tubid_extension)?;
        for (i, hint) in self.hints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{hint}")?;
        }
        write!(f, "/{}", self.swissnum)
    }
}

impl FromStr for Furl {
    type Err = FurlError;
    fn from_str(s: &str) -> Result<Furl, FurlError> {
        Furl::parse(s)
    }
}

/// A fresh swissnum: 160 random bits in lowercase base32 (32 characters),
/// what Python's `registerReference` generates.
pub fn new_swissnum(rng: &mut impl Rng) -> String {
    let mut bytes = [0u8; 20];
    rng.fill(&mut bytes);
    base32(&bytes)
}

fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

fn is_dotted_quad(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

fn is_hex_colon(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':')
}

/// Python's bracketed IPv6 form: hex digits and colons, optionally ending
/// in a dotted quad or a `%zone`.
fn is_bracketed_ipv6(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('[').and_then(|s| s.strip_suffix(']')) else {
        return false;
    };
    if let Some((head, zone)) = inner.split_once('%') {
        return is_hex_colon(head)
            && !zone.is_empty()
            && zone.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.');
    }
    is_hex_colon(inner)
        || (1..inner.len()).any(|i| {
            inner.is_char_boundary(i) && is_hex_colon(&inner[..i]) && is_dotted_quad(&inner[i..])
        })
}

/// A port as Python's `(\d+){1,5}` matches it, kept only when it is a
/// valid port written canonically (so the hint prints back unchanged).
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let p: u16 = s.parse().ok()?;
    (p.to_string() == s).then_some(p)
}

impl Hint {
    /// Classifies one hint the way Python's connection handlers do. Never
    /// fails: what no handler accepts becomes [`Hint::Unknown`]. A legacy
    /// `word:digits` hint is TCP even when `word` looks like a hint type
    /// (`tor:1234` is host `tor`, port 1234), as in Python. Ports that are
    /// out of range or have leading zeros make the hint Unknown.
    pub fn parse(text: &str) -> Hint {
        let unknown = || Hint::Unknown(text.to_string());
        // legacy HOST:PORT (DNS name or dotted quad; no IPv6)
        if let Some((host, p)) = text.split_once(':') {
            if is_dns_name(host) && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
                return match port(p) {
                    Some(port) => Hint::Tcp {
                        host: host.into(),
                        port,
                        legacy: true,
                    },
                    None => unknown(),
                };
            }
        }
        let Some((kind, rest)) = text.split_once(':') else {
            return unknown();
        };
        match kind {
            "tcp" => {
                let Some((host, p)) = rest.rsplit_once(':') else {
                    return unknown();
                };
                let host_ok = is_dns_name(host) || is_bracketed_ipv6(host);
                match (host_ok, port(p)) {
                    (true, Some(port)) => Hint::Tcp {
                        host: host.trim_start_matches('[').trim_end_matches(']').into(),
                        port,
                        legacy: false,
                    },
                    _ => unknown(),
                }
            }
            "tor" => match rest.rsplit_once(':') {
                Some((host, p)) if is_dns_name(host) => match port(p) {
                    Some(port) => Hint::Tor {
                        host: host.into(),
                        port,
                    },
                    None => unknown(),
                },
                _ => unknown(),
            },
            "i2p" => {
                let (addr, p) = match rest.split_once(':') {
                    Some((addr, p)) => match port(p) {
                        Some(port) => (addr, Some(port)),
                        None => return unknown(),
                    },
                    None => (rest, None),
                };
                if is_dns_name(addr) {
                    Hint::I2p {
                        addr: addr.into(),
                        port: p,
                    }
                } else {
                    unknown()
                }
            }
            _ => unknown(),
        }
    }

    /// The `tcp:HOST:PORT` hint for a socket address, e.g. the one a Tub
    /// listens on. The host is kept bare (an IPv6 address gets its
    /// brackets only when the hint is written, so `[::1]:5000` becomes
    /// `tcp:[::1]:5000`); a nonzero IPv6 scope id is kept as the `%zone`
    /// Python's hint syntax allows, since a link-local address means
    /// nothing without it.
    pub fn from_socket_addr(addr: SocketAddr) -> Hint {
        let host = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) if a.scope_id() != 0 => format!("{}%{}", a.ip(), a.scope_id()),
            SocketAddr::V6(a) => a.ip().to_string(),
        };
        Hint::Tcp {
            host,
            port: addr.port(),
            legacy: false,
        }
    }

    /// (host, port) if a plain TCP client can dial this hint. IPv6 hosts
    /// come without brackets; the host is also what goes into the request's
    /// `Host:` line.
    pub fn tcp(&self) -> Option<(&str, u16)> {
        match self {
            Hint::Tcp { host, port, .. } => Some((host, *port)),
            _ => None,
        }
    }
}

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // an IPv6 host is bracketed here and only here (it is held
            // bare); the legacy form cannot carry one, so it gets the new
            // form, the only one Python accepts for IPv6
            Hint::Tcp { host, port, .. } if host.contains(':') => write!(f, "tcp:[{host}]:{port}"),
            Hint::Tcp {
                host,
                port,
                legacy: true,
            } => write!(f, "{host}:{port}"),
            Hint::Tcp { host, port, .. } => write!(f, "tcp:{host}:{port}"),
            Hint::Tor { host, port } => write!(f, "tor:{host}:{port}"),
            Hint::I2p {
                addr,
                port: Some(port),
            } => write!(f, "i2p:{addr}:{port}"),
            Hint::I2p { addr, port: None } => write!(f, "i2p:{addr}"),
            Hint::Unknown(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    const T: &str = "vfbzu4bxrxknny4zy66zjcdszk5wc4k5";

    fn tcp(host: &str, port: u16, legacy: bool) -> Hint {
        Hint::Tcp {
            host: host.into(),
            port,
            legacy,
        }
    }

    #[test]
    fn every_hint_form_parses_and_prints_back() {
        let cases = [
            ("tcp:127.0.0.1:39375", tcp("127.0.0.1", 39375, false)),
            ("tcp:example.org:1", tcp("example.org", 1, false)),
            ("example.org:1234", tcp("example.org", 1234, true)),
            ("10.0.0.1:80", tcp("10.0.0.1", 80, true)),
            ("tcp:[::1]:5000", tcp("::1", 5000, false)),
            ("tcp:[fe80::1%en0]:5000", tcp("fe80::1%en0", 5000, false)),
            (
                "tcp:[::ffff:1.2.3.4]:5000",
                tcp("::ffff:1.2.3.4", 5000, false),
            ),
            ("tor:1234", tcp("tor", 1234, true)),
            ("tcp:80", tcp("tcp", 80, true)),
            (
                "tor:abcdefghijklmnop.onion:1234",
                Hint::Tor {
                    host: "abcdefghijklmnop.onion".into(),
                    port: 1234,
                },
            ),
            (
                "i2p:abc.b32.i2p",
                Hint::I2p {
                    addr: "abc.b32.i2p".into(),
                    port: None,
                },
            ),
            (
                "i2p:abc.b32.i2p:8080",
                Hint::I2p {
                    addr: "abc.b32.i2p".into(),
                    port: Some(8080),
                },
            ),
            ("unix:/tmp/sock", Hint::Unknown("unix:/tmp/sock".into())),
            ("systemd:fd=3", Hint::Unknown("systemd:fd=3".into())),
            ("[::1]:5000", Hint::Unknown("[::1]:5000".into())),
            ("tcp:host:99999", Hint::Unknown("tcp:host:99999".into())),
            ("tcp:host:080", Hint::Unknown("tcp:host:080".into())),
            ("tcp:[::1]:", Hint::Unknown("tcp:[::1]:".into())),
            ("tcp:host_name:1", Hint::Unknown("tcp:host_name:1".into())),
            ("tor:[::1]:80", Hint::Unknown("tor:[::1]:80".into())),
            // IPv6 as Python's tcp handler takes it: only bracketed, only
            // after `tcp:`, one pair of brackets, a zone of [A-Za-z0-9.]
            (
                "tcp:[2001:0DB8:f00e:eb00::1]:9900",
                tcp("2001:0DB8:f00e:eb00::1", 9900, false),
            ),
            ("tcp:[FE8::1%en1.2]:9900", tcp("FE8::1%en1.2", 9900, false)),
            ("tcp:[::]:7", tcp("::", 7, false)),
            ("::1:5000", Hint::Unknown("::1:5000".into())),
            ("tcp:::1:5000", Hint::Unknown("tcp:::1:5000".into())),
            ("tcp:[[::1]]:5000", Hint::Unknown("tcp:[[::1]]:5000".into())),
            (
                "tcp:[FE8::1%%]:9900",
                Hint::Unknown("tcp:[FE8::1%%]:9900".into()),
            ),
            (
                "tcp:[2001:db8::1:9900",
                Hint::Unknown("tcp:[2001:db8::1:9900".into()),
            ),
            (
                "tcp:2001:db8::1]:9900",
                Hint::Unknown("tcp:2001:db8::1]:9900".into()),
            ),
            ("nocolon", Hint::Unknown("nocolon".into())),
        ];
        for (text, want) in cases {
            let hint = Hint::parse(text);
            assert_eq!(hint, want, "{text}");
            assert_eq!(hint.to_string(), text);
        }
    }

    #[test]
    fn furls_round_trip_exactly() {
        for text in [
            format!("pb://{T}@tcp:127.0.0.1:39375/calc5wuq7sfhgpqbltonngv7lp6dmqf"),
            format!(
                "pb://{T}@tcp:[::1]:1,host:2,tor:x.onion:3,i2p:y,weird:thing/name/with/slashes?q=1"
            ),
            format!("pb://{T}@/no-hints"),
            format!("pb://{T}xyz-extension@tcp:h:1/x"),
            format!("pb://{T}@h:1/name@with@ats"),
        ] {
            let furl = Furl::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(furl.to_string(), text);
            assert_eq!(furl.tubid.as_str(), T);
        }
        let furl = Furl::parse(&format!("  pb://{T}@tcp:[::1]:1,h:2,unix:x/n\n")).unwrap();
        assert_eq!(furl.tcp_hints().collect::<Vec<_>>(), [("::1", 1), ("h", 2)]);
        assert_eq!(furl.hints[2], Hint::Unknown("unix:x".into()));
        let ext = Furl::parse(&format!("pb://{T}xyz@h:1/x")).unwrap();
        assert_eq!(ext.tubid_extension, "xyz");
        assert!(ext.same_object(&Furl::new(ext.tubid, vec![], "x")));
    }

    #[test]
    fn hints_for_socket_addresses_bracket_ipv6_once() {
        let cases = [
            ("[::1]:5000", "::1", "tcp:[::1]:5000"),
            ("127.0.0.1:80", "127.0.0.1", "tcp:127.0.0.1:80"),
            ("[2001:db8::7]:1", "2001:db8::7", "tcp:[2001:db8::7]:1"),
            (
                "[::ffff:1.2.3.4]:5",
                "::ffff:1.2.3.4",
                "tcp:[::ffff:1.2.3.4]:5",
            ),
            ("[::]:7", "::", "tcp:[::]:7"),
            ("[fe80::1%3]:5000", "fe80::1%3", "tcp:[fe80::1%3]:5000"),
        ];
        for (addr, host, text) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            let hint = Hint::from_socket_addr(addr);
            assert_eq!(hint, tcp(host, addr.port(), false), "{addr}");
            assert_eq!(hint.to_string(), text, "{addr}");
            assert_eq!(Hint::parse(text), hint, "{text}");
            assert_eq!(hint.tcp(), Some((host, addr.port())), "{text}");
        }
    }

    #[test]
    fn ipv6_furls_round_trip_with_bare_hosts() {
        let tubid = TubId::parse(T).unwrap();
        let hints = vec![
            Hint::from_socket_addr("[::1]:5000".parse().unwrap()),
            tcp("fe80::1%eth0", 6, false),
            // the legacy form cannot carry IPv6: written in the new form
            tcp("2001:db8::1", 7, true),
            tcp("127.0.0.1", 8, false),
        ];
        let furl = Furl::new(tubid, hints, "sink");
        let text = furl.to_string();
        assert_eq!(
            text,
            format!(
                "pb://{T}@tcp:[::1]:5000,tcp:[fe80::1%eth0]:6,tcp:[2001:db8::1]:7,\
                 tcp:127.0.0.1:8/sink"
            )
        );
        let back = Furl::parse(&text).unwrap();
        assert_eq!(
            back.tcp_hints().collect::<Vec<_>>(),
            [
                ("::1", 5000),
                ("fe80::1%eth0", 6),
                ("2001:db8::1", 7),
                ("127.0.0.1", 8)
            ]
        );
        assert_eq!(back.to_string(), text);
    }

    /// A Tub listening on `[::1]` once published `tcp:[[::1]]:PORT`: its
    /// listener bracketed the host and writing the hint bracketed it
    /// again. Python refuses that hint, and so does the parser.
    #[test]
    fn an_ipv6_listener_address_is_not_bracketed_twice() {
        let hint = Hint::from_socket_addr("[::1]:41234".parse().unwrap());
        let furl = Furl::new(TubId::parse(T).unwrap(), vec![hint], "x").to_string();
        assert!(furl.contains("@tcp:[::1]:41234/"), "{furl}");
        assert!(!furl.contains("[["), "{furl}");
        let twice = Furl::parse(&format!("pb://{T}@tcp:[[::1]]:41234/x")).unwrap();
        assert_eq!(twice.tcp_hints().count(), 0, "not dialable");
        assert_eq!(twice.hints, [Hint::Unknown("tcp:[[::1]]:41234".into())]);
    }

    #[test]
    fn malformed_furls_say_what_is_wrong() {
        type Check = fn(&FurlError) -> bool;
        let cases: Vec<(String, Check, &str)> = vec![
            (
                "http://x@h:1/n".into(),
                |e| matches!(e, FurlError::NotPb { .. }),
                "pb://",
            ),
            (
                format!("x pb://{T}@h:1/n"),
                |e| matches!(e, FurlError::NotPb { .. }),
                "pb://",
            ),
            (
                format!("pb://{T}/n"),
                |e| matches!(e, FurlError::MissingAt { .. }),
                "'@'",
            ),
            (
                "pb://@h:1/n".into(),
                |e| matches!(e, FurlError::MissingTubId { .. }),
                "tubid",
            ),
            (
                format!("pb://{T}@h:1"),
                |e| matches!(e, FurlError::MissingName { .. }),
                "'/'",
            ),
            (
                format!("pb://{T}@h:1/"),
                |e| matches!(e, FurlError::EmptyName { .. }),
                "empty",
            ),
            (
                format!("pb://{T}@a,,b/n"),
                |e| matches!(e, FurlError::EmptyHint { index: 1, .. }),
                "hint 1",
            ),
            (
                format!("pb://{T}@a,/n"),
                |e| matches!(e, FurlError::EmptyHint { index: 1, .. }),
                "empty",
            ),
            (
                "pb://abc@h:1/n".into(),
                |e| matches!(e, FurlError::BadTubId { .. }),
                "32 characters",
            ),
            (
                format!("pb://{}@h:1/n", T.to_uppercase()),
                |e| matches!(e, FurlError::BadTubId { .. }),
                "lowercase",
            ),
            (
                format!("pb://{}1@h:1/n", &T[..31]),
                |e| matches!(e, FurlError::BadTubId { .. }),
                "'1'",
            ),
            (
                format!("pb://{T}@h:1/a\nb"),
                |e| matches!(e, FurlError::ControlCharacter { .. }),
                "control",
            ),
        ];
        for (text, check, says) in cases {
            let err = Furl::parse(&text).expect_err(&text);
            assert!(check(&err), "{text}: {err:?}");
            assert!(err.to_string().contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn swissnums_are_160_random_bits() {
        let a = new_swissnum(&mut SeededRng::new(1));
        assert_eq!(a, new_swissnum(&mut SeededRng::new(1)));
        assert_ne!(a, new_swissnum(&mut SeededRng::new(2)));
        assert_eq!(a.len(), 32);
        assert!(TubId::parse(&a).is_ok(), "same alphabet as a tubid");
    }
}
