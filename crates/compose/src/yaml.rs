//! YAML with positions: the document as a tree of [`Node`]s, each knowing the line and column
//! it starts at, built from `yaml-rust2`'s marked events.
//!
//! Every scalar stays text (YAML 1.2 core schema resolution is left to the checker, which knows
//! what each key expects), mappings keep their keys in order and duplicates (so the checker can
//! report them), and aliases are expanded to copies of their anchor's node.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

/// A node of the document.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Where it starts.
    pub pos: Pos,
    /// What it is.
    pub kind: Kind,
}

/// The kinds of node.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// A scalar: its text, and whether it was quoted (quoted scalars are always strings).
    Scalar {
        /// The text.
        text: String,
        /// Written in quotes or as a block scalar.
        quoted: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, keys in file order, duplicates kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Whether this is a plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, Kind::Scalar { text, quoted: false }
            if text.is_empty() || text == "~" || text == "null" || text == "Null" || text == "NULL")
    }

    /// What it is, in words, for error messages: `a list`, `a mapping`, `the number 5`, ...
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
            Kind::Scalar { .. } if self.is_null() => "nothing (null)".into(),
            Kind::Scalar {
                text,
                quoted: false,
            } if matches!(text.as_str(), "true" | "false" | "True" | "False") => {
                format!("the boolean {text}")
            }
            Kind::Scalar {
                text,
                quoted: false,
            } if text.parse::<f64>().is_ok() => format!("the number {text}"),
            Kind::Scalar { text, .. } => format!("the string '{}'", shorten(text)),
        }
    }

    /// The scalar's text, if it is a scalar (null included, as its text).
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }
}

fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if s.chars().count() > 40 {
        out.push_str("...");
    }
    out
}

/// A document that is not well-formed YAML.
#[derive(Debug)]
pub struct SyntaxError {
    /// Where.
    pub pos: Pos,
    /// The parser's explanation.
    pub message: String,
}

/// Parses `src` into its documents' root nodes (none for an empty stream).
pub fn parse(src: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    parser.load(&mut builder, true).map_err(|e| SyntaxError {
        pos: Pos::from_marker(*e.marker()),
        message: e.info().to_string(),
    })?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.docs)
}

/// The most nodes a document may expand to (aliases included): a "billion laughs" document is
/// refused rather than expanded.
const MAX_NODES: usize = 100_000;

#[derive(Default)]
struct Builder {
    docs: Vec<Node>,
    /// Open collections: the node under construction and, for a mapping, a pending key.
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some((parent, pending, _)) => match &mut parent.kind {
                Kind::Seq(items) => items.push(node),
                Kind::Map(entries) => match pending.take() {
                    None => *pending = Some(node),
                    Some(key) => entries.push((key, node)),
                },
                Kind::Scalar { .. } => unreachable!("scalars are never on the stack"),
            },
        }
    }

    fn count(&mut self, n: usize, pos: Pos) -> bool {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES && self.error.is_none() {
            self.error = Some(SyntaxError {
                pos,
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (aliases included)"
                ),
            });
        }
        self.error.is_none()
    }
}

fn size(node: &Node) -> usize {
    match &node.kind {
        Kind::Scalar { .. } => 1,
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| size(k) + size(v))
                .sum::<usize>()
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.count(1, pos) {
                    return;
                }
                let quoted = !matches!(style, TScalarStyle::Plain);
                self.push_value(
                    Node {
                        pos,
                        kind: Kind::Scalar { text, quoted },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => {
                if self.count(1, pos) {
                    self.stack.push((
                        Node {
                            pos,
                            kind: Kind::Seq(Vec::new()),
                        },
                        None,
                        anchor,
                    ));
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.count(1, pos) {
                    self.stack.push((
                        Node {
                            pos,
                            kind: Kind::Map(Vec::new()),
                        },
                        None,
                        anchor,
                    ));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _, anchor)) = self.stack.pop() {
                    self.push_value(node, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    if self.count(size(&node), pos) {
                        node.pos = pos;
                        self.push_value(node, 0);
                    }
                }
                None => {
                    self.error = Some(SyntaxError {
                        pos,
                        message: "an alias to an unknown anchor".into(),
                    })
                }
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let docs = parse("a:\n  b: [1, 'x']\n").unwrap();
        let Kind::Map(entries) = &docs[0].kind else {
            panic!()
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        let Kind::Map(inner) = &entries[0].1.kind else {
            panic!()
        };
        assert_eq!(inner[0].0.pos, Pos { line: 2, column: 3 });
        let Kind::Seq(items) = &inner[0].1.kind else {
            panic!()
        };
        assert_eq!(
            items[1].pos,
            Pos {
                line: 2,
                column: 10
            }
        );
        assert_eq!(
            items[1].kind,
            Kind::Scalar {
                text: "x".into(),
                quoted: true
            }
        );
    }

    #[test]
    fn duplicate_keys_are_kept() {
        let docs = parse("a: 1\na: 2\n").unwrap();
        let Kind::Map(entries) = &docs[0].kind else {
            panic!()
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn aliases_expand_and_laughs_are_refused() {
        let docs = parse("a: &x [1, 2]\nb: *x\n").unwrap();
        let Kind::Map(entries) = &docs[0].kind else {
            panic!()
        };
        assert!(matches!(&entries[1].1.kind, Kind::Seq(v) if v.len() == 2));
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, c) in ('b'..='j').enumerate() {
            let prev = (b'a' + i as u8) as char;
            laughs.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let err = parse(&laughs).unwrap_err();
        assert!(err.message.contains("more than"), "{}", err.message);
    }
}
