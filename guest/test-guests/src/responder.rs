//! An ARP and ICMP echo responder for one IPv4 address on one network device, written by hand
//! (no IP stack): it answers ARP requests for its address and ICMP echo requests to it, and
//! ignores everything else. Replies are built in place in the receive buffer.

use core::net::Ipv4Addr;

use sturdy_rt::{println, Env, Error, Net};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETH_HEADER: usize = 14;
const ARP_PACKET: usize = 28;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
const IP_PROTO_ICMP: u8 = 1;
const ICMP_ECHO_REPLY: u8 = 0;
const ICMP_ECHO_REQUEST: u8 = 8;

/// A receive buffer of this size holds a frame of any MTU a TAP device can have.
pub const MAX_FRAME: usize = 65535 + ETH_HEADER;

/// Answers ARP and ping for `ip` on `net`.
pub struct Responder {
    net: Net,
    ip: Ipv4Addr,
    echo_replies: u64,
}

impl Responder {
    /// Opens NIC `device` with the address from `--OPTION=A.B.C.D` (or `default`), and prints
    /// `serving on A.B.C.D mac XX:XX:XX:XX:XX:XX`.
    pub fn open(env: &Env, device: &str, option: &str, default: Ipv4Addr) -> Self {
        let ip = match env.option(option) {
            None => default,
            Some(value) => value.parse().unwrap_or_else(|_| {
                crate::fail(format_args!("--{option}={value}: not an IPv4 address"))
            }),
        };
        let net =
            Net::open(device).unwrap_or_else(|e| crate::fail(format_args!("open {device}: {e}")));
        println!("serving on {ip} mac {}", net.mac());
        Responder {
            net,
            ip,
            echo_replies: 0,
        }
    }

    pub fn net(&self) -> &Net {
        &self.net
    }

    /// ICMP echo replies sent so far.
    pub fn echo_replies(&self) -> u64 {
        self.echo_replies
    }

    /// Answers every frame waiting on the device and returns once there is none left.
    /// `buf` must hold the device's largest frame.
    pub fn drain(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        loop {
            let len = match self.net.read(buf) {
                Ok(len) => len,
                Err(Error::Again) => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Some(reply) = self.answer(&mut buf[..len]) {
                self.net.write(&buf[..reply])?;
            }
        }
    }

    /// Turns the request in `frame` into its reply, in place; returns the reply's length, or
    /// `None` if the frame is not for us or needs no answer.
    fn answer(&mut self, frame: &mut [u8]) -> Option<usize> {
        if frame.len() < ETH_HEADER {
            return None;
        }
        let reply = match be16(frame, 12) {
            ETHERTYPE_ARP => self.answer_arp(&mut frame[ETH_HEADER..])?,
            ETHERTYPE_IPV4 => self.answer_icmp(&mut frame[ETH_HEADER..])?,
            _ => return None,
        };
        // Back to the sender, from us.
        frame.copy_within(6..12, 0);
        frame[6..12].copy_from_slice(&self.net.mac().0);
        Some(ETH_HEADER + reply)
    }

    /// ARP (RFC 826) for Ethernet and IPv4: a request for our address becomes our reply.
    fn answer_arp(&self, arp: &mut [u8]) -> Option<usize> {
        let is_ours = arp.len() >= ARP_PACKET
            && be16(arp, 0) == 1 // hardware: Ethernet
            && be16(arp, 2) == ETHERTYPE_IPV4
            && arp[4] == 6
            && arp[5] == 4
            && be16(arp, 6) == ARP_REQUEST
            && arp[24..28] == self.ip.octets();
        if !is_ours {
            return None;
        }
        arp[6..8].copy_from_slice(&ARP_REPLY.to_be_bytes());
        // The requester's hardware and protocol addresses become the target's...
        arp.copy_within(8..18, 18);
        // ...and ours the sender's.
        arp[8..14].copy_from_slice(&self.net.mac().0);
        arp[14..18].copy_from_slice(&self.ip.octets());
        Some(ARP_PACKET)
    }

    /// An ICMP echo request (RFC 792) to our address becomes the echo reply: same identifier,
    /// sequence number and data, addresses swapped, checksums recomputed.
    fn answer_icmp(&mut self, ip: &mut [u8]) -> Option<usize> {
        if ip.len() < 20 || ip[0] >> 4 != 4 {
            return None;
        }
        let header = usize::from(ip[0] & 0xf) * 4;
        let total = usize::from(be16(ip, 2));
        let fragmented = be16(ip, 6) & 0x3fff != 0; // more-fragments flag or an offset
        let is_echo_request = header >= 20
            && total >= header + 8
            && total <= ip.len()
            && !fragmented
            && ip[9] == IP_PROTO_ICMP
            && ip[16..20] == self.ip.octets()
            && checksum(&ip[..header]) == 0
            && checksum(&ip[header..total]) == 0
            && ip[header] == ICMP_ECHO_REQUEST
            && ip[header + 1] == 0;
        if !is_echo_request {
            return None;
        }
        let (src, dst) = ip[12..20].split_at_mut(4);
        src.swap_with_slice(dst);
        ip[8] = 64; // TTL
        put_checksum(&mut ip[..header], 10);
        let icmp = &mut ip[header..total];
        icmp[0] = ICMP_ECHO_REPLY;
        put_checksum(icmp, 2);
        self.echo_replies += 1;
        Some(total)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of the
/// 16-bit words. Over data that includes its checksum field, a correct checksum gives 0.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Recomputes the checksum of `data` into its field at byte `at`.
fn put_checksum(data: &mut [u8], at: usize) {
    data[at..at + 2].fill(0);
    let sum = checksum(data);
    data[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}
