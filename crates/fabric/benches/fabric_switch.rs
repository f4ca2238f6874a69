//! Switch capacity without guests or I/O (issue 4, "Benchmarks"): frames pushed through
//! `Fabric::process` by a driver, under a policy of 100 services and 1000 capabilities, a mix
//! of frames of established TCP connections and of new connections (SYN, SYN-ACK, ACK, RST).
//! Prints frames per second, median of several runs, and the ratio to the target of 1 million
//! frames per second on one core.
//!
//! `cargo bench -p sturdy-fabric --bench fabric_switch [-- RUNS]` (benches/fabric.sh runs it).

use std::hint::black_box;
use std::time::Instant;

use sturdy_fabric::wire::build::{self, Host};
use sturdy_fabric::wire::TcpFlags;
use sturdy_fabric::{Config, Endpoint, Fabric, Plan, PortId, Proto, Verdict};

const SERVICES: usize = 100;
/// Endpoints per service, and capabilities per consumer: 100 x 10 = 1000 capabilities.
const ENDPOINTS: usize = 10;
/// Established connections each service has open (10 per capability).
const CONNS_PER_SERVICE: usize = 100;
/// Frames of established connections between two new connections (of 4 frames each): 80% of
/// the frames are established traffic, 20% open and close connections (5% are SYNs).
const ESTABLISHED_BETWEEN: usize = 16;
const NEW_CONNECTIONS: usize = 12_500;
/// Frames per run (the frame list is replayed to this many).
const FRAMES_PER_RUN: usize = 2_000_000;
/// Frames processed between two readings of the clock, as the run loop's batches.
const BATCH: usize = 32;
const TARGET: f64 = 1e6;

const SYN: TcpFlags = TcpFlags::SYN;
const SYN_ACK: TcpFlags = TcpFlags(0x12);
const ACK: TcpFlags = TcpFlags::ACK;
const PSH_ACK: TcpFlags = TcpFlags(0x18);
const RST: TcpFlags = TcpFlags::RST;

fn plan() -> Plan {
    let mut plan = Plan::new("10.77.0.0/24".parse().unwrap());
    for s in 0..SERVICES {
        let provides = (0..ENDPOINTS)
            .map(|e| Endpoint {
                name: format!("e{e}"),
                port: 1000 + e as u16,
                proto: Proto::Tcp,
            })
            .collect();
        plan.add_service(&format!("s{s}"), provides).unwrap();
    }
    // Service s uses endpoint k of service s + k + 1.
    for s in 0..SERVICES {
        for k in 0..ENDPOINTS {
            let provider = (s + k + 1) % SERVICES;
            plan.grant(&format!("s{s}"), &format!("s{provider}.e{k}"))
                .unwrap();
        }
    }
    assert_eq!(plan.capabilities.len(), 1000);
    plan
}

/// A frame and the port it arrives on.
struct Frame {
    from: PortId,
    bytes: Vec<u8>,
}

fn host(plan: &Plan, s: usize, port: u16) -> (PortId, Host) {
    let service = &plan.services[s];
    (service.port, Host::new(service.mac, service.ipv4, port))
}

/// The four frames of a short connection: SYN, SYN-ACK, ACK, RST.
fn short_connection(plan: &Plan, s: usize, k: usize, sport: u16) -> [Frame; 4] {
    let provider = (s + k + 1) % SERVICES;
    let (cp, c) = host(plan, s, sport);
    let (pp, p) = host(plan, provider, 1000 + k as u16);
    [
        Frame {
            from: cp,
            bytes: build::tcp(&c, &p, SYN, 1000, 0, b""),
        },
        Frame {
            from: pp,
            bytes: build::tcp(&p, &c, SYN_ACK, 5000, 1001, b""),
        },
        Frame {
            from: cp,
            bytes: build::tcp(&c, &p, ACK, 1001, 5001, b""),
        },
        Frame {
            from: cp,
            bytes: build::tcp(&c, &p, RST, 1001, 0, b""),
        },
    ]
}

struct Workload {
    /// Opens the established connections.
    setup: Vec<Frame>,
    /// Replayed in every run.
    mix: Vec<Frame>,
    established_only: Vec<Frame>,
    new_only: Vec<Frame>,
}

fn workload(plan: &Plan) -> Workload {
    let mut setup = Vec::new();
    let mut established = Vec::new();
    for s in 0..SERVICES {
        for i in 0..CONNS_PER_SERVICE {
            let k = i % ENDPOINTS;
            let sport = 20000 + i as u16;
            let [syn, syn_ack, ack, _] = short_connection(plan, s, k, sport);
            setup.extend([syn, syn_ack, ack]);
            let provider = (s + k + 1) % SERVICES;
            let (cp, c) = host(plan, s, sport);
            let (pp, p) = host(plan, provider, 1000 + k as u16);
            // A request and a response of 100 bytes each.
            established.push(Frame {
                from: cp,
                bytes: build::tcp(&c, &p, PSH_ACK, 1001, 5001, &[b'q'; 100]),
            });
            established.push(Frame {
                from: pp,
                bytes: build::tcp(&p, &c, PSH_ACK, 5001, 1101, &[b'r'; 100]),
            });
        }
    }
    // Interleave connections so that consecutive frames hit different table entries.
    let n = established.len();
    let spread: Vec<usize> = (0..n).map(|i| (i * 7919) % n).collect();
    let mut mix = Vec::new();
    let mut new_only = Vec::new();
    let mut next = 0;
    for c in 0..NEW_CONNECTIONS {
        for _ in 0..ESTABLISHED_BETWEEN {
            let f = &established[spread[next % n]];
            mix.push(Frame {
                from: f.from,
                bytes: f.bytes.clone(),
            });
            next += 1;
        }
        let s = c % SERVICES;
        let k = (c / SERVICES) % ENDPOINTS;
        let sport = 40000 + (c / (SERVICES * ENDPOINTS)) as u16;
        let frames = short_connection(plan, s, k, sport);
        for f in &frames {
            new_only.push(Frame {
                from: f.from,
                bytes: f.bytes.clone(),
            });
        }
        mix.extend(frames);
    }
    let established_only = spread
        .iter()
        .map(|&i| Frame {
            from: established[i].from,
            bytes: established[i].bytes.clone(),
        })
        .collect();
    Workload {
        setup,
        mix,
        established_only,
        new_only,
    }
}

/// Pushes `FRAMES_PER_RUN` frames of `frames` (replayed) through the fabric; frames/s.
fn run(fabric: &mut Fabric, frames: &mut [Frame]) -> f64 {
    let mut out_bytes = 0usize;
    let mut sink = |_: PortId, f: &[u8]| out_bytes += f.len();
    let start = Instant::now();
    let mut done = 0;
    while done < FRAMES_PER_RUN {
        for chunk in frames.chunks_mut(BATCH) {
            let now = Instant::now();
            for f in &mut *chunk {
                black_box(fabric.process(f.from, &mut f.bytes, now, &mut sink));
            }
            done += chunk.len();
            if done >= FRAMES_PER_RUN {
                break;
            }
        }
    }
    let elapsed = start.elapsed();
    black_box(out_bytes);
    done as f64 / elapsed.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn measure(name: &str, runs: usize, fabric: &mut Fabric, frames: &mut [Frame]) -> f64 {
    run(fabric, frames); // warm-up
    let rates: Vec<f64> = (0..runs).map(|_| run(fabric, frames)).collect();
    let (min, max) = (
        rates.iter().cloned().fold(f64::INFINITY, f64::min),
        rates.iter().cloned().fold(0.0, f64::max),
    );
    let m = median(rates);
    println!(
        "  {name:34} median {:6.2} M frames/s  (min {:.2}, max {:.2}; {} ns/frame)  target 1.00 M: {:.2}x",
        m / 1e6,
        min / 1e6,
        max / 1e6,
        (1e9 / m).round(),
        m / TARGET
    );
    m
}

fn main() {
    // `cargo bench` passes `--bench`; a number is the count of runs. Without `--bench` (as
    // `cargo test --all-targets` runs it, unoptimized) it is a quick check of the workload.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        let plan = plan();
        let mut w = workload(&plan);
        let mut fabric = Fabric::new(plan, Config::default()).unwrap();
        let t0 = Instant::now();
        for f in w.setup.iter_mut().chain(w.mix.iter_mut().take(50_000)) {
            let v = fabric.process(f.from, &mut f.bytes, t0, &mut |_, _| {});
            assert!(matches!(v, Verdict::Forwarded(_)), "{v:?}");
        }
        println!(
            "fabric_switch: workload checked (run `cargo bench` or benches/fabric.sh for figures)"
        );
        return;
    }
    let runs = args.iter().find_map(|a| a.parse().ok()).unwrap_or(7);
    let plan = plan();
    let mut w = workload(&plan);
    let mut fabric = Fabric::new(plan, Config::default()).unwrap();
    let t0 = Instant::now();
    for f in &mut w.setup {
        let v = fabric.process(f.from, &mut f.bytes, t0, &mut |_, _| {});
        assert!(matches!(v, Verdict::Forwarded(_)), "setup frame: {v:?}");
    }
    assert_eq!(fabric.connections(), SERVICES * CONNS_PER_SERVICE);
    // Every frame of the workload is forwarded (checked once, outside the timing).
    for f in w.mix.iter_mut() {
        let v = fabric.process(f.from, &mut f.bytes, t0, &mut |_, _| {});
        assert!(matches!(v, Verdict::Forwarded(_)), "workload frame: {v:?}");
    }
    assert_eq!(fabric.connections(), SERVICES * CONNS_PER_SERVICE);

    println!(
        "fabric switch capacity: {SERVICES} services, {} capabilities, {} established connections, \
         {FRAMES_PER_RUN} frames per run, median of {runs} runs, one core",
        fabric.plan().capabilities.len(),
        fabric.connections()
    );
    let mix = measure(
        "mix (80% established, 20% new)",
        runs,
        &mut fabric,
        &mut w.mix,
    );
    measure(
        "established connections only",
        runs,
        &mut fabric,
        &mut w.established_only,
    );
    measure(
        "new connections only (SYN..RST)",
        runs,
        &mut fabric,
        &mut w.new_only,
    );
    let drops: u64 = fabric
        .stats()
        .ports
        .iter()
        .map(|p| p.stats.drops.total())
        .sum();
    assert_eq!(drops, 0, "no frame of the workload may be dropped");
    println!(
        "fabric_switch: {:.2} M frames/s (mix), {:.2}x the 1 M frames/s target: {}",
        mix / 1e6,
        mix / TARGET,
        if mix >= TARGET { "met" } else { "NOT met" }
    );
}
