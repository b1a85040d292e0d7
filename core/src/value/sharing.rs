//! The sharing post-passes of the decoder: once a message is complete,
//! referenced containers are wrapped in [`Value::Anchor`] (numbered by
//! their OPEN's position in the message, the number their aliases carry)
//! and equal set elements are merged, as Python's `set.add` does.
//!
//! While a message is being received, a `reference` becomes a bare
//! [`Value::Alias`] and its target's slot is marked referenced (see
//! `de/frames.rs`); these passes run only when the message needs them.

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
    // sorted by hash: equal values end up side by side
    let mut order: Vec<(u64, usize)> = items
        .iter()
        .enumerate()
        .map(|(i, v)| (py_hash(v).unwrap_or(0), i))
        .collect();
    order.sort_unstable();
    order.chunk_by(|a, b| a.0 == b.0).any(|run| {
        let mut ints = hashbrown::HashSet::new();
        run.iter().enumerate().any(|(r, &(_, i))| match &items[i] {
            // ints of one hash (equal modulo 2**61 - 1) are told apart by
            // value, not each against each: only the others compare
            // pairwise
            Value::Int(n) => {
                !ints.insert(n)
                    || run[..r].iter().any(|&(_, j)| {
                        !matches!(items[j], Value::Int(_)) && py_eq(&items[j], &items[i])
                    })
            }
            _ => run[..r].iter().any(|&(_, j)| py_eq(&items[j], &items[i])),
        })
    })
}

/// Merges equal set elements as Python's `set.add` does (the first one is
/// kept), across all the top-level values of one message (a call's
/// arguments share one scope).
///
/// Equality is Python's: a shared tuple (an [`Value::Anchor`] or an
/// [`Value::Alias`] to one) equals any tuple with equal items, anchored or
/// not; other shared values (copyables) equal only themselves. When a
/// dropped element holds an anchor that an alias elsewhere still names, the
/// anchored value moves to that alias's place (the first in wire order), so
/// every alias keeps a target.
pub(super) fn dedup_pass(roots: &mut [&mut Value]) {
    let mut tuples = hashbrown::HashMap::new();
    for r in roots.iter() {
        collect_tuples(r, &mut tuples);
    }
    let cmp = SetEq::new(&tuples);
    let mut homeless = hashbrown::HashMap::new();
    for r in roots.iter_mut() {
        dedup_in(r, &cmp, &mut homeless);
    }
    if !homeless.is_empty() {
        for r in roots.iter_mut() {
            rehome(r, &mut homeless);
        }
    }
}

/// Whether some dict in the message has two keys Python's `==` finds
/// equal once references are resolved (a key and a `reference` to it, or
/// tuples holding them). Keys are checked as they arrive, but an alias can
/// only be compared once the message is complete; Python refuses such a
/// dict ("duplicate key", a BananaError).
pub(super) fn duplicate_dict_key(roots: &[&mut Value]) -> bool {
    let mut tuples = hashbrown::HashMap::new();
    for r in roots.iter() {
        collect_tuples(r, &mut tuples);
    }
    let cmp = SetEq::new(&tuples);
    roots.iter().any(|r| dict_keys_repeat(r, &cmp))
}

fn dict_keys_repeat(v: &Value, cmp: &SetEq<'_>) -> bool {
    match v {
        Value::Dict(p) => {
            (p.len() > 1 && cmp.mask_by(p.len(), |i| &p[i].0).is_some())
                || p.iter()
                    .any(|(k, x)| dict_keys_repeat(k, cmp) || dict_keys_repeat(x, cmp))
        }
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter().any(|c| dict_keys_repeat(c, cmp))
        }
        Value::Copyable(c) => c.state.iter().any(|(_, x)| dict_keys_repeat(x, cmp)),
        Value::Anchor(_, inner) => dict_keys_repeat(inner, cmp),
        _ => false,
    }
}

/// Values a message drops after the passes (a repeated keyword's earlier
/// value) may hold anchors that other values alias: each such anchored
/// value moves to its first alias among `roots`.
pub(super) fn rehome_dropped(dropped: Vec<Value>, roots: &mut [&mut Value]) {
    let mut homeless = hashbrown::HashMap::new();
    for mut v in dropped {
        evict(&mut v, &mut homeless);
    }
    if !homeless.is_empty() {
        for r in roots.iter_mut() {
            rehome(r, &mut homeless);
        }
    }
}

/// Anchored tuples by anchor id, as copies whose anchors are aliases (so
/// each node is copied once however deep the sharing).
pub(crate) fn collect_tuples(v: &Value, out: &mut hashbrown::HashMap<u32, Value>) {
    match v {
        Value::Anchor(id, inner) => {
            if let Value::Tuple(_) = **inner {
                out.insert(*id, shared_copy(inner));
            }
            collect_tuples(inner, out);
        }
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter().for_each(|c| collect_tuples(c, out))
        }
        Value::Dict(p) => p.iter().for_each(|(k, x)| {
            collect_tuples(k, out);
            collect_tuples(x, out)
        }),
        Value::Copyable(c) => c.state.iter().for_each(|(_, x)| collect_tuples(x, out)),
        _ => {}
    }
}

fn dedup_in(v: &mut Value, cmp: &SetEq<'_>, homeless: &mut hashbrown::HashMap<u32, Value>) {
    match v {
        Value::Set(items) | Value::FrozenSet(items) => {
            for c in items.iter_mut() {
                dedup_in(c, cmp, homeless);
            }
            if let Some(keep) = cmp.keep_mask(items) {
                let mut kept: Vec<Value> = Vec::with_capacity(items.len());
                for (mut item, keep) in std::mem::take(items).into_iter().zip(keep) {
                    if keep {
                        kept.push(item);
                    } else {
                        evict(&mut item, homeless);
                    }
                }
                *items = kept;
            }
        }
        Value::List(i) | Value::Tuple(i) => i.iter_mut().for_each(|c| dedup_in(c, cmp, homeless)),
        Value::Dict(p) => p.iter_mut().for_each(|(k, x)| {
            dedup_in(k, cmp, homeless);
            dedup_in(x, cmp, homeless)
        }),
        Value::Copyable(c) => c
            .state
            .iter_mut()
            .for_each(|(_, x)| dedup_in(x, cmp, homeless)),
        Value::Anchor(_, inner) => dedup_in(inner, cmp, homeless),
        _ => {}
    }
}

/// Takes every anchored value out of a dropped set element (nested
/// anchors become aliases inside their container's copy).
fn evict(v: &mut Value, homeless: &mut hashbrown::HashMap<u32, Value>) {
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter_mut().for_each(|c| evict(c, homeless))
        }
        Value::Dict(p) => p.iter_mut().for_each(|(k, x)| {
            evict(k, homeless);
            evict(x, homeless)
        }),
        Value::Copyable(c) => c.state.iter_mut().for_each(|(_, x)| evict(x, homeless)),
        Value::Anchor(id, inner) => {
            let id = *id;
            evict(inner, homeless);
            let inner = std::mem::replace(&mut **inner, Value::None);
            homeless.insert(id, inner);
            *v = Value::Alias(id);
        }
        _ => {}
    }
}

/// Puts each evicted anchored value at the first alias that names it.
fn rehome(v: &mut Value, homeless: &mut hashbrown::HashMap<u32, Value>) {
    if let Value::Alias(id) = v {
        if let Some(inner) = homeless.remove(id) {
            *v = Value::Anchor(*id, Box::new(inner));
        }
    }
    match v {
        Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
            i.iter_mut().for_each(|c| rehome(c, homeless))
        }
        Value::Dict(p) => p.iter_mut().for_each(|(k, x)| {
            rehome(k, homeless);
            rehome(x, homeless)
        }),
        Value::Copyable(c) => c.state.iter_mut().for_each(|(_, x)| rehome(x, homeless)),
        Value::Anchor(_, inner) => rehome(inner, homeless),
        _ => {}
    }
}

/// Python's `==` and a hash consistent with it, for set elements that may
/// be shared: an anchor or alias to a tuple stands for that tuple's items;
/// any other anchor or alias only for itself. Results for pairs of shared
/// tuples are remembered, so deep sharing costs no more than its size.
///
/// A reference lets a small message describe a value nested far deeper
/// than `Limits::max_depth` (each tuple holding a `reference` to the one
/// before); comparing it recursively would exhaust the stack. Comparison
/// and hashing give up below [`MAX_COMPARE_DEPTH`] levels: the two values
/// count as different (hash 0), so their set keeps both. Python's own
/// comparison fails there (RecursionError) near its recursion limit, 1000.
pub(crate) struct SetEq<'t> {
    tuples: &'t hashbrown::HashMap<u32, Value>,
    hashes: std::cell::RefCell<hashbrown::HashMap<u32, u64>>,
    equal: std::cell::RefCell<hashbrown::HashMap<(u32, u32), bool>>,
    depth: std::cell::Cell<u32>,
}

/// How deep [`SetEq`] follows tuples, frozensets and references.
pub(crate) const MAX_COMPARE_DEPTH: u32 = 1000;

/// Counts one level of [`SetEq`] recursion while alive.
struct Level<'a>(&'a std::cell::Cell<u32>);

impl<'a> Level<'a> {
    fn enter(depth: &'a std::cell::Cell<u32>) -> Option<Self> {
        let d = depth.get();
        if d >= MAX_COMPARE_DEPTH {
            return None;
        }
        depth.set(d + 1);
        Some(Level(depth))
    }
}

impl Drop for Level<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl<'t> SetEq<'t> {
    pub(crate) fn new(tuples: &'t hashbrown::HashMap<u32, Value>) -> Self {
        SetEq {
            tuples,
            hashes: Default::default(),
            equal: Default::default(),
            depth: Default::default(),
        }
    }

    /// The shared identity of `v` (if any) and the value Python compares
    /// (`None`: compared by identity only).
    fn resolve<'x>(&'x self, v: &'x Value) -> (Option<u32>, Option<&'x Value>) {
        match v {
            Value::Anchor(id, inner) => match **inner {
                Value::Tuple(_) => (Some(*id), Some(&**inner)),
                _ => (Some(*id), None),
            },
            Value::Alias(id) => (Some(*id), self.tuples.get(id)),
            other => (None, Some(other)),
        }
    }

    pub(crate) fn eq(&self, a: &Value, b: &Value) -> bool {
        let (ia, ra) = self.resolve(a);
        let (ib, rb) = self.resolve(b);
        if ia.is_some() && ia == ib {
            return true;
        }
        let (Some(x), Some(y)) = (ra, rb) else {
            return false;
        };
        let Some(_level) = Level::enter(&self.depth) else {
            return false;
        };
        let key = match (ia, ib) {
            (Some(i), Some(j)) => Some((i.min(j), i.max(j))),
            _ => None,
        };
        if let Some(k) = key {
            if let Some(&known) = self.equal.borrow().get(&k) {
                return known;
            }
        }
        let result = match (x, y) {
            (Value::Tuple(p), Value::Tuple(q)) => {
                p.len() == q.len() && p.iter().zip(q).all(|(e, f)| self.eq(e, f))
            }
            (Value::FrozenSet(p), Value::FrozenSet(q)) => {
                p.iter().all(|e| q.iter().any(|f| self.eq(e, f)))
                    && q.iter().all(|f| p.iter().any(|e| self.eq(e, f)))
            }
            (Value::Tuple(_) | Value::FrozenSet(_), _)
            | (_, Value::Tuple(_) | Value::FrozenSet(_)) => false,
            _ => py_eq(x, y),
        };
        if let Some(k) = key {
            self.equal.borrow_mut().insert(k, result);
        }
        result
    }

    pub(crate) fn hash(&self, v: &Value) -> u64 {
        use std::hash::{Hash, Hasher};
        let mix = |parts: &[u64]| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            parts.hash(&mut h);
            h.finish()
        };
        let Some(_level) = Level::enter(&self.depth) else {
            return 0;
        };
        let (id, resolved) = self.resolve(v);
        let Some(x) = resolved else {
            return mix(&[6, u64::from(id.unwrap_or(0))]);
        };
        if let Some(id) = id {
            if let Some(&h) = self.hashes.borrow().get(&id) {
                return h;
            }
        }
        let h = match x {
            Value::Tuple(items) => {
                let mut parts = vec![4, items.len() as u64];
                parts.extend(items.iter().map(|i| self.hash(i)));
                mix(&parts)
            }
            Value::FrozenSet(items) => {
                // equal sets have the same distinct element hashes
                let mut hs: Vec<u64> = items.iter().map(|i| self.hash(i)).collect();
                hs.sort_unstable();
                hs.dedup();
                hs.insert(0, 5);
                mix(&hs)
            }
            other => py_hash(other).unwrap_or(0),
        };
        if let Some(id) = id {
            self.hashes.borrow_mut().insert(id, h);
        }
        h
    }

    /// Which of `items` a Python set keeps (the first of equal ones);
    /// `None` when all are distinct.
    pub(crate) fn keep_mask(&self, items: &[Value]) -> Option<Vec<bool>> {
        self.mask_by(items.len(), |i| &items[i])
    }

    /// [`SetEq::keep_mask`] over `n` values given by index.
    fn mask_by<'v>(&self, n: usize, item: impl Fn(usize) -> &'v Value) -> Option<Vec<bool>> {
        let mut keep = vec![true; n];
        let mut any = false;
        if n < 16 {
            for i in 0..n {
                if (0..i).any(|j| keep[j] && self.eq(item(j), item(i))) {
                    keep[i] = false;
                    any = true;
                }
            }
        } else {
            // sorted by (hash, position): equal values end up side by side,
            // each run in arrival order (cheaper than a hash table here)
            let mut order: Vec<(u64, usize)> = (0..n).map(|i| (self.hash(item(i)), i)).collect();
            order.sort_unstable();
            for run in order.chunk_by(|a, b| a.0 == b.0) {
                // ints of one hash (equal modulo 2**61 - 1) are told apart
                // by value (an int equals an earlier int only if it is the
                // same int), so a run of them costs no comparison of each
                // against each; other members compare with every earlier
                // one kept, as Python's set probes
                let mut ints = hashbrown::HashSet::new();
                let mut kept_others: Vec<usize> = Vec::new();
                for (r, &(_, i)) in run.iter().enumerate() {
                    let dup = match item(i) {
                        Value::Int(n) => {
                            !ints.insert(n)
                                || kept_others.iter().any(|&j| self.eq(item(j), item(i)))
                        }
                        v => run[..r]
                            .iter()
                            .any(|&(_, j)| keep[j] && self.eq(item(j), v)),
                    };
                    if dup {
                        keep[i] = false;
                        any = true;
                    } else if !matches!(item(i), Value::Int(_)) {
                        kept_others.push(i);
                    }
                }
            }
        }
        any.then_some(keep)
    }
}
