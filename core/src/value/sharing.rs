//! The sharing post-passes of the decoder: once a message is complete,
//! referenced containers are wrapped in [`Value::Anchor`] (numbered by
//! their OPEN's position in the message, the number their aliases carry)
//! and equal set elements are merged, as Python's `set.add` does.
//!
//! While a message is being received, a `reference` becomes a bare
//! [`Value::Alias`] and its target's slot is marked referenced (see
//! `de/frames.rs`); these passes run only when the message needs them.

use smallvec::SmallVec;

use super::de::Slot;
use super::pyops::{py_eq, py_hash};
use super::{Copyable, Value};

/// How many OPENs the wire form of `v` contains.
pub(super) fn count_opens(v: &Value) -> u32 {
    match v {
        Value::Int(_) | Value::Float(_) | Value::Bytes(_) => 0,
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            1 + i.iter().map(count_opens).sum::<u32>()
        }
        Value::Dict(p) => {
            1 + p
                .iter()
                .map(|(k, v)| count_opens(k) + count_opens(v))
                .sum::<u32>()
        }
        Value::Copyable(c) => 1 + c.state.iter().map(|(_, v)| count_opens(v)).sum::<u32>(),
        Value::Anchor(_, inner) => count_opens(inner),
        _ => 1,
    }
}

/// Wraps every referenced container in an [`Value::Anchor`] whose id is
/// its OPEN's position in the message (the id its aliases carry). Walks in
/// wire order, counting OPENs exactly as they arrived.
pub(super) fn anchor_pass(
    v: &mut Value,
    next: &mut u32,
    slots: &[Slot],
    frozen: &mut hashbrown::HashMap<u32, Vec<Value>>,
) {
    let opens_here = !matches!(v, Value::Int(_) | Value::Float(_) | Value::Bytes(_));
    if !opens_here {
        return;
    }
    let my = *next;
    *next += 1;
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            for c in i {
                anchor_pass(c, next, slots, frozen);
            }
        }
        Value::Dict(p) => {
            for (k, val) in p {
                anchor_pass(k, next, slots, frozen);
                anchor_pass(val, next, slots, frozen);
            }
        }
        Value::Copyable(c) => {
            for (_, val) in &mut c.state {
                anchor_pass(val, next, slots, frozen);
            }
        }
        Value::Alias(id) => {
            if let Some(items) = frozen.get(id) {
                *v = Value::Tuple(items.clone());
            }
        }
        _ => {}
    }
    if let Some(slot) = slots.get(my as usize) {
        *next += slot.trailing_dropped;
        if slot.referenced {
            if let (true, Value::FrozenSet(items)) = (slot.frozenset, &*v) {
                frozen.insert(my, items.iter().map(shared_copy).collect());
            } else {
                let inner = std::mem::replace(v, Value::None);
                *v = Value::Anchor(my, Box::new(inner));
            }
        }
    }
}

/// A copy that shares what the original shares: anchors become aliases.
fn shared_copy(v: &Value) -> Value {
    match v {
        Value::Anchor(id, _) => Value::Alias(*id),
        Value::List(i) => Value::List(i.iter().map(shared_copy).collect()),
        Value::Tuple(i) => Value::Tuple(i.iter().map(shared_copy).collect()),
        Value::Set(i) => Value::Set(i.iter().map(shared_copy).collect()),
        Value::FrozenSet(i) => Value::FrozenSet(i.iter().map(shared_copy).collect()),
        Value::Dict(p) => Value::Dict(
            p.iter()
                .map(|(k, x)| (shared_copy(k), shared_copy(x)))
                .collect(),
        ),
        Value::Copyable(c) => Value::Copyable(Box::new(Copyable {
            type_name: c.type_name.clone(),
            state: c
                .state
                .iter()
                .map(|(n, x)| (n.clone(), shared_copy(x)))
                .collect(),
        })),
        other => other.clone(),
    }
}

/// Whether two of `items` are equal by Python's `==` (a set holding them
/// would keep only the first).
pub(super) fn has_duplicates(items: &[Value]) -> bool {
    if items.len() < 16 {
        return items
            .iter()
            .enumerate()
            .any(|(i, a)| items[..i].iter().any(|b| py_eq(a, b)));
    }
    let mut seen: hashbrown::HashMap<u64, SmallVec<[usize; 1]>> = hashbrown::HashMap::new();
    for (i, v) in items.iter().enumerate() {
        let bucket = seen.entry(py_hash(v).unwrap_or(0)).or_default();
        if bucket.iter().any(|&j| py_eq(&items[j], v)) {
            return true;
        }
        bucket.push(i);
    }
    false
}

/// Merges equal set elements as Python's `set.add` does (first one kept;
/// an anchored element is never dropped, so its aliases stay valid).
pub(super) fn dedup_pass(v: &mut Value) {
    match v {
        Value::Set(items) | Value::FrozenSet(items) => {
            for c in items.iter_mut() {
                dedup_pass(c);
            }
            if has_duplicates(items) {
                let mut kept: Vec<Value> = Vec::with_capacity(items.len());
                for item in std::mem::take(items) {
                    let dup =
                        !matches!(item, Value::Anchor(..)) && kept.iter().any(|k| py_eq(k, &item));
                    if !dup {
                        kept.push(item);
                    }
                }
                *items = kept;
            }
        }
        Value::List(i) | Value::Tuple(i) => i.iter_mut().for_each(dedup_pass),
        Value::Dict(p) => p.iter_mut().for_each(|(k, v)| {
            dedup_pass(k);
            dedup_pass(v)
        }),
        Value::Copyable(c) => c.state.iter_mut().for_each(|(_, v)| dedup_pass(v)),
        Value::Anchor(_, inner) => dedup_pass(inner),
        _ => {}
    }
}
