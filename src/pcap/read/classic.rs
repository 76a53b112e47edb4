//! Classic libpcap files: a 24-byte file header, then per packet a 16-byte
//! record header and the packet's bytes. Either byte order; microsecond
//! or nanosecond timestamps, told apart by the magic.
//!
//! The layout (`field`) serves `write` too, which writes this format.

use std::io::Read;

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use super::{CaptureError, Endian, MAX_PACKET, Packet, Short, Source};
use super::{io_error, packet_error, plain};

/// Magic of a classic pcap file with microsecond timestamps.
pub const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a classic pcap file with nanosecond timestamps.
pub const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
pub const HEADER_LEN: usize = 24;
pub const RECORD_LEN: usize = 16;

/// Byte ranges of the file header and of the record header.
pub mod field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION_MAJOR: Range<usize> = 4..6;
    pub const VERSION_MINOR: Range<usize> = 6..8;
    pub const SNAPLEN: Range<usize> = 16..20;
    pub const LINKTYPE: Range<usize> = 20..24;
    pub const TS_SEC: Range<usize> = 0..4;
    /// Microseconds or nanoseconds, as the magic says.
    pub const TS_FRAC: Range<usize> = 4..8;
    pub const INCL_LEN: Range<usize> = 8..12;
    pub const ORIG_LEN: Range<usize> = 12..16;
}

/// What the file header says of every packet.
#[derive(Debug, Clone, Copy)]
pub struct Header {
    order: Endian,
    nanos: bool,
    link: u32,
}

impl Header {
    /// The file header from a file's first bytes (`bytes`, at most
    /// `HEADER_LEN`); `None` when the magic is not a pcap one.
    pub(super) fn parse(bytes: &[u8]) -> Result<Option<Header>, CaptureError> {
        let magic_be = BigEndian::read_u32(&bytes[field::MAGIC]);
        let magic_le = LittleEndian::read_u32(&bytes[field::MAGIC]);
        let found = [(MAGIC_MICROS, false), (MAGIC_NANOS, true)]
            .into_iter()
            .find_map(|(magic, nanos)| {
                if magic_be == magic {
                    Some((Endian::Big, nanos))
                } else if magic_le == magic {
                    Some((Endian::Little, nanos))
                } else {
                    None
                }
            });
        let Some((order, nanos)) = found else {
            return Ok(None);
        };
        let got = bytes.len();
        if got < HEADER_LEN {
            return Err(plain(
                0,
                format!(
                    "truncated: the {HEADER_LEN}-byte pcap file header is incomplete, {got} bytes present"
                ),
            ));
        }
        let major = order.u16(&bytes[field::VERSION_MAJOR]);
        if major != 2 {
            return Err(plain(4, format!("unsupported pcap version {major}")));
        }
        // The upper bits may carry FCS information (pcap-linktype(7)).
        let link = order.u32(&bytes[field::LINKTYPE]) & 0xffff;
        Ok(Some(Header { order, nanos, link }))
    }

    /// The next record's packet; `Ok(None)` at the end of the file.
    pub(super) fn next_packet<'a, R: Read>(
        &self,
        source: &'a mut Source<R>,
    ) -> Result<Option<Packet<'a>>, CaptureError> {
        let order = self.order;
        let number = source.packets + 1;
        let offset = source.offset;
        source.buf.clear();
        match source.read_up_to(RECORD_LEN) {
            Ok(()) => {}
            Err(Short::End { got: 0 }) => return Ok(None),
            Err(Short::End { got }) => {
                return Err(packet_error(
                    number,
                    offset,
                    format!(
                        "truncated: the {RECORD_LEN}-byte record header is incomplete, {got} bytes present"
                    ),
                ));
            }
            Err(Short::Io(err)) => return Err(io_error(Some(number), offset, &err)),
        }
        let sec = u64::from(order.u32(&source.buf[field::TS_SEC]));
        let frac = u64::from(order.u32(&source.buf[field::TS_FRAC]));
        let len = order.u32(&source.buf[field::INCL_LEN]) as usize;
        if len > MAX_PACKET {
            return Err(packet_error(
                number,
                offset,
                format!("captured length {len} exceeds the limit of {MAX_PACKET} bytes"),
            ));
        }
        let frac_us = if self.nanos { frac / 1000 } else { frac };
        source.buf.clear();
        match source.read_up_to(len) {
            Ok(()) => {}
            Err(Short::End { got }) => {
                return Err(packet_error(
                    number,
                    offset,
                    format!("truncated: {len} packet bytes announced, {got} present"),
                ));
            }
            Err(Short::Io(err)) => return Err(io_error(Some(number), offset, &err)),
        }
        source.offset += (RECORD_LEN + len) as u64;
        source.packets = number;
        Ok(Some(Packet {
            number,
            offset,
            time_us: sec * 1_000_000 + frac_us,
            link: self.link,
            data: &source.buf,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pcap::read::tests::read_all;

    /// A classic pcap file of the given packets (time in µs), in either
    /// byte order, with micro- or nanosecond timestamps.
    pub fn pcap_file(big: bool, nanos: bool, link: u32, packets: &[(u64, &[u8])]) -> Vec<u8> {
        let magic = if nanos { MAGIC_NANOS } else { MAGIC_MICROS };
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, v: u32| {
            if big {
                out.extend_from_slice(&v.to_be_bytes())
            } else {
                out.extend_from_slice(&v.to_le_bytes())
            }
        };
        put(&mut out, magic);
        let version = if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] };
        out.extend_from_slice(&version);
        put(&mut out, 0);
        put(&mut out, 0);
        put(&mut out, 65535);
        put(&mut out, link);
        for (time, data) in packets {
            put(&mut out, (time / 1_000_000) as u32);
            let frac = time % 1_000_000;
            let frac = if nanos { frac * 1000 } else { frac };
            put(&mut out, frac as u32);
            put(&mut out, data.len() as u32);
            put(&mut out, data.len() as u32);
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn pcap_in_both_orders_and_resolutions() {
        for big in [false, true] {
            for nanos in [false, true] {
                let file = pcap_file(big, nanos, 1, &[(1_500_000, b"ab"), (2_000_001, b"")]);
                let packets = read_all(&file).unwrap();
                assert_eq!(
                    packets,
                    vec![
                        (1, 1_500_000, 1, b"ab".to_vec()),
                        (2, 2_000_001, 1, Vec::new())
                    ],
                    "big {big} nanos {nanos}"
                );
            }
        }
    }

    #[test]
    fn pcap_errors() {
        let err = |bytes: &[u8]| read_all(bytes).unwrap_err().to_string();
        let file = pcap_file(false, false, 1, &[(0, b"abcd")]);
        assert_eq!(
            err(&file[..10]),
            "offset 0: truncated: the 24-byte pcap file header is incomplete, 10 bytes present"
        );
        assert_eq!(
            err(&file[..30]),
            "packet 1 at offset 24: truncated: the 16-byte record header is incomplete, 6 bytes present"
        );
        assert_eq!(
            err(&file[..file.len() - 1]),
            "packet 1 at offset 24: truncated: 4 packet bytes announced, 3 present"
        );
        let mut bomb = file.clone();
        bomb[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            err(&bomb),
            "packet 1 at offset 24: captured length 4294967295 exceeds the limit of 262144 bytes"
        );
        let mut version = file.clone();
        version[4] = 3;
        assert_eq!(err(&version), "offset 4: unsupported pcap version 3");
    }

    #[test]
    fn the_link_type_drops_its_fcs_bits() {
        let mut file = pcap_file(false, false, 1, &[(0, b"x")]);
        file[field::LINKTYPE].copy_from_slice(&0x1000_0065u32.to_le_bytes());
        assert_eq!(read_all(&file).unwrap()[0].2, 101);
    }
}
