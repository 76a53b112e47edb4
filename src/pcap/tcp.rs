//! The TCP header (RFC 9293): parsed from captures, emitted for exports.
//!
//! Checksums are written but not verified on input, for the same reason IP
//! checksums are not (offloading makes them wrong in the sender's capture).

use byteorder::{BigEndian, ByteOrder};

use super::ip::Checksum;

/// Byte ranges of the header fields.
mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

pub const HEADER_LEN: usize = 20;

/// Header flags (the low byte of the flags field).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Option kinds an export's SYN carries.
mod option {
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
}

/// A TCP header's fields; options are skipped when parsing and are only
/// the SYN's MSS and window scale when emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// For emitting: the MSS and window scale shift to announce (SYNs).
    pub syn_options: Option<(u16, u8)>,
}

impl TcpHeader {
    /// Parses a segment into its header and payload.
    pub fn parse(segment: &[u8]) -> Result<(TcpHeader, &[u8]), &'static str> {
        if segment.len() < HEADER_LEN {
            return Err("TCP header incomplete");
        }
        let header_len = usize::from(segment[field::DATA_OFFSET] >> 4) * 4;
        if header_len < HEADER_LEN {
            return Err("bad TCP header length");
        }
        if segment.len() < header_len {
            return Err("TCP header incomplete");
        }
        let header = TcpHeader {
            src_port: BigEndian::read_u16(&segment[field::SRC_PORT]),
            dst_port: BigEndian::read_u16(&segment[field::DST_PORT]),
            seq: BigEndian::read_u32(&segment[field::SEQ]),
            ack: BigEndian::read_u32(&segment[field::ACK]),
            flags: segment[field::FLAGS],
            window: BigEndian::read_u16(&segment[field::WINDOW]),
            syn_options: None,
        };
        Ok((header, &segment[header_len..]))
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The header's length as emitted.
    pub fn header_len(&self) -> usize {
        match self.syn_options {
            Some(_) => HEADER_LEN + 8,
            None => HEADER_LEN,
        }
    }

    /// Writes the header into `buf[..self.header_len()]`. The checksum covers the
    /// header, the `payload` and the `pseudo` header sum.
    pub fn emit(&self, buf: &mut [u8], pseudo: Checksum, payload: &[u8]) {
        let len = self.header_len();
        let buf = &mut buf[..len];
        BigEndian::write_u16(&mut buf[field::SRC_PORT], self.src_port);
        BigEndian::write_u16(&mut buf[field::DST_PORT], self.dst_port);
        BigEndian::write_u32(&mut buf[field::SEQ], self.seq);
        BigEndian::write_u32(&mut buf[field::ACK], self.ack);
        buf[field::DATA_OFFSET] = ((len / 4) as u8) << 4;
        buf[field::FLAGS] = self.flags;
        BigEndian::write_u16(&mut buf[field::WINDOW], self.window);
        BigEndian::write_u16(&mut buf[field::CHECKSUM], 0);
        BigEndian::write_u16(&mut buf[field::URGENT], 0);
        if let Some((mss, shift)) = self.syn_options {
            let opts = &mut buf[HEADER_LEN..];
            opts[0] = option::MSS;
            opts[1] = 4;
            BigEndian::write_u16(&mut opts[2..4], mss);
            opts[4] = option::NOP;
            opts[5] = option::WINDOW_SCALE;
            opts[6] = 3;
            opts[7] = shift;
        }
        let sum = pseudo.feed(buf).feed(payload).finish();
        BigEndian::write_u16(&mut buf[field::CHECKSUM], sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::ip::pseudo_header;
    use std::net::IpAddr;

    #[test]
    fn emit_then_parse() {
        let header = TcpHeader {
            src_port: 40001,
            dst_port: 5000,
            seq: 0xfffffff0,
            ack: 17,
            flags: flags::PSH | flags::ACK,
            window: 512,
            syn_options: None,
        };
        let mut segment = vec![0u8; HEADER_LEN];
        let (src, dst) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let pseudo = pseudo_header(src, dst, HEADER_LEN + 3);
        header.emit(&mut segment, pseudo, b"abc");
        segment.extend_from_slice(b"abc");
        let (parsed, payload) = TcpHeader::parse(&segment).unwrap();
        assert_eq!(parsed, header);
        assert_eq!(payload, b"abc");
        assert!(parsed.has(flags::ACK) && !parsed.has(flags::SYN));
        // The checksum over pseudo-header, header and payload is zero.
        assert_eq!(pseudo.feed(&segment).finish(), 0);
    }

    #[test]
    fn syn_options_are_emitted_and_skipped() {
        let header = TcpHeader {
            src_port: 1,
            dst_port: 2,
            seq: 3,
            ack: 0,
            flags: flags::SYN,
            window: 65535,
            syn_options: Some((65495, 7)),
        };
        let mut segment = vec![0u8; header.header_len()];
        header.emit(&mut segment, Checksum::new(), &[]);
        assert_eq!(segment[12], 0x70, "7 words");
        assert_eq!(&segment[20..], &[2, 4, 0xff, 0xd7, 1, 3, 3, 7]);
        let (parsed, payload) = TcpHeader::parse(&segment).unwrap();
        assert_eq!((parsed.seq, parsed.flags), (3, flags::SYN));
        assert!(payload.is_empty());
    }

    #[test]
    fn bad_headers() {
        assert!(TcpHeader::parse(&[0; 19]).is_err());
        let mut segment = [0u8; 20];
        segment[12] = 0x40;
        assert_eq!(TcpHeader::parse(&segment), Err("bad TCP header length"));
        segment[12] = 0x60;
        assert_eq!(TcpHeader::parse(&segment), Err("TCP header incomplete"));
    }
}
