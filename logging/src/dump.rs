//! `flogtool dump`: the text Python's dumper prints for each record.

use crate::event::format_message;
use crate::repr::{dict_repr, str_string};
use crate::timefmt::{format_time, LocalZone, TimeMode};
use crate::value::{Dict, Value};

/// The options of `flogtool dump`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// `--verbose`: the header as a Python repr; each event's dict appended.
    pub verbose: bool,
    /// `--just-numbers`: only `<time> <num>` per event, no header.
    pub just_numbers: bool,
    /// `--rx-time`: receive time and emit time.
    pub rx_time: bool,
    /// `--timestamps`.
    pub timestamps: TimeMode,
}

/// A record the Python dumper would crash on (it prints a traceback and
/// exits 1 after the earlier output).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// A field the dumper needs is missing (Python's `KeyError`).
    #[error("KeyError: {0}")]
    MissingField(String),
    /// A field has a type the dumper cannot use (Python's `TypeError`).
    #[error("TypeError: {0}")]
    BadType(String),
    /// The event's format names a missing key; Python prints
    /// `unformattable event …` on stdout first (already in the output).
    #[error("KeyError: {0}")]
    Unformattable(String),
}

/// Renders records one at a time, remembering an incident's trigger.
pub struct Dumper<'z> {
    opts: DumpOptions,
    zone: &'z dyn LocalZone,
    trigger: Option<(Value, Value)>,
}

fn field<'a>(d: &'a Dict, key: &str) -> Result<&'a Value, DumpError> {
    d.get(key)
        .ok_or_else(|| DumpError::MissingField(format!("'{}'", key)))
}

/// Python `==` between two values (ints, floats and bools compare by value).
pub fn py_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) | (Value::Tuple(x), Value::Tuple(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| py_eq(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| py_eq(v, w)))
        }
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        },
    }
}

fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => v.as_f64(),
        _ => None,
    }
}

/// Python `"%d" % v` for the event number.
fn percent_d(v: &Value) -> Result<String, DumpError> {
    match v {
        Value::Int(i) => Ok(match i64::try_from(i) {
            Ok(small) => crate::repr::itoa_i64(small, &mut [0; 20]).to_owned(),
            Err(_) => i.to_string(),
        }),
        Value::Bool(b) => Ok((*b as i64).to_string()),
        Value::Float(f) if f.is_finite() => Ok(format!("{}", f.trunc() as i128)),
        _ => Err(DumpError::BadType(
            "%d format: a real number is required".into(),
        )),
    }
}

impl<'z> Dumper<'z> {
    /// A dumper with these options and local zone.
    pub fn new(opts: DumpOptions, zone: &'z dyn LocalZone) -> Dumper<'z> {
        Dumper {
            opts,
            zone,
            trigger: None,
        }
    }

    /// Append the lines for one record to `out`. On error `out` holds what
    /// Python printed before failing.
    pub fn record(&mut self, record: &Value, out: &mut String) -> Result<(), DumpError> {
        let Value::Dict(e) = record else {
            return Ok(());
        };
        if e.contains_key("header") {
            self.header(e, out)?;
        }
        if e.contains_key("d") {
            self.event(e, out)?;
        }
        Ok(())
    }

    fn header(&mut self, e: &Dict, out: &mut String) -> Result<(), DumpError> {
        let Some(Value::Dict(h)) = e.get("header") else {
            return Err(DumpError::BadType("header is not a dict".into()));
        };
        if matches!(field(h, "type")?, Value::Str(t) if t == "incident") {
            let Some(Value::Dict(t)) = h.get("trigger") else {
                return Err(DumpError::MissingField("'trigger'".into()));
            };
            self.trigger = Some((field(t, "incarnation")?.clone(), field(t, "num")?.clone()));
        }
        if self.opts.verbose {
            dict_repr(e, out);
            out.push('\n');
        }
        if !self.opts.just_numbers && !self.opts.verbose {
            if let Some(v) = h.get("versions") {
                let Value::Dict(v) = v else {
                    return Err(DumpError::BadType("versions is not a dict".into()));
                };
                out.push_str("Application versions (embedded in logfile):\n");
                let mut names: Vec<(&str, &Value)> = v.iter().collect();
                names.sort_by(|a, b| a.0.cmp(b.0));
                let longest = names
                    .iter()
                    .map(|(n, _)| n.chars().count())
                    .max()
                    .unwrap_or(0);
                for (name, value) in names {
                    let pad = longest - name.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                    out.push_str(name);
                    out.push_str(": ");
                    out.push_str(&str_string(value));
                    out.push('\n');
                }
            }
            if let Some(pid) = h.get("pid") {
                out.push_str("PID: ");
                out.push_str(&str_string(pid));
                out.push('\n');
            }
            out.push('\n');
        }
        Ok(())
    }

    fn time(&self, v: &Value) -> Result<String, DumpError> {
        let t = v
            .as_f64()
            .ok_or_else(|| DumpError::BadType("time is not a number".into()))?;
        Ok(format_time(t, self.opts.timestamps, self.zone))
    }

    fn event(&mut self, e: &Dict, out: &mut String) -> Result<(), DumpError> {
        let from = field(e, "from")?;
        let short: String = match from {
            Value::Str(s) => s.chars().take(8).collect(),
            Value::List(items) | Value::Tuple(items) => {
                str_string(&Value::List(items.iter().take(8).cloned().collect()))
            }
            _ => return Err(DumpError::BadType("'from' cannot be sliced".into())),
        };
        let Value::Dict(d) = field(e, "d")? else {
            return Err(DumpError::BadType("'d' is not a dict".into()));
        };
        let when = self.time(field(d, "time")?)?;
        if self.opts.just_numbers {
            out.push_str(&when);
            out.push(' ');
            out.push_str(
                &d.get("num")
                    .map(str_string)
                    .unwrap_or_else(|| "None".into()),
            );
            out.push('\n');
            return Ok(());
        }
        let incarnation = field(d, "incarnation")?;
        let num = field(d, "num")?;
        let is_trigger = self
            .trigger
            .as_ref()
            .is_some_and(|(i, n)| py_eq(i, incarnation) && py_eq(n, num));
        let text = match format_message(d) {
            Ok(t) => t,
            Err(k) => {
                out.push_str("unformattable event ");
                dict_repr(d, out);
                out.push('\n');
                return Err(DumpError::Unformattable(k.0));
            }
        };
        out.push_str(&short);
        out.push('#');
        out.push_str(&percent_d(num)?);
        out.push(' ');
        if self.opts.rx_time {
            let rx = self.time(field(e, "rx_time")?)?;
            out.push_str("rx(");
            out.push_str(&rx);
            out.push_str(") emit(");
            out.push_str(&when);
            out.push(')');
        } else {
            out.push_str(&when);
        }
        out.push_str(": ");
        out.push_str(&text);
        if self.opts.verbose {
            out.push_str(": ");
            dict_repr(d, out);
        }
        if is_trigger {
            out.push_str(" [INCIDENT-TRIGGER]");
        }
        out.push('\n');
        if let Some(f) = d.get("failure") {
            let Value::Dict(f) = f else {
                return Err(DumpError::BadType("failure has no .get".into()));
            };
            out.push_str(" FAILURE:\n");
            let s = match f.get("str") {
                Some(s) => str_string(s),
                None => str_string(&Value::Dict(f.clone())),
            };
            for line in s.split('\n') {
                out.push(' ');
                out.push_str(line);
                out.push('\n');
            }
        }
        Ok(())
    }
}
