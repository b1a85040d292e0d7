//! Schema checks as tokens arrive (docs/protocol.md §6.5): which
//! constraint the next token of the top frame must meet, Python's
//! `checkToken` on it (type and announced size, at the header), the
//! container fill rules, `checkOpentype` on a sequence's open type, and a
//! `ChoiceOf` sequence's whole value when it closes.

use super::frames::{Frame, OpenFrame, SeqKind};
use super::Deserializer;
use crate::banana::{Token, TypeByte};
use crate::schema::check::{Node, NodeId, ValueContext, Violation};
use crate::value::pb::PbFrame;
use crate::value::{DecodeError, Value};

impl Deserializer {
    /// A schema Violation at the current receive stack.
    pub(in crate::value) fn violation(&self, message: String) -> DecodeError {
        DecodeError::Violation {
            offset: self.offset,
            violation: Box::new(Violation::new(message).at(self.describe_stack())),
        }
    }

    /// Python's `describeReceive`: the receive stack, joined with `.`.
    pub(in crate::value) fn describe_stack(&self) -> String {
        let mut s = String::from("<RootUnslicer>");
        for f in &self.stack {
            s.push('.');
            s.push_str(&self.describe_frame(f));
        }
        s
    }

    fn describe_frame(&self, f: &OpenFrame) -> String {
        match &f.frame {
            Frame::Pb(PbFrame::Call {
                req_id,
                clid,
                method,
                ..
            }) => {
                let mut s = String::from("<methodcall");
                if let Some(r) = req_id {
                    s.push_str(&format!(" reqID={r}"));
                }
                if let Some(c) = clid {
                    let (obj, iface) = match self.check.as_ref().and_then(|c| c.call.as_ref()) {
                        Some(call) => (
                            crate::schema::check::describe_object(call.object),
                            call.iface.name().to_owned(),
                        ),
                        None => (format!("<object clid={c}>"), "[none]".to_owned()),
                    };
                    s.push_str(&format!(" obj={obj} iface={iface}"));
                }
                if let Some(m) = method {
                    s.push_str(&format!(" methodname={}", m.as_str()));
                }
                s.push('>');
                s
            }
            Frame::Pb(PbFrame::Arguments { count, args, name }) => {
                let mut s = String::from("<arguments");
                if let Some(n) = count {
                    let i = args.positional.len();
                    if (i as u64) < *n {
                        s.push_str(&format!(" arg[{i}]"));
                    } else if let Some(name) = name {
                        s.push_str(&format!(" arg[{}]", name.as_str()));
                    } else {
                        s.push_str(" arg[?]");
                    }
                }
                s.push('>');
                s
            }
            Frame::Pb(PbFrame::Answer { req_id, .. }) => match req_id {
                Some(r) => format!("Answer(req={r})"),
                None => "Answer(req=?)".into(),
            },
            Frame::Pb(PbFrame::Error { .. }) => "??".into(),
            Frame::Seq {
                kind: SeqKind::List | SeqKind::Tuple,
                items,
                ..
            } => format!("[{}]", items.len()),
            Frame::Seq { .. } => "??".into(),
            Frame::Dict { .. } => "{}".into(),
            Frame::Unicode(_) | Frame::Decimal(_) => "<unicode>".into(),
            Frame::Bool(_) => "<bool>".into(),
            Frame::MyRef { clid: Some(c), .. } => format!("<ref-{c}>"),
            Frame::MyRef { .. } => "<ref-?>".into(),
            Frame::Copyable { .. } => "???".into(),
            _ => "??".into(),
        }
    }

    /// The constraint the next value token of the top frame must meet,
    /// after the frame's fill rules (`None`: unchecked).
    fn slot_node(&self) -> Result<Option<NodeId>, DecodeError> {
        let Some(check) = self.check.as_ref() else {
            return Ok(None);
        };
        let plan = &check.plan;
        let Some(top) = self.stack.last() else {
            return Ok(None);
        };
        let node = match &top.frame {
            Frame::Pb(PbFrame::Arguments {
                count: Some(n),
                args,
                name,
            }) if check.declared => {
                let i = args.positional.len();
                if (i as u64) < *n {
                    match plan.args.get(i) {
                        Some((_, node)) => Some(*node),
                        None => {
                            return Err(self.violation(format!(
                                "too many positional arguments: {i} >= {}",
                                plan.args.len()
                            )))
                        }
                    }
                } else {
                    name.as_ref().and_then(|name| {
                        plan.args
                            .iter()
                            .find(|(a, _)| a == name.as_str())
                            .map(|(_, n)| *n)
                    })
                }
            }
            Frame::Pb(PbFrame::Answer {
                req_id: Some(_),
                value: None,
            }) => plan.result,
            _ => {
                let Some(node) = top.node else {
                    return Ok(None);
                };
                let full = |what: &str| Err(self.violation(format!("the {what} is full")));
                match (plan.node(node), &top.frame) {
                    (Node::List { item, max }, Frame::Seq { items, .. }) => {
                        if max.is_some_and(|m| items.len() >= m) {
                            return full("list");
                        }
                        Some(*item)
                    }
                    (Node::Tuple(cs), Frame::Seq { items, .. }) => match cs.get(items.len()) {
                        Some(c) => Some(*c),
                        None => return full("tuple"),
                    },
                    (Node::Set { item, max }, Frame::Seq { items, .. }) => {
                        if max.is_some_and(|m| items.len() >= m) {
                            return full("set");
                        }
                        Some(*item)
                    }
                    (Node::Dict { key, value, max }, Frame::Dict { pairs, key: k, .. }) => {
                        if max.is_some_and(|m| pairs.len() >= m) {
                            return full("dict");
                        }
                        Some(if k.is_none() { *key } else { *value })
                    }
                    (
                        Node::Copyable { attrs, .. },
                        Frame::Copyable {
                            attr: Some(name), ..
                        },
                    ) => attrs
                        .iter()
                        .find(|(a, _)| a == name.as_str())
                        .map(|(_, n)| *n),
                    _ => None,
                }
            }
        };
        Ok(node)
    }

    /// Python's `checkToken` for a token (OPEN or a primitive) arriving in
    /// the top frame of a schema'd message. Gives the constraint an OPEN
    /// must meet.
    pub(super) fn check_value_token(&self, token: &Token) -> Result<Option<NodeId>, DecodeError> {
        if let (
            Some(OpenFrame {
                frame: Frame::Bool(None),
                node: Some(node),
                ..
            }),
            Token::Int(v),
            Some(check),
        ) = (self.stack.last(), token, self.check.as_ref())
        {
            if let Node::Bool { value: Some(want) } = check.plan.node(*node) {
                if (*v != 0) != *want {
                    let b = if *want { "True" } else { "False" };
                    return Err(self.violation(format!("This boolean can only be {b}")));
                }
            }
        }
        let size = match token {
            Token::String(s) => s.len() as u64,
            Token::LongInt(b) | Token::LongNeg(b) => b.len() as u64,
            Token::Int(v) | Token::Neg(v) => *v,
            _ => 0,
        };
        self.check_header(token.type_byte(), size)
    }

    /// [`Deserializer::check_value_token`] from a token's header alone
    /// (a STRING or LONGINT refused before its body arrives).
    pub(super) fn check_header(
        &self,
        ty: TypeByte,
        size: u64,
    ) -> Result<Option<NodeId>, DecodeError> {
        let Some(node) = self.slot_node()? else {
            return Ok(None);
        };
        let check = self.check.as_ref().expect("slot_node found a plan");
        if let Err(r) = check.plan.check_token(node, ty, size) {
            let mut message = r.message().to_owned();
            if matches!(
                self.stack.last().map(|f| &f.frame),
                Some(Frame::Pb(PbFrame::Answer { .. }))
            ) {
                message.push_str(" in inbound method results");
            }
            return Err(self.violation(message));
        }
        Ok(Some(node))
    }

    /// Python's `checkOpentype` for the first index token of an OPEN.
    pub(super) fn check_opentype(&self, node: NodeId, name: &[u8]) -> Result<(), DecodeError> {
        let check = self.check.as_ref().expect("a node comes from a plan");
        check
            .plan
            .check_opentype(node, name)
            .map_err(|r| self.violation(r.message().to_owned()))
    }

    /// The attribute schema of copyable type `type_name`, if our side
    /// registered one: its node in the message's plan (a plan is started
    /// for a message that had none).
    pub(super) fn copyable_node(
        &mut self,
        type_name: &str,
        refs: &mut dyn crate::value::RefDecoder,
    ) -> Option<NodeId> {
        let schema = refs.copyable_schema(type_name)?;
        let check = self
            .check
            .get_or_insert_with(|| crate::value::pb::MsgCheck {
                plan: std::sync::Arc::new(crate::schema::check::Plan::empty()),
                call: None,
                declared: false,
            });
        Some(std::sync::Arc::make_mut(&mut check.plan).add_copyable(&schema))
    }

    /// A copyable attribute's name, as it arrives: one its type's schema
    /// does not name is refused (`unknown attribute 'z'`).
    pub(super) fn check_attribute(&self) -> Result<(), DecodeError> {
        let (
            Some(check),
            Some(OpenFrame {
                frame: Frame::Copyable {
                    attr: Some(name), ..
                },
                node: Some(node),
                ..
            }),
        ) = (self.check.as_ref(), self.stack.last())
        else {
            return Ok(());
        };
        if let Node::Copyable {
            attrs,
            accept_unknown: false,
        } = check.plan.node(*node)
        {
            if !attrs.iter().any(|(a, _)| a == name.as_str()) {
                return Err(self.violation(format!("unknown attribute '{}'", name.as_str())));
            }
        }
        Ok(())
    }

    /// How a new sequence meeting constraint `node` is checked: its own
    /// node, or (under `ChoiceOf`) whole when it closes.
    pub(super) fn frame_node(
        &self,
        node: Option<NodeId>,
        frame: &Frame,
    ) -> (Option<NodeId>, Option<NodeId>) {
        let (Some(node), Some(check)) = (node, self.check.as_ref()) else {
            return (None, None);
        };
        match (check.plan.node(node), frame) {
            (_, Frame::Reference(_) | Frame::Pb(_)) => (None, None),
            (Node::Any, _) => (None, None),
            (Node::Choice(_), _) => (None, Some(node)),
            _ => (Some(node), None),
        }
    }

    /// The whole value of a sequence that arrived under a `ChoiceOf`.
    pub(super) fn check_choice(&self, node: NodeId, value: &Value) -> Result<(), DecodeError> {
        let Some(check) = self.check.as_ref() else {
            return Ok(());
        };
        let Some(c) = check.plan.source(node) else {
            return Ok(());
        };
        let none = |_| None;
        let cx = ValueContext::new(&[value], &none);
        cx.check(c, value, crate::schema::check::Direction::Inbound)
            .map_err(|v| self.violation(v.message))
    }
}
