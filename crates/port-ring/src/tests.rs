use super::*;
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;

/// The two sides, the monitor's taken from a real offer on a socket pair.
fn both() -> (PortRings, PortRings, UnixDatagram, UnixDatagram) {
    let (fabric_end, monitor_end) = UnixDatagram::pair().unwrap();
    let fabric = create_and_offer(fabric_end.as_fd()).unwrap();
    let file = take_offer(monitor_end.as_fd()).unwrap().expect("an offer");
    let monitor = PortRings::open(file).unwrap();
    (fabric, monitor, fabric_end, monitor_end)
}

#[test]
fn frames_cross_both_ways_in_order() {
    let (mut fabric, mut monitor, ..) = both();
    assert!(!fabric.attached());
    monitor.set_attached();
    assert!(fabric.attached());

    for i in 0..10u8 {
        assert!(monitor.push(&[i; 60]));
    }
    assert!(!fabric.pending(), "nothing is visible before publish");
    monitor.publish();
    let mut buf = [0u8; 2048];
    for i in 0..10u8 {
        assert_eq!(fabric.pop(&mut buf).unwrap(), Some(Popped::Frame(60)));
        assert!(buf[..60].iter().all(|&b| b == i));
    }
    assert_eq!(fabric.pop(&mut buf).unwrap(), None);
    fabric.release();

    assert!(fabric.push(&[7; 1514]));
    fabric.publish();
    assert!(monitor.pending());
    assert_eq!(monitor.pop(&mut buf).unwrap(), Some(Popped::Frame(1514)));
    assert!(!monitor.pending());
}

#[test]
fn a_full_ring_refuses_until_the_consumer_releases() {
    let (mut fabric, mut monitor, ..) = both();
    for _ in 0..SLOTS {
        assert!(fabric.push(&[1; 100]));
    }
    assert!(!fabric.push(&[1; 100]), "a full ring takes no more");
    assert!(!fabric.has_room());
    fabric.publish();
    let mut buf = [0u8; 2048];
    monitor.pop(&mut buf).unwrap().unwrap();
    assert!(!fabric.push(&[1; 100]), "a slot is free only once released");
    monitor.release();
    assert!(fabric.push(&[2; 100]));
    assert!(
        !fabric.push(&[0; MAX_FRAME + 1]),
        "a frame longer than a slot"
    );
}

#[test]
fn a_hostile_producer_is_caught_or_harmless() {
    let (mut fabric, monitor, ..) = both();
    let mut buf = [0u8; 2048];
    let mem = monitor.mem();
    // A tail more than a ring ahead.
    mem.store(SLOTS + 1, TO_FABRIC + RING_OFF_TAIL, Ordering::Release)
        .unwrap();
    assert!(fabric.pop(&mut buf).is_err());
    // Lengths beyond the slot, or beyond the reader's buffer, are reported, never copied.
    mem.store(2u32, TO_FABRIC + RING_OFF_TAIL, Ordering::Release)
        .unwrap();
    mem.store(u32::MAX, PortRings::slot(TO_FABRIC, 0), Ordering::Relaxed)
        .unwrap();
    mem.store(1000u32, PortRings::slot(TO_FABRIC, 1), Ordering::Relaxed)
        .unwrap();
    assert_eq!(
        fabric.pop(&mut buf).unwrap(),
        Some(Popped::Oversized(u32::MAX as usize))
    );
    let mut small = [0u8; 100];
    assert_eq!(
        fabric.pop(&mut small).unwrap(),
        Some(Popped::Oversized(1000))
    );
    assert_eq!(fabric.pop(&mut buf).unwrap(), None);
}

#[test]
fn a_lying_consumer_only_loses_its_own_frames() {
    let (mut fabric, monitor, ..) = both();
    let head = TO_MONITOR + RING_OFF_HEAD;
    // A head ahead of anything written: the ring looks full, nothing is written.
    monitor
        .mem()
        .store(100u32, head, Ordering::Release)
        .unwrap();
    assert!(!fabric.push(&[3; 64]));
    // A head 100 frames behind the start: the producer writes what it believes is free and no
    // more, in its own slots.
    monitor
        .mem()
        .store(0u32.wrapping_sub(100), head, Ordering::Release)
        .unwrap();
    let mut pushed = 0;
    while fabric.push(&[3; 64]) {
        pushed += 1;
        assert!(pushed <= SLOTS, "pushed past a full ring");
    }
    assert_eq!(pushed, SLOTS - 100);
}

#[test]
fn the_fabric_says_once_when_it_sends_through_the_rings_only() {
    let (mut fabric, monitor, ..) = both();
    assert!(
        !fabric.send_through_rings(),
        "the monitor does not serve them yet"
    );
    assert!(!monitor.fabric_switched());
    monitor.set_attached();
    assert!(fabric.send_through_rings());
    assert!(monitor.fabric_switched());
    assert!(fabric.send_through_rings());
}

#[test]
fn a_sleeping_consumer_gets_one_doorbell_and_never_misses_a_frame() {
    let (mut fabric, mut monitor, ..) = both();
    assert!(!fabric.publish(), "nothing pushed: nothing to ring");
    assert!(monitor.prepare_sleep());
    assert!(fabric.push(&[1; 60]));
    assert!(fabric.publish(), "the monitor sleeps: ring");
    assert!(fabric.push(&[2; 60]));
    assert!(!fabric.publish(), "one doorbell per sleep");
    monitor.woke();
    // Frames waiting: no sleep.
    assert!(!monitor.prepare_sleep());
    let mut buf = [0u8; 2048];
    assert_eq!(monitor.pop(&mut buf).unwrap(), Some(Popped::Frame(60)));
}

#[test]
fn only_a_sealed_memory_file_of_the_right_size_and_header_opens() {
    let unsealed = tempfile();
    unsealed.set_len(SIZE as u64).unwrap();
    assert!(matches!(
        PortRings::open(unsealed),
        Err(OpenError::NotSealed)
    ));
    let small = sys::sealed_memfd(4096).unwrap();
    assert!(matches!(
        PortRings::open(small),
        Err(OpenError::Size { found: 4096 })
    ));
    let blank = sys::sealed_memfd(SIZE as u64).unwrap();
    assert!(matches!(
        PortRings::open(blank),
        Err(OpenError::Header { magic: 0, .. })
    ));
}

/// A memory file that is not sealed.
#[allow(unsafe_code)]
fn tempfile() -> File {
    // SAFETY: a constant NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"t".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
}

#[test]
fn a_socket_without_an_offer_keeps_its_frames() {
    let (a, b) = UnixDatagram::pair().unwrap();
    assert!(take_offer(b.as_fd()).unwrap().is_none(), "nothing waiting");
    a.send(&[9; 60]).unwrap();
    assert!(take_offer(b.as_fd()).unwrap().is_none());
    let mut buf = [0u8; 100];
    assert_eq!(b.recv(&mut buf).unwrap(), 60, "the frame is still there");
    // A message that looks like an offer but carries no descriptor is an error, not rings.
    a.send(OFFER).unwrap();
    assert!(take_offer(b.as_fd()).is_err());
}

#[test]
fn a_doorbell_is_one_byte() {
    let (a, b) = UnixDatagram::pair().unwrap();
    send_doorbell(a.as_fd()).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(b.recv(&mut buf).unwrap(), 1);
    assert_eq!(buf[0], DOORBELL);
    drop(b);
    assert!(
        send_doorbell(a.as_fd()).is_err(),
        "a closed peer is an error"
    );
}

#[test]
fn threads_exchange_many_frames_intact() {
    let (mut fabric, mut monitor, ..) = both();
    const N: u32 = 200_000;
    let producer = std::thread::spawn(move || {
        let mut i = 0u32;
        let mut frame = [0u8; 1514];
        while i < N {
            let len = 14 + (i as usize * 7) % 1500;
            frame[..4].copy_from_slice(&i.to_le_bytes());
            frame[4] = (i % 251) as u8;
            frame[len - 1] = (i % 13) as u8;
            if monitor.push(&frame[..len]) {
                i += 1;
                if i.is_multiple_of(16) {
                    monitor.publish();
                }
            } else {
                monitor.publish();
                std::thread::yield_now();
            }
        }
        monitor.publish();
    });
    let mut buf = [0u8; 2048];
    let mut next = 0u32;
    while next < N {
        match fabric.pop(&mut buf).unwrap() {
            Some(Popped::Frame(len)) => {
                let i = u32::from_le_bytes(buf[..4].try_into().unwrap());
                assert_eq!(i, next);
                assert_eq!(len, 14 + (i as usize * 7) % 1500);
                assert_eq!(buf[4], (i % 251) as u8);
                assert_eq!(buf[len - 1], (i % 13) as u8);
                next += 1;
                if next.is_multiple_of(8) {
                    fabric.release();
                }
            }
            Some(Popped::Oversized(len)) => panic!("oversized {len}"),
            None => {
                fabric.release();
                std::thread::yield_now();
            }
        }
    }
    producer.join().unwrap();
}

/// The sleep protocol across threads, in lock step: the producer sends a burst, and the next
/// only once the consumer has taken it all, so every burst lands while the consumer is falling
/// asleep or asleep. A lost wake-up leaves the consumer asleep with frames waiting and fails on
/// the receive timeout.
#[test]
fn a_consumer_that_sleeps_between_bursts_misses_none() {
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;
    let (mut fabric, mut monitor, fabric_end, monitor_end) = both();
    monitor.set_attached();
    monitor_end
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    const BURSTS: u32 = 5_000;
    let taken = Arc::new(AtomicU32::new(0));
    let producer = {
        let taken = taken.clone();
        std::thread::spawn(move || {
            let mut sent = 0u32;
            for burst in 0..BURSTS {
                for _ in 0..1 + burst % 3 {
                    assert!(fabric.push(&sent.to_le_bytes()));
                    sent += 1;
                }
                if fabric.publish() {
                    send_doorbell(fabric_end.as_fd()).unwrap();
                }
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while taken.load(Ordering::Acquire) != sent {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "burst {burst} not taken"
                    );
                    std::thread::yield_now();
                }
            }
            (sent, fabric_end)
        })
    };
    let total: u32 = (0..BURSTS).map(|b| 1 + b % 3).sum();
    let mut buf = [0u8; 64];
    let mut next = 0u32;
    let mut slept = 0;
    while next < total {
        match monitor.pop(&mut buf).unwrap() {
            Some(Popped::Frame(4)) => {
                assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), next);
                next += 1;
                monitor.release();
                taken.store(next, Ordering::Release);
            }
            Some(other) => panic!("{other:?}"),
            None => {
                // Sometimes slow to fall asleep: the next burst lands in between.
                if next.is_multiple_of(2) {
                    let t = std::time::Instant::now();
                    while t.elapsed() < std::time::Duration::from_micros(20) {}
                }
                if monitor.prepare_sleep() {
                    let mut bell = [0u8; 8];
                    monitor_end
                        .recv(&mut bell)
                        .unwrap_or_else(|e| panic!("asleep with frame {next} waiting: {e}"));
                    slept += 1;
                }
                monitor.woke();
            }
        }
    }
    assert_eq!(producer.join().unwrap().0, total);
    assert!(slept > 100, "the consumer slept only {slept} times");
}
