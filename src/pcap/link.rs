//! Link layers: from a captured frame to the IP packet inside it.
//!
//! The LINKTYPE_ values are those of pcap-linktype(7); the file formats
//! store them, not the platform's DLT_ numbers.

use byteorder::{BigEndian, ByteOrder, LittleEndian};

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// Byte ranges of the link headers.
mod field {
    use std::ops::Range;
    pub const ETHERNET_TYPE: Range<usize> = 12..14;
    pub const ETHERNET_LEN: usize = 14;
    /// A VLAN tag: TCI, then the inner ethertype.
    pub const VLAN_TYPE: Range<usize> = 2..4;
    pub const VLAN_LEN: usize = 4;
    pub const SLL_PROTOCOL: Range<usize> = 14..16;
    pub const SLL_LEN: usize = 16;
    pub const SLL2_PROTOCOL: Range<usize> = 0..2;
    pub const SLL2_LEN: usize = 20;
    pub const NULL_FAMILY: Range<usize> = 0..4;
    pub const NULL_LEN: usize = 4;
}

/// Address family values of the null/loopback header: AF_INET is 2
/// everywhere, AF_INET6 differs between systems.
const AF_INET: u32 = 2;
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

/// True for the link types `ip_packet` reads.
pub fn is_supported(link: u32) -> bool {
    matches!(
        link,
        LINKTYPE_NULL
            | LINKTYPE_ETHERNET
            | LINKTYPE_RAW
            | LINKTYPE_LOOP
            | LINKTYPE_LINUX_SLL
            | LINKTYPE_IPV4
            | LINKTYPE_IPV6
            | LINKTYPE_LINUX_SLL2
    )
}

/// The IP packet in a frame: `Ok(None)` for frames that carry something
/// else (ARP, LLDP...), `Err` for a frame too short for its link header.
/// `link` must be supported.
pub fn ip_packet(link: u32, frame: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    match link {
        LINKTYPE_ETHERNET => ethernet(frame),
        LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => Ok(Some(frame)),
        LINKTYPE_LINUX_SLL => {
            let header = frame
                .get(..field::SLL_LEN)
                .ok_or("Linux cooked header incomplete")?;
            let ethertype = BigEndian::read_u16(&header[field::SLL_PROTOCOL]);
            Ok(by_ethertype(ethertype, &frame[field::SLL_LEN..]))
        }
        LINKTYPE_LINUX_SLL2 => {
            let header = frame
                .get(..field::SLL2_LEN)
                .ok_or("Linux cooked v2 header incomplete")?;
            let ethertype = BigEndian::read_u16(&header[field::SLL2_PROTOCOL]);
            Ok(by_ethertype(ethertype, &frame[field::SLL2_LEN..]))
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let header = frame
                .get(..field::NULL_LEN)
                .ok_or("loopback header incomplete")?;
            // The family is in the capturing host's byte order (NULL) or
            // network order (LOOP); try both.
            let families = [
                LittleEndian::read_u32(&header[field::NULL_FAMILY]),
                BigEndian::read_u32(&header[field::NULL_FAMILY]),
            ];
            let ip = families
                .iter()
                .any(|f| *f == AF_INET || AF_INET6.contains(f));
            Ok(ip.then(|| &frame[field::NULL_LEN..]))
        }
        _ => Err("unsupported link type"),
    }
}

fn ethernet(frame: &[u8]) -> Result<Option<&[u8]>, &'static str> {
    let header = frame
        .get(..field::ETHERNET_LEN)
        .ok_or("Ethernet header incomplete")?;
    let mut ethertype = BigEndian::read_u16(&header[field::ETHERNET_TYPE]);
    let mut rest = &frame[field::ETHERNET_LEN..];
    // One tag (802.1Q), or an outer 802.1ad tag and an inner one.
    for _ in 0..2 {
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            break;
        }
        let tag = rest.get(..field::VLAN_LEN).ok_or("VLAN tag incomplete")?;
        ethertype = BigEndian::read_u16(&tag[field::VLAN_TYPE]);
        rest = &rest[field::VLAN_LEN..];
    }
    Ok(by_ethertype(ethertype, rest))
}

fn by_ethertype(ethertype: u16, payload: &[u8]) -> Option<&[u8]> {
    matches!(ethertype, ETHERTYPE_IPV4 | ETHERTYPE_IPV6).then_some(payload)
}

/// Wraps an IP packet in the given link layer: for tests that build
/// captures of every kind.
#[cfg(test)]
pub fn wrap(link: u32, ip: &[u8]) -> Vec<u8> {
    let v6 = ip.first().map(|b| b >> 4) == Some(6);
    let ethertype: u16 = if v6 { ETHERTYPE_IPV6 } else { ETHERTYPE_IPV4 };
    let mut out = Vec::new();
    match link {
        LINKTYPE_ETHERNET => {
            out.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            out.extend_from_slice(&[0x00, 0x2a]);
            out.extend_from_slice(&ethertype.to_be_bytes());
        }
        LINKTYPE_LINUX_SLL => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            out.extend_from_slice(&ethertype.to_be_bytes());
        }
        LINKTYPE_LINUX_SLL2 => {
            out.extend_from_slice(&ethertype.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        LINKTYPE_NULL => {
            let family = if v6 { 30 } else { AF_INET };
            out.extend_from_slice(&family.to_le_bytes());
        }
        LINKTYPE_LOOP => {
            let family = if v6 { 24 } else { AF_INET };
            out.extend_from_slice(&family.to_be_bytes());
        }
        _ => {}
    }
    out.extend_from_slice(ip);
    if link == LINKTYPE_ETHERNET && out.len() < 60 {
        // Short frames are padded to the Ethernet minimum.
        out.resize(60, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINKS: [u32; 8] = [
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    ];

    #[test]
    fn every_link_type_unwraps_what_wrap_made() {
        for link in LINKS {
            assert!(is_supported(link));
            for ip in [&[0x45u8, 1, 2, 3][..], &[0x60, 1, 2, 3]] {
                let frame = wrap(link, ip);
                let got = ip_packet(link, &frame).unwrap().unwrap();
                assert!(got.starts_with(ip), "link {link}");
            }
        }
        assert!(!is_supported(105));
    }

    #[test]
    fn other_protocols_and_short_frames() {
        let mut arp = wrap(LINKTYPE_ETHERNET, &[0x45]);
        arp[16..18].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(ip_packet(LINKTYPE_ETHERNET, &arp), Ok(None));
        assert!(ip_packet(LINKTYPE_ETHERNET, &[0; 13]).is_err());
        assert!(ip_packet(LINKTYPE_ETHERNET, &arp[..16]).is_err(), "cut tag");
        assert!(ip_packet(LINKTYPE_LINUX_SLL, &[0; 15]).is_err());
        assert!(ip_packet(LINKTYPE_LINUX_SLL2, &[0; 19]).is_err());
        assert!(ip_packet(LINKTYPE_NULL, &[2, 0]).is_err());
        assert_eq!(ip_packet(LINKTYPE_NULL, &[7, 0, 0, 0, 0x45]), Ok(None));
    }
}
