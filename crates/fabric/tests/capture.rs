//! Packet capture read back by a real client: the pcap file of a capability, written while a
//! TCP handshake and a request cross the fabric, shows them in tshark.

use std::process::Command;
use std::time::{Duration, Instant};

use sturdy_fabric::pcap::PcapWriter;
use sturdy_fabric::wire::build::{self, Host};
use sturdy_fabric::wire::TcpFlags;
use sturdy_fabric::{
    Capability, CaptureTarget, Config, DropReason, Endpoint, Fabric, Plan, Proto, Verdict,
};

fn plan() -> Plan {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    plan.add_service("web", vec![]).unwrap();
    let kv = Endpoint {
        name: "kv".into(),
        port: 6379,
        proto: Proto::Tcp,
    };
    plan.add_service("db", vec![kv]).unwrap();
    plan.grant("web", "db.kv").unwrap();
    plan
}

fn host(plan: &Plan, name: &str, port: u16) -> (sturdy_fabric::PortId, Host) {
    let s = plan.service(name).unwrap();
    (s.port, Host::new(s.mac, s.ipv4, port))
}

#[test]
fn tshark_reads_the_capture_of_a_capability() {
    let plan = plan();
    let mut fabric = Fabric::new(plan.clone(), Config::default()).unwrap();
    let dir = std::env::temp_dir().join(format!("sturdy-fabric-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("web-db.kv.pcap");
    let file = std::fs::File::create(&path).unwrap();
    let id = fabric.capture(
        CaptureTarget::Capability(Capability::new("web", "db", "kv")),
        Box::new(PcapWriter::new(file).unwrap()),
    );

    let (web, w) = host(&plan, "web", 40000);
    let (db, d) = host(&plan, "db", 6379);
    let t0 = Instant::now();
    let at = |ms| t0 + Duration::from_millis(ms);
    let send = |fabric: &mut Fabric, port, mut frame: Vec<u8>, now| {
        fabric.process(port, &mut frame, now, &mut |_, _| {})
    };
    let frames = [
        (web, build::tcp(&w, &d, TcpFlags::SYN, 1000, 0, b""), 0),
        (db, build::tcp(&d, &w, TcpFlags(0x12), 5000, 1001, b""), 1),
        (web, build::tcp(&w, &d, TcpFlags::ACK, 1001, 5001, b""), 2),
        (
            web,
            build::tcp(&w, &d, TcpFlags(0x18), 1001, 5001, b"GET greeting\r\n"),
            3,
        ),
        (
            db,
            build::tcp(&d, &w, TcpFlags(0x18), 5001, 1015, b"hello\r\n"),
            4,
        ),
    ];
    for (port, frame, ms) in frames {
        assert!(matches!(
            send(&mut fabric, port, frame, at(ms)),
            Verdict::Forwarded(_)
        ));
    }
    // A frame the capability does not carry is not in its capture.
    let (web_again, m) = host(&plan, "web", 40001);
    let stray = build::tcp(&m, &d.port(22), TcpFlags::SYN, 1, 0, b"");
    assert_eq!(
        send(&mut fabric, web_again, stray, at(5)),
        Verdict::Dropped(DropReason::NoCapability)
    );
    assert!(fabric.stop_capture(id).is_some());

    let tshark = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-o",
            "tcp.relative_sequence_numbers:TRUE",
        ])
        .output();
    let Ok(tshark) = tshark else {
        // Installed by scripts/install-deps.sh; without it, say so instead of passing quietly.
        println!("SKIPPED: tshark is not installed (apt-get install tshark)");
        std::fs::remove_dir_all(&dir).unwrap();
        return;
    };
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&tshark.stdout);
    assert!(
        tshark.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains("10.77.0.2 → 10.77.0.3") && lines[0].contains("[SYN]"),
        "{text}"
    );
    assert!(
        lines[1].contains("10.77.0.3 → 10.77.0.2") && lines[1].contains("[SYN, ACK]"),
        "{text}"
    );
    assert!(lines[2].contains("[ACK]"), "{text}");
    // Port 6379: tshark decodes the payload as Redis (RESP).
    assert!(
        lines[3].contains(" 68 ") && lines[3].contains("Request"),
        "{text}"
    );
    assert!(
        lines[4].contains(" 61 ") && lines[4].contains("Response"),
        "{text}"
    );
    // The timestamps are the switch's times (1 ms apart).
    assert!(lines[1].contains("0.001"), "{text}");
}
