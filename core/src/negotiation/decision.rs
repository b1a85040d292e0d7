//! Evaluating hellos and decisions (docs/protocol.md §3.5-3.6) and
//! the duplicate-connection rules with the Tub-level tables they need
//! (§3.8).

use std::collections::HashMap;

use std::time::{Duration, Instant};

use super::blocks::{Block, Decision, BANANA_VERSIONS};
use super::error::{NegotiationError, Side};
use crate::banana::VocabTable;
pub use crate::id::ConnectionId;
use crate::identity::TubId;
use crate::rng::Rng;

/// A negotiated connection the table knows about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConnection {
    /// The connection.
    pub id: ConnectionId,
    /// The peer's `my-incarnation` (kept when we were the master).
    pub peer_incarnation: Option<String>,
    /// The seqnum we gave it as master.
    pub seqnum: Option<u64>,
    /// When it was established.
    pub established: Instant,
}

/// What one Tub instance remembers about its connections: its incarnation,
/// the seqnums it handed out as master (`master_table`), the master
/// incarnations and seqnums it was given as non-master (`slave_table`),
/// and its live connections by peer. The caller owns one per Tub and
/// passes it to every [`super::Negotiation`] call that may need it, and
/// reports closed connections with [`ConnectionTable::connection_closed`].
#[derive(Debug, Clone)]
pub struct ConnectionTable {
    incarnation: String,
    master_table: HashMap<TubId, u64>,
    slave_table: HashMap<TubId, (String, String)>,
    live: HashMap<TubId, LiveConnection>,
    next_id: u64,
}

impl ConnectionTable {
    /// A table for a new Tub instance with a random incarnation (8 random
    /// bytes in hex, like Python's).
    pub fn new(rng: &mut impl Rng) -> Self {
        let mut bytes = [0u8; 8];
        rng.fill(&mut bytes);
        Self::with_incarnation(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// A table with a given incarnation (to replay a recorded session).
    pub fn with_incarnation(incarnation: impl Into<String>) -> Self {
        ConnectionTable {
            incarnation: incarnation.into(),
            master_table: HashMap::new(),
            slave_table: HashMap::new(),
            live: HashMap::new(),
            next_id: 1,
        }
    }

    /// This Tub instance's incarnation (`my-incarnation`).
    pub fn incarnation(&self) -> &str {
        &self.incarnation
    }

    /// The live connection to a peer, if any.
    pub fn live(&self, peer: &TubId) -> Option<&LiveConnection> {
        self.live.get(peer)
    }

    /// Forgets a connection that was closed. Returns whether it was the
    /// live connection to its peer.
    pub fn connection_closed(&mut self, id: ConnectionId) -> bool {
        let before = self.live.len();
        self.live.retain(|_, c| c.id != id);
        self.live.len() != before
    }

    /// The `last-connection` value a TCP client sends to `peer`.
    pub fn last_connection(&self, peer: &TubId) -> String {
        match self.slave_table.get(peer) {
            Some((incarnation, seqnum)) => format!("{incarnation} {seqnum}"),
            None => "none 0".into(),
        }
    }

    /// The last seqnum this Tub used as master with `peer` (0: none).
    pub fn master_seqnum(&self, peer: &TubId) -> u64 {
        self.master_table.get(peer).copied().unwrap_or(0)
    }

    pub(crate) fn next_connection_id(&mut self) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Records a new live connection; returns the one it replaces.
    fn attach(&mut self, peer: TubId, conn: LiveConnection) -> Option<ConnectionId> {
        self.live.insert(peer, conn).map(|old| old.id)
    }
}

/// The peer's hello, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The banana version both sides speak.
    pub version: u32,
    /// The peer, as its certificate proves.
    pub peer: TubId,
    /// `my-incarnation`.
    pub incarnation: Option<String>,
    /// `last-connection` (TCP clients only).
    pub last_connection: Option<String>,
    /// `initial-vocab-table-range` as sent (only the master reads it).
    pub vocab_range: Option<String>,
    /// Whether we decide (our tubid is the larger).
    pub i_am_master: bool,
}

fn parse_int(key: &'static str, s: &str) -> Result<i64, NegotiationError> {
    // Python's int(): optional sign, digits, surrounding whitespace
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NegotiationError::BadField {
            key,
            value: s.into(),
        });
    }
    t.parse().map_err(|_| NegotiationError::BadField {
        key,
        value: s.into(),
    })
}

fn parse_pair(key: &'static str, s: &str) -> Result<(i64, i64), NegotiationError> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    match words[..] {
        [a, b] => Ok((parse_int(key, a)?, parse_int(key, b)?)),
        _ => Err(NegotiationError::BadField {
            key,
            value: s.into(),
        }),
    }
}

/// Python's `best_overlap`: the highest value both ranges reach.
pub fn best_overlap(
    mine: (i64, i64),
    theirs: (i64, i64),
    what: &'static str,
) -> Result<i64, NegotiationError> {
    let best = mine.1.min(theirs.1);
    if best < mine.0 {
        return Err(NegotiationError::Unsupported {
            side: Side::Me,
            what,
            value: best,
        });
    }
    if best < theirs.0 {
        return Err(NegotiationError::Unsupported {
            side: Side::Peer,
            what,
            value: best,
        });
    }
    Ok(best)
}

/// Checks the peer's hello in Python's order: an `error` key, the banana
/// range, `negotiation-forced`, the claimed tubid against the certificate
/// (`cert`), and for a TCP client the tubid it dialled (`expected`); then
/// picks the master (the larger tubid).
pub fn evaluate_hello(
    hello: &Block,
    me: &TubId,
    cert: Option<&TubId>,
    expected: Option<&TubId>,
) -> Result<Offer, NegotiationError> {
    if let Some(e) = hello.get("error") {
        return Err(NegotiationError::Remote { message: e.clone() });
    }
    let Some(range) = hello.get("banana-negotiation-range") else {
        if hello.contains_key("banana-negotiation-version") {
            return Err(NegotiationError::OldPeer);
        }
        return Err(NegotiationError::NoBananaRange);
    };
    let theirs = parse_pair("banana-negotiation-range", range)?;
    let mine = (BANANA_VERSIONS.0 as i64, BANANA_VERSIONS.1 as i64);
    let version = best_overlap(mine, theirs, "banana version")? as u32;
    if hello
        .get("negotiation-forced")
        .is_some_and(|f| f.eq_ignore_ascii_case("true"))
    {
        return Err(NegotiationError::Forced);
    }
    let claimed = hello.get("my-tub-id");
    let peer = match cert {
        None => return Err(NegotiationError::NoCertificate),
        Some(cert) if claimed.map(String::as_str) != Some(cert.as_str()) => {
            return Err(NegotiationError::TubIdMismatch {
                claimed: claimed.cloned(),
                certificate: *cert,
            })
        }
        Some(cert) => *cert,
    };
    if let Some(expected) = expected {
        if *expected != peer {
            return Err(NegotiationError::WrongTub {
                expected: *expected,
                actual: peer,
            });
        }
    }
    Ok(Offer {
        version,
        peer,
        incarnation: hello.get("my-incarnation").cloned(),
        last_connection: hello.get("last-connection").cloned(),
        vocab_range: hello.get("initial-vocab-table-range").cloned(),
        i_am_master: *me > peer,
    })
}

/// The master's verdict on an offer from a peer it already has a live
/// connection to (Python's `compareOfferAndExisting`): `true` replaces the
/// existing connection, `false` refuses the offer.
pub fn accept_over_existing(
    offer: &Offer,
    existing: &LiveConnection,
    my_incarnation: &str,
    handle_old: Option<Duration>,
    now: Instant,
) -> Result<bool, NegotiationError> {
    // 1. pre-0.2.0 peers: refuse, or go by the existing connection's age
    let (Some(incarnation), Some(last)) = (
        offer.incarnation.as_deref().filter(|i| !i.is_empty()),
        offer.last_connection.as_deref(),
    ) else {
        return Ok(match handle_old {
            Some(threshold) => now.saturating_duration_since(existing.established) >= threshold,
            None => false,
        });
    };
    // 2. the peer restarted
    if Some(incarnation) != existing.peer_incarnation.as_deref() {
        return Ok(true);
    }
    let words: Vec<&str> = last.split_ascii_whitespace().collect();
    let (Some(&master_ir), Some(seq)) = (words.first(), words.get(1)) else {
        return Err(NegotiationError::BadField {
            key: "last-connection",
            value: last.into(),
        });
    };
    let seq = parse_int("last-connection", seq)?;
    // 3. the peer does not remember talking to us (a parallel attempt)
    if master_ir == "none" {
        return Ok(false);
    }
    // 4. it remembers one of our previous lives
    if master_ir != my_incarnation {
        return Ok(true);
    }
    // 5. it knows the existing connection and still reconnected: stale.
    // 6. an older or a future seqnum: refuse.
    Ok(existing.seqnum.is_some_and(|s| s as i64 == seq))
}

/// What the negotiation settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Banana version (3 with Python 24.9.0; 1 and 2 are accepted from a
    /// master that decides so).
    pub version: u32,
    /// The vocab table both directions start with.
    pub vocab: VocabTable,
    /// Master only: the seqnum of this connection.
    pub seqnum: Option<u64>,
    /// The `current-connection` of the decision (sent or received).
    pub current_connection: Option<String>,
    /// The live connection to the same peer this one replaces; the caller
    /// must shut it down (Python fails its calls with
    /// `DeadReferenceError: replaced by a new connection`).
    pub replaced: Option<ConnectionId>,
}

/// The master's side: duplicate check, seqnum, vocab table, decision.
/// Records the new connection as live on success.
pub fn decide(
    offer: &Offer,
    id: ConnectionId,
    my_vocab_range: (u32, u32),
    handle_old: Option<Duration>,
    table: &mut ConnectionTable,
    now: Instant,
) -> Result<(Decision, Settled), NegotiationError> {
    if let Some(existing) = table.live.get(&offer.peer) {
        if !accept_over_existing(offer, existing, &table.incarnation, handle_old, now)? {
            return Err(NegotiationError::Duplicate { peer: offer.peer });
        }
    }
    // Python bumps the seqnum (and drops the old connection) before it
    // looks at the vocab ranges; we agree on the table first so that a
    // failed negotiation leaves the Tub's tables untouched.
    // absent means "0 0"; Python reads the first two words
    let theirs = match offer.vocab_range.as_deref() {
        None => (0, 0),
        Some(r) => match r.split_ascii_whitespace().collect::<Vec<_>>()[..] {
            [a, b, ..] => (
                parse_int("initial-vocab-table-range", a)?,
                parse_int("initial-vocab-table-range", b)?,
            ),
            _ => {
                return Err(NegotiationError::BadField {
                    key: "initial-vocab-table-range",
                    value: r.into(),
                })
            }
        },
    };
    let index = best_overlap(
        (my_vocab_range.0 as i64, my_vocab_range.1 as i64),
        theirs,
        "initial vocab set",
    )?;
    let vocab = u32::try_from(index)
        .ok()
        .and_then(VocabTable::by_index)
        .ok_or(NegotiationError::Unsupported {
            side: Side::Me,
            what: "initial vocab set",
            value: index,
        })?;
    let seqnum = table.master_seqnum(&offer.peer) + 1;
    table.master_table.insert(offer.peer, seqnum);
    let current_connection = format!("{} {seqnum}", table.incarnation);
    let replaced = table.attach(
        offer.peer,
        LiveConnection {
            id,
            peer_incarnation: offer.incarnation.clone(),
            seqnum: Some(seqnum),
            established: now,
        },
    );
    let decision = Decision {
        version: offer.version,
        current_connection: current_connection.clone(),
        vocab,
    };
    let settled = Settled {
        version: offer.version,
        vocab,
        seqnum: Some(seqnum),
        current_connection: Some(current_connection),
        replaced,
    };
    Ok((decision, settled))
}

/// The non-master's side: checks the master's decision, remembers its
/// `current-connection` for the next `last-connection`, and records the
/// connection as live (replacing any other to that peer, as the master
/// decided).
pub fn accept_decision(
    decision: &Block,
    offer: &Offer,
    id: ConnectionId,
    my_vocab_range: (u32, u32),
    table: &mut ConnectionTable,
    now: Instant,
) -> Result<Settled, NegotiationError> {
    let version = match decision.get("banana-decision-version") {
        None => return Err(NegotiationError::NoDecisionVersion),
        Some(v) if v.is_empty() => return Err(NegotiationError::NoDecisionVersion),
        Some(v) => parse_int("banana-decision-version", v)?,
    };
    // Python looks up acceptDecisionVersion<N>, which exists for 1..=3.
    if !(1..=3).contains(&version) {
        return Err(NegotiationError::BadField {
            key: "banana-decision-version",
            value: version.to_string(),
        });
    }
    if let Some(e) = decision.get("error") {
        return Err(NegotiationError::Remote { message: e.clone() });
    }
    let (index, hash) = match decision.get("initial-vocab-table-index") {
        Some(s) if !s.is_empty() => {
            let words: Vec<&str> = s.split_ascii_whitespace().collect();
            match words[..] {
                [i, h] => (parse_int("initial-vocab-table-index", i)?, Some(h)),
                _ => {
                    return Err(NegotiationError::BadField {
                        key: "initial-vocab-table-index",
                        value: s.clone(),
                    })
                }
            }
        }
        _ => (0, None),
    };
    if index < my_vocab_range.0 as i64 || index > my_vocab_range.1 as i64 {
        return Err(NegotiationError::Unsupported {
            side: Side::Me,
            what: "initial vocab table index",
            value: index,
        });
    }
    let vocab = VocabTable::by_index(index as u32).ok_or(NegotiationError::Unsupported {
        side: Side::Me,
        what: "initial vocab table index",
        value: index,
    })?;
    let ours = vocab.hash();
    if let Some(theirs) = hash.filter(|h| index > 0 && *h != ours) {
        return Err(NegotiationError::VocabHashMismatch {
            index: index as u32,
            ours,
            theirs: theirs.into(),
        });
    }
    let current_connection = decision.get("current-connection").cloned();
    if let Some(cc) = &current_connection {
        // Python stores tuple(cc.split()) and sends it back formatted as
        // "%s %s": only a two-word value survives that.
        if let [ir, seq] = cc.split_ascii_whitespace().collect::<Vec<_>>()[..] {
            table
                .slave_table
                .insert(offer.peer, (ir.to_string(), seq.to_string()));
        }
    }
    let replaced = table.attach(
        offer.peer,
        LiveConnection {
            id,
            peer_incarnation: offer.incarnation.clone(),
            seqnum: None,
            established: now,
        },
    );
    Ok(Settled {
        version: version as u32,
        vocab,
        seqnum: None,
        current_connection,
        replaced,
    })
}

#[cfg(test)]
mod tests;
