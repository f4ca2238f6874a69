//! These views against smoltcp's, the stack the guests run, on random and mutated bytes: what
//! one accepts the other does, and they read the same fields and agree on checksums. Nothing
//! panics on any input.

use proptest::prelude::*;
use smoltcp::wire as sm;

use super::*;

/// Bytes that are often nearly valid: a real header with a few bytes changed, cut or extended.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len();
    (
        prop::collection::vec((0..len, any::<u8>()), 0..4),
        0..=len + 8,
        prop::collection::vec(any::<u8>(), 0..8),
    )
        .prop_map(move |(edits, cut, tail)| {
            let mut b = valid.clone();
            for (at, v) in edits {
                b[at] = v;
            }
            b.extend_from_slice(&tail);
            b.truncate(cut);
            b
        })
}

fn ipv4_bytes() -> Vec<u8> {
    let frame = build::tcp(
        &build::Host::new(Mac([2, 0, 10, 77, 0, 2]), [10, 77, 0, 2].into(), 40000),
        &build::Host::new(Mac([2, 0, 10, 77, 0, 3]), [10, 77, 0, 3].into(), 6379),
        TcpFlags::SYN,
        12345,
        0,
        b"hello",
    );
    frame[14..].to_vec()
}

proptest! {
    #[test]
    fn ipv4_agrees_with_smoltcp(b in prop_oneof![mutated(ipv4_bytes()), prop::collection::vec(any::<u8>(), 0..80)]) {
        let ours = Ipv4Packet::new_checked(&b[..]);
        let theirs = sm::Ipv4Packet::new_checked(&b[..]);
        match (&ours, &theirs) {
            (Ok(o), Ok(t)) => {
                prop_assert_eq!(o.header_len(), usize::from(t.header_len()));
                prop_assert_eq!(o.total_len(), usize::from(t.total_len()));
                prop_assert_eq!(o.src(), t.src_addr());
                prop_assert_eq!(o.dst(), t.dst_addr());
                prop_assert_eq!(o.protocol().number(), u8::from(t.next_header()));
                prop_assert_eq!(o.more_frags(), t.more_frags());
                prop_assert_eq!(o.dont_frag(), t.dont_frag());
                prop_assert_eq!(o.frag_offset(), t.frag_offset());
                prop_assert_eq!(o.verify_checksum(), t.verify_checksum());
                prop_assert_eq!(o.payload(), t.payload());
            }
            // smoltcp's view leaves the version to `Repr::parse`.
            (Err(WireError::Malformed(_)), Ok(t)) => prop_assert_ne!(t.version(), 4),
            (Err(_), Err(_)) => {}
            (o, t) => prop_assert!(false, "ours {:?}, smoltcp {:?}", o.as_ref().map(|_| ()), t.as_ref().map(|_| ())),
        }
    }

    #[test]
    fn tcp_agrees_with_smoltcp(b in prop_oneof![mutated(ipv4_bytes()[20..].to_vec()), prop::collection::vec(any::<u8>(), 0..60)]) {
        let ours = TcpPacket::new_checked(&b[..]);
        let theirs = sm::TcpPacket::new_checked(&b[..]);
        prop_assert_eq!(ours.is_ok(), theirs.is_ok());
        if let (Ok(o), Ok(t)) = (ours, theirs) {
            prop_assert_eq!(o.src_port(), t.src_port());
            prop_assert_eq!(o.dst_port(), t.dst_port());
            prop_assert_eq!(o.seq(), t.seq_number().0 as u32);
            prop_assert_eq!(o.ack_number(), t.ack_number().0 as u32);
            let f = o.flags();
            prop_assert_eq!((f.syn(), f.ack(), f.fin(), f.rst()), (t.syn(), t.ack(), t.fin(), t.rst()));
            prop_assert_eq!(o.payload(), t.payload());
            let (src, dst) = (std::net::Ipv4Addr::new(10, 77, 0, 2), std::net::Ipv4Addr::new(10, 77, 0, 3));
            prop_assert_eq!(o.verify_checksum(src, dst), t.verify_checksum(&src.into(), &dst.into()));
        }
    }

    #[test]
    fn arp_agrees_with_smoltcp(b in prop_oneof![
        mutated(build::arp_request(&build::Host::new(Mac([2, 0, 10, 77, 0, 2]), [10, 77, 0, 2].into(), 0), [10, 77, 0, 3].into())[14..].to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
    ]) {
        if let Ok(o) = ArpPacket::new_checked(&b[..]) {
            let t = sm::ArpPacket::new_checked(&b[..]).expect("smoltcp accepts what we accept");
            let sm::ArpRepr::EthernetIpv4 { operation, source_hardware_addr, source_protocol_addr, target_hardware_addr, target_protocol_addr } =
                sm::ArpRepr::parse(&t).expect("an Ethernet/IPv4 ARP packet")
            else {
                unreachable!()
            };
            prop_assert_eq!(u16::from(o.op()), u16::from(operation));
            prop_assert_eq!(o.sender_mac().0, source_hardware_addr.0);
            prop_assert_eq!(o.sender_ip(), source_protocol_addr);
            prop_assert_eq!(o.target_mac().0, target_hardware_addr.0);
            prop_assert_eq!(o.target_ip(), target_protocol_addr);
        }
    }

    #[test]
    fn udp_and_icmp_views_never_read_out_of_bounds(b in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(u) = UdpPacket::new_checked(&b[..]) {
            prop_assert!(u.len() <= b.len());
            let _ = (u.src_port(), u.dst_port(), u.is_empty());
        }
        if let Ok(i) = IcmpPacket::new_checked(&b[..]) {
            let _ = (i.msg_type(), i.code(), i.echo_ident(), i.echo_seq(), i.is_echo_request(), i.is_echo_reply());
        }
        if let Ok(e) = EthernetFrame::new_checked(&b[..]) {
            let _ = (e.src(), e.dst(), e.ethertype(), e.payload().len());
        }
    }
}
