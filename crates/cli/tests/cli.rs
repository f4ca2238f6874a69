//! The `sturdy` binary, run as a user runs it: each test gets its own temp dir and a command
//! for the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `sturdy ARGS` run in the repository's root.
fn sturdy(args: &[&str]) -> Output {
    sturdy_in(&root(), args)
}

fn sturdy_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sturdy"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the sturdy binary runs")
}

/// A fresh, empty directory for the test called `name`.
fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn guestbook() -> sturdy_compose::Plan {
    let file = "examples/guestbook/sturdy.yaml";
    let src = std::fs::read_to_string(root().join(file)).unwrap();
    sturdy_compose::parse(&src, Path::new(file)).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn config_prints_the_guestbook_plan_as_yaml() {
    let out = sturdy(&["config", "examples/guestbook"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let yaml = stdout(&out);
    assert!(yaml.contains("name: guestbook\n"), "{yaml}");
    assert!(yaml.contains("ipv4: 10.77.0.2\n"), "{yaml}");
    assert!(
        yaml.contains("capabilities:\n  - consumer: web\n    provider: db\n    endpoint: kv\n"),
        "{yaml}"
    );
    assert_eq!(yaml, guestbook().to_yaml());
    assert!(stderr(&out).is_empty());
}

#[test]
fn config_json_has_the_same_data() {
    let out = sturdy(&["config", "examples/guestbook", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["name"], "guestbook");
    assert_eq!(json["services"][0]["name"], "web");
    assert_eq!(json["services"][0]["ipv4"], "10.77.0.2");
    assert_eq!(json["capabilities"][0]["consumer"], "web");
    assert_eq!(json["capabilities"][0]["provider"], "db");
    assert_eq!(json["capabilities"][0]["endpoint"], "kv");
    let back = sturdy_compose::Plan::from_json(&stdout(&out)).unwrap();
    assert_eq!(back, guestbook());
}

/// The file as Compose users give it: `-f FILE` before the verb or after it.
#[test]
fn the_file_is_taken_with_dash_f_before_or_after_the_verb() {
    let path = "examples/guestbook/sturdy.yaml";
    let expected = stdout(&sturdy(&["config", path]));
    for args in [
        &["-f", path, "config"][..],
        &["config", "-f", path],
        &["config", "--file", path],
        &["--file", path, "config"],
    ] {
        let out = sturdy(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), expected, "{args:?}");
    }
    let out = sturdy(&["-f", path, "config", "examples/other.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("two application files"),
        "{}",
        stderr(&out)
    );
    let out = sturdy(&["-f", path, "completions", "bash"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("takes no application file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn config_of_a_directory_defaults_to_the_current_one() {
    let out = sturdy_in(&root().join("examples/guestbook"), &["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("file: \"./sturdy.yaml\"\n"));
}

#[test]
fn config_of_a_broken_file_prints_each_diagnostic_and_exits_1() {
    let dir = temp_dir("broken");
    let src = "\
name: app
services:
  web:
    image: guests/web
    imgae: typo
    uses: [dbx]
  db:
    image: guests/kv
    provides: { kv: 6379/tcp }
";
    std::fs::write(dir.join("sturdy.yaml"), src).unwrap();
    let out = sturdy_in(&dir, &["config", "sturdy.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let expected: String = sturdy_compose::parse(src, Path::new("sturdy.yaml"))
        .unwrap_err()
        .diagnostics()
        .iter()
        .map(|d| format!("{d}\n"))
        .collect();
    assert_eq!(stderr(&out), expected);
    let lines: Vec<String> = stderr(&out).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("sturdy.yaml:5:5: services.web.imgae: "),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("sturdy.yaml:6:12: services.web.uses[0]: no service 'dbx'"),
        "{lines:?}"
    );
}

#[test]
fn config_of_a_missing_file_says_what_to_do() {
    let dir = temp_dir("missing");
    let out = sturdy_in(&dir, &["config"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "sturdy: cannot read ./sturdy.yaml: No such file or directory \
         (run it in a directory with a sturdy.yaml, or name the file)\n"
    );
    let out = sturdy_in(&dir, &["config", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "sturdy: cannot read nope.yaml: No such file or directory \
         (run it in a directory with a sturdy.yaml, or name the file)\n"
    );
    let out = sturdy_in(&dir, &["graph", "nope.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).starts_with("sturdy: cannot read nope.yaml: "));
}

#[test]
fn graph_draws_capabilities_and_published_ports() {
    let out = sturdy(&["graph", "examples/guestbook"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph \"guestbook\" {"), "{dot}");
    assert!(
        dot.contains(r#""web" [label="web\n10.77.0.2\nhttp 80/tcp"];"#),
        "{dot}"
    );
    assert!(
        dot.contains(r#""db" [label="db\n10.77.0.3\nkv 6379/tcp"];"#),
        "{dot}"
    );
    assert!(
        dot.contains(r#""web" -> "db" [label="kv 6379/tcp"];"#),
        "{dot}"
    );
    assert!(
        dot.contains(r#""host" -> "web" [label="8080 -> http 80/tcp""#),
        "{dot}"
    );
    assert_eq!(dot.matches(" -> ").count() - 1, 2, "two edges: {dot}");
    assert!(!dot.contains("outside"), "no egress: {dot}");
}

#[test]
fn graph_draws_egress_to_outside() {
    let dir = temp_dir("egress");
    std::fs::write(
        dir.join("sturdy.yaml"),
        "name: app\nservices:\n  web: { image: w, egress: [\"203.0.113.7:443/tcp\"] }\n",
    )
    .unwrap();
    let out = sturdy_in(&dir, &["graph"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dot = stdout(&out);
    assert!(
        dot.contains(r#""web" -> "outside" [label="203.0.113.7:443/tcp""#),
        "{dot}"
    );
}

#[test]
fn graph_writes_to_a_file() {
    let dir = temp_dir("graph-file");
    let file = dir.join("app.dot");
    let out = sturdy(&["graph", "examples/guestbook", "-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let dot = std::fs::read_to_string(&file).unwrap();
    assert_eq!(dot, stdout(&sturdy(&["graph", "examples/guestbook"])));
}

fn have_dot() -> bool {
    Command::new("dot").arg("-V").output().is_ok()
}

#[test]
fn graph_svg_renders_with_graphviz_or_says_how_to_get_it() {
    let out = sturdy(&["graph", "examples/guestbook", "--format", "svg"]);
    if have_dot() {
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("<svg"), "{}", stdout(&out));
    } else {
        assert_eq!(out.status.code(), Some(1));
        assert!(out.stdout.is_empty());
        assert!(
            stderr(&out).contains("install graphviz (apt-get install graphviz)"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn graph_svg_without_graphviz_is_a_clear_error() {
    let empty = temp_dir("no-graphviz");
    let out = Command::new(env!("CARGO_BIN_EXE_sturdy"))
        .args(["graph", "examples/guestbook", "--format", "svg"])
        .current_dir(root())
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "sturdy: --format svg needs Graphviz's `dot`, which is not installed: \
         install graphviz (apt-get install graphviz), or use --format dot\n"
    );
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = sturdy(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("sturdy"), "{shell}");
        assert!(
            script.contains("config") && script.contains("graph"),
            "{shell}"
        );
    }
    let out = sturdy(&["completions", "powershell-ish"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_mentions_every_verb_and_only_real_ones() {
    let out = sturdy(&["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    let verbs = [
        "up",
        "down",
        "ps",
        "logs",
        "restart",
        "stop",
        "start",
        "stats",
        "inspect",
        "capture",
        "run",
        "config",
        "graph",
        "daemon",
        "completions",
    ];
    for verb in verbs {
        assert!(help.contains(&format!("\n  {verb} ")), "{verb}: {help}");
        let out = sturdy(&[verb, "--help"]);
        assert!(out.status.success(), "{verb}");
        assert!(stdout(&out).contains("Examples:\n"), "{verb}");
    }
    assert!(help.contains("Examples:\n"));
    // Only those (and clap's own `help`).
    let listed = help
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .count();
    assert_eq!(listed, verbs.len(), "{help}");
    for missing in ["deploy", "exec"] {
        assert_eq!(sturdy(&[missing]).status.code(), Some(2), "{missing}");
    }
}

#[test]
fn version() {
    let out = sturdy(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out),
        format!("sturdy {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn no_verb_shows_help_and_fails() {
    let out = sturdy(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("Usage: sturdy [OPTIONS] <COMMAND>"),
        "{}",
        stderr(&out)
    );
}
