//! Section citations keep resolving: every `§N` or `§N.M` in a `.rs` or
//! `.md` file of the repository must name a heading of `docs/protocol.md`.
//!
//! Comments cite the protocol notes by section ("docs/protocol.md §5.4",
//! "§5.4-5.8, 6"); when the notes are renumbered or a section goes away,
//! this test names every citation left dangling. Understood forms: a
//! single section, a range (`§5.4-5.8`: both ends are checked; an end
//! without a dot stays in the start's chapter, so `§5.4-8` means 5.8) and
//! a comma-separated list after one sign (`§2, 3.8, 6`).
//!
//! This file spells the section sign as an escape so that it cites
//! nothing itself.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The section sign.
const SIGN: char = '\u{a7}';

/// The notes every citation points into.
const NOTES: &str = "docs/protocol.md";

/// Directories never scanned, at any depth: build output (including
/// `fuzz/target`, and the Python virtualenv under `target/`) and git's
/// own data.
const SKIPPED_DIRS: [&str; 2] = ["target", ".git"];

/// A section number as written: `5` or `5.4`.
fn parse_number(s: &str) -> Option<(String, &str)> {
    let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
    let n = digits(s);
    if n == 0 {
        return None;
    }
    let (major, rest) = s.split_at(n);
    if let Some(after_dot) = rest.strip_prefix('.') {
        let m = digits(after_dot);
        if m > 0 {
            let (minor, rest) = after_dot.split_at(m);
            return Some((format!("{major}.{minor}"), rest));
        }
    }
    Some((major.to_string(), rest))
}

/// The sections one line cites, each with the text of its citation.
fn citations(line: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices(SIGN) {
        let cited = &line[at + SIGN.len_utf8()..];
        let mut rest = cited;
        let mut sections = Vec::new();
        while let Some((start, after)) = parse_number(rest) {
            rest = after;
            sections.push(start.clone());
            let dash = rest
                .strip_prefix('-')
                .or_else(|| rest.strip_prefix('\u{2013}'));
            if let Some((end, after)) = dash.and_then(parse_number) {
                rest = after;
                let end = match start.split_once('.') {
                    Some((chapter, _)) if !end.contains('.') => format!("{chapter}.{end}"),
                    _ => end,
                };
                sections.push(end);
            }
            // a list goes on only when a number follows the comma
            match rest.strip_prefix(',') {
                Some(after) if parse_number(after.trim_start()).is_some() => {
                    rest = after.trim_start();
                }
                _ => break,
            }
        }
        let text: String = cited[..cited.len() - rest.len()].trim_end().to_string();
        for s in sections {
            found.push((s, format!("{SIGN}{text}")));
        }
    }
    found
}

/// The section numbers of the notes' headings (`## §3.5 Hello`), with the
/// line each is on.
fn headings(notes: &str) -> BTreeMap<String, Vec<usize>> {
    let mut map: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, line) in notes.lines().enumerate() {
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        let title = title.trim_start_matches('#').trim_start();
        if let Some((number, _)) = title.strip_prefix(SIGN).and_then(parse_number) {
            map.entry(number).or_default().push(i + 1);
        }
    }
    map
}

/// Every `.rs` and `.md` file under `dir`, skipping [`SKIPPED_DIRS`].
fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        // file_type() does not follow symlinks: a link cannot loop us
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            let name = entry.file_name();
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                source_files(&path, out);
            }
        } else if kind.is_file()
            && path
                .extension()
                .is_some_and(|ext| ext == "rs" || ext == "md")
        {
            out.push(path);
        }
    }
}

/// The citations in `text` (of file `name`) that name no heading.
fn dangling(name: &str, text: &str, known: &BTreeMap<String, Vec<usize>>) -> Vec<String> {
    let mut missing = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for (section, cited) in citations(line) {
            if !known.contains_key(&section) {
                missing.push(format!(
                    "{name}:{}: {SIGN}{section} (cited as \"{cited}\") has no heading in {NOTES}",
                    i + 1
                ));
            }
        }
    }
    missing
}

#[test]
fn every_cited_section_has_a_heading() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let notes =
        fs::read_to_string(root.join(NOTES)).unwrap_or_else(|e| panic!("{NOTES} must exist: {e}"));
    let known = headings(&notes);

    let duplicates: Vec<String> = known
        .iter()
        .filter(|(_, lines)| lines.len() > 1)
        .map(|(s, lines)| format!("{SIGN}{s} is a heading on lines {lines:?} of {NOTES}"))
        .collect();
    assert!(
        duplicates.is_empty(),
        "section numbers must be unique:\n{}",
        duplicates.join("\n")
    );

    let mut files = Vec::new();
    source_files(root, &mut files);
    files.sort();
    let mut cited = 0;
    let mut missing = Vec::new();
    for path in &files {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let text = String::from_utf8_lossy(&bytes);
        let name = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        cited += text.lines().map(|l| citations(l).len()).sum::<usize>();
        missing.extend(dangling(&name, &text, &known));
    }
    // guards against a walk that silently found nothing to check
    assert!(
        cited > 0,
        "no section citations found under {}",
        root.display()
    );
    assert!(
        missing.is_empty(),
        "{} citation(s) name no section of {NOTES}:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn citation_forms() {
    let sections =
        |line: &str| -> Vec<String> { citations(line).into_iter().map(|(s, _)| s).collect() };
    let s = |t: &str| t.replace('S', &SIGN.to_string());
    assert_eq!(sections(&s("see S5.4.")), ["5.4"]);
    assert_eq!(sections(&s("(S4.10, 5.4, 5.5)")), ["4.10", "5.4", "5.5"]);
    assert_eq!(sections(&s("(S5.4-5.8, 6), sans-IO")), ["5.4", "5.8", "6"]);
    assert_eq!(sections(&s("ref S5-6")), ["5", "6"]);
    assert_eq!(sections(&s("S5.4-8")), ["5.4", "5.8"]);
    assert_eq!(sections(&s("S3.2/S3.7")), ["3.2", "3.7"]);
    assert_eq!(sections(&s("S5.2, with open numbers")), ["5.2"]);
    assert_eq!(sections(&s("the \"S\" numbers, S 5")), Vec::<String>::new());
    assert_eq!(
        citations(&s("x (S2, 3.8) y")),
        [
            ("2".to_string(), s("S2, 3.8")),
            ("3.8".to_string(), s("S2, 3.8"))
        ]
    );
}

#[test]
fn a_dangling_citation_is_reported() {
    let notes = format!("# Notes\n## {SIGN}5 Values\n### {SIGN}5.4 call\n");
    let known = headings(&notes);
    let text = format!("fine {SIGN}5.4\n// broken {SIGN}5.4-5.9 here\n");
    assert_eq!(
        dangling("src/x.rs", &text, &known),
        [format!(
            "src/x.rs:2: {SIGN}5.9 (cited as \"{SIGN}5.4-5.9\") has no heading in {NOTES}"
        )]
    );
}
