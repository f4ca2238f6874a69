//! The two example unikernels together, with no network but a wire: `web` and `kv` on the ends
//! of SOCK_SEQPACKET socketpairs (`--net:service=@FD`) joined by a hub, which also reaches a
//! TAP in a namespace so that `curl` can talk to `web`. web stores and reads entries in kv
//! through its `db` capability.

use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::harness::*;

fn on_wire(fd: &std::os::fd::OwnedFd, opts: &[&str], name: &str, args: &[&str]) -> Running {
    let mut cmd = hvt();
    cmd.arg(format!("--net:service=@{}", fd.as_raw_fd()))
        .args(opts)
        .arg(guest(name))
        .args(args);
    inherit_fd(&mut cmd, fd.as_raw_fd());
    spawn(cmd)
}

fn curl(ns: &NetNs, args: &[&str]) -> String {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn web_stores_and_reads_entries_in_kv_over_a_wire() {
    let dir = TempDir::new("guestbook");
    let disk = dir.file("kv.img", 16 << 20);
    let ns = NetNs::new("guestbook");
    ns.tap("tap0", "10.0.0.1/24", 1500);
    let (kv_hub, kv_end) = seqpacket_pair();
    let (web_hub, web_end) = seqpacket_pair();
    let _hub = Hub::start(vec![kv_hub, web_hub, open_tap(&ns, "tap0")]);

    let mut kv = on_wire(
        &kv_end,
        &["--mem=64", &format!("--block:storage={disk}")],
        "kv",
        &[
            "--sturdy.v1.net=service:10.0.0.3/24",
            "--sturdy.v1.provide=kv:6379/tcp",
        ],
    );
    kv.wait_for_line("serving on port 6379", Duration::from_secs(20));
    let mut web = on_wire(
        &web_end,
        &["--mem=64"],
        "web",
        &[
            "--sturdy.v1.net=service:10.0.0.2/24",
            "--sturdy.v1.use=db:10.0.0.3:6379/tcp",
            "--sturdy.v1.provide=http:80/tcp",
        ],
    );
    drop((kv_end, web_end));
    web.wait_for_line("web: serving http", Duration::from_secs(20));

    assert_eq!(curl(&ns, &["http://10.0.0.2/health"]).trim(), "ok");
    for (name, message) in [("ada", "first post"), ("grace", "hello from the wire")] {
        curl(
            &ns,
            &[
                "-o",
                "/dev/null",
                "--data-urlencode",
                &format!("name={name}"),
                "--data-urlencode",
                &format!("message={message}"),
                "http://10.0.0.2/entries",
            ],
        );
    }
    let json = curl(&ns, &["http://10.0.0.2/entries"]);
    assert!(
        json.contains("\"name\":\"grace\",\"message\":\"hello from the wire\""),
        "{json}"
    );
    assert!(
        json.contains("\"name\":\"ada\",\"message\":\"first post\""),
        "{json}"
    );
    let page = curl(&ns, &["http://10.0.0.2/"]);
    assert!(page.contains("hello from the wire"), "{page}");
}
