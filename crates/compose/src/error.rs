//! Errors: one [`Diagnostic`] per problem, each naming the file, line, column and key, and
//! [`ComposeError`], what [`load`](crate::load) and [`parse`](crate::parse) return.

use std::fmt;
use std::path::PathBuf;

use crate::yaml::Pos;

/// One problem in an application file: where, which key, what is wrong and what would be valid.
///
/// Displays as `FILE:LINE:COLUMN: KEY: MESSAGE`, e.g.
/// `examples/guestbook/sturdy.yaml:12:5: services.web.uses[0]: no service 'dbx' (services are:
/// db, web); did you mean 'db'?`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The application file, as it was named.
    pub file: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
    /// The key: a path such as `services.web.uses[0]` (empty for the whole document).
    pub key: String,
    /// What is wrong, and what would be valid.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why an application file could not be turned into a plan.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The file could not be read.
    #[error("cannot read application file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid application: every problem found, in file order.
    #[error("{}", Invalid(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ComposeError {
    /// The problems found (none for [`ComposeError::Read`]).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ComposeError::Read { .. } => &[],
            ComposeError::Invalid(d) => d,
        }
    }
}

struct Invalid<'a>(&'a [Diagnostic]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one file.
#[derive(Debug)]
pub(crate) struct Sink {
    file: PathBuf,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn new(file: PathBuf) -> Sink {
        Sink {
            file,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, pos: Pos, key: &str, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics in file order (ties in the order found), without repeats.
    pub(crate) fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics.dedup();
        self.diagnostics
    }
}

/// The valid name closest to `given`, if one is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    given: &str,
    valid: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let given_l = given.to_ascii_lowercase();
    valid
        .into_iter()
        .map(|v| (distance(&given_l, &v.to_ascii_lowercase()), v))
        .filter(|&(d, v)| d <= (v.len().max(given.len()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, v)| v)
}

/// Edit distance with adjacent transpositions (optimal string alignment), by characters.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// `a, b, c`, or `none` for an empty list.
pub(crate) fn list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|s| s.as_ref())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(closest("dbx", ["web", "db"]), Some("db"));
        assert_eq!(closest("imgae", ["image", "mem", "command"]), Some("image"));
        assert_eq!(
            closest("helthcheck", ["healthcheck", "restart"]),
            Some("healthcheck")
        );
        assert_eq!(closest("zzzzzz", ["image", "mem"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
