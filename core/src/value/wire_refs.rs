//! [`WireRefs`]: reference sequences kept as they travel.

use super::{DecodeError, EncodeError, RefDecoder, RefEncoder, Value, WireRef};
use crate::id::ObjectId;

/// Reference sequences kept as they travel, for tools and scripted peers
/// (a printer of captured streams, a test playing a peer): the serializer
/// writes the [`WireRef`] a stand-in [`Value::Local`] names, and the
/// deserializer records every reference sequence it meets and gives its
/// stand-in back. A real connection's broker turns them into live
/// references instead.
///
/// ```
/// use bytes::BytesMut;
/// use foolscap_core::banana::VocabTable;
/// use foolscap_core::value::{Deserializer, Event, Limits, Serializer, Value, WireRef, WireRefs};
///
/// let mut refs = WireRefs::default();
/// let yours = refs.value(WireRef::Your(3));
/// let mut out = BytesMut::new();
/// Serializer::new(VocabTable::V1)
///     .serialize_with(&Value::List(vec![yours.clone()]), &mut out, &mut refs)
///     .unwrap();
/// let mut de = Deserializer::new(VocabTable::V1, Limits::default());
/// de.feed(&out);
/// let mut read = WireRefs::default();
/// let Some(Event::Value(Value::List(items))) = de.poll_event_with(&mut read).unwrap() else {
///     panic!()
/// };
/// assert_eq!(read.get(&items[0]), Some(&WireRef::Your(3)));
/// ```
#[derive(Debug, Clone, Default)]
pub struct WireRefs {
    /// The references, by stand-in number.
    pub table: Vec<WireRef>,
}

impl WireRefs {
    /// The stand-in value that makes the serializer write `r` (equal
    /// references share one stand-in, so a reference read back compares
    /// equal to the one expected).
    pub fn value(&mut self, r: WireRef) -> Value {
        let i = match self.table.iter().position(|t| *t == r) {
            Some(i) => i,
            None => {
                self.table.push(r);
                self.table.len() - 1
            }
        };
        Value::Local(ObjectId(i as u64))
    }

    /// The reference a stand-in names.
    pub fn get(&self, v: &Value) -> Option<&WireRef> {
        match v.unanchored() {
            Value::Local(id) => usize::try_from(id.0).ok().and_then(|i| self.table.get(i)),
            _ => None,
        }
    }
}

impl RefEncoder for WireRefs {
    fn encode_ref(&mut self, v: &Value) -> Result<WireRef, EncodeError> {
        self.get(v)
            .cloned()
            .ok_or(EncodeError::LiveReference(v.type_name()))
    }
}

impl RefDecoder for WireRefs {
    fn decode_ref(&mut self, r: WireRef, _offset: u64) -> Result<Value, DecodeError> {
        Ok(self.value(r))
    }
}
