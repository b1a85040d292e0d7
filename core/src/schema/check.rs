//! Applying schemas: the token-time checks the decoder runs as a call or
//! answer arrives (Python's `checkToken`, `checkOpentype` and container
//! fill rules), the whole-value checks (`checkObject`) and the texts of
//! the Violations they raise (docs/protocol.md §6.5).

use std::collections::HashMap;
use std::fmt;

use super::{Constraint, InterfaceSchema, MethodSchema, ANY_LONG_BYTES};
use crate::banana::TypeByte;
use crate::value::pyrepr::{bytes_repr, str_repr};
use crate::value::{AnchorId, Int, Value};

/// Longest text the checks build for a value's `repr` (Python truncates the
/// whole failure text to 1000 characters anyway).
const REPR_BUDGET: usize = 1100;

/// A schema rejection: Python's `foolscap.tokens.Violation`, its message and
/// where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The message (Python's `args[0]`).
    pub message: String,
    /// Where: the receive stack (`<RootUnslicer>.<methodcall ...>...`), an
    /// argument (`name=`), a method (`RIFoo.method()`), or nothing.
    pub location: Option<String>,
}

impl Violation {
    /// A Violation without a location.
    pub fn new(message: impl Into<String>) -> Violation {
        Violation {
            message: message.into(),
            location: None,
        }
    }

    /// The same with `location`.
    pub fn at(mut self, location: impl Into<String>) -> Violation {
        self.location = Some(location.into());
        self
    }
}

/// `str()` of Python's Violation: `Violation (<where>): ('<message>',)`, or
/// `Violation: ('<message>',)` without a location.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(w) => write!(f, "Violation ({w}): ({},)", str_repr(&self.message)),
            None => write!(f, "Violation: ({},)", str_repr(&self.message)),
        }
    }
}

impl std::error::Error for Violation {}

/// Why a token was refused: a Violation (the message goes, the
/// connection stays) or, for Python's strict tasters, a protocol error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    Violation(String),
    /// Python's `BananaError("invalid token type: X")` (strict tasters of
    /// `str`, `bool`, `None`): Python drops the connection.
    Protocol(String),
}

impl Reject {
    pub(crate) fn message(&self) -> &str {
        match self {
            Reject::Violation(m) | Reject::Protocol(m) => m,
        }
    }
}

/// A node of a [`Plan`].
pub(crate) type NodeId = u32;

/// One constraint of a plan, children by node number.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Any,
    Bytes {
        max: Option<usize>,
    },
    Unicode,
    Int {
        max_bytes: Option<usize>,
    },
    Number {
        max_bytes: usize,
    },
    Bool {
        value: Option<bool>,
    },
    Nothing,
    List {
        item: NodeId,
        max: Option<usize>,
    },
    Tuple(Vec<NodeId>),
    Dict {
        key: NodeId,
        value: NodeId,
        max: Option<usize>,
    },
    Set {
        item: NodeId,
        max: Option<usize>,
    },
    Choice(Vec<NodeId>),
    Reference,
    Local,
    /// A copyable's attributes (its type's `stateSchema`).
    Copyable {
        attrs: Vec<(String, NodeId)>,
        accept_unknown: bool,
    },
}

/// The constraints one message is checked against, flattened so the
/// decoder's frames can name them by number: a call's arguments or an
/// answer's result.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    nodes: Vec<Node>,
    /// Per declared argument: name, node.
    pub(crate) args: Vec<(String, NodeId)>,
    /// The result's node (answers).
    pub(crate) result: Option<NodeId>,
    /// The `ChoiceOf` constraints, whose sequences are checked whole.
    sources: Vec<(NodeId, Constraint)>,
}

impl Plan {
    /// The plan of a call's arguments.
    pub(crate) fn arguments(method: &MethodSchema) -> Plan {
        let mut p = Plan {
            nodes: Vec::new(),
            args: Vec::new(),
            result: None,
            sources: Vec::new(),
        };
        for a in method.arguments() {
            let n = p.add(a.constraint());
            p.args.push((a.name().to_owned(), n));
        }
        p
    }

    /// The plan of an answer's result.
    pub(crate) fn result(constraint: &Constraint) -> Plan {
        let mut p = Plan {
            nodes: Vec::new(),
            args: Vec::new(),
            result: None,
            sources: Vec::new(),
        };
        p.result = Some(p.add(constraint));
        p
    }

    fn add(&mut self, c: &Constraint) -> NodeId {
        let node = match c {
            Constraint::Any => Node::Any,
            Constraint::ByteString { max_length, .. } => Node::Bytes {
                // a maximum of 0 means no limit at token time
                max: max_length.filter(|&m| m != 0),
            },
            Constraint::Unicode { .. } => Node::Unicode,
            Constraint::Integer { max_bytes } => Node::Int {
                max_bytes: *max_bytes,
            },
            Constraint::Number { max_bytes } => Node::Number {
                max_bytes: *max_bytes,
            },
            Constraint::Boolean { value } => Node::Bool { value: *value },
            Constraint::Nothing => Node::Nothing,
            Constraint::List {
                item, max_length, ..
            } => {
                let item = self.add(item);
                Node::List {
                    item,
                    max: *max_length,
                }
            }
            Constraint::Tuple(items) => Node::Tuple(items.iter().map(|c| self.add(c)).collect()),
            Constraint::Dict {
                key,
                value,
                max_keys,
            } => {
                let key = self.add(key);
                let value = self.add(value);
                Node::Dict {
                    key,
                    value,
                    max: *max_keys,
                }
            }
            Constraint::Set {
                item, max_length, ..
            } => {
                let item = self.add(item);
                Node::Set {
                    item,
                    max: *max_length,
                }
            }
            Constraint::Choice(alts) => Node::Choice(alts.iter().map(|c| self.add(c)).collect()),
            Constraint::Reference { .. } => Node::Reference,
            Constraint::LocalInterface { .. } => Node::Local,
        };
        self.nodes.push(node);
        let id = (self.nodes.len() - 1) as NodeId;
        if matches!(c, Constraint::Choice(_)) {
            self.sources.push((id, c.clone()));
        }
        id
    }

    /// A plan for a message that has no schema of its own (copyable
    /// attribute schemas apply everywhere).
    pub(crate) fn empty() -> Plan {
        Plan {
            nodes: Vec::new(),
            args: Vec::new(),
            result: None,
            sources: Vec::new(),
        }
    }

    /// Adds the attribute schema of a copyable type; gives its node.
    pub(crate) fn add_copyable(&mut self, schema: &super::CopyableSchema) -> NodeId {
        let attrs = schema
            .attributes()
            .iter()
            .map(|(n, c)| (n.clone(), self.add(c)))
            .collect();
        self.nodes.push(Node::Copyable {
            attrs,
            accept_unknown: schema.accepts_unknown(),
        });
        (self.nodes.len() - 1) as NodeId
    }

    /// The constraint a `ChoiceOf` node was made from.
    pub(crate) fn source(&self, id: NodeId) -> Option<&Constraint> {
        self.sources.iter().find(|(n, _)| *n == id).map(|(_, c)| c)
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// Python's `checkToken(typebyte, size)` of constraint `id`.
    #[inline]
    pub(crate) fn check_token(&self, id: NodeId, ty: TypeByte, size: u64) -> Result<(), Reject> {
        use TypeByte::*;
        // the common tokens first, accepted as `check_token_slow` accepts
        // them
        match (self.node(id), ty) {
            (Node::Int { .. } | Node::Number { .. }, Int | Neg) => Ok(()),
            (Node::Any, Int | Neg | String | Open | Vocab | Float) => Ok(()),
            _ => self.check_token_slow(id, ty, size),
        }
    }

    #[inline(never)]
    fn check_token_slow(&self, id: NodeId, ty: TypeByte, size: u64) -> Result<(), Reject> {
        use TypeByte::*;
        let name = ty.name();
        let limit = |limit: Option<usize>| -> Result<(), Reject> {
            match limit {
                Some(l) if size > l as u64 => Err(Reject::Violation(format!(
                    "{name} token too large: {size}>{l}"
                ))),
                _ => Ok(()),
            }
        };
        let refuse = |cname: &str| {
            Err(Reject::Violation(format!(
                "{name} token rejected by {cname}"
            )))
        };
        let strict = || Err(Reject::Protocol(format!("invalid token type: {name}")));
        match self.node(id) {
            Node::Any => match ty {
                LongInt | LongNeg => limit(Some(ANY_LONG_BYTES)),
                _ => Ok(()),
            },
            Node::Bytes { max } => match ty {
                String => limit(*max),
                Vocab => Ok(()),
                _ => refuse("ByteStringConstraint"),
            },
            Node::Int { max_bytes } => match (ty, max_bytes) {
                (Int | Neg, _) => Ok(()),
                (LongInt | LongNeg, Some(m)) => limit(Some(*m)),
                _ => refuse("IntegerConstraint"),
            },
            Node::Number { max_bytes } => match ty {
                Int | Neg | Float => Ok(()),
                LongInt | LongNeg => limit(Some(*max_bytes)),
                _ => refuse("NumberConstraint"),
            },
            Node::Unicode | Node::Bool { .. } | Node::Nothing => match ty {
                Open => Ok(()),
                _ => strict(),
            },
            Node::List { .. } => match ty {
                Open => Ok(()),
                _ => refuse("ListConstraint"),
            },
            Node::Tuple(_) => match ty {
                Open => Ok(()),
                _ => refuse("TupleConstraint"),
            },
            Node::Dict { .. } => match ty {
                Open => Ok(()),
                _ => refuse("DictConstraint"),
            },
            Node::Set { .. } => match ty {
                Open => Ok(()),
                _ => refuse("SetConstraint"),
            },
            Node::Reference => match ty {
                Open => Ok(()),
                _ => refuse("RemoteInterfaceConstraint"),
            },
            Node::Local => refuse("LocalInterfaceConstraint"),
            Node::Copyable { .. } => match ty {
                Open => Ok(()),
                _ => refuse("AttributeDictConstraint"),
            },
            Node::Choice(alts) => {
                if alts.iter().any(|&a| self.check_token(a, ty, size).is_ok()) {
                    Ok(())
                } else {
                    Err(Reject::Violation(format!(
                        "typebyte {name} does not satisfy any of {}",
                        self.alternatives(alts)
                    )))
                }
            }
        }
    }

    /// The open types constraint `id` accepts (`None`: all).
    fn opentypes(&self, id: NodeId) -> Option<Vec<&'static str>> {
        Some(match self.node(id) {
            Node::Any => return None,
            Node::Bytes { .. } | Node::Int { .. } | Node::Number { .. } | Node::Local => vec![],
            Node::Unicode => vec!["unicode"],
            Node::Bool { .. } => vec!["boolean"],
            Node::Nothing => vec!["none"],
            Node::List { .. } => vec!["list"],
            Node::Tuple(_) => vec!["tuple"],
            Node::Dict { .. } => vec!["dict"],
            Node::Set { .. } => vec!["set", "immutable-set"],
            Node::Reference => vec!["my-reference", "their-reference"],
            Node::Copyable { .. } => vec!["copyable"],
            Node::Choice(alts) => {
                let mut all = Vec::new();
                for &a in alts {
                    match self.opentypes(a) {
                        None => return None,
                        Some(t) => {
                            for name in t {
                                if !all.contains(&name) {
                                    all.push(name);
                                }
                            }
                        }
                    }
                }
                all
            }
        })
    }

    /// Python's `checkOpentype`: the first index token of an OPEN under
    /// constraint `id`. A `reference` (shared object) always passes.
    /// Under a `ChoiceOf`, the union of the alternatives' open types
    /// (Python accepts every open type there and then fails an internal
    /// assertion for most: docs/protocol.md §6.5).
    pub(crate) fn check_opentype(&self, id: NodeId, name: &[u8]) -> Result<(), Reject> {
        if name == b"reference" {
            return Ok(());
        }
        let Some(types) = self.opentypes(id) else {
            return Ok(());
        };
        if types.iter().any(|t| t.as_bytes() == name) {
            return Ok(());
        }
        let list: Vec<String> = types
            .iter()
            .map(|t| format!("({},)", str_repr(t)))
            .collect();
        Err(Reject::Violation(format!(
            "unacceptable OPEN type: ({},) not in my list [{}]",
            str_repr(&String::from_utf8_lossy(name)),
            list.join(", ")
        )))
    }

    fn alternatives(&self, alts: &[NodeId]) -> String {
        let names: Vec<String> = alts
            .iter()
            .map(|&a| format!("<{} object>", self.class_name(a)))
            .collect();
        tuple_text(&names)
    }

    fn class_name(&self, id: NodeId) -> &'static str {
        match self.node(id) {
            Node::Any => "foolscap.constraint.Any",
            Node::Bytes { .. } => "foolscap.constraint.ByteStringConstraint",
            Node::Unicode => "foolscap.slicers.unicode.UnicodeConstraint",
            Node::Int { .. } => "foolscap.constraint.IntegerConstraint",
            Node::Number { .. } => "foolscap.constraint.NumberConstraint",
            Node::Bool { .. } => "foolscap.slicers.bool.BooleanConstraint",
            Node::Nothing => "foolscap.slicers.none.Nothing",
            Node::List { .. } => "foolscap.slicers.list.ListConstraint",
            Node::Tuple(_) => "foolscap.slicers.tuple.TupleConstraint",
            Node::Dict { .. } => "foolscap.slicers.dict.DictConstraint",
            Node::Set { .. } => "foolscap.slicers.set.SetConstraint",
            Node::Choice(_) => "foolscap.schema.PolyConstraint",
            Node::Reference => "foolscap.remoteinterface.RemoteInterfaceConstraint",
            Node::Local => "foolscap.remoteinterface.LocalInterfaceConstraint",
            Node::Copyable { .. } => "foolscap.copyable.AttributeDictConstraint",
        }
    }
}

/// Python's repr of a tuple of already-formatted items.
fn tuple_text(items: &[String]) -> String {
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

/// Python's class name of a constraint (for `ChoiceOf` messages).
fn constraint_class(c: &Constraint) -> &'static str {
    let mut p = Plan::result(&Constraint::Any);
    p.sources.clear();
    let id = p.add(c);
    p.class_name(id)
}

/// Which way a value travels when checked whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received (P3): Python's `checkObject(obj, inbound=True)`.
    Inbound,
    /// About to be sent (our call's arguments, our answer): Python's
    /// checks with `inbound=False`, plus refusing what a Python receiver
    /// would drop the connection for (a frozenset for `SetOf`, a
    /// container or text under a `ChoiceOf` that has an OPEN alternative).
    Outbound,
}

/// How references and the values of a message are looked at by the
/// whole-value checks.
pub struct ValueContext<'a> {
    roots: Roots<'a>,
    /// The anchors of the roots, found on the first alias met.
    anchors: std::cell::OnceCell<HashMap<AnchorId, &'a Value>>,
    /// The interface name a [`Value::Local`] object is announced with.
    pub local_interface: &'a dyn Fn(crate::id::ObjectId) -> Option<String>,
}

/// The values a [`ValueContext`]'s aliases point into.
enum Roots<'a> {
    Values(smallvec::SmallVec<[&'a Value; 4]>),
    /// A call's positional, then keyword, argument values.
    Call(&'a [Value], &'a [(crate::value::Text, Value)]),
}

impl<'a> ValueContext<'a> {
    /// A context for values whose aliases point into `roots`.
    pub fn new(
        roots: &[&'a Value],
        local_interface: &'a dyn Fn(crate::id::ObjectId) -> Option<String>,
    ) -> ValueContext<'a> {
        ValueContext {
            roots: Roots::Values(roots.iter().copied().collect()),
            anchors: std::cell::OnceCell::new(),
            local_interface,
        }
    }

    /// A context for a call's arguments (no table of roots is built
    /// unless an alias needs the anchors).
    pub(crate) fn for_call(
        args: &'a [Value],
        kwargs: &'a [(crate::value::Text, Value)],
        local_interface: &'a dyn Fn(crate::id::ObjectId) -> Option<String>,
    ) -> ValueContext<'a> {
        ValueContext {
            roots: Roots::Call(args, kwargs),
            anchors: std::cell::OnceCell::new(),
            local_interface,
        }
    }

    /// The anchors of the roots, found when the first alias is met.
    fn anchors(&self) -> &HashMap<AnchorId, &'a Value> {
        self.anchors.get_or_init(|| {
            let mut anchors = HashMap::new();
            let mut todo: Vec<&'a Value> = match &self.roots {
                Roots::Values(r) => r.to_vec(),
                Roots::Call(args, kwargs) => {
                    args.iter().chain(kwargs.iter().map(|(_, v)| v)).collect()
                }
            };
            while let Some(v) = todo.pop() {
                match v {
                    Value::Anchor(id, inner) => {
                        anchors.insert(*id, &**inner);
                        todo.push(inner);
                    }
                    Value::List(i) | Value::Tuple(i) | Value::Set(i) | Value::FrozenSet(i) => {
                        todo.extend(i)
                    }
                    Value::Dict(p) => p.iter().for_each(|(k, x)| todo.extend([k, x])),
                    Value::Copyable(c) => todo.extend(c.state.iter().map(|(_, x)| x)),
                    _ => {}
                }
            }
            anchors
        })
    }

    fn resolve<'b>(&'b self, v: &'b Value) -> &'b Value {
        match v {
            Value::Anchor(_, inner) => inner,
            Value::Alias(id) => self.anchors().get(id).copied().unwrap_or(v),
            v => v,
        }
    }

    /// Python's `constraint.checkObject(value, inbound)`.
    #[inline]
    pub fn check(&self, c: &Constraint, value: &Value, dir: Direction) -> Result<(), Violation> {
        match leaf(c, value) {
            Some(r) => r,
            None => self.check_depth(c, value, dir, 0),
        }
    }

    fn check_depth(
        &self,
        c: &Constraint,
        value: &Value,
        dir: Direction,
        depth: usize,
    ) -> Result<(), Violation> {
        // constraints are finite trees; aliases may loop through lists
        if depth > 10_000 {
            return Ok(());
        }
        let v = self.resolve(value);
        let fail = |m: String| Err(Violation::new(m));
        let next = depth + 1;
        match c {
            Constraint::Any => Ok(()),
            Constraint::ByteString {
                max_length,
                min_length,
            } => {
                let Value::Bytes(b) = v else {
                    return fail(format!("'{}' is not a bytestring", self.repr(v)));
                };
                if let Some(m) = max_length {
                    if b.len() > *m {
                        return fail(format!("string too long ({} > {m})", b.len()));
                    }
                }
                if b.len() < *min_length {
                    return fail(format!("string too short ({} < {min_length})", b.len()));
                }
                Ok(())
            }
            Constraint::Unicode {
                max_length,
                min_length,
                regexp,
            } => {
                let Value::Str(s) = v else {
                    return fail("not a unicode object".into());
                };
                let n = s.as_str().chars().count();
                if let Some(m) = max_length {
                    if n > *m {
                        return fail(format!("string too long ({n} > {m})"));
                    }
                }
                if n < *min_length {
                    return fail(format!("string too short ({n} < {min_length})"));
                }
                if let Some(pattern) = regexp {
                    if !regexp_matches(pattern, s.as_str()) {
                        return fail("regexp failed to match".into());
                    }
                }
                Ok(())
            }
            Constraint::Integer { max_bytes } => check_int(self, v, *max_bytes, false),
            Constraint::Number { max_bytes } => check_int(self, v, Some(*max_bytes), true),
            Constraint::Boolean { value: want } => {
                let Value::Bool(b) = v else {
                    return fail("not a bool".into());
                };
                match want {
                    Some(w) if w != b => fail(format!("not {}", py_bool(*w))),
                    _ => Ok(()),
                }
            }
            Constraint::Nothing => match v {
                Value::None => Ok(()),
                other => fail(format!("'{}' is not None", self.str_of(other))),
            },
            Constraint::List {
                item,
                max_length,
                min_length,
            } => {
                let Value::List(items) = v else {
                    return fail("not a list".into());
                };
                if max_length.is_some_and(|m| items.len() > m) {
                    return fail("list too long".into());
                }
                if items.len() < *min_length {
                    return fail("list too short".into());
                }
                for i in items {
                    self.check_depth(item, i, dir, next)?;
                }
                Ok(())
            }
            Constraint::Tuple(cs) => {
                let Value::Tuple(items) = v else {
                    return fail("not a tuple".into());
                };
                if items.len() != cs.len() {
                    return fail("wrong size tuple".into());
                }
                for (c, i) in cs.iter().zip(items) {
                    self.check_depth(c, i, dir, next)?;
                }
                Ok(())
            }
            Constraint::Dict {
                key,
                value: vc,
                max_keys,
            } => {
                let Value::Dict(pairs) = v else {
                    return fail(format!(
                        "'{}' ({}) is not a Dictionary",
                        self.str_of(v),
                        py_type(v)
                    ));
                };
                if let Some(m) = max_keys {
                    if pairs.len() > *m {
                        return fail(format!("Dict keys={} > maxKeys={m}", pairs.len()));
                    }
                }
                for (k, x) in pairs {
                    self.check_depth(key, k, dir, next)?;
                    self.check_depth(vc, x, dir, next)?;
                }
                Ok(())
            }
            Constraint::Set {
                item,
                max_length,
                mutable,
            } => {
                let (items, is_mutable) = match v {
                    Value::Set(i) => (i, true),
                    Value::FrozenSet(i) => (i, false),
                    _ => return fail("not a set".into()),
                };
                if *mutable == Some(true) && !is_mutable {
                    return fail("obj is a set, but not a mutable one".into());
                }
                if *mutable == Some(false) && is_mutable {
                    return fail("obj is a set, but not an immutable one".into());
                }
                // a Python receiver fails an assertion on an immutable-set
                // under SetOf and drops the connection: never send one
                if dir == Direction::Outbound && !is_mutable {
                    return fail("obj is a set, but not a mutable one".into());
                }
                if max_length.is_some_and(|m| items.len() > m) {
                    return fail("set is too large".into());
                }
                for i in items {
                    self.check_depth(item, i, dir, next)?;
                }
                Ok(())
            }
            Constraint::Choice(alts) => {
                if dir == Direction::Outbound && choice_would_crash(alts, v) {
                    return fail(format!(
                        "a {} under ChoiceOf makes a Python receiver drop the connection",
                        v.type_name()
                    ));
                }
                if alts
                    .iter()
                    .any(|a| self.check_depth(a, value, dir, next).is_ok())
                {
                    return Ok(());
                }
                let names: Vec<String> = alts
                    .iter()
                    .map(|a| format!("<{} object>", constraint_class(a)))
                    .collect();
                fail(format!(
                    "object type {} does not satisfy any of {}",
                    py_type(v),
                    tuple_text(&names)
                ))
            }
            Constraint::Reference { interface } => {
                let announced = match v {
                    Value::Remote(r) => Some(String::from_utf8_lossy(r.interface()).into_owned()),
                    Value::Local(o) if dir == Direction::Outbound => {
                        Some((self.local_interface)(*o).unwrap_or_default())
                    }
                    _ => None,
                };
                let Some(announced) = announced else {
                    let what = match interface {
                        Some(i) => i.as_str(),
                        None => "None",
                    };
                    return if dir == Direction::Outbound {
                        fail(format!("'{}' is not a Referenceable", self.repr(v)))
                    } else {
                        fail(format!(
                            "'{}' does not provide RemoteInterface {what}, and doesn't even look like a RemoteReference",
                            self.repr(v)
                        ))
                    };
                };
                match interface {
                    Some(i) if announced != *i => fail(format!(
                        "'{}' does not provide RemoteInterface {i}",
                        self.repr(v)
                    )),
                    _ => Ok(()),
                }
            }
            Constraint::LocalInterface { name } => fail(format!(
                "'{}' does not provide interface {name}",
                self.repr(v)
            )),
        }
    }

    /// Python's `str` of a value: text as it is, anything else as its
    /// `repr`.
    pub fn str_of(&self, v: &Value) -> String {
        match self.resolve(v) {
            Value::Str(s) => s.as_str().chars().take(REPR_BUDGET).collect(),
            other => self.repr(other),
        }
    }

    /// Python's `repr` of a value, cut short past `REPR_BUDGET` characters.
    pub fn repr(&self, v: &Value) -> String {
        let mut out = String::new();
        self.write_repr(v, &mut out, 0);
        out
    }

    fn write_repr(&self, v: &Value, out: &mut String, depth: usize) {
        if out.len() > REPR_BUDGET || depth > 50 {
            out.push_str("...");
            return;
        }
        let v = self.resolve(v);
        let seq = |me: &Self, items: &[Value], out: &mut String, open: &str, close: &str| {
            out.push_str(open);
            for (n, i) in items.iter().enumerate() {
                if n > 0 {
                    out.push_str(", ");
                }
                if out.len() > REPR_BUDGET {
                    out.push_str("...");
                    break;
                }
                me.write_repr(i, out, depth + 1);
            }
            out.push_str(close);
        };
        match v {
            Value::None => out.push_str("None"),
            Value::Bool(b) => out.push_str(py_bool(*b)),
            Value::Int(i) => out.push_str(&i.to_bigint().to_string()),
            Value::Float(f) => out.push_str(&py_float(*f)),
            Value::Bytes(b) => {
                let cut = &b[..b.len().min(REPR_BUDGET)];
                out.push_str(&bytes_repr(cut))
            }
            Value::Str(s) => {
                let cut: String = s.as_str().chars().take(REPR_BUDGET).collect();
                out.push_str(&str_repr(&cut))
            }
            Value::Decimal(_) => out.push_str("Decimal(...)"),
            Value::List(i) => seq(self, i, out, "[", "]"),
            Value::Tuple(i) if i.len() == 1 => seq(self, i, out, "(", ",)"),
            Value::Tuple(i) => seq(self, i, out, "(", ")"),
            Value::Set(i) if i.is_empty() => out.push_str("set()"),
            Value::Set(i) => seq(self, i, out, "{", "}"),
            Value::FrozenSet(i) if i.is_empty() => out.push_str("frozenset()"),
            Value::FrozenSet(i) => seq(self, i, out, "frozenset({", "})"),
            Value::Dict(pairs) => {
                out.push('{');
                for (n, (k, x)) in pairs.iter().enumerate() {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    if out.len() > REPR_BUDGET {
                        out.push_str("...");
                        break;
                    }
                    self.write_repr(k, out, depth + 1);
                    out.push_str(": ");
                    self.write_repr(x, out, depth + 1);
                }
                out.push('}');
            }
            Value::Anchor(..) | Value::Alias(_) => out.push_str("[...]"),
            Value::Copyable(c) => {
                out.push_str(&format!("<{} object>", c.type_name.as_str()));
            }
            Value::Local(o) => out.push_str(&format!("<local object {}>", o.0)),
            Value::Remote(r) => out.push_str(&format!("<RemoteReference at clid {}>", r.clid())),
        }
    }
}

fn check_int(
    cx: &ValueContext<'_>,
    v: &Value,
    max_bytes: Option<usize>,
    float_ok: bool,
) -> Result<(), Violation> {
    let i = match v {
        Value::Float(_) if float_ok => return Ok(()),
        // the common small int, without a BigInt
        Value::Int(Int::Small(i)) => return small_int(*i, max_bytes),
        Value::Int(i) => i.to_bigint(),
        // Python's bool is an int
        Value::Bool(b) => (*b as i64).into(),
        other => {
            let r = cx.repr(other);
            return Err(Violation::new(format!("'{r}' is not a number")));
        }
    };
    let too_large = match max_bytes {
        None => i >= (1i64 << 31).into() || i < (-(1i64 << 31)).into(),
        Some(n) => i.magnitude().bits() > (8 * n) as u64,
    };
    if too_large {
        return Err(Violation::new("number too large"));
    }
    Ok(())
}

/// The common leaves of [`ValueContext::check`], checked as `check_depth`
/// checks them (no context needed); `None` for the rest.
#[inline(always)]
fn leaf(c: &Constraint, value: &Value) -> Option<Result<(), Violation>> {
    match (c, value) {
        (Constraint::Any, _) => Some(Ok(())),
        (Constraint::Integer { max_bytes }, Value::Int(Int::Small(i))) => {
            Some(small_int(*i, *max_bytes))
        }
        (Constraint::Number { max_bytes }, Value::Int(Int::Small(i))) => {
            Some(small_int(*i, Some(*max_bytes)))
        }
        _ => None,
    }
}

/// [`check_int`] of an `i64`: within 32 bits signed without
/// `maxBytes`, else within `8 * maxBytes` bits of magnitude.
#[inline]
fn small_int(i: i64, max_bytes: Option<usize>) -> Result<(), Violation> {
    let too_large = match max_bytes {
        None => !(-(1i64 << 31)..1i64 << 31).contains(&i),
        Some(n) => u64::from(64 - i.unsigned_abs().leading_zeros()) > (8 * n) as u64,
    };
    if too_large {
        return Err(Violation::new("number too large"));
    }
    Ok(())
}

/// Whether sending `v` under `ChoiceOf(alts)` makes a Python receiver fail
/// its internal assertion: a `list`, `unicode`, `tuple`, `dict`, `set`,
/// `immutable-set`, `boolean` or `decimal` sequence, when some alternative
/// accepts OPEN tokens.
fn choice_would_crash(alts: &[Constraint], v: &Value) -> bool {
    let container = matches!(
        v,
        Value::List(_)
            | Value::Str(_)
            | Value::Tuple(_)
            | Value::Dict(_)
            | Value::Set(_)
            | Value::FrozenSet(_)
            | Value::Bool(_)
            | Value::Decimal(_)
    );
    container
        && alts.iter().any(|a| {
            !matches!(
                a,
                Constraint::ByteString { .. }
                    | Constraint::Integer { .. }
                    | Constraint::Number { .. }
                    | Constraint::LocalInterface { .. }
            )
        })
}

/// Python's `re.compile(pattern).search(text)`. Patterns come from our own
/// declarations; the compiled ones are kept (up to 256 distinct). A
/// pattern the `regex` crate cannot compile matches nothing.
fn regexp_matches(pattern: &str, text: &str) -> bool {
    use std::sync::{Arc, Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<regex::Regex>>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    let re = match map.get(pattern) {
        Some(re) => re.clone(),
        None => {
            let re = regex::Regex::new(pattern).ok().map(Arc::new);
            if map.len() < 256 {
                map.insert(pattern.to_owned(), re.clone());
            }
            re
        }
    };
    drop(map);
    re.is_some_and(|re| re.is_match(text))
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// How a local object appears in Violation locations, where Python shows
/// `str(obj)` (`<module.Class object at 0x...>`): we have no class name or
/// address to show.
pub fn describe_object(object: crate::id::ObjectId) -> String {
    format!("<foolscap-rs object {}>", object.0)
}

/// Python's `type(obj)` text for a received value.
pub(crate) fn py_type(v: &Value) -> &'static str {
    match v {
        Value::None => "<class 'NoneType'>",
        Value::Bool(_) => "<class 'bool'>",
        Value::Int(_) => "<class 'int'>",
        Value::Float(_) => "<class 'float'>",
        Value::Bytes(_) => "<class 'bytes'>",
        Value::Str(_) => "<class 'str'>",
        Value::Decimal(_) => "<class 'decimal.Decimal'>",
        Value::List(_) => "<class 'list'>",
        Value::Tuple(_) => "<class 'tuple'>",
        Value::Set(_) => "<class 'set'>",
        Value::FrozenSet(_) => "<class 'frozenset'>",
        Value::Dict(_) => "<class 'dict'>",
        Value::Anchor(_, inner) => py_type(inner),
        Value::Alias(_) => "<class 'object'>",
        Value::Copyable(_) => "<class 'foolscap.copyable.RemoteCopy'>",
        Value::Local(_) => "<class 'foolscap.referenceable.Referenceable'>",
        Value::Remote(_) => "<class 'foolscap.referenceable.RemoteReference'>",
    }
}

/// Python's `checkAllArgs(args, kwargs, inbound)` for `method` of
/// `iface`: positional arguments mapped to names, each checked whole
/// (located at `name=`), then the required ones that are missing.
/// Outbound (our own call) the argument-list errors are located at
/// `RIFoo.method()`, as Python's caller reports them.
pub fn check_call(
    iface: &InterfaceSchema,
    method: &MethodSchema,
    args: &[Value],
    kwargs: &[(crate::value::Text, Value)],
    dir: Direction,
    local_interface: &dyn Fn(crate::id::ObjectId) -> Option<String>,
) -> Result<(), Violation> {
    if method.is_unconstrained() {
        return Ok(());
    }
    let declared = method.arguments();
    if args.len() > declared.len() {
        return Err(list_error(
            iface,
            method,
            dir,
            format!(
                "method takes {} positional arguments ({} given)",
                declared.len(),
                args.len()
            ),
        ));
    }
    // the names given: the first `args.len()` declared ones, then the
    // keywords in order (no table built: calls have few arguments)
    let positional = &declared[..args.len()];
    for (k, (name, _)) in kwargs.iter().enumerate() {
        let name = name.as_str();
        if positional.iter().any(|a| a.name() == name)
            || kwargs[..k].iter().any(|(n, _)| n.as_str() == name)
        {
            return Err(list_error(
                iface,
                method,
                dir,
                format!("got multiple values for keyword argument '{name}'"),
            ));
        }
    }
    let cx = ValueContext::for_call(args, kwargs, local_interface);
    for (i, v) in args.iter().enumerate() {
        let name = declared[i].name();
        // the first argument of that name (as a lookup by name finds it)
        let arg = if method.has_distinct_names() {
            &declared[i]
        } else {
            declared[..i]
                .iter()
                .find(|a| a.name() == name)
                .unwrap_or(&declared[i])
        };
        let r = match leaf(arg.constraint(), v) {
            Some(r) => r,
            None => cx.check_depth(arg.constraint(), v, dir, 0),
        };
        if let Err(e) = r {
            return Err(located(iface, method, dir, e, name));
        }
    }
    for (name, v) in kwargs {
        let name = name.as_str();
        let Some((_, arg)) = method.argument(name) else {
            return Err(list_error(
                iface,
                method,
                dir,
                format!("unknown argument '{name}'"),
            ));
        };
        if let Err(e) = cx.check(arg.constraint(), v, dir) {
            return Err(located(iface, method, dir, e, name));
        }
    }
    for a in &declared[args.len()..] {
        if a.is_required()
            && !positional.iter().any(|p| p.name() == a.name())
            && !kwargs.iter().any(|(n, _)| n.as_str() == a.name())
        {
            return Err(list_error(
                iface,
                method,
                dir,
                format!("missing required argument '{}'", a.name()),
            ));
        }
    }
    Ok(())
}

/// An argument-list error of [`check_call`]: outbound (our own call)
/// located at `RIFoo.method()`, as Python's caller reports it.
#[cold]
fn list_error(
    iface: &InterfaceSchema,
    method: &MethodSchema,
    dir: Direction,
    message: String,
) -> Violation {
    let v = Violation::new(message);
    if dir == Direction::Outbound {
        v.at(format!("{}.{}()", iface.name(), method.name()))
    } else {
        v
    }
}

/// An argument's Violation of [`check_call`], located at `name=`
/// (inbound) or `RIFoo.method(name=)` (outbound).
#[cold]
fn located(
    iface: &InterfaceSchema,
    method: &MethodSchema,
    dir: Direction,
    e: Violation,
    name: &str,
) -> Violation {
    let at = match dir {
        Direction::Inbound => format!("{name}="),
        Direction::Outbound => format!("{}.{}({name}=)", iface.name(), method.name()),
    };
    e.at(at)
}

/// Python's check of a method's result before it is sent (P4), or of an
/// answer's value: located by the caller.
pub fn check_result(
    method: &MethodSchema,
    value: &Value,
    dir: Direction,
    local_interface: &dyn Fn(crate::id::ObjectId) -> Option<String>,
) -> Result<(), Violation> {
    if method.is_unconstrained() {
        return Ok(());
    }
    let cx = ValueContext::for_call(std::slice::from_ref(value), &[], local_interface);
    cx.check(method.returns(), value, dir)
}
