//! What an application may expose is what its file asks for, and no more: end to end with the
//! `sturdy` command, a daemon of its own and real unikernels. Needs root and /dev/kvm (see
//! common/mod.rs).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// The pids of listening TCP and UDP sockets on the host, as `ss` shows them.
fn listening_pids() -> Vec<(u32, String)> {
    let out = Command::new("ss").args(["-ltunpH"]).output().unwrap();
    assert!(out.status.success(), "ss: {out:?}");
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // users:(("sturdy",pid=123,fd=7),...)
        for part in line.split("pid=").skip(1) {
            let pid = part.split(|c: char| !c.is_ascii_digit()).next().unwrap();
            found.push((pid.parse().unwrap(), line.to_string()));
        }
    }
    found
}

/// An http healthcheck is made by the gateway inside the fabric: with no `ports:`, neither the
/// daemon nor a monitor listens on any host port, web still turns healthy, and `inspect` names
/// the gateway as the only peer reaching web, for its probes.
#[test]
fn an_unpublished_service_is_probed_without_a_host_listener() {
    preconditions();
    let home = Home::new("trust-probe");
    let port = free_port();
    let file = guestbook_in(&home.dir.join("app"), "quiet", port);
    let yaml = std::fs::read_to_string(&file).unwrap();
    let unpublished = yaml.replace(&format!("    ports: [\"{port}:80\"]\n"), "");
    assert_ne!(yaml, unpublished, "the guestbook's ports line");
    std::fs::write(&file, unpublished).unwrap();

    home.ok(&["up", "-d", "--wait", file.to_str().unwrap()]);
    home.wait_state("quiet", "web", "healthy", Duration::from_secs(30));
    let daemon = home.daemon_pid().unwrap();
    let mut ours = monitors_of(daemon);
    assert_eq!(ours.len(), 2, "web's and db's monitors");
    ours.push(daemon);
    let listeners: Vec<_> = listening_pids()
        .into_iter()
        .filter(|(pid, _)| ours.contains(pid))
        .map(|(_, line)| line)
        .collect();
    assert!(
        listeners.is_empty(),
        "sturdy's processes listen on the host:\n{}",
        listeners.join("\n")
    );

    let web = home.json(&["inspect", "web", "-p", "quiet"]);
    assert_eq!(
        web["reachable_from"],
        serde_json::json!(["gateway -> http (health probes)"]),
        "{web}"
    );
    let text = home.ok(&["inspect", "web", "-p", "quiet"]);
    assert!(text.contains("last probe      ok"), "{text}");
    home.ok(&["down", "-p", "quiet", "--volumes"]);
}
