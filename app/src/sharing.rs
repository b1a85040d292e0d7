//! Shared and cyclic values beyond the message they arrived in.
//!
//! Within one message, a container that appears more than once is a
//! [`Value::Anchor`] at its first occurrence and a [`Value::Alias`] with
//! the same [`AnchorId`] at every later one (see `foolscap_core::value`).
//! The ids mean something only within that message, which raises two
//! questions this module answers:
//!
//! - *What does an alias stand for?* A [`Scope`] is the anchor table of one
//!   message (for a call: all its arguments together), and
//!   [`Scope::resolve`] follows an alias to the anchored value.
//! - *How can a part of a message be kept, or sent in another message?*
//!   An alias in that part may point outside it, and its ids may clash
//!   with those of the other values it travels with. [`Scope::detach`]
//!   makes a self-contained copy, and [`renumber`] gives self-contained
//!   values from different messages ids apart from each other's.
//!
//! A value the broker decoded as a whole message (an answer, say) is
//! already self-contained; only parts of one need detaching.
//!
//! Why this lives in the application crate rather than next to [`Value`]:
//! the core never keeps a value past the message it came in (the broker
//! hands it to the application and forgets it), so only applications need
//! to carry values from one message to another.

use std::collections::{HashMap, HashSet};

use foolscap_core::value::{AnchorId, Copyable, Text, Value};

/// The anchor table of one message: which value each [`AnchorId`] stands
/// for.
///
/// Build it over all the top-level values of the message together (for a
/// call, every positional and keyword argument, as [`crate::Call::scope`]
/// does): Python scopes sharing to the whole message, so an alias in one
/// argument may refer to an anchor in another.
///
/// ```
/// use foolscap_app::Scope;
/// use foolscap_core::value::Value;
///
/// // f(x, x) with x = [1, 2]: the second argument refers to the first
/// let x = Value::List(vec![Value::int(1), Value::int(2)]);
/// let args = vec![Value::Anchor(3, Box::new(x.clone())), Value::Alias(3)];
/// let scope = Scope::new(&args);
/// assert_eq!(scope.resolve(&args[0]), &x);
/// assert_eq!(scope.resolve(&args[1]), &x);
/// assert_eq!(scope.resolve(&args[1]).as_seq().map(|s| s.len()), Some(2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Scope<'a> {
    /// Anchor id → the anchored value (inside its [`Value::Anchor`]).
    anchors: HashMap<AnchorId, &'a Value>,
    /// The address of each anchored value → its id: what tells that a
    /// value given to [`Scope::detach`] is one [`Scope::resolve`] gave.
    by_address: HashMap<usize, AnchorId>,
}

impl<'a> Scope<'a> {
    /// The anchor table of the message whose top-level values are
    /// `message`. Should an id be anchored twice (no decoded message does
    /// that), the first anchor in the message's order counts.
    ///
    /// ```
    /// use foolscap_app::Scope;
    /// use foolscap_core::value::Value;
    ///
    /// let answer = Value::Anchor(1, Box::new(Value::List(vec![Value::Alias(1)])));
    /// let scope = Scope::new([&answer]);
    /// assert_eq!(scope.anchored(1), Some(&Value::List(vec![Value::Alias(1)])));
    /// assert_eq!(scope.anchored(2), None);
    /// ```
    pub fn new(message: impl IntoIterator<Item = &'a Value>) -> Scope<'a> {
        let mut anchors = HashMap::new();
        let mut by_address = HashMap::new();
        for_each_anchor(message, |id, inner| {
            if let std::collections::hash_map::Entry::Vacant(e) = anchors.entry(id) {
                e.insert(inner);
                by_address.insert(address(inner), id);
            }
            false
        });
        Scope {
            anchors,
            by_address,
        }
    }

    /// The value anchored under `id` (without its [`Value::Anchor`]
    /// wrapper), if the message has one.
    ///
    /// ```
    /// use foolscap_app::Scope;
    /// use foolscap_core::value::Value;
    ///
    /// let args = [Value::Anchor(7, Box::new(Value::Tuple(vec![])))];
    /// assert_eq!(Scope::new(&args).anchored(7), Some(&Value::Tuple(vec![])));
    /// ```
    pub fn anchored(&self, id: AnchorId) -> Option<&'a Value> {
        self.anchors.get(&id).copied()
    }

    /// The value `v` stands for: an [`Value::Alias`] is followed to the
    /// value anchored under its id, a [`Value::Anchor`] is looked through,
    /// anything else is itself. An alias the message does not anchor
    /// (a value from another message, say) stays as it is.
    ///
    /// The accessors of [`Value`] (`as_seq`, `as_i64`, ...) look through
    /// an anchor but cannot follow an alias: resolve first.
    ///
    /// ```
    /// use foolscap_app::Scope;
    /// use foolscap_core::value::Value;
    ///
    /// let args = vec![
    ///     Value::Anchor(1, Box::new(Value::List(vec![Value::int(5)]))),
    ///     Value::Alias(1),
    ///     Value::Alias(9),
    ///     Value::int(2),
    /// ];
    /// let scope = Scope::new(&args);
    /// assert_eq!(args[1].as_seq(), None);
    /// assert_eq!(scope.resolve(&args[1]).as_seq(), Some(&[Value::int(5)][..]));
    /// assert_eq!(scope.resolve(&args[2]), &Value::Alias(9));
    /// assert_eq!(scope.resolve(&args[3]), &Value::int(2));
    /// ```
    pub fn resolve(&self, v: &'a Value) -> &'a Value {
        match v {
            Value::Anchor(_, inner) => inner,
            Value::Alias(id) => self.anchored(*id).unwrap_or(v),
            v => v,
        }
    }

    /// A self-contained copy of `v`, a value of this message (or one built
    /// from its parts), that can be kept and sent in any later message.
    ///
    /// The copy holds what Python would see as `v`: aliases are followed
    /// (an alias whose anchor lies outside `v` brings a copy of the
    /// anchored value along), and the containers it meets more than once
    /// (through two aliases, an alias and its anchor, or a cycle) are
    /// anchored at their first occurrence in the value's order (the order
    /// the message arrived in) and aliased at the later ones, so cycles
    /// stay cycles. Anchors are numbered from 1 in that order; a container
    /// the copy meets once is not anchored. An alias this scope cannot
    /// resolve stays an alias to nothing (under a fresh id, so that it
    /// cannot be taken for another anchor), which the serializer refuses.
    ///
    /// `v` may be an argument as it is in the message or as
    /// [`Scope::resolve`] gave it: a resolved value that is itself shared
    /// is copied as that shared container, so that a cycle through it
    /// survives.
    ///
    /// ```
    /// use foolscap_app::Scope;
    /// use foolscap_core::value::Value;
    ///
    /// // f([x, x], x) with x = [1]: the first argument holds x's anchor
    /// let x = Value::List(vec![Value::int(1)]);
    /// let args = vec![
    ///     Value::List(vec![Value::Anchor(4, Box::new(x.clone())), Value::Alias(4)]),
    ///     Value::Alias(4),
    /// ];
    /// let scope = Scope::new(&args);
    /// // the second argument alone: x itself, shared with nothing
    /// assert_eq!(scope.detach(&args[1]), x);
    /// // the first: still one x twice
    /// assert_eq!(
    ///     scope.detach(&args[0]),
    ///     Value::List(vec![Value::Anchor(1, Box::new(x.clone())), Value::Alias(1)])
    /// );
    ///
    /// // a cycle: y = [y]
    /// let y = Value::Anchor(8, Box::new(Value::List(vec![Value::Alias(8)])));
    /// let scope = Scope::new([&y]);
    /// let cycle = Value::Anchor(1, Box::new(Value::List(vec![Value::Alias(1)])));
    /// assert_eq!(scope.detach(&y), cycle);
    /// assert_eq!(scope.detach(scope.resolve(&y)), cycle);
    /// ```
    pub fn detach(&self, v: &Value) -> Value {
        let (mut copies, _) = Copier::copy(self, &[v], 1);
        copies.pop().expect("one copy")
    }

    /// Self-contained copies of several values of this message, to travel
    /// together in one new message (the arguments of a call, the items of
    /// a list): they share among themselves what they shared in this
    /// message, and their anchors are numbered from 1 across all of them.
    /// See [`Scope::detach`].
    ///
    /// ```
    /// use foolscap_app::Scope;
    /// use foolscap_core::value::Value;
    ///
    /// // g(a, x, x): pass on the last two, still sharing x
    /// let x = Value::Dict(vec![(Value::str("k"), Value::None)]);
    /// let args = vec![Value::int(0), Value::Anchor(2, Box::new(x.clone())), Value::Alias(2)];
    /// let scope = Scope::new(&args);
    /// assert_eq!(
    ///     scope.detach_all(&args[1..]),
    ///     vec![Value::Anchor(1, Box::new(x)), Value::Alias(1)]
    /// );
    /// ```
    pub fn detach_all<'v>(&self, values: impl IntoIterator<Item = &'v Value>) -> Vec<Value> {
        let roots: Vec<&Value> = values.into_iter().collect();
        Copier::copy(self, &roots, 1).0
    }
}

/// Gives self-contained values (each [`Scope::detach`]ed from its
/// message, or a whole message such as an answer) anchor ids apart from
/// each other's, numbered from 1 across all of them, so that values kept
/// from different messages can travel together in one.
///
/// Each value keeps its own sharing; nothing is shared between them.
///
/// ```
/// use foolscap_app::sharing::renumber;
/// use foolscap_core::value::Value;
///
/// // two cycles kept from two calls, both anchored as 1 there
/// let a = Value::Anchor(1, Box::new(Value::List(vec![Value::Alias(1)])));
/// let b = Value::Anchor(1, Box::new(Value::Tuple(vec![Value::List(vec![Value::Alias(1)])])));
/// let both = renumber([&a, &b]);
/// assert_eq!(both[0], a);
/// assert_eq!(
///     both[1],
///     Value::Anchor(2, Box::new(Value::Tuple(vec![Value::List(vec![Value::Alias(2)])])))
/// );
/// ```
pub fn renumber<'v>(values: impl IntoIterator<Item = &'v Value>) -> Vec<Value> {
    let mut next = 1;
    values
        .into_iter()
        .map(|v| {
            // each value is its own message: detaching it from itself
            // renumbers it (and moves an anchor that comes after one of
            // its aliases to the alias)
            let scope = Scope::new([v]);
            let (mut copy, after) = Copier::copy(&scope, &[v], next);
            next = after;
            copy.pop().expect("one copy")
        })
        .collect()
}

/// Calls `f` with every anchor in `roots` (its id and the anchored value),
/// in the value's order, until `f` returns true. Iterative: a value may
/// nest as deep as the decoder's limits allow.
pub(crate) fn for_each_anchor<'a>(
    roots: impl IntoIterator<Item = &'a Value>,
    mut f: impl FnMut(AnchorId, &'a Value) -> bool,
) {
    // a stack popped from the end: parts are pushed last first
    let mut todo: Vec<&'a Value> = roots.into_iter().collect();
    todo.reverse();
    while let Some(v) = todo.pop() {
        match v {
            Value::Anchor(id, inner) => {
                if f(*id, inner) {
                    return;
                }
                todo.push(inner);
            }
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => todo.extend(items.iter().rev()),
            Value::Dict(pairs) => todo.extend(pairs.iter().rev().flat_map(|(k, x)| [x, k])),
            Value::Copyable(c) => todo.extend(c.state.iter().rev().map(|(_, x)| x)),
            _ => {}
        }
    }
}

/// The value anchored under `id` in `roots`, searched only as far as
/// needed (for a single alias; [`Scope`] indexes a whole message).
pub(crate) fn find_anchor<'a>(
    roots: impl IntoIterator<Item = &'a Value>,
    id: AnchorId,
) -> Option<&'a Value> {
    let mut found = None;
    for_each_anchor(roots, |anchor, inner| {
        if anchor == id {
            found = Some(inner);
        }
        found.is_some()
    });
    found
}

/// The identity of a container the copy may meet more than once: a
/// shared one by its anchor id, a top-level value of the copy by its
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Id(AnchorId),
    Addr(usize),
}

fn address(v: &Value) -> usize {
    v as *const Value as usize
}

/// Whether `v` is a container, the only kind of value Python shares
/// within a message.
fn is_container(v: &Value) -> bool {
    matches!(
        v,
        Value::List(_)
            | Value::Tuple(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Dict(_)
            | Value::Copyable(_)
    )
}

/// The parts of a container, in the value's order.
fn for_each_part<'x>(v: &'x Value, mut f: impl FnMut(&'x Value)) {
    match v {
        Value::List(items) | Value::Tuple(items) | Value::Set(items) | Value::FrozenSet(items) => {
            items.iter().for_each(f)
        }
        Value::Dict(pairs) => pairs.iter().for_each(|(k, x)| {
            f(k);
            f(x)
        }),
        Value::Copyable(c) => c.state.iter().for_each(|(_, x)| f(x)),
        _ => {}
    }
}

/// The copying behind [`Scope::detach`] and [`renumber`].
///
/// A copy is the graph of containers reachable from its top-level values,
/// aliases followed, as Python would see the objects. Two passes: the
/// first finds the containers reached more than once (by two aliases, an
/// alias and its anchor, a cycle, or a top-level value met again inside
/// another), the second copies in the value's order, anchoring those at
/// their first occurrence and numbering the anchors as it meets them.
///
/// Only shared containers and the top-level values can be met twice:
/// every other container has one parent, met once.
struct Copier<'s, 'x> {
    scope: &'s Scope<'x>,
    /// The addresses of the copy's top-level values.
    roots: HashSet<usize>,
    /// What the first pass met more than once.
    shared: HashSet<Key>,
    /// The anchor id each shared container got in the copy.
    ids: HashMap<Key, AnchorId>,
    next: AnchorId,
}

/// A container being copied: the copy keeps an explicit stack rather than
/// recursing, because following aliases out of the copied part can nest a
/// copy deeper than any one message was.
struct Frame<'x> {
    /// The anchor id of the container in the copy, if it is shared there.
    anchor: Option<AnchorId>,
    parts: Parts<'x>,
}

enum Parts<'x> {
    Items {
        /// `Value::List`, `Value::Tuple`, ... for the copied items.
        make: fn(Vec<Value>) -> Value,
        iter: std::slice::Iter<'x, Value>,
        out: Vec<Value>,
    },
    Pairs {
        iter: std::slice::Iter<'x, (Value, Value)>,
        /// The value of the pair whose key is being copied.
        value: Option<&'x Value>,
        /// The copied key, waiting for its value.
        key: Option<Value>,
        out: Vec<(Value, Value)>,
    },
    Attrs {
        type_name: &'x Text,
        iter: std::slice::Iter<'x, (Text, Value)>,
        /// The attribute whose value is being copied.
        name: Option<&'x Text>,
        out: Vec<(Text, Value)>,
    },
}

impl<'x> Frame<'x> {
    /// A frame for the parts of `content`, or `None` if it has none.
    fn open(content: &'x Value, anchor: Option<AnchorId>) -> Option<Frame<'x>> {
        let items = |make, items: &'x [Value]| Parts::Items {
            make,
            iter: items.iter(),
            out: Vec::with_capacity(items.len()),
        };
        let parts = match content {
            Value::List(i) => items(Value::List, i),
            Value::Tuple(i) => items(Value::Tuple, i),
            Value::Set(i) => items(Value::Set, i),
            Value::FrozenSet(i) => items(Value::FrozenSet, i),
            Value::Dict(pairs) => Parts::Pairs {
                iter: pairs.iter(),
                value: None,
                key: None,
                out: Vec::with_capacity(pairs.len()),
            },
            Value::Copyable(c) => Parts::Attrs {
                type_name: &c.type_name,
                iter: c.state.iter(),
                name: None,
                out: Vec::with_capacity(c.state.len()),
            },
            _ => return None,
        };
        Some(Frame { anchor, parts })
    }

    /// The next part to copy, if any is left.
    fn next_part(&mut self) -> Option<&'x Value> {
        match &mut self.parts {
            Parts::Items { iter, .. } => iter.next(),
            Parts::Pairs { iter, value, .. } => value.take().or_else(|| {
                let (k, v) = iter.next()?;
                *value = Some(v);
                Some(k)
            }),
            Parts::Attrs { iter, name, .. } => {
                let (n, v) = iter.next()?;
                *name = Some(n);
                Some(v)
            }
        }
    }

    /// The copy of the part [`Frame::next_part`] gave last.
    fn deliver(&mut self, copy: Value) {
        match &mut self.parts {
            Parts::Items { out, .. } => out.push(copy),
            Parts::Pairs { key, out, .. } => match key.take() {
                None => *key = Some(copy),
                Some(k) => out.push((k, copy)),
            },
            Parts::Attrs { name, out, .. } => {
                let name = name.take().expect("an attribute is being copied");
                out.push((name.clone(), copy));
            }
        }
    }

    /// The finished copy of the container.
    fn finish(self) -> Value {
        let copy = match self.parts {
            Parts::Items { make, out, .. } => make(out),
            Parts::Pairs { out, .. } => Value::Dict(out),
            Parts::Attrs { type_name, out, .. } => Value::Copyable(Box::new(Copyable {
                type_name: type_name.clone(),
                state: out,
            })),
        };
        anchored(self.anchor, copy)
    }
}

/// `copy`, anchored under `anchor` if it has one.
fn anchored(anchor: Option<AnchorId>, copy: Value) -> Value {
    match anchor {
        Some(id) => Value::Anchor(id, Box::new(copy)),
        None => copy,
    }
}

impl<'s, 'x> Copier<'s, 'x> {
    /// Copies `roots` into one new message whose anchors are numbered from
    /// `next`; returns the copies and the next free id.
    fn copy(scope: &'s Scope<'x>, roots: &[&'x Value], next: AnchorId) -> (Vec<Value>, AnchorId) {
        let mut copier = Copier {
            scope,
            roots: roots.iter().map(|v| address(v)).collect(),
            shared: HashSet::new(),
            ids: HashMap::new(),
            next,
        };
        copier.find_shared(roots);
        let copies = roots.iter().map(|v| copier.copy_one(v)).collect();
        (copies, copier.next)
    }

    /// What a container of the copy is: its identity if the copy may meet
    /// it more than once, and its content (`None` for an alias the scope
    /// does not anchor).
    fn node(&self, v: &'x Value) -> (Option<Key>, Option<&'x Value>) {
        match v {
            Value::Anchor(id, inner) => (Some(Key::Id(*id)), Some(inner)),
            Value::Alias(id) => (Some(Key::Id(*id)), self.scope.anchored(*id)),
            v if is_container(v) && self.roots.contains(&address(v)) => {
                // a top-level value as resolve gave it is its anchor
                let key = match self.scope.by_address.get(&address(v)) {
                    Some(id) => Key::Id(*id),
                    None => Key::Addr(address(v)),
                };
                (Some(key), Some(v))
            }
            v => (None, Some(v)),
        }
    }

    /// The first pass: which containers the copy meets more than once.
    fn find_shared(&mut self, roots: &[&'x Value]) {
        let mut met = HashSet::new();
        let mut todo: Vec<&'x Value> = roots.to_vec();
        while let Some(v) = todo.pop() {
            let (key, content) = self.node(v);
            if let Some(key) = key {
                if !met.insert(key) {
                    self.shared.insert(key);
                    continue;
                }
            }
            if let Some(content) = content {
                for_each_part(content, |part| todo.push(part));
            }
        }
    }

    /// The second pass, for one top-level value.
    fn copy_one(&mut self, root: &'x Value) -> Value {
        let mut stack: Vec<Frame<'x>> = Vec::new();
        let mut done = self.start(root, &mut stack);
        loop {
            if let Some(copy) = done.take() {
                match stack.last_mut() {
                    None => return copy,
                    Some(top) => top.deliver(copy),
                }
            }
            let top = stack.last_mut().expect("a container is being copied");
            done = match top.next_part() {
                Some(part) => self.start(part, &mut stack),
                None => Some(stack.pop().expect("the top frame").finish()),
            };
        }
    }

    /// Starts copying `v`: its copy if it has no parts to copy, or `None`
    /// after pushing a frame for its parts.
    fn start(&mut self, v: &'x Value, stack: &mut Vec<Frame<'x>>) -> Option<Value> {
        let (key, content) = self.node(v);
        let mut anchor = None;
        if let Some(key) = key {
            if let Some(&id) = self.ids.get(&key) {
                return Some(Value::Alias(id));
            }
            // an alias to nothing gets an id too, so that it cannot be
            // taken for another anchor of the copy
            if self.shared.contains(&key) || content.is_none() {
                let id = self.next;
                self.next += 1;
                self.ids.insert(key, id);
                anchor = Some(id);
            }
        }
        let Some(content) = content else {
            return anchor.map(Value::Alias);
        };
        match Frame::open(content, anchor) {
            Some(frame) => {
                stack.push(frame);
                None
            }
            // (an anchor on something without parts is not Python's doing,
            // but is kept as it is)
            None => Some(anchored(anchor, content.clone())),
        }
    }
}

#[cfg(test)]
mod tests;
