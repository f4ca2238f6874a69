//! `docs/sturdy-yaml.md` against the parser, so the reference cannot drift from the model:
//!
//! - its key headings (`` ### `services.NAME.image` ``) are exactly the keys the parser
//!   accepts ([`sturdy_compose::keys`]): none missing, none that the parser does not know;
//! - each key's section has an example that writes the key;
//! - every ```` ```yaml ```` block is a whole application file that plans without error
//!   (as `app/sturdy.yaml`, so its name defaults to `app`);
//! - every ```` ```yaml refused ```` block fails, with exactly the messages of the
//!   ```` ```text ```` block that follows it;
//! - one example writes every key.

use std::collections::BTreeSet;
use std::path::Path;

/// Where the examples are said to be: their name defaults to the directory's, `app`.
const EXAMPLE_FILE: &str = "app/sturdy.yaml";

/// A fenced block of the document.
struct Block {
    /// The fence's info string (`yaml`, `yaml refused`, `text`, ...).
    info: String,
    /// The line of the opening fence, from 1.
    line: usize,
    /// The text between the fences.
    text: String,
    /// The key heading the block is under, if any.
    key: Option<String>,
}

struct Doc {
    /// Key headings in document order, with their lines.
    keys: Vec<(String, usize)>,
    blocks: Vec<Block>,
}

fn read_doc() -> Doc {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/sturdy-yaml.md");
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut doc = Doc {
        keys: Vec::new(),
        blocks: Vec::new(),
    };
    let mut key: Option<String> = None;
    let mut open: Option<Block> = None;
    for (i, line) in src.lines().enumerate() {
        let number = i + 1;
        if let Some(block) = open.as_mut() {
            if line.trim_end() == "```" {
                doc.blocks.push(open.take().unwrap());
            } else {
                block.text.push_str(line);
                block.text.push('\n');
            }
            continue;
        }
        if let Some(info) = line.strip_prefix("```") {
            open = Some(Block {
                info: info.trim().to_string(),
                line: number,
                text: String::new(),
                key: key.clone(),
            });
        } else if line.starts_with('#') {
            let title = line.trim_start_matches('#').trim();
            key = title
                .strip_prefix('`')
                .and_then(|t| t.strip_suffix('`'))
                .map(str::to_string);
            if let Some(k) = &key {
                doc.keys.push((k.clone(), number));
            }
        }
    }
    assert!(open.is_none(), "docs/sturdy-yaml.md: a fence is not closed");
    doc
}

/// The last part of a key path: `interval` for `services.NAME.healthcheck.interval`.
fn leaf(key: &str) -> &str {
    key.rsplit('.').next().unwrap()
}

#[test]
fn every_key_is_documented_and_every_documented_key_exists() {
    let doc = read_doc();
    let accepted: BTreeSet<String> = sturdy_compose::keys().into_iter().collect();
    let mut documented = BTreeSet::new();
    for (k, line) in &doc.keys {
        assert!(
            documented.insert(k.clone()),
            "docs/sturdy-yaml.md:{line}: `{k}` is documented twice"
        );
    }
    let missing: Vec<_> = accepted.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(
        missing.is_empty(),
        "the parser accepts keys that docs/sturdy-yaml.md does not document (give each a \
         heading such as ### `services.NAME.image`, with an example): {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "docs/sturdy-yaml.md documents keys the parser does not accept: {unknown:?}"
    );
}

#[test]
fn every_key_has_an_example_that_writes_it() {
    let doc = read_doc();
    for (k, line) in &doc.keys {
        let written = format!("{}:", leaf(k));
        let example = doc.blocks.iter().any(|b| {
            b.key.as_ref() == Some(k) && b.info.starts_with("yaml") && b.text.contains(&written)
        });
        assert!(
            example,
            "docs/sturdy-yaml.md:{line}: `{k}` has no ```yaml example writing `{written}`"
        );
    }
}

#[test]
fn every_example_plans_and_every_refused_one_fails_as_shown() {
    let doc = read_doc();
    let mut planned = 0;
    let mut refused = 0;
    for (i, b) in doc.blocks.iter().enumerate() {
        let at = format!("docs/sturdy-yaml.md:{}", b.line);
        match b.info.as_str() {
            "yaml" => {
                if let Err(e) = sturdy_compose::parse(&b.text, Path::new(EXAMPLE_FILE)) {
                    panic!("{at}: this example does not plan:\n{e}");
                }
                planned += 1;
            }
            "yaml refused" => {
                let err = match sturdy_compose::parse(&b.text, Path::new(EXAMPLE_FILE)) {
                    Ok(_) => panic!("{at}: this example is shown refused, but it plans"),
                    Err(e) => e.to_string(),
                };
                let shown = doc
                    .blocks
                    .get(i + 1)
                    .filter(|n| n.info == "text")
                    .unwrap_or_else(|| {
                        panic!("{at}: a refused example must be followed by a ```text block with its messages:\n{err}")
                    });
                assert_eq!(
                    shown.text.trim_end(),
                    err,
                    "{at}: the messages shown (line {}) are not the parser's",
                    shown.line
                );
                refused += 1;
            }
            info if info.starts_with("yaml") => {
                panic!("{at}: unknown kind of example '{info}' (use yaml or yaml refused)")
            }
            _ => {}
        }
    }
    assert!(planned >= doc.keys.len(), "only {planned} examples plan");
    assert!(refused >= 1, "no refused example");
}

#[test]
fn one_example_writes_every_key() {
    let doc = read_doc();
    let leaves: BTreeSet<String> = sturdy_compose::keys()
        .iter()
        .map(|k| format!("{}:", leaf(k)))
        .collect();
    let complete = doc
        .blocks
        .iter()
        .any(|b| b.info == "yaml" && leaves.iter().all(|l| b.text.contains(l.as_str())));
    assert!(
        complete,
        "docs/sturdy-yaml.md has no example writing every key ({leaves:?})"
    );
}
