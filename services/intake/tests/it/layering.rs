//! The crate's layers hold (see the module documentation of `src/lib.rs`). Every file of `src/`
//! is read, comments and literals left out, and each path in it that starts at `crate::`,
//! `super::`, `self::` or a module the file declares (in a `use` or in the code) is resolved to
//! the module it names:
//!
//! - a file uses only modules of its own layer or the layers [`MAY_USE`] lists for it, and no
//!   item of the crate root (`lib.rs` wires the layers: nothing uses it);
//! - a layer names none of the crates [`MAY_NOT_NAME`] lists for it (the domain stays pure),
//!   and only the store holds SQL (a string literal that begins like a statement, [`SQL`]);
//! - the rooms of the crate — each top-level module, and each module directly inside one — use
//!   one another in one direction only. A module's own file counts as using every module it
//!   declares, so a module that uses its parent's file closes a cycle (keep what siblings share
//!   in a sibling of theirs). Inside one room (e.g. `domain::matching`) files may use each other.
//!
//! A file in a top-level module the table does not know fails too: place it in a layer first.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each layer (a top-level module of `src/`) and the top-level modules it may use, its own
/// included.
const MAY_USE: &[(&str, &[&str])] = &[
    ("domain", &["domain"]),
    ("settings", &["settings", "domain"]),
    ("store", &["store", "domain"]),
    ("handlers", &["handlers", "store", "settings", "domain"]),
    ("grpc", &["grpc", "handlers", "store", "settings", "domain"]),
];

/// Crates a layer may not name: the domain does no I/O; the store speaks SQL, not to the bus or
/// to callers; handlers do not speak gRPC.
const MAY_NOT_NAME: &[(&str, &[&str])] = &[
    (
        "domain",
        &[
            "sea_orm",
            "eh_store",
            "eh_bus",
            "eh_service",
            "eh_auth",
            "tokio",
            "tonic",
            "tonic_types",
        ],
    ),
    (
        "settings",
        &["sea_orm", "eh_store", "eh_bus", "tokio", "tonic"],
    ),
    (
        "store",
        &[
            "eh_bus",
            "eh_service",
            "eh_auth",
            "tokio",
            "tonic",
            "tonic_types",
        ],
    ),
    ("handlers", &["tonic", "tonic_types", "eh_auth"]),
];

/// How SQL statements begin: a string literal beginning so, outside the store, is SQL where it
/// does not belong.
const SQL: &[&str] = &[
    "SELECT ",
    "INSERT INTO ",
    "UPDATE ",
    "DELETE FROM ",
    "CREATE TABLE ",
    "CREATE INDEX ",
    "ALTER TABLE ",
    "DROP ",
];

/// One source file: its path under `src/` (with `/`) and its text.
struct Source {
    path: String,
    text: String,
}

/// A `crate::`/`super::`/child-module path found in a file, resolved from the crate root.
#[derive(Debug)]
struct Use {
    line: usize,
    /// As written (for messages).
    written: String,
    /// Segments from the crate root.
    segments: Vec<String>,
}

fn read_sources(dir: &Path, under: &str, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 file name")
            .to_string();
        let rel = if under.is_empty() {
            name.clone()
        } else {
            format!("{under}/{name}")
        };
        if p.is_dir() {
            read_sources(&p, &rel, out);
        } else if name.ends_with(".rs") {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            out.push(Source { path: rel, text });
        }
    }
}

/// The code of a file: comments, and the insides of string and character literals, blanked
/// (line numbers kept), so neither a `crate::` in a comment nor a `{` in a format string counts.
fn code_only(text: &str) -> String {
    scan(text).0
}

/// The string literals of a file's code (not its comments), each with its line.
fn string_literals(text: &str) -> Vec<(usize, String)> {
    scan(text).1
}

/// [`code_only`] and [`string_literals`] in one pass.
fn scan(text: &str) -> (String, Vec<(usize, String)>) {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut literals = Vec::new();
    let line_of = |out: &String| out.matches('\n').count() + 1;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let after_ident = i > 0 && is_ident(b[i - 1]);
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && !after_ident && matches!(next, Some('"') | Some('#')) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let line = line_of(&out);
            out.push('"');
            j += 1;
            let closes = |k: usize| b[k] == '"' && (1..=hashes).all(|h| b.get(k + h) == Some(&'#'));
            let mut literal = String::new();
            while j < b.len() && !closes(j) {
                literal.push(b[j]);
                out.push(blank(b[j]));
                j += 1;
            }
            literals.push((line, literal));
            out.push('"');
            i = (j + 1 + hashes).min(b.len());
        } else if c == '"' {
            let line = line_of(&out);
            out.push('"');
            i += 1;
            let mut literal = String::new();
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    literal.push(b[i]);
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    literal.push(b[i]);
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            literals.push((line, literal));
            out.push('"');
            i += 1;
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\'', '\u{…}': the escaped character, then up to the closing quote.
            out.push_str("'  ");
            i += 3;
            while i < b.len() && b[i] != '\'' {
                out.push(' ');
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else if c == '\'' && b.get(i + 2) == Some(&'\'') {
            out.push_str("' '");
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    (out, literals)
}

/// The inline modules of a file (`mod tests { … }`): where each opens and closes, and its name.
fn inline_modules(code: &[char]) -> Vec<(usize, usize, String)> {
    let mut found = Vec::new();
    let mut open: Vec<(usize, usize, String)> = Vec::new(); // (start, depth, name)
    let mut depth = 0usize;
    let mut i = 0;
    while i < code.len() {
        let c = code[i];
        if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth = depth.saturating_sub(1);
            if open.last().is_some_and(|(_, d, _)| *d > depth) {
                let (start, _, name) = open.pop().expect("an open module");
                found.push((start, i, name));
            }
        } else if code[i..].starts_with(&['m', 'o', 'd', ' ']) && (i == 0 || !is_ident(code[i - 1]))
        {
            let mut j = i + 4;
            let name_start = j;
            while j < code.len() && is_ident(code[j]) {
                j += 1;
            }
            let name: String = code[name_start..j].iter().collect();
            while j < code.len() && code[j].is_whitespace() {
                j += 1;
            }
            if !name.is_empty() && code.get(j) == Some(&'{') {
                depth += 1;
                open.push((j, depth, name));
                i = j + 1;
                continue;
            }
        }
        i += 1;
    }
    found
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The module path of a file under `src/` (`handlers/mod.rs` → `[handlers]`).
fn module_of(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_string)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Parses a path tree (`a::b::{c, d::e as f, self}`) starting at `chars[*i]`, appending every
/// leaf path (prefixed with `prefix`) to `out`.
fn parse_tree(chars: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let mut path = prefix;
    loop {
        skip_ws(i);
        match chars.get(*i) {
            Some('{') => {
                *i += 1;
                loop {
                    skip_ws(i);
                    match chars.get(*i) {
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        Some(',') => *i += 1,
                        None => return,
                        _ => {
                            let before = *i;
                            parse_tree(chars, i, path.clone(), out);
                            if *i == before {
                                // Nothing a path is made of: stop rather than loop.
                                return;
                            }
                        }
                    }
                }
            }
            Some('*') => {
                *i += 1;
                out.push(path);
                return;
            }
            Some(&c) if is_ident(c) => {
                let start = *i;
                while *i < chars.len() && is_ident(chars[*i]) {
                    *i += 1;
                }
                let seg: String = chars[start..*i].iter().collect();
                if seg != "self" {
                    path.push(seg);
                }
                skip_ws(i);
                if chars.get(*i) == Some(&':') && chars.get(*i + 1) == Some(&':') {
                    *i += 2;
                    continue;
                }
                // `as name`: the path is what is imported.
                if chars[*i..].starts_with(&['a', 's'])
                    && chars.get(*i + 2).is_some_and(|c| !is_ident(*c))
                {
                    *i += 2;
                    skip_ws(i);
                    while *i < chars.len() && is_ident(chars[*i]) {
                        *i += 1;
                    }
                }
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

/// The child modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`).
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("pub mod ")
                .or_else(|| l.strip_prefix("pub(crate) mod "))
                .or_else(|| l.strip_prefix("mod "))?;
            let name = rest.strip_suffix(';')?;
            name.chars().all(is_ident).then(|| name.to_string())
        })
        .collect()
}

/// Every path of the crate a file names: `crate::…`, `super::…`, `self::…`, and paths through
/// the child modules it declares; each resolved from the crate root.
fn uses_of(source: &Source) -> Vec<Use> {
    let code = code_only(&source.text);
    let chars: Vec<char> = code.chars().collect();
    let file_module = module_of(&source.path);
    let inline = inline_modules(&chars);
    // The module at `i`: the file's, then any inline modules `i` is inside.
    let module_at = |i: usize| {
        let mut m = file_module.clone();
        let mut around: Vec<&(usize, usize, String)> =
            inline.iter().filter(|(a, b, _)| *a < i && i < *b).collect();
        around.sort_by_key(|(a, _, _)| *a);
        m.extend(around.into_iter().map(|(_, _, n)| n.clone()));
        m
    };
    let children = declared_children(&code);
    let line_at = |i: usize| chars[..i].iter().filter(|c| **c == '\n').count() + 1;
    let followed_by_path = |i: usize| chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':');
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == '$');
        // `a::b` preceded by `::` is the middle of a path, not its start.
        let mid_path = i >= 2 && chars[i - 1] == ':' && chars[i - 2] == ':';
        if !boundary || mid_path || !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        if !followed_by_path(i) {
            continue;
        }
        let mut base = match word.as_str() {
            "crate" => Vec::new(),
            "self" => module_at(start),
            "super" => {
                let mut base = module_at(start);
                base.pop();
                // `super::super::…`
                while chars[i + 2..].starts_with(&['s', 'u', 'p', 'e', 'r'])
                    && followed_by_path(i + 7)
                {
                    base.pop();
                    i += 7;
                }
                base
            }
            w if children.iter().any(|c| c == w) && module_at(start) == file_module => {
                // A path through a declared child: the child is its first segment.
                let mut base = file_module.clone();
                base.push(word.clone());
                base
            }
            _ => continue,
        };
        i += 2;
        let mut leaves = Vec::new();
        parse_tree(&chars, &mut i, std::mem::take(&mut base), &mut leaves);
        let written: String = chars[start..i].iter().collect();
        let written = written.split_whitespace().collect::<Vec<_>>().join(" ");
        for segments in leaves {
            found.push(Use {
                line: line_at(start),
                written: written.clone(),
                segments,
            });
        }
    }
    found
}

/// The room a path from the crate root lands in: `handlers/batch` for anything in
/// `handlers::batch`, `handlers` for an item of `handlers/mod.rs`, `settings` for `settings.rs`;
/// `None` for the crate root.
fn room_of(segments: &[String], files: &BTreeSet<String>) -> Option<String> {
    let top = segments.first()?;
    let is_module = |p: &str| {
        files.contains(&format!("{p}.rs")) || files.iter().any(|f| f.starts_with(&format!("{p}/")))
    };
    if !is_module(top) {
        return None;
    }
    match segments.get(1) {
        Some(second) if is_module(&format!("{top}/{second}")) => Some(format!("{top}/{second}")),
        _ => Some(top.clone()),
    }
}

/// The room a file is in.
fn room_of_file(path: &str) -> String {
    let module = module_of(path);
    module.iter().take(2).cloned().collect::<Vec<_>>().join("/")
}

/// Every breach of the layering in `sources`, one line each.
fn breaches(sources: &[Source]) -> Vec<String> {
    let files: BTreeSet<String> = sources.iter().map(|s| s.path.clone()).collect();
    let layers: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let forbidden: BTreeMap<&str, &[&str]> = MAY_NOT_NAME.iter().copied().collect();
    // Kept in order, each once (a grouped `use` names a layer once per item).
    let mut out: Vec<String> = Vec::new();
    let mut report = |line: String| {
        if !out.contains(&line) {
            out.push(line);
        }
    };
    // room -> (room it uses -> where)
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in sources {
        let module = module_of(&s.path);
        let Some(layer) = module.first().cloned() else {
            // lib.rs: the wiring, which may use every layer.
            continue;
        };
        let allowed = layers.get(layer.as_str());
        if allowed.is_none() {
            report(format!(
                "src/{}: `{layer}` is in no layer; add it to MAY_USE in tests/it/layering.rs \
                 and to the layers in src/lib.rs",
                s.path
            ));
        }
        let code = code_only(&s.text);
        for krate in forbidden.get(layer.as_str()).copied().unwrap_or_default() {
            let needle = format!("{krate}::");
            for (n, line) in code.lines().enumerate() {
                let named = line.match_indices(&needle).any(|(k, _)| {
                    !line[..k].ends_with(|c: char| is_ident(c) || c == ':' || c == '$')
                });
                if named {
                    report(format!(
                        "src/{}:{}: {layer} may not name `{krate}` ({})",
                        s.path,
                        n + 1,
                        line.trim()
                    ));
                }
            }
        }
        if layer != "store" {
            for (line, literal) in string_literals(&s.text) {
                let statement = literal.trim_start();
                if let Some(kw) = SQL.iter().find(|k| statement.starts_with(**k)) {
                    report(format!(
                        "src/{}:{line}: SQL outside the store (\"{}…\"); {layer} asks the store",
                        s.path,
                        kw.trim_end()
                    ));
                }
            }
        }
        let room = room_of_file(&s.path);
        for child in declared_children(&code) {
            let mut path = module.clone();
            path.push(child.clone());
            if let Some(to) = room_of(&path, &files)
                && to != room
            {
                graph
                    .entry(room.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("src/{}: declares `mod {child}`", s.path));
            }
        }
        for u in uses_of(s) {
            let Some(to) = room_of(&u.segments, &files) else {
                report(format!(
                    "src/{}:{}: `{}` uses the crate root; only lib.rs may (move `{}` into a layer)",
                    s.path,
                    u.line,
                    u.written,
                    u.segments.join("::")
                ));
                continue;
            };
            let target_layer = to.split('/').next().unwrap_or_default();
            if let Some(allowed) = allowed
                && !allowed.contains(&target_layer)
            {
                report(format!(
                    "src/{}:{}: `{}` — {layer} may not use {target_layer} (a layer above it, or \
                     beside it); {layer} may use {}",
                    s.path,
                    u.line,
                    u.written,
                    allowed.join(", ")
                ));
            }
            if to != room {
                graph
                    .entry(room.clone())
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("src/{}:{}: `{}`", s.path, u.line, u.written));
            }
        }
    }
    for c in cycles(&graph) {
        report(c);
    }
    out
}

/// Each cycle among rooms, once, with the line that makes each step.
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut out = Vec::new();
    for start in graph.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).map(|m| m.keys()).into_iter().flatten() {
                if next == start {
                    let mut key = path.clone();
                    key.sort();
                    if found.insert(key) {
                        let steps: Vec<String> = path
                            .iter()
                            .zip(path.iter().skip(1).chain(std::iter::once(start)))
                            .map(|(a, b)| format!("{a} -> {b} ({})", graph[a][b]))
                            .collect();
                        out.push(format!("cycle: {}", steps.join("; ")));
                    }
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    out
}

#[test]
fn each_layer_uses_only_itself_and_the_layers_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    read_sources(&src, "", &mut sources);
    assert!(
        sources.iter().any(|s| s.path == "handlers/mod.rs"),
        "read no handlers from {}",
        src.display()
    );
    let found = breaches(&sources);
    assert!(
        found.is_empty(),
        "intake's layers are domain -> store -> handlers -> grpc (settings beside domain; \
         see src/lib.rs), each using only itself and those below, without cycles:\n{}",
        found.join("\n")
    );
}

// The checker itself, on made-up crates: each breach it exists for is found, and named.

fn crate_of(files: &[(&str, &str)]) -> Vec<Source> {
    files
        .iter()
        .map(|(p, t)| Source {
            path: (*p).into(),
            text: (*t).into(),
        })
        .collect()
}

fn one_breach(files: &[(&str, &str)]) -> String {
    let found = breaches(&crate_of(files));
    assert_eq!(found.len(), 1, "{found:#?}");
    found[0].clone()
}

#[test]
fn a_lower_layer_using_a_higher_one_is_named_with_its_line() {
    let b = one_breach(&[
        ("lib.rs", "pub mod domain; pub mod store;"),
        ("domain/mod.rs", "pub mod rules;"),
        (
            "domain/rules.rs",
            "//! Pure.\nuse std::fmt;\nuse crate::store::people::Stamp;\n",
        ),
        ("store/mod.rs", "pub mod people;"),
        ("store/people.rs", "pub struct Stamp;"),
    ]);
    assert!(b.starts_with("src/domain/rules.rs:3:"), "{b}");
    assert!(b.contains("`crate::store::people::Stamp`"), "{b}");
    assert!(b.contains("domain may not use store"), "{b}");
}

#[test]
fn grouped_inline_and_super_paths_are_all_followed() {
    // In a group.
    let b = one_breach(&[
        ("store/mod.rs", "pub mod a;"),
        ("store/a.rs", "use crate::{domain::x, handlers};"),
        ("domain/x.rs", ""),
        ("handlers/mod.rs", ""),
    ]);
    assert!(b.contains("store may not use handlers"), "{b}");
    // In the code, not a `use`.
    let b = one_breach(&[
        ("handlers/mod.rs", "fn f() { crate::grpc::serve(1) }"),
        ("grpc.rs", ""),
    ]);
    assert!(b.contains("handlers may not use grpc"), "{b}");
    // Up through `super::super::` from a nested file.
    let b = one_breach(&[
        (
            "domain/matching/index.rs",
            "use super::super::super::store::Plan;",
        ),
        ("store/mod.rs", ""),
    ]);
    assert!(b.contains("domain may not use store"), "{b}");
    // Comments and `$crate` are not code.
    assert!(
        breaches(&crate_of(&[
            (
                "domain/x.rs",
                "// use crate::store::a;\n/* crate::store::b */ macro_rules! m { () => { $crate::store::c } }"
            ),
            ("store/mod.rs", ""),
        ]))
        .is_empty()
    );
}

#[test]
fn the_crate_root_an_unplaced_module_and_a_forbidden_crate_are_refused() {
    let b = one_breach(&[("handlers/mod.rs", "use crate::CONSUMER;")]);
    assert!(b.contains("uses the crate root"), "{b}");
    let b = one_breach(&[("matching.rs", "")]);
    assert!(b.contains("`matching` is in no layer"), "{b}");
    let b = one_breach(&[("domain/x.rs", "fn f(db: &sea_orm::DatabaseConnection) {}")]);
    assert!(b.contains("domain may not name `sea_orm`"), "{b}");
}

#[test]
fn sql_outside_the_store_is_refused_and_in_comments_it_is_not_sql() {
    let b = one_breach(&[(
        "handlers/mod.rs",
        "// \"SELECT 1\" in a comment is fine\nfn f() { let q = \"\n   UPDATE people SET x = 1\"; }",
    )]);
    assert!(b.starts_with("src/handlers/mod.rs:2:"), "{b}");
    assert!(b.contains("SQL outside the store (\"UPDATE…\")"), "{b}");
    assert!(
        breaches(&crate_of(&[(
            "store/people.rs",
            "const Q: &str = \"SELECT id FROM people\";"
        )]))
        .is_empty()
    );
}

#[test]
fn siblings_using_each_other_and_a_child_using_its_parent_are_cycles() {
    // handlers.rs <-> batch.rs, as they once were.
    let b = one_breach(&[
        ("handlers/mod.rs", "pub mod batch;\npub mod doors;"),
        ("handlers/batch.rs", "use crate::handlers::doors::Intake;"),
        ("handlers/doors.rs", "use crate::handlers::batch::Job;"),
    ]);
    assert!(b.starts_with("cycle: "), "{b}");
    assert!(b.contains("handlers/batch -> handlers/doors"), "{b}");
    assert!(b.contains("handlers/doors -> handlers/batch"), "{b}");
    // A child using what its parent's file defines, while the parent declares it.
    let b = one_breach(&[
        ("handlers/mod.rs", "pub mod batch;\npub struct Intake;"),
        ("handlers/batch.rs", "use super::Intake;"),
    ]);
    assert!(
        b.contains("handlers -> handlers/batch (src/handlers/mod.rs: declares `mod batch`)"),
        "{b}"
    );
    // Inside one room, files may use each other.
    assert!(
        breaches(&crate_of(&[
            ("domain/mod.rs", "pub mod matching;"),
            (
                "domain/matching/mod.rs",
                "mod score;\npub use score::Score;\npub struct Details;"
            ),
            (
                "domain/matching/score.rs",
                "use super::Details;\npub struct Score;"
            ),
        ]))
        .is_empty()
    );
}
