//! IPv4 and IPv6 headers: parsed from captures, IPv4 emitted for exports,
//! and the Internet checksum both need.
//!
//! Captures are read leniently: header checksums are not verified (a host
//! capturing its own traffic sees them before the NIC fills them in), and a
//! packet longer than its header says (Ethernet padding) is cut to the
//! header's length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use byteorder::{BigEndian, ByteOrder};

/// The IP protocol number of TCP.
pub const PROTOCOL_TCP: u8 = 6;

/// Byte ranges of the IPv4 header fields (RFC 791).
mod field4 {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Byte ranges of the IPv6 fixed header fields (RFC 8200).
mod field6 {
    use std::ops::Range;
    pub const VERSION: usize = 0;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV6_HEADER_LEN: usize = 40;

/// "More fragments" and the fragment offset mask of the IPv4 flags field.
const IPV4_MORE_FRAGMENTS: u16 = 0x2000;
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
const IPV4_OFFSET_MASK: u16 = 0x1fff;

/// IPv6 extension headers that can be stepped over.
mod next_header {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const AUTH: u8 = 51;
    pub const DEST_OPTIONS: u8 = 60;
    pub const MOBILITY: u8 = 135;
}

/// At most this many IPv6 extension headers are followed: a packet made
/// of nothing else must not keep the parser busy.
const MAX_EXTENSION_HEADERS: usize = 16;

/// Why an IP packet is not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not IPv4 or IPv6 at all, or too short to be: malformed.
    Malformed(&'static str),
    /// A valid packet that is not TCP, or TCP we cannot read.
    NotTcp,
    /// A fragment: only the first fragment has the TCP header, and
    /// fragments are not put back together.
    Fragment {
        src: IpAddr,
        dst: IpAddr,
        ident: u32,
    },
    /// The capture cut the packet short (small snaplen).
    Truncated { captured: usize, length: usize },
}

/// The parts of an IP packet that TCP needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRepr<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The TCP segment: what follows the IP header(s), cut to the length
    /// the header gives.
    pub payload: &'a [u8],
}

/// Parses an IPv4 or IPv6 packet carrying TCP; the version nibble decides.
pub fn parse(packet: &[u8]) -> Result<IpRepr<'_>, Skip> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => parse_v4(packet),
        Some(6) => parse_v6(packet),
        Some(_) => Err(Skip::Malformed("not an IPv4 or IPv6 packet")),
        None => Err(Skip::Malformed("empty IP packet")),
    }
}

fn parse_v4(packet: &[u8]) -> Result<IpRepr<'_>, Skip> {
    if packet.len() < IPV4_HEADER_LEN {
        return Err(Skip::Malformed("IPv4 header incomplete"));
    }
    let header_len = usize::from(packet[field4::VER_IHL] & 0x0f) * 4;
    let total = usize::from(BigEndian::read_u16(&packet[field4::LENGTH]));
    if header_len < IPV4_HEADER_LEN || total < header_len {
        return Err(Skip::Malformed("bad IPv4 header length"));
    }
    if packet.len() < header_len {
        return Err(Skip::Malformed("IPv4 header incomplete"));
    }
    let src = IpAddr::V4(Ipv4Addr::from(read_array::<4>(&packet[field4::SRC])));
    let dst = IpAddr::V4(Ipv4Addr::from(read_array::<4>(&packet[field4::DST])));
    if packet[field4::PROTOCOL] != PROTOCOL_TCP {
        return Err(Skip::NotTcp);
    }
    let frag = BigEndian::read_u16(&packet[field4::FLAGS_FRAG]);
    if frag & (IPV4_MORE_FRAGMENTS | IPV4_OFFSET_MASK) != 0 {
        let ident = u32::from(BigEndian::read_u16(&packet[field4::IDENT]));
        return Err(Skip::Fragment { src, dst, ident });
    }
    // TSO captures on the sending host show a total length of 0 for
    // segments larger than 64 KiB: take what was captured.
    let total = if total == 0 { packet.len() } else { total };
    if packet.len() < total {
        return Err(Skip::Truncated {
            captured: packet.len(),
            length: total,
        });
    }
    Ok(IpRepr {
        src,
        dst,
        payload: &packet[header_len..total],
    })
}

fn parse_v6(packet: &[u8]) -> Result<IpRepr<'_>, Skip> {
    if packet.len() < IPV6_HEADER_LEN {
        return Err(Skip::Malformed("IPv6 header incomplete"));
    }
    debug_assert_eq!(packet[field6::VERSION] >> 4, 6);
    let src = IpAddr::V6(Ipv6Addr::from(read_array::<16>(&packet[field6::SRC])));
    let dst = IpAddr::V6(Ipv6Addr::from(read_array::<16>(&packet[field6::DST])));
    let payload_len = usize::from(BigEndian::read_u16(&packet[field6::PAYLOAD_LEN]));
    if payload_len == 0 {
        // A jumbogram (or a TSO capture): the length is elsewhere.
        return Err(Skip::NotTcp);
    }
    let length = IPV6_HEADER_LEN + payload_len;
    // Extension headers are read from what was captured; only TCP's
    // packets must be whole.
    let end = length.min(packet.len());
    let mut next = packet[field6::NEXT_HEADER];
    let mut at = IPV6_HEADER_LEN;
    for _ in 0..MAX_EXTENSION_HEADERS {
        if next == PROTOCOL_TCP {
            if packet.len() < length {
                return Err(Skip::Truncated {
                    captured: packet.len(),
                    length,
                });
            }
            return Ok(IpRepr {
                src,
                dst,
                payload: &packet[at.min(end)..end],
            });
        }
        let ext = &packet[at.min(end)..end];
        if ext.len() < 8 {
            return Err(Skip::Malformed("IPv6 extension header incomplete"));
        }
        let len = match next {
            next_header::HOP_BY_HOP
            | next_header::ROUTING
            | next_header::DEST_OPTIONS
            | next_header::MOBILITY => (usize::from(ext[1]) + 1) * 8,
            next_header::AUTH => (usize::from(ext[1]) + 2) * 4,
            next_header::FRAGMENT => {
                let frag = BigEndian::read_u16(&ext[2..4]);
                // An atomic fragment (offset 0, no more) is a whole packet.
                if frag & 0xfff9 != 0 {
                    let ident = BigEndian::read_u32(&ext[4..8]);
                    return Err(Skip::Fragment { src, dst, ident });
                }
                8
            }
            // ESP, No Next Header, or another protocol.
            _ => return Err(Skip::NotTcp),
        };
        if ext.len() < len {
            return Err(Skip::Malformed("IPv6 extension header incomplete"));
        }
        next = ext[0];
        at += len;
    }
    Err(Skip::Malformed("too many IPv6 extension headers"))
}

fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[..N]);
    out
}

/// An IPv4 header as exports write it: no options, DF set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub ident: u16,
    /// Length of what follows the header.
    pub payload_len: usize,
}

impl Ipv4Header {
    pub const TTL: u8 = 64;

    /// Writes the header, checksum included, into `buf[..20]`.
    pub fn emit(&self, buf: &mut [u8]) {
        let buf = &mut buf[..IPV4_HEADER_LEN];
        buf[field4::VER_IHL] = 0x45;
        buf[field4::TOS] = 0;
        let total = IPV4_HEADER_LEN + self.payload_len;
        debug_assert!(total <= usize::from(u16::MAX));
        BigEndian::write_u16(&mut buf[field4::LENGTH], total as u16);
        BigEndian::write_u16(&mut buf[field4::IDENT], self.ident);
        BigEndian::write_u16(&mut buf[field4::FLAGS_FRAG], IPV4_DONT_FRAGMENT);
        buf[field4::TTL] = Self::TTL;
        buf[field4::PROTOCOL] = PROTOCOL_TCP;
        BigEndian::write_u16(&mut buf[field4::CHECKSUM], 0);
        buf[field4::SRC].copy_from_slice(&self.src.octets());
        buf[field4::DST].copy_from_slice(&self.dst.octets());
        let sum = Checksum::new().feed(buf).finish();
        BigEndian::write_u16(&mut buf[field4::CHECKSUM], sum);
    }
}

/// The Internet checksum (RFC 1071), summed piece by piece so a header and
/// a payload in different buffers need no copy. Every piece but the last
/// must have an even length.
#[derive(Debug, Clone, Copy, Default)]
pub struct Checksum {
    sum: u64,
}

impl Checksum {
    pub fn new() -> Checksum {
        Checksum { sum: 0 }
    }

    pub fn feed(mut self, bytes: &[u8]) -> Checksum {
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            self.sum += u64::from(BigEndian::read_u16(word));
        }
        if let [last] = words.remainder() {
            self.sum += u64::from(*last) << 8;
        }
        self
    }

    pub fn feed_u16(mut self, value: u16) -> Checksum {
        self.sum += u64::from(value);
        self
    }

    /// The one's complement of the folded sum, as it goes in a header.
    pub fn finish(self) -> u16 {
        let mut sum = self.sum;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }
}

/// The TCP pseudo-header's part of the checksum (RFC 793, RFC 8200 8.1).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, tcp_len: usize) -> Checksum {
    let sum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Checksum::new().feed(&s.octets()).feed(&d.octets()),
        (s, d) => Checksum::new()
            .feed(&to_v6(s).octets())
            .feed(&to_v6(d).octets()),
    };
    sum.feed_u16(u16::from(PROTOCOL_TCP))
        .feed_u16((tcp_len & 0xffff) as u16)
        .feed_u16((tcp_len >> 16) as u16)
}

fn to_v6(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textbook header (Wikipedia's IPv4 checksum example).
    const EXAMPLE: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn checksum_of_a_known_header() {
        let mut header = EXAMPLE;
        header[10] = 0;
        header[11] = 0;
        assert_eq!(Checksum::new().feed(&header).finish(), 0xb861);
        // A header with its checksum in sums to zero.
        assert_eq!(Checksum::new().feed(&EXAMPLE).finish(), 0);
    }

    #[test]
    fn checksum_pieces_and_odd_tail() {
        let whole = Checksum::new().feed(b"abcdefg").finish();
        let parts = Checksum::new().feed(b"ab").feed(b"cdefg").finish();
        assert_eq!(whole, parts);
        assert_eq!(Checksum::new().feed(&[]).finish(), 0xffff);
    }

    #[test]
    fn emitted_v4_header_parses_back() {
        let header = Ipv4Header {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            ident: 7,
            payload_len: 24,
        };
        let mut packet = vec![0u8; 44];
        header.emit(&mut packet);
        packet[IPV4_HEADER_LEN + 9] = 0xaa;
        assert_eq!(Checksum::new().feed(&packet[..20]).finish(), 0);
        let repr = parse(&packet).unwrap();
        assert_eq!(repr.src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(repr.dst, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(repr.payload.len(), 24);
        // Ethernet padding after the packet is cut off.
        packet.extend_from_slice(&[0; 6]);
        assert_eq!(parse(&packet).unwrap().payload.len(), 24);
        // A capture cut short is reported as such.
        assert_eq!(
            parse(&packet[..30]),
            Err(Skip::Truncated {
                captured: 30,
                length: 44
            })
        );
    }

    #[test]
    fn v4_fragments_and_other_protocols_are_skipped() {
        let mut packet = EXAMPLE.to_vec();
        assert_eq!(parse(&packet), Err(Skip::NotTcp), "UDP");
        packet[9] = PROTOCOL_TCP;
        packet[6] = 0x20; // more fragments
        assert!(matches!(parse(&packet), Err(Skip::Fragment { .. })));
        packet[6] = 0x00;
        packet[7] = 0x10; // offset 16
        assert!(matches!(parse(&packet), Err(Skip::Fragment { .. })));
        packet[0] = 0x44; // IHL 4
        assert!(matches!(parse(&packet), Err(Skip::Malformed(_))));
        assert!(matches!(parse(&[0x45, 0]), Err(Skip::Malformed(_))));
        assert!(matches!(parse(&[]), Err(Skip::Malformed(_))));
        assert!(matches!(parse(&[0x10; 40]), Err(Skip::Malformed(_))));
    }

    fn v6_packet(next: u8, ext: &[u8], tcp: &[u8]) -> Vec<u8> {
        let mut packet = vec![0u8; IPV6_HEADER_LEN];
        packet[0] = 0x60;
        BigEndian::write_u16(&mut packet[4..6], (ext.len() + tcp.len()) as u16);
        packet[6] = next;
        packet[8..24].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        packet[24..40].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        packet.extend_from_slice(ext);
        packet.extend_from_slice(tcp);
        packet
    }

    #[test]
    fn v6_with_extension_headers() {
        let plain = v6_packet(PROTOCOL_TCP, &[], b"tcp!");
        assert_eq!(parse(&plain).unwrap().payload, b"tcp!");
        // Hop-by-hop (8 bytes) then destination options (16 bytes).
        let mut ext = vec![next_header::DEST_OPTIONS, 0, 0, 0, 0, 0, 0, 0];
        ext.extend_from_slice(&[PROTOCOL_TCP, 1]);
        ext.extend_from_slice(&[0; 14]);
        let packet = v6_packet(next_header::HOP_BY_HOP, &ext, b"tcp!");
        let repr = parse(&packet).unwrap();
        assert_eq!(repr.payload, b"tcp!");
        assert_eq!(repr.src, IpAddr::V6(Ipv6Addr::LOCALHOST));
        // An atomic fragment header passes; a real fragment does not.
        let atomic = [PROTOCOL_TCP, 0, 0, 0, 0, 0, 0, 1];
        let packet = v6_packet(next_header::FRAGMENT, &atomic, b"tcp!");
        assert_eq!(parse(&packet).unwrap().payload, b"tcp!");
        let more = [PROTOCOL_TCP, 0, 0, 1, 0, 0, 0, 1];
        let packet = v6_packet(next_header::FRAGMENT, &more, b"tcp!");
        assert!(matches!(parse(&packet), Err(Skip::Fragment { .. })));
        // ESP cannot be read.
        assert_eq!(parse(&v6_packet(50, &[0; 8], b"")), Err(Skip::NotTcp));
        // A chain of extension headers that never ends is cut short.
        let looping = [next_header::DEST_OPTIONS, 0, 0, 0, 0, 0, 0, 0].repeat(40);
        let packet = v6_packet(next_header::DEST_OPTIONS, &looping, b"");
        assert!(matches!(parse(&packet), Err(Skip::Malformed(_))));
        // An extension header longer than the packet.
        let packet = v6_packet(
            next_header::ROUTING,
            &[PROTOCOL_TCP, 9, 0, 0, 0, 0, 0, 0],
            b"",
        );
        assert!(matches!(parse(&packet), Err(Skip::Malformed(_))));
    }

    #[test]
    fn pseudo_header_sums_both_families() {
        let v4 = pseudo_header(IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]), 20);
        // 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20
        assert_eq!(v4.finish(), !0x141du16);
        let v6 = pseudo_header(
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            20,
        );
        assert_eq!(v6.finish(), !(2 + 6 + 20u16));
    }
}
