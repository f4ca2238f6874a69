//! `sturdy graph`: the application's capability graph as Graphviz DOT, or as SVG through
//! Graphviz's `dot` when it is installed.
//!
//! One node per service (name, address, provided endpoints); an edge per capability, labelled
//! with the endpoint; an edge from a `host` node per published port; an edge to an `outside`
//! node per egress capability. The fabric lets through exactly these edges and nothing else.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context};
use sturdy_compose::Plan;

use crate::error::{io_reason, CliError};

/// Examples shown by `sturdy graph --help`.
pub const EXAMPLES: &str = "\
Examples:
  sturdy graph examples/guestbook                    DOT on stdout
  sturdy graph | dot -Tpng -o app.png                render it with Graphviz yourself
  sturdy graph --format svg -o app.svg               SVG (needs Graphviz: apt-get install graphviz)";

/// Flags of `sturdy graph`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub app: super::AppFile,

    /// Output format: Graphviz DOT, or SVG rendered by Graphviz's `dot`
    #[arg(long, value_enum, default_value_t = Format::Dot)]
    pub format: Format,

    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub output: Option<PathBuf>,
}

/// What `sturdy graph` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Graphviz DOT text
    Dot,
    /// SVG, rendered by Graphviz's `dot -Tsvg`
    Svg,
}

/// Loads the application and writes its graph to `out` (or to `--output`).
pub fn run(args: &Args, out: &mut dyn Write) -> Result<(), CliError> {
    let plan = super::load(&args.app.path())?;
    let dot = to_dot(&plan);
    let bytes = match args.format {
        Format::Dot => dot.into_bytes(),
        Format::Svg => render_svg(&dot)?,
    };
    match &args.output {
        Some(file) => std::fs::write(file, &bytes)
            .map_err(|e| anyhow!("cannot write {}: {}", file.display(), io_reason(&e)))?,
        None => {
            out.write_all(&bytes)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The capability graph of `plan` as a DOT digraph.
pub fn to_dot(plan: &Plan) -> String {
    let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
    let host = unused_id("host", &names);
    let outside = unused_id("outside", &names);
    let has_ingress = plan.services.iter().any(|s| !s.ports.is_empty());

    let mut dot = String::new();
    let w = &mut dot;
    // Writing to a String cannot fail: the results below are ignored on purpose.
    let _ = writeln!(w, "digraph {} {{", quote(&plan.name));
    let _ = writeln!(
        w,
        "  graph [rankdir=LR, labelloc=t, fontname=\"Helvetica\", label={}];",
        quote(&format!("{} ({})", plan.name, plan.subnet))
    );
    let _ = writeln!(
        w,
        "  node [shape=box, style=rounded, fontname=\"Helvetica\"];"
    );
    let _ = writeln!(w, "  edge [fontname=\"Helvetica\", fontsize=10];");
    if has_ingress {
        let _ = writeln!(
            w,
            "  {} [label=\"host\", shape=house, style=filled, fillcolor=\"#eeeeee\"];",
            quote(&host)
        );
    }
    if !plan.egress.is_empty() {
        let _ = writeln!(
            w,
            "  {} [label=\"outside\", shape=ellipse, style=dashed];",
            quote(&outside)
        );
    }
    for s in &plan.services {
        let mut lines = vec![s.name.clone(), s.ipv4.to_string()];
        lines.extend(
            s.provides
                .iter()
                .map(|e| format!("{} {}/{}", e.name, e.port, e.proto)),
        );
        let label = lines
            .iter()
            .map(|l| escape(l))
            .collect::<Vec<_>>()
            .join("\\n");
        let _ = writeln!(w, "  {} [label=\"{label}\"];", quote(&s.name));
    }
    for c in &plan.capabilities {
        let _ = writeln!(
            w,
            "  {} -> {} [label={}];",
            quote(&c.consumer),
            quote(&c.provider),
            quote(&format!("{} {}/{}", c.endpoint, c.port, c.proto))
        );
    }
    for s in &plan.services {
        for p in &s.ports {
            let from = if p.host_ip.is_unspecified() {
                p.host_port.to_string()
            } else {
                format!("{}:{}", p.host_ip, p.host_port)
            };
            let _ = writeln!(
                w,
                "  {} -> {} [label={}, color=\"#1f6feb\"];",
                quote(&host),
                quote(&s.name),
                quote(&format!("{from} -> {} {}/tcp", p.endpoint, p.guest_port))
            );
        }
    }
    for e in &plan.egress {
        let _ = writeln!(
            w,
            "  {} -> {} [label={}, style=dashed];",
            quote(&e.consumer),
            quote(&outside),
            quote(&format!("{}:{}/{}", e.ipv4, e.port, e.proto))
        );
    }
    dot.push_str("}\n");
    dot
}

/// `base`, or `base` with underscores appended until no service has that name.
fn unused_id(base: &str, names: &[&str]) -> String {
    let mut id = base.to_string();
    while names.contains(&id.as_str()) {
        id.push('_');
    }
    id
}

/// A DOT double-quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

/// `s` escaped for the inside of a DOT double-quoted string.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders DOT as SVG with Graphviz's `dot`.
fn render_svg(dot: &str) -> Result<Vec<u8>, CliError> {
    render_with(Path::new("dot"), dot)
}

fn render_with(program: &Path, dot: &str) -> Result<Vec<u8>, CliError> {
    let mut child = match Command::new(program)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(anyhow!(
                "--format svg needs Graphviz's `dot`, which is not installed: \
                 install graphviz (apt-get install graphviz), or use --format dot"
            )
            .into())
        }
        Err(e) => return Err(anyhow!("cannot run Graphviz's `dot`: {}", io_reason(&e)).into()),
    };
    // Feed stdin from a thread so that neither side can block the other on a full pipe.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = dot.as_bytes().to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut svg = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut svg)
        .context("cannot read the output of Graphviz's `dot`")?;
    let mut complaint = String::new();
    let _ = stderr.read_to_string(&mut complaint);
    let status = child.wait().context("cannot wait for Graphviz's `dot`")?;
    let fed = feeder.join().expect("the stdin feeder does not panic");
    if !status.success() {
        let why = complaint.lines().next().unwrap_or("no message").trim();
        return Err(anyhow!("Graphviz's `dot -Tsvg` failed ({status}): {why}").into());
    }
    fed.context("cannot write to Graphviz's `dot`")?;
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(src: &str) -> Plan {
        sturdy_compose::parse(src, Path::new("app/sturdy.yaml")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn edges_for_capabilities_ports_and_egress() {
        let dot = to_dot(&plan(
            "name: app\nservices:\n  \
               web: { image: w, provides: { http: 80/tcp }, ports: [\"127.0.0.1:8080:80\"], uses: [db] }\n  \
               db: { image: d, provides: { kv: 6379/tcp } }\n",
        ));
        assert!(dot.starts_with("digraph \"app\" {\n"), "{dot}");
        assert!(
            dot.contains("\"web\" [label=\"web\\n10.77.0.2\\nhttp 80/tcp\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("\"web\" -> \"db\" [label=\"kv 6379/tcp\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("\"host\" -> \"web\" [label=\"127.0.0.1:8080 -> http 80/tcp\""),
            "{dot}"
        );
        assert!(!dot.contains("outside"), "{dot}");
        assert!(dot.ends_with("}\n"));
    }

    #[test]
    fn a_service_named_host_keeps_its_own_node() {
        let dot = to_dot(&plan(
            "name: app\nservices:\n  \
               host: { image: w, provides: { http: 80/tcp }, ports: [\"8080:80\"] }\n",
        ));
        assert!(dot.contains("\"host_\" -> \"host\""), "{dot}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn a_missing_dot_says_how_to_get_it() {
        let err = render_with(Path::new("/nonexistent/dot"), "digraph {}").unwrap_err();
        let CliError::Other(e) = err else {
            panic!("not a plain error")
        };
        assert!(e.to_string().contains("apt-get install graphviz"), "{e}");
    }

    #[test]
    fn a_failing_dot_is_reported_with_its_status() {
        let err = render_with(Path::new("false"), "digraph {}").unwrap_err();
        let CliError::Other(e) = err else {
            panic!("not a plain error")
        };
        assert!(
            e.to_string().starts_with("Graphviz's `dot -Tsvg` failed"),
            "{e}"
        );
    }
}
