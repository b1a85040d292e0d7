//! Command-line options as Twisted's `usage.Options` reads them (it uses
//! Python's `getopt`): options come first and parsing stops at the first
//! positional argument or at `--`; a long option may be abbreviated to any
//! unique prefix; `--name=value` and `--name value` are the same; short
//! options may be grouped (`-qc text`, `-ctext`). The error texts are
//! getopt's, which both tools print.

/// One option a command accepts.
pub struct Opt {
    /// Long name, without the dashes.
    pub long: &'static str,
    /// Short letter, if any.
    pub short: Option<char>,
    /// Whether it takes a value.
    pub takes_value: bool,
}

/// A flag (no value).
pub const fn flag(long: &'static str, short: Option<char>) -> Opt {
    Opt {
        long,
        short,
        takes_value: false,
    }
}

/// An option with a value.
pub const fn param(long: &'static str, short: Option<char>) -> Opt {
    Opt {
        long,
        short,
        takes_value: true,
    }
}

/// What was given: each option by its long name (in order, so that later
/// ones win), then the positional arguments.
#[derive(Debug, Default)]
pub struct Parsed {
    pub opts: Vec<(&'static str, Option<String>)>,
    pub rest: Vec<String>,
}

impl Parsed {
    /// The last value given for `long`.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(n, _)| *n == long)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether flag `long` was given.
    pub fn has(&self, long: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == long)
    }
}

/// Parses `args` against `opts`; `Err` holds getopt's message.
pub fn parse(args: &[String], opts: &[Opt]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let opt = find_long(name, opts)?;
            let value = if opt.takes_value {
                match inline {
                    Some(v) => Some(v),
                    None => {
                        i += 1;
                        match args.get(i) {
                            Some(v) => Some(v.clone()),
                            None => return Err(format!("option --{} requires argument", opt.long)),
                        }
                    }
                }
            } else {
                if inline.is_some() {
                    return Err(format!("option --{} must not have an argument", opt.long));
                }
                None
            };
            out.opts.push((opt.long, value));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                let Some(opt) = opts.iter().find(|o| o.short == Some(c)) else {
                    return Err(format!("option -{c} not recognized"));
                };
                if opt.takes_value {
                    let tail: String = chars[j + 1..].iter().collect();
                    let v = if !tail.is_empty() {
                        tail
                    } else {
                        i += 1;
                        match args.get(i) {
                            Some(v) => v.clone(),
                            None => return Err(format!("option -{c} requires argument")),
                        }
                    };
                    out.opts.push((opt.long, Some(v)));
                    break;
                }
                out.opts.push((opt.long, None));
                j += 1;
            }
        } else {
            break;
        }
        i += 1;
    }
    out.rest = args[i.min(args.len())..].to_vec();
    Ok(out)
}

fn find_long<'o>(name: &str, opts: &'o [Opt]) -> Result<&'o Opt, String> {
    if let Some(o) = opts.iter().find(|o| o.long == name) {
        return Ok(o);
    }
    let mut matches = opts.iter().filter(|o| o.long.starts_with(name));
    match (matches.next(), matches.next()) {
        (Some(o), None) if !name.is_empty() => Ok(o),
        (Some(_), Some(_)) => Err(format!("option --{name} not a unique prefix")),
        _ => Err(format!("option --{name} not recognized")),
    }
}

/// The text `--version` prints: the versions of the Python tools this
/// implementation matches.
pub const VERSION_TEXT: &str = "Foolscap version: 24.9.0\nTwisted version: 26.10.0\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    const OPTS: &[Opt] = &[
        flag("quiet", Some('q')),
        param("comment", Some('c')),
        flag("accept-stdin", None),
    ];

    #[test]
    fn getopt_rules() {
        let p = parse(&s(&["-q", "--comm=x", "b", "--quiet"]), OPTS).unwrap();
        assert!(p.has("quiet"));
        assert_eq!(p.value("comment"), Some("x"));
        assert_eq!(p.rest, s(&["b", "--quiet"]));
        let p = parse(&s(&["-qcv", "--", "-q"]), OPTS).unwrap();
        assert_eq!(p.value("comment"), Some("v"));
        assert_eq!(p.rest, s(&["-q"]));
        assert_eq!(
            parse(&s(&["--bogus"]), OPTS).unwrap_err(),
            "option --bogus not recognized"
        );
        assert_eq!(
            parse(&s(&["--quiet=1"]), OPTS).unwrap_err(),
            "option --quiet must not have an argument"
        );
        assert_eq!(
            parse(&s(&["--comment"]), OPTS).unwrap_err(),
            "option --comment requires argument"
        );
    }
}
