//! `flogtool web-viewer [--port=ENDPOINT] [-t MODE] [-o] [-q] FILE`: a
//! small HTTP server (std::net, a thread per connection) showing one
//! flogfile in a browser.
//!
//! Pages: `/` (also `/welcome`) the summary — pid, application versions,
//! number of events, time span, the count of events per level (each a link
//! to `/summary/0-LEVEL`), incident triggers; `/all-events?sort=
//! nested|number|time&timestamps=MODE` every event (nested: a tree by
//! `(from, parent)`); `/summary/0-LEVEL` the events of one level;
//! `/flog.css`; `POST /reload` reads the file again and redirects to `/`.
//! Everything taken from the file is HTML-escaped.
//!
//! Requests are read with bounds ([`HttpLimits`]): the request line and the
//! headers have byte limits, a whole request must arrive within a time
//! limit, and at most a fixed number of connections are served at once
//! (more are answered `503` and closed).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use crate::http::{read_head, HeadError, HttpLimits, Request, REFUSE_DRAIN};
use foolscap_logging::level;
use foolscap_logging::repr::str_string;
use foolscap_logging::timefmt::{format_time, LocalZone, TimeMode};
use foolscap_logging::{files, format_message, Dict, ReadLimits, Value};

const FLOG_CSS: &str = "\
span.MODELINE { font-size: 60%; }
span.NOISY { color: #000080; }
span.OPERATIONAL { color: #000000; }
span.UNUSUAL { color: #000000; background-color: #ff8080; }
span.INFREQUENT { color: #000000; background-color: #ff8080; }
span.CURIOUS { color: #000000; background-color: #ff8080; }
span.WEIRD { color: #000000; background-color: #ff4040; }
span.SCARY { color: #000000; background-color: #ff4040; }
span.BAD { color: #000000; background-color: #ff0000; }
";

/// HTML-escape text (element content and quoted attribute values).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encode for a URL path segment or query value.
fn url_quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The level's class name (Python's names; `UNKNOWN` for other numbers).
fn level_class(l: i64) -> &'static str {
    level::name(l).unwrap_or("UNKNOWN")
}

/// One event of the file.
struct Ev {
    from: String,
    d: Dict,
    num: Option<i64>,
    level: i64,
    time: Option<f64>,
    /// base32 of the incarnation's text (as Python's viewer shows it)
    incarnation: String,
    is_trigger: bool,
    children: Vec<usize>,
}

impl Ev {
    fn anchor(&self) -> String {
        match self.num {
            Some(n) => format!("{}_{}_{}", url_quote(&self.from), self.incarnation, n),
            None => "no-number".into(),
        }
    }
}

/// What the viewer knows about its file.
struct Loaded {
    file: String,
    pid: Option<Value>,
    versions: Vec<(String, String)>,
    events: Vec<Ev>,
    roots: Vec<usize>,
    /// (from, num) → event, as Python's number map
    numbered: BTreeMap<(String, i64), usize>,
    levels: BTreeMap<i64, Vec<usize>>,
    first_time: Option<f64>,
    last_time: Option<f64>,
    triggers: Vec<usize>,
}

fn load(file: &str) -> Result<Loaded, String> {
    let reader =
        files::open(Path::new(file), ReadLimits::default()).map_err(|e| format!("{file}: {e}"))?;
    let mut l = Loaded {
        file: file.to_string(),
        pid: None,
        versions: Vec::new(),
        events: Vec::new(),
        roots: Vec::new(),
        numbered: BTreeMap::new(),
        levels: BTreeMap::new(),
        first_time: None,
        last_time: None,
        triggers: Vec::new(),
    };
    let mut trigger_nums: Vec<i64> = Vec::new();
    let mut index: HashMap<(String, i64), usize> = HashMap::new();
    for record in reader {
        let record = record.map_err(|e| format!("{file}: {e}"))?;
        let Some(r) = record.as_dict() else {
            return Err(format!("{file}: a record is not a dict"));
        };
        if let Some(h) = r.get("header").and_then(Value::as_dict) {
            if h.get("type").and_then(Value::as_str) == Some("incident") {
                if let Some(n) = h
                    .get("trigger")
                    .and_then(Value::as_dict)
                    .and_then(|t| t.get("num"))
                    .and_then(Value::as_i64)
                {
                    trigger_nums.push(n);
                }
            }
            l.pid = h.get("pid").cloned();
            l.versions = match h.get("versions").and_then(Value::as_dict) {
                Some(v) => {
                    let mut v: Vec<(String, String)> = v
                        .iter()
                        .map(|(k, v)| (k.to_string(), str_string(v)))
                        .collect();
                    v.sort();
                    v
                }
                None => Vec::new(),
            };
        }
        let Some(d) = r.get("d").and_then(Value::as_dict) else {
            continue;
        };
        let from = r
            .get("from")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let incarnation = match d.get("incarnation") {
            Some(Value::List(i)) | Some(Value::Tuple(i)) => i
                .first()
                .and_then(Value::as_str)
                .map(|s| foolscap_core::identity::base32(s.as_bytes()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        let num = d.get("num").and_then(Value::as_i64);
        let ev = Ev {
            num,
            level: d
                .get("level")
                .and_then(Value::as_i64)
                .unwrap_or(level::OPERATIONAL),
            time: d.get("time").and_then(Value::as_f64),
            incarnation,
            is_trigger: num.is_some_and(|n| trigger_nums.contains(&n)),
            children: Vec::new(),
            d: d.clone(),
            from,
        };
        let i = l.events.len();
        let parent = d
            .get("parent")
            .and_then(Value::as_i64)
            .and_then(|p| index.get(&(ev.from.clone(), p)).copied());
        match parent {
            Some(p) => l.events[p].children.push(i),
            None => l.roots.push(i),
        }
        if let Some(n) = num {
            index.insert((ev.from.clone(), n), i);
            l.numbered.insert((ev.from.clone(), n), i);
        }
        if let Some(t) = ev.time {
            l.first_time = Some(l.first_time.map_or(t, |f| f.min(t)));
            l.last_time = Some(l.last_time.map_or(t, |f| f.max(t)));
        }
        l.levels.entry(ev.level).or_default().push(i);
        if ev.is_trigger {
            l.triggers.push(i);
        }
        l.events.push(ev);
    }
    Ok(l)
}

/// The page renderer: the zone and `ctime` come from the tool.
struct Pages<'z> {
    zone: &'z (dyn LocalZone + Sync),
    ctime: fn(i64) -> String,
}

impl Pages<'_> {
    /// "Local=… Local=… UTC=…": the tooltip of a time.
    fn extended(&self, t: f64) -> String {
        format!(
            "Local={}  Local={}  UTC={}",
            (self.ctime)(t.floor() as i64),
            format_time(t, TimeMode::LongLocal, self.zone),
            format_time(t, TimeMode::Utc, self.zone)
        )
    }

    fn event_html(&self, e: &Ev, href_base: &str, mode: TimeMode) -> String {
        let t = e.time.unwrap_or(0.0);
        let mut msg = match format_message(&e.d) {
            Ok(m) => escape(&m),
            Err(k) => format!("[cannot format this event: {}]", escape(&k.to_string())),
        };
        if let Some(f) = e.d.get("failure") {
            // a Failure as written to a flogfile: its text is in "str"
            let text = match f.as_dict().and_then(|f| f.get("str")) {
                Some(s) => str_string(s),
                None => str_string(f),
            };
            let _ = write!(msg, " FAILURE:<pre>{}</pre>", escape(&text));
        }
        let level_s = if e.level >= level::UNUSUAL {
            level::name(e.level)
                .map(|n| format!("{n} "))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let num = e.num.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        let details = format!(
            "Event #{num}  TubID={}  Incarnation={}  {}",
            e.from,
            e.incarnation,
            self.extended(t)
        );
        let anchor = escape(&e.anchor());
        let mut out = format!(
            "<span title=\"{}\">{}</span> [<span id=\"E{anchor}\"><a href=\"{}#E{anchor}\">{num}</a></span>]: {level_s}{msg}",
            escape(&details),
            escape(&format_time(t, mode, self.zone)),
            escape(href_base),
        );
        if e.is_trigger {
            out.push_str(" [INCIDENT-TRIGGER]");
        }
        out
    }

    fn fromto(&self, t: Option<f64>) -> String {
        let Some(t) = t else { return "?".into() };
        let secs = t.floor() as i64;
        let off = self.zone.offset_at(secs);
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.unsigned_abs();
        format!(
            "<span title=\"{}\">{} ({sign}{:02}{:02})</span>",
            escape(&self.extended(t)),
            (self.ctime)(secs),
            off / 3600,
            off % 3600 / 60
        )
    }

    fn welcome(&self, l: &Loaded, mode: TimeMode) -> String {
        let mode_s = mode_name(mode);
        let mut p = String::from(
            "<html><head><title>Foolscap Log Viewer</title>\n\
             <link href=\"/flog.css\" rel=\"stylesheet\" type=\"text/css\" /></head>\n\
             <body>\n<h1>Foolscap Log Viewer</h1>\n<h2>Logfiles:</h2>\n<ul>\n",
        );
        let _ = writeln!(p, " <li>{}:\n <ul>", escape(&l.file));
        let pid = l
            .pid
            .as_ref()
            .map(str_string)
            .unwrap_or_else(|| "None".into());
        let _ = writeln!(p, "  <li>PID {}</li>", escape(&pid));
        if !l.versions.is_empty() {
            p.push_str("  <li>Application Versions:\n   <ul>\n");
            for (k, v) in &l.versions {
                let _ = writeln!(p, "    <li>{}: {}</li>", escape(k), escape(v));
            }
            p.push_str("   </ul>\n  </li>\n");
        }
        let duration = match (l.first_time, l.last_time) {
            (Some(a), Some(b)) => ((b - a) as i64).to_string(),
            _ => "?".into(),
        };
        let _ = writeln!(
            p,
            "  <li>{} events covering {duration} seconds</li>",
            l.events.len()
        );
        let _ = writeln!(
            p,
            "  <li>from {} to {}</li>",
            self.fromto(l.first_time),
            self.fromto(l.last_time)
        );
        for (lvl, evs) in &l.levels {
            let _ = writeln!(
                p,
                "  <li><a href=\"/summary/0-{lvl}?timestamps={mode_s}\">{} events</a> at level {lvl} ({})</li>",
                evs.len(),
                level_class(*lvl)
            );
        }
        if !l.triggers.is_empty() {
            p.push_str("  <li>Incident Triggers:\n   <ul>\n");
            let base = format!("/all-events?timestamps={mode_s}");
            for &t in &l.triggers {
                let _ = writeln!(
                    p,
                    "    <li>{}</li>",
                    self.event_html(&l.events[t], &base, mode)
                );
            }
            p.push_str("   </ul>\n  </li>\n");
        }
        p.push_str(" </ul>\n </li>\n</ul>\n");
        let _ = writeln!(
            p,
            "<h2><a href=\"/all-events?timestamps={mode_s}\">View All Events</a></h2>"
        );
        p.push_str(
            "<form action=\"/reload\" method=\"post\">\n \
             <input type=\"submit\" value=\"Reload Logfile\" />\n</form>\n</body></html>\n",
        );
        p
    }

    fn head(title: &str) -> String {
        format!(
            "<html><head><title>Foolscap Log Viewer</title>\n\
             <link href=\"/flog.css\" rel=\"stylesheet\" type=\"text/css\" /></head>\n\
             <body>\n<h1>{}</h1>\n",
            escape(title)
        )
    }

    fn line(&self, e: &Ev, mode: TimeMode) -> String {
        format!(
            "<li><span class=\"{}\">{}</span></li>\n",
            level_class(e.level),
            self.event_html(e, "", mode)
        )
    }

    fn all_events(&self, l: &Loaded, sort: &str, mode: TimeMode) -> String {
        let mode_s = mode_name(mode);
        let sort_q = url_quote(sort);
        let mut p = Self::head("Event Log");
        let _ = writeln!(
            p,
            "{} root events <span class=\"MODELINE\">timestamps={mode_s} (switch to \
             <a href=\"/all-events?sort={sort_q}&amp;timestamps=short-local\">local</a>, \
             <a href=\"/all-events?sort={sort_q}&amp;timestamps=utc\">utc</a>) sort={} (switch to \
             <a href=\"/all-events?timestamps={mode_s}&amp;sort=nested\">nested</a>, \
             <a href=\"/all-events?timestamps={mode_s}&amp;sort=number\">number</a>, \
             <a href=\"/all-events?timestamps={mode_s}&amp;sort=time\">time</a>)</span>",
            l.roots.len(),
            escape(sort)
        );
        p.push_str("<ul>\n");
        match sort {
            "nested" => {
                // depth-first without recursion (a deep chain of parents
                // must not exhaust the stack)
                enum Step {
                    Event(usize, usize),
                    Close(usize),
                }
                let mut stack: Vec<Step> =
                    l.roots.iter().rev().map(|&r| Step::Event(r, 0)).collect();
                while let Some(step) = stack.pop() {
                    match step {
                        Step::Event(i, depth) => {
                            let e = &l.events[i];
                            let indent = " ".repeat(depth.min(100));
                            p.push_str(&indent);
                            p.push_str(&self.line(e, mode));
                            if !e.children.is_empty() {
                                p.push_str(&indent);
                                p.push_str("<ul>\n");
                                stack.push(Step::Close(depth));
                                for &c in e.children.iter().rev() {
                                    stack.push(Step::Event(c, depth + 1));
                                }
                            }
                        }
                        Step::Close(depth) => {
                            p.push_str(&" ".repeat(depth.min(100)));
                            p.push_str("</ul>\n");
                        }
                    }
                }
            }
            "number" => {
                for &i in l.numbered.values() {
                    p.push_str(&self.line(&l.events[i], mode));
                }
            }
            "time" => {
                let mut v: Vec<usize> = l.numbered.values().copied().collect();
                v.sort_by(|a, b| {
                    let t = |i: &usize| l.events[*i].time.unwrap_or(0.0);
                    t(a).total_cmp(&t(b))
                });
                for i in v {
                    p.push_str(&self.line(&l.events[i], mode));
                }
            }
            other => {
                let _ = writeln!(p, "<b>unknown sort argument '{}'</b>", escape(other));
            }
        }
        p.push_str("</ul>\n</body></html>\n");
        p
    }

    fn level_page(&self, l: &Loaded, lvl: i64, mode: TimeMode) -> Option<String> {
        let evs = l.levels.get(&lvl)?;
        let mut p = Self::head(&format!("Events at level {lvl} ({})", level_class(lvl)));
        p.push_str("<ul>\n");
        let base = format!("/all-events?timestamps={}", mode_name(mode));
        for &i in evs {
            let _ = writeln!(p, "<li>{}</li>", self.event_html(&l.events[i], &base, mode));
        }
        p.push_str("</ul>\n</body></html>\n");
        Some(p)
    }
}

fn mode_name(m: TimeMode) -> &'static str {
    match m {
        TimeMode::ShortLocal => "short-local",
        TimeMode::LongLocal => "long-local",
        TimeMode::Utc => "utc",
        TimeMode::Epoch => "epoch",
    }
}

struct Response {
    status: &'static str,
    ctype: &'static str,
    body: String,
    location: Option<&'static str>,
}

fn page(status: &'static str, body: String) -> Response {
    Response {
        status,
        ctype: "text/html; charset=utf-8",
        body,
        location: None,
    }
}

fn error_page(status: &'static str, what: &str) -> Response {
    page(
        status,
        format!(
            "<html><head><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p></body></html>\n",
            escape(status),
            escape(what)
        ),
    )
}

/// The viewer's shared state.
struct Viewer {
    file: String,
    default_mode: TimeMode,
    loaded: RwLock<Arc<Loaded>>,
    pages: Pages<'static>,
}

impl Viewer {
    fn handle(&self, req: &Request) -> Response {
        let arg = |k: &str| {
            req.query
                .iter()
                .find(|(q, _)| q == k)
                .map(|(_, v)| v.as_str())
        };
        let mode = match arg("timestamps") {
            None => self.default_mode,
            Some(m) => match TimeMode::parse(m) {
                Some(m) => m,
                None => {
                    return error_page(
                        "400 Bad Request",
                        "timestamps= must be one of short-local, long-local, utc, epoch",
                    )
                }
            },
        };
        let get = req.method == "GET" || req.method == "HEAD";
        let l = self
            .loaded
            .read()
            .map(|g| Arc::clone(&g))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()));
        match req.path.as_str() {
            "/" | "/welcome" if get => page("200 OK", self.pages.welcome(&l, mode)),
            "/all-events" if get => {
                let sort = arg("sort").unwrap_or("nested");
                page("200 OK", self.pages.all_events(&l, sort, mode))
            }
            "/flog.css" if get => Response {
                status: "200 OK",
                ctype: "text/css",
                body: FLOG_CSS.into(),
                location: None,
            },
            "/reload" if req.method == "POST" => match load(&self.file) {
                Ok(new) => {
                    if let Ok(mut g) = self.loaded.write() {
                        *g = Arc::new(new);
                    }
                    Response {
                        status: "303 See Other",
                        ctype: "text/html; charset=utf-8",
                        body: "<html><body><a href=\"/\">reloaded</a></body></html>\n".into(),
                        location: Some("/"),
                    }
                }
                Err(e) => error_page("500 Internal Server Error", &format!("reload failed: {e}")),
            },
            "/" | "/welcome" | "/all-events" | "/flog.css" | "/reload" => {
                error_page("405 Method Not Allowed", "method not allowed here")
            }
            p if get && p.starts_with("/summary/") => {
                let what = &p["/summary/".len()..];
                let level = what
                    .split_once('-')
                    .filter(|(f, _)| *f == "0")
                    .and_then(|(_, l)| l.parse::<i64>().ok());
                match level.and_then(|lvl| self.pages.level_page(&l, lvl, mode)) {
                    Some(body) => page("200 OK", body),
                    None => error_page("404 Not Found", "no such summary"),
                }
            }
            _ => error_page("404 Not Found", "no such page"),
        }
    }
}

fn respond(mut s: &TcpStream, r: &Response, head_only: bool) {
    let mut head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        r.status,
        r.ctype,
        r.body.len()
    );
    if let Some(l) = r.location {
        let _ = write!(head, "Location: {l}\r\n");
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    if !head_only {
        let _ = s.write_all(r.body.as_bytes());
    }
    let _ = s.flush();
}

fn serve_one(viewer: &Viewer, stream: TcpStream, lim: &HttpLimits) {
    let _ = stream.set_write_timeout(Some(lim.write_timeout));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut r = BufReader::with_capacity(4096, read_half);
    let resp = match read_head(&mut r, lim) {
        Ok(req) => {
            let head_only = req.method == "HEAD";
            let resp = viewer.handle(&req);
            respond(&stream, &resp, head_only);
            None
        }
        Err(HeadError::TooLarge(w)) => Some(error_page("431 Request Header Fields Too Large", w)),
        Err(HeadError::Bad(w)) => Some(error_page("400 Bad Request", w)),
        Err(HeadError::Gone) => None,
    };
    if let Some(resp) = resp {
        respond(&stream, &resp, false);
    }
    // we answer one request per connection; the body of a POST (if any)
    // is not read: drain a little so the client sees our answer, not a reset
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = r
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)));
    let _ = r.take(64 * 1024).read_to_end(&mut Vec::new());
}

/// Parse Python's endpoint strings as far as a TCP server needs:
/// `tcp:PORT`, `tcp:PORT:interface=ADDR`, `tcp:port=PORT:interface=ADDR`,
/// or a bare `PORT`. Default interface: every interface (as Twisted).
pub fn parse_endpoint(s: &str) -> Result<(String, u16), String> {
    let mut parts = s.split(':');
    let first = parts.next().unwrap_or("");
    let rest: Vec<&str> = if first == "tcp" {
        parts.collect()
    } else {
        std::iter::once(first).chain(parts).collect()
    };
    let (mut port, mut iface) = (None, String::from("0.0.0.0"));
    for (n, p) in rest.iter().enumerate() {
        if let Some(v) = p.strip_prefix("port=") {
            port = Some(v);
        } else if let Some(v) = p.strip_prefix("interface=") {
            iface = v.to_string();
        } else if n == 0 {
            port = Some(p);
        } else {
            return Err(format!("unsupported endpoint option {p:?} in {s:?}"));
        }
    }
    let port = port
        .ok_or_else(|| format!("no port in endpoint {s:?}"))?
        .parse::<u16>()
        .map_err(|_| format!("bad port in endpoint {s:?}"))?;
    Ok((iface, port))
}

/// Options of `flogtool web-viewer`.
pub struct WebArgs {
    /// `--port` (an endpoint string); default a free port on 127.0.0.1.
    pub port: Option<String>,
    /// `-t`: the default timestamp mode of the pages.
    pub timestamps: TimeMode,
    /// `-o`: open a browser.
    pub open: bool,
    /// `-q`: print only `starting..`.
    pub quiet: bool,
    /// The flogfile.
    pub file: String,
}

/// Run the viewer until killed.
pub fn run(
    args: WebArgs,
    zone: &'static (dyn LocalZone + Sync),
    ctime: fn(i64) -> String,
) -> ExitCode {
    let mut out = io::stdout();
    let _ = writeln!(out, "starting..");
    let _ = out.flush();
    let (iface, port) = match args.port.as_deref() {
        Some(p) => match parse_endpoint(p) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("flogtool web-viewer: {e}");
                return ExitCode::from(1);
            }
        },
        None => ("127.0.0.1".to_string(), 0),
    };
    let addr = match (iface.trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            eprintln!("flogtool web-viewer: cannot resolve interface {iface}");
            return ExitCode::from(1);
        }
    };
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("flogtool web-viewer: cannot listen on {addr}: {e}");
            return ExitCode::from(1);
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let url = format!("http://localhost:{port}/");
    if !args.quiet {
        let _ = writeln!(out, "scanning..");
        let _ = out.flush();
    }
    let loaded = match load(&args.file) {
        Ok(l) => l,
        Err(e) => {
            let _ = writeln!(out, "ERROR {e}");
            return ExitCode::from(1);
        }
    };
    if !args.quiet {
        let _ = writeln!(out, "please point your browser at:\n{url}");
        let _ = out.flush();
    }
    if args.open {
        open_browser(&url);
    }
    let viewer = Arc::new(Viewer {
        file: args.file,
        default_mode: args.timestamps,
        loaded: RwLock::new(Arc::new(loaded)),
        pages: Pages { zone, ctime },
    });
    let lim = HttpLimits::default();
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(stream) = stream else {
            // out of descriptors, or the like: do not spin
            thread::sleep(Duration::from_millis(50));
            continue;
        };
        if active.fetch_add(1, Ordering::SeqCst) >= lim.max_connections {
            active.fetch_sub(1, Ordering::SeqCst);
            // read what the client sent (briefly, bounded) so that closing
            // does not reset the connection before it reads the answer
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = stream.set_read_timeout(Some(REFUSE_DRAIN));
            let mut buf = [0u8; 4096];
            let mut drained = 0;
            while drained < lim.max_request_line + lim.max_header_bytes {
                match (&stream).read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        drained += n;
                        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                }
            }
            respond(
                &stream,
                &error_page("503 Service Unavailable", "too many connections"),
                false,
            );
            let _ = stream.shutdown(std::net::Shutdown::Write);
            continue;
        }
        let (v, a) = (Arc::clone(&viewer), Arc::clone(&active));
        let spawned = thread::Builder::new().spawn(move || {
            serve_one(&v, stream, &lim);
            a.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            // the closure (and its decrement) was dropped unrun
            active.fetch_sub(1, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(50));
        }
    }
    ExitCode::SUCCESS
}

/// `-o`: run `$BROWSER URL` when a browser is configured; otherwise say so.
fn open_browser(url: &str) {
    match std::env::var_os("BROWSER").filter(|b| !b.is_empty()) {
        Some(b) => {
            if let Err(e) = std::process::Command::new(&b)
                .arg(url)
                .stdin(std::process::Stdio::null())
                .spawn()
            {
                println!("could not start the browser {b:?} ({e}); open {url} yourself");
            }
        }
        None => println!("no browser configured (set BROWSER); open {url} yourself"),
    }
}
