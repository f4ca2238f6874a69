//! One module per verb: its flags (`Args`), its examples (`EXAMPLES`) and what it does (`run`).
//! What several verbs share is here: loading a file, naming the application a verb acts on
//! ([`Target`]), and formatting sizes and durations.

pub mod capture;
pub mod completions;
pub mod config;
pub mod daemon;
pub mod down;
pub mod graph;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod ps;
pub mod run;
pub mod stats;
pub mod up;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use sturdy_compose::Plan;
use sturdy_daemon::api::AppInfo;
use sturdy_daemon::client::Client;

use crate::error::CliError;

/// Loads and plans the application at `path`: a sturdy.yaml, or a directory holding one.
pub fn load(path: &Path) -> Result<Plan, CliError> {
    Ok(sturdy_compose::load(path)?)
}

/// [`load`], with absolute paths in the plan, as the daemon (running elsewhere) needs them;
/// diagnostics name the file as given.
pub fn load_absolute(path: &Path) -> Result<Plan, CliError> {
    let plan = load(path)?;
    if path.is_absolute() {
        return Ok(plan);
    }
    load(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()))
}

/// The application file of `up`, `config` and `graph`: a path argument, or `-f/--file` as
/// Compose users give it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AppFile {
    /// The application: a sturdy.yaml, or a directory holding one [default: .]
    #[arg(value_name = "PATH", value_hint = clap::ValueHint::AnyPath)]
    pub path: Option<PathBuf>,

    /// The application, as `-f FILE` (instead of PATH)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        conflicts_with = "path",
        value_hint = clap::ValueHint::AnyPath
    )]
    pub file: Option<PathBuf>,
}

impl AppFile {
    /// The file or directory given, else the current directory.
    pub fn path(&self) -> PathBuf {
        self.file
            .clone()
            .or_else(|| self.path.clone())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// Takes `file` (given before the verb: `sturdy -f FILE up`) unless one is given here.
    pub fn default_to(&mut self, file: &Path) -> Result<(), String> {
        match self.file.as_ref().or(self.path.as_ref()) {
            Some(own) if own != file => Err(format!(
                "two application files: {} (before the verb) and {}",
                file.display(),
                own.display()
            )),
            _ => {
                self.file = Some(file.to_path_buf());
                self.path = None;
                Ok(())
            }
        }
    }
}

/// Which application a verb acts on.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The application's file (a sturdy.yaml or a directory holding one) [default: ./sturdy.yaml
    /// if there is one, else the one application that is up]
    #[arg(long = "file", value_name = "PATH", value_hint = clap::ValueHint::AnyPath)]
    pub file: Option<PathBuf>,

    /// The application's name (instead of --file)
    #[arg(
        short = 'p',
        long = "project-name",
        value_name = "NAME",
        conflicts_with = "file"
    )]
    pub name: Option<String>,
}

impl Target {
    /// Takes `file` (given before the verb: `sturdy -f FILE ps`) unless a file or name is
    /// given here.
    pub fn default_to(&mut self, file: &Path) -> Result<(), String> {
        match (&self.file, &self.name) {
            (Some(own), _) if own != file => Err(format!(
                "two application files: {} (before the verb) and {}",
                file.display(),
                own.display()
            )),
            (_, Some(name)) => Err(format!(
                "both an application file ({}) and a name ({name}): give one",
                file.display()
            )),
            _ => {
                self.file = Some(file.to_path_buf());
                Ok(())
            }
        }
    }

    /// The name given (`-p`) or read from the file (`-f`, else `./sturdy.yaml`); `None` if
    /// neither names one.
    pub fn given(&self) -> Result<Option<String>, CliError> {
        if let Some(name) = &self.name {
            return Ok(Some(name.clone()));
        }
        if let Some(file) = &self.file {
            return Ok(Some(load(file)?.name));
        }
        if Path::new(sturdy_compose::FILE_NAME).is_file() {
            return Ok(Some(load(Path::new("."))?.name));
        }
        Ok(None)
    }

    /// The application's name: as [`given`](Self::given), else the only application up.
    pub fn resolve(&self, client: &Client) -> Result<String, CliError> {
        if let Some(name) = self.given()? {
            return Ok(name);
        }
        let apps: Vec<AppInfo> = client.get("/v1/apps").map_err(|e| anyhow!(e))?;
        match apps.as_slice() {
            [one] => Ok(one.name.clone()),
            [] => Err(anyhow!(
                "no application is up (and no sturdy.yaml here): start one with `sturdy up PATH`"
            )
            .into()),
            many => Err(anyhow!(
                "{} applications are up ({}): say which with -p NAME or --file PATH",
                many.len(),
                many.iter()
                    .map(|a| a.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into()),
        }
    }
}

/// `1.5 MiB`, `312 KiB`, `12 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// `850ms`, `12s`, `3m4s`, `2h5m`, `3d4h`: the two largest units.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{}h", s / 86_400, s / 3600 % 24),
    }
}

/// Each service's prefix: its name padded to the longest, coloured on a terminal.
pub struct Prefixes(std::collections::HashMap<String, String>);

impl Prefixes {
    /// Prefixes for `names`, in this order (colours cycle).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, color: bool) -> Prefixes {
        const COLORS: [u8; 6] = [36, 33, 32, 35, 34, 31];
        let names: Vec<&str> = names.into_iter().collect();
        let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
        let map = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let padded = format!("{name:<width$}");
                let prefix = if color {
                    format!("\x1b[{}m{padded}\x1b[0m", COLORS[i % COLORS.len()])
                } else {
                    padded
                };
                (name.to_string(), prefix)
            })
            .collect();
        Prefixes(map)
    }

    /// The prefix of `service` (its bare name if unknown).
    pub fn get<'a>(&'a self, service: &'a str) -> &'a str {
        self.0.get(service).map(String::as_str).unwrap_or(service)
    }
}

/// The first write error of a streamed answer's callback, which can only say "stop": kept
/// here and reported once the stream has ended.
#[derive(Default)]
pub struct WriteFailure(Option<std::io::Error>);

impl WriteFailure {
    /// Whether to go on: `written` succeeded (else it is kept).
    pub fn keep_going(&mut self, written: std::io::Result<()>) -> bool {
        match written {
            Ok(()) => true,
            Err(e) => {
                self.0 = Some(e);
                false
            }
        }
    }

    /// The kept error, if any.
    pub fn into_result(self) -> Result<(), CliError> {
        self.0.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// Whether to colour: on a terminal, unless `--no-color` or `NO_COLOR`.
pub fn use_color(no_color: bool) -> bool {
    use std::io::IsTerminal;
    !no_color
        && std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints `rows` as columns separated by two spaces (the last column not padded).
pub fn table(out: &mut dyn std::io::Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(4_456_448), "4.2 MiB");
        assert_eq!(bytes(64 << 20), "64 MiB");
        assert_eq!(short_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(short_duration(Duration::from_secs(184)), "3m4s");
        assert_eq!(short_duration(Duration::from_secs(7500)), "2h5m");
        assert_eq!(short_duration(Duration::from_secs(273_600)), "3d4h");
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["A".to_string(), "BB".into(), "C".into()],
            vec!["aaa".to_string(), "b".into(), "c".into()],
        ];
        table(&mut out, &rows).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "A    BB  C\naaa  b   c\n");
    }
}
