//! `sturdy run`: one unikernel, no file: an application of one service made up on the spot,
//! run through the daemon like any other (so `ps`, `logs` and `stats` see it), its console
//! printed as is; when it exits, it is removed and its exit status is `sturdy run`'s.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use sturdy_daemon::api::{AppInfo, DownInfo, LogLine, UpRequest};
use sturdy_daemon::client::encode;

use super::daemon;
use crate::error::CliError;

/// Examples shown by `sturdy run --help`.
pub const EXAMPLES: &str = "\
Examples:
  sudo sturdy run target/guest/x86_64-unknown-linux-gnu/release/hello-world
  sturdy run --mem 32M ./app.hvt --verbose  guest arguments after the image
  sturdy run -d -P 8080:80 ./web            in the background, its port 80 on host 8080

The unikernel gets an address on a fabric of its own and no capabilities (it can reach
nothing); -P publishes its TCP ports to the host. Its exit status is sturdy run's.";

/// Flags of `sturdy run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The unikernel image
    #[arg(value_name = "IMAGE", value_hint = clap::ValueHint::FilePath)]
    pub image: PathBuf,

    /// The guest's arguments
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,

    /// The application's name [default: the image's, with a unique suffix]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Guest memory
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    pub mem: String,

    /// Publish guest TCP port GUEST on host port HOST, on every host address (0.0.0.0, as
    /// Docker and Compose do) unless one is given: `127.0.0.1:8080:80`; repeatable
    #[arg(short = 'P', long = "publish", value_name = "[IP:]HOST:GUEST")]
    pub publish: Vec<String>,

    /// Start it in the background and return
    #[arg(short = 'd', long)]
    pub detach: bool,

    /// The monitor, if the daemon has to be started
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub hvt: Option<PathBuf>,
}

/// A service or application name made from `stem`: lowercase letters, digits and '-'.
fn label(stem: &str) -> String {
    let mut s: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches('-').to_string();
    if s.is_empty() || !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s.insert_str(0, "u-");
    }
    s.truncate(40);
    s.trim_end_matches('-').to_string()
}

/// The one-service application file for `args`, as YAML.
fn yaml(args: &Args, name: &str, service: &str, image: &Path) -> String {
    let q = |s: &str| serde_json::to_string(s).expect("a string serializes");
    let mut y = format!(
        "name: {}\nservices:\n  {service}:\n    image: {}\n    mem: {}\n    restart: \"no\"\n",
        q(name),
        q(&image.display().to_string()),
        q(&args.mem)
    );
    if !args.args.is_empty() {
        let list: Vec<String> = args.args.iter().map(|a| q(a)).collect();
        y.push_str(&format!("    command: [{}]\n", list.join(", ")));
    }
    if !args.publish.is_empty() {
        let mut provides = Vec::new();
        let mut ports = Vec::new();
        for p in &args.publish {
            let guest = p.rsplit(':').next().unwrap_or(p);
            provides.push(format!(
                "{}: {}",
                q(&format!("p{guest}")),
                q(&format!("{guest}/tcp"))
            ));
            ports.push(q(p));
        }
        y.push_str(&format!("    provides: {{ {} }}\n", provides.join(", ")));
        y.push_str(&format!("    ports: [{}]\n", ports.join(", ")));
    }
    y
}

/// Runs `sturdy run`.
pub fn run(args: &Args, state: &Path) -> Result<(), CliError> {
    let image = std::path::absolute(&args.image).unwrap_or_else(|_| args.image.clone());
    if !image.is_file() {
        return Err(anyhow!("{}: no such unikernel image", args.image.display()).into());
    }
    let stem = label(
        &image
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let name = args.name.clone().unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{stem}-{:04x}", (nanos ^ std::process::id()) & 0xffff)
    });
    let file = std::env::current_dir()
        .context("cannot read the current directory")?
        .join("sturdy-run.yaml");
    let plan = sturdy_compose::parse(&yaml(args, &name, &stem, &image), &file)?;
    daemon::check_kvm()?;
    let client = daemon::connect(state, args.hvt.as_deref())?;

    let stop = Arc::new(AtomicBool::new(false));
    if !args.detach {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone()).context("cannot handle signals")?;
        }
    }
    let info: AppInfo = client
        .post("/v1/apps", &UpRequest { plan })
        .map_err(|e| anyhow!(e))?;
    let app_path = format!("/v1/apps/{}", encode(&name));
    if args.detach {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{name}")?;
        for p in &info.published {
            eprintln!("sturdy: {} published on {}", p.endpoint, p.addr);
        }
        return Ok(());
    }
    // Every line of this instance, printed as it comes; the state polled between lines.
    let logs = format!(
        "{app_path}/logs?follow=true&since={}",
        encode(&info.created_at)
    );
    // The supervisor's note "exited with status N" follows the instance's last console line.
    let mut status = None;
    let mut failure = None;
    let mut exited_polls = 0;
    let result = client.lines(&logs, Duration::from_millis(50), |line| {
        if let Some(line) = line {
            let Ok(l) = serde_json::from_str::<LogLine>(line) else {
                return true;
            };
            let written = match l.stream.as_str() {
                "stdout" => {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{}", l.text).and_then(|()| out.flush())
                }
                "stderr" => writeln!(std::io::stderr(), "{}", l.text),
                _ => {
                    if let Some(code) = l.text.strip_prefix("exited with status ") {
                        status = Some(code.split(';').next().unwrap_or("1").parse().unwrap_or(1));
                        return false;
                    }
                    if l.text.starts_with("start failed") {
                        eprintln!("sturdy: {}", l.text);
                        status = Some(1);
                        return false;
                    }
                    Ok(())
                }
            };
            if let Err(e) = written {
                failure = Some(e);
                return false;
            }
            return true;
        }
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        // In case the note was missed: exited for a few looks in a row.
        match client.get::<AppInfo>(&app_path) {
            Ok(info) => {
                let s = &info.services[0];
                if s.pid.is_none() && s.state != "created" && s.state != "restarting" {
                    exited_polls += 1;
                    if exited_polls >= 10 {
                        status = Some(s.last_exit.unwrap_or(1));
                        return false;
                    }
                }
                true
            }
            Err(_) => {
                status = Some(1);
                false
            }
        }
    });
    let _: Result<DownInfo, _> = client.delete(&app_path);
    if let Some(e) = failure {
        return Err(e.into());
    }
    result.map_err(|e| anyhow!(e))?;
    if stop.load(Ordering::SeqCst) {
        return Err(CliError::Status(130));
    }
    match status {
        Some(0) | None => Ok(()),
        Some(code) => Err(CliError::Status(code.clamp(1, 255) as u8)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_labels() {
        assert_eq!(label("hello-world"), "hello-world");
        assert_eq!(label("My_App.v2"), "my-app-v2");
        assert_eq!(label("9lives"), "u-9lives");
        assert_eq!(label(""), "u");
    }

    #[test]
    fn the_made_up_file_is_a_valid_application() {
        let args = Args {
            image: "/bin/x".into(),
            args: vec!["--verbose".into(), "a=\"b\"".into()],
            name: None,
            mem: "32M".into(),
            publish: vec!["8080:80".into()],
            detach: false,
            hvt: None,
        };
        let y = yaml(&args, "x-1234", "x", Path::new("/bin/x"));
        let plan = sturdy_compose::parse(&y, Path::new("/tmp/sturdy-run.yaml")).unwrap();
        let s = &plan.services[0];
        assert_eq!(s.name, "x");
        assert_eq!(s.mem, 32 << 20);
        assert!(s
            .args
            .ends_with(&["--verbose".to_string(), "a=\"b\"".to_string()]));
        assert_eq!(s.ports[0].host_port, 8080);
        assert_eq!(s.ports[0].guest_port, 80);
        // On every host address unless one is given, as the flag's help says.
        assert_eq!(s.ports[0].host_ip, std::net::Ipv4Addr::UNSPECIFIED);
        let publish = <Args as clap::Args>::augment_args(clap::Command::new("run"))
            .get_arguments()
            .find(|a| a.get_id() == "publish")
            .and_then(|a| a.get_help().map(|h| h.to_string()))
            .unwrap();
        assert!(publish.contains("every host address (0.0.0.0"), "{publish}");
    }
}
