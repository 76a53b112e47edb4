//! Reading captures: classic libpcap files (either byte order, microsecond
//! or nanosecond timestamps) and pcapng (SHB, IDB, EPB, SPB and the old
//! packet block; other blocks are skipped), one packet at a time.
//!
//! Memory is one buffer of at most `MAX_BLOCK` bytes, and it grows only as
//! bytes actually arrive, so a length field claiming gigabytes in a short
//! file costs nothing. Every length is checked before it is used; errors
//! name the packet (numbered from 1, as Wireshark does) and the byte offset
//! of its record or block.

use std::fmt;
use std::io::{self, Read};

use byteorder::{BigEndian, ByteOrder, LittleEndian};

/// Magic of a classic pcap file with microsecond timestamps.
pub const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Magic of a classic pcap file with nanosecond timestamps.
pub const PCAP_MAGIC_NANOS: u32 = 0xa1b2_3c4d;
pub const PCAP_HEADER_LEN: usize = 24;
pub const PCAP_RECORD_LEN: usize = 16;

/// The largest packet a capture may hold: libpcap's own limit
/// (MAXIMUM_SNAPLEN). Larger lengths are malformed, or a memory bomb.
pub const MAX_PACKET: usize = 262_144;
/// The largest pcapng block read into memory (Wireshark's limit too).
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;

/// Byte ranges of the classic pcap file header and record header.
mod pcap_field {
    use std::ops::Range;
    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION_MAJOR: Range<usize> = 4..6;
    pub const LINKTYPE: Range<usize> = 20..24;
    pub const TS_SEC: Range<usize> = 0..4;
    pub const TS_FRAC: Range<usize> = 4..8;
    pub const INCL_LEN: Range<usize> = 8..12;
}

/// pcapng block types and fields.
mod ng {
    use std::ops::Range;
    pub const SECTION_HEADER: u32 = 0x0a0d_0d0a;
    pub const INTERFACE: u32 = 0x0000_0001;
    pub const OBSOLETE_PACKET: u32 = 0x0000_0002;
    pub const SIMPLE_PACKET: u32 = 0x0000_0003;
    pub const ENHANCED_PACKET: u32 = 0x0000_0006;
    pub const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
    /// Block type, total length.
    pub const BLOCK_HEAD: usize = 8;
    /// Block type, total length, trailing total length.
    pub const BLOCK_OVERHEAD: usize = 12;
    /// A section header with its fixed fields and no options.
    pub const SHB_MIN_LEN: usize = 28;
    // Within a block's body (after type and length):
    pub const SHB_BOM: Range<usize> = 0..4;
    pub const SHB_MAJOR: Range<usize> = 4..6;
    pub const IDB_LINKTYPE: Range<usize> = 0..2;
    pub const IDB_SNAPLEN: Range<usize> = 4..8;
    pub const IDB_OPTIONS: usize = 8;
    pub const EPB_INTERFACE: Range<usize> = 0..4;
    pub const EPB_TS_HIGH: Range<usize> = 4..8;
    pub const EPB_TS_LOW: Range<usize> = 8..12;
    pub const EPB_CAPLEN: Range<usize> = 12..16;
    pub const EPB_DATA: usize = 20;
    pub const OPB_INTERFACE: Range<usize> = 0..2;
    pub const SPB_ORIGLEN: Range<usize> = 0..4;
    pub const SPB_DATA: usize = 4;
    pub const OPT_END: u16 = 0;
    pub const OPT_TSRESOL: u16 = 9;
    pub const OPT_TSOFFSET: u16 = 14;
}

/// A bad capture: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureError {
    /// The packet at fault, numbered from 1; none for file and section
    /// headers.
    pub packet: Option<u64>,
    pub offset: u64,
    pub message: String,
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.packet {
            Some(n) => write!(f, "packet {n} at offset {}: {}", self.offset, self.message),
            None => write!(f, "offset {}: {}", self.offset, self.message),
        }
    }
}

/// One captured packet, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Numbered from 1 in file order.
    pub number: u64,
    /// Offset of the packet's record (pcap) or block (pcapng).
    pub offset: u64,
    /// Microseconds since the Unix epoch.
    pub time_us: u64,
    /// The LINKTYPE_ value of the packet's interface.
    pub link: u32,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    fn u16(self, bytes: &[u8]) -> u16 {
        match self {
            Endian::Little => LittleEndian::read_u16(bytes),
            Endian::Big => BigEndian::read_u16(bytes),
        }
    }

    fn u32(self, bytes: &[u8]) -> u32 {
        match self {
            Endian::Little => LittleEndian::read_u32(bytes),
            Endian::Big => BigEndian::read_u32(bytes),
        }
    }

    fn u64(self, bytes: &[u8]) -> u64 {
        match self {
            Endian::Little => LittleEndian::read_u64(bytes),
            Endian::Big => BigEndian::read_u64(bytes),
        }
    }
}

/// A pcapng interface: its link type and clock.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: u32,
    snaplen: u32,
    /// Timestamp units per second.
    units: u128,
    /// Seconds added to every timestamp.
    offset_s: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        order: Endian,
        nanos: bool,
        link: u32,
    },
    Pcapng {
        order: Endian,
        interfaces: Vec<Interface>,
        /// The last timestamp seen: simple packet blocks have none.
        last_time_us: u64,
    },
}

pub struct CaptureReader<R: Read> {
    input: R,
    format: Format,
    /// Bytes consumed so far.
    offset: u64,
    /// Packets returned so far.
    packets: u64,
    buf: Vec<u8>,
}

impl<R: Read> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("offset", &self.offset)
            .finish()
    }
}

/// Why a read stopped short: the input ended after `got` bytes, or failed.
enum Short {
    End { got: usize },
    Io(io::Error),
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(mut input: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut buf = Vec::new();
        let got = match read_up_to(&mut input, &mut buf, PCAP_HEADER_LEN) {
            Ok(()) => PCAP_HEADER_LEN,
            Err(Short::End { got }) => got,
            Err(Short::Io(err)) => return Err(io_error(None, 0, &err)),
        };
        if got == 0 {
            return Err(plain(0, "empty file, not a capture".into()));
        }
        if got < 4 {
            return Err(plain(0, "not a pcap or pcapng capture: too short".into()));
        }
        let magic_be = BigEndian::read_u32(&buf[pcap_field::MAGIC]);
        let magic_le = LittleEndian::read_u32(&buf[pcap_field::MAGIC]);
        let pcap = [(PCAP_MAGIC_MICROS, false), (PCAP_MAGIC_NANOS, true)]
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
        if let Some((order, nanos)) = pcap {
            if got < PCAP_HEADER_LEN {
                return Err(plain(
                    0,
                    format!(
                        "truncated: the {PCAP_HEADER_LEN}-byte pcap file header is incomplete, {got} bytes present"
                    ),
                ));
            }
            let major = order.u16(&buf[pcap_field::VERSION_MAJOR]);
            if major != 2 {
                return Err(plain(4, format!("unsupported pcap version {major}")));
            }
            // The upper bits may carry FCS information (pcap-linktype(7)).
            let link = order.u32(&buf[pcap_field::LINKTYPE]) & 0xffff;
            return Ok(CaptureReader {
                input,
                format: Format::Pcap { order, nanos, link },
                offset: PCAP_HEADER_LEN as u64,
                packets: 0,
                buf,
            });
        }
        if magic_be == ng::SECTION_HEADER {
            let mut reader = CaptureReader {
                input,
                format: Format::Pcapng {
                    order: Endian::Big,
                    interfaces: Vec::new(),
                    last_time_us: 0,
                },
                offset: 0,
                packets: 0,
                buf: Vec::new(),
            };
            // The section header is read again as a block, from the bytes
            // already taken.
            reader.buf = buf;
            reader.buf.truncate(got);
            reader.read_section_header()?;
            return Ok(reader);
        }
        Err(plain(
            0,
            format!("not a pcap or pcapng capture: unknown magic 0x{magic_be:08x}"),
        ))
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// The next packet; `Ok(None)` at the end of the capture.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        match self.format {
            Format::Pcap { order, nanos, link } => self.next_pcap(order, nanos, link),
            Format::Pcapng { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(
        &mut self,
        order: Endian,
        nanos: bool,
        link: u32,
    ) -> Result<Option<Packet<'_>>, CaptureError> {
        let number = self.packets + 1;
        let offset = self.offset;
        self.buf.clear();
        match read_up_to(&mut self.input, &mut self.buf, PCAP_RECORD_LEN) {
            Ok(()) => {}
            Err(Short::End { got: 0 }) => return Ok(None),
            Err(Short::End { got }) => {
                return Err(packet_error(
                    number,
                    offset,
                    format!(
                        "truncated: the {PCAP_RECORD_LEN}-byte record header is incomplete, {got} bytes present"
                    ),
                ));
            }
            Err(Short::Io(err)) => return Err(io_error(Some(number), offset, &err)),
        }
        let sec = u64::from(order.u32(&self.buf[pcap_field::TS_SEC]));
        let frac = u64::from(order.u32(&self.buf[pcap_field::TS_FRAC]));
        let len = order.u32(&self.buf[pcap_field::INCL_LEN]) as usize;
        if len > MAX_PACKET {
            return Err(packet_error(
                number,
                offset,
                format!("captured length {len} exceeds the limit of {MAX_PACKET} bytes"),
            ));
        }
        let frac_us = if nanos { frac / 1000 } else { frac };
        self.buf.clear();
        match read_up_to(&mut self.input, &mut self.buf, len) {
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
        self.offset += (PCAP_RECORD_LEN + len) as u64;
        self.packets = number;
        Ok(Some(Packet {
            number,
            offset,
            time_us: sec * 1_000_000 + frac_us,
            link,
            data: &self.buf,
        }))
    }

    /// Reads the section header block whose first bytes are in `buf`.
    fn read_section_header(&mut self) -> Result<(), CaptureError> {
        let offset = self.offset;
        let have = self.buf.len();
        if have < ng::BLOCK_OVERHEAD {
            let more = ng::BLOCK_OVERHEAD - have;
            let mut rest = Vec::new();
            match read_up_to(&mut self.input, &mut rest, more) {
                Ok(()) => self.buf.extend_from_slice(&rest),
                Err(Short::End { got }) => {
                    return Err(plain(
                        offset,
                        format!(
                            "truncated: pcapng section header incomplete, {} bytes present",
                            have + got
                        ),
                    ));
                }
                Err(Short::Io(err)) => return Err(io_error(None, offset, &err)),
            }
        }
        let bom = &self.buf[ng::BLOCK_HEAD..ng::BLOCK_HEAD + 4];
        let order = if BigEndian::read_u32(bom) == ng::BYTE_ORDER_MAGIC {
            Endian::Big
        } else if LittleEndian::read_u32(bom) == ng::BYTE_ORDER_MAGIC {
            Endian::Little
        } else {
            return Err(plain(
                offset + ng::BLOCK_HEAD as u64,
                format!(
                    "bad pcapng byte-order magic 0x{:08x}",
                    BigEndian::read_u32(bom)
                ),
            ));
        };
        self.format = Format::Pcapng {
            order,
            interfaces: Vec::new(),
            last_time_us: 0,
        };
        let total = self.block_len(order, None)?;
        let taken = self.buf.len();
        self.read_block_rest(total, taken, None)?;
        let body = &self.buf[ng::BLOCK_HEAD..total - 4];
        let major = order.u16(&body[ng::SHB_MAJOR]);
        if major != 1 {
            return Err(plain(offset, format!("unsupported pcapng version {major}")));
        }
        debug_assert_eq!(order.u32(&body[ng::SHB_BOM]), ng::BYTE_ORDER_MAGIC);
        self.offset += total as u64;
        Ok(())
    }

    /// Checks the total length of the block whose head is in `buf`.
    fn block_len(&self, order: Endian, packet: Option<u64>) -> Result<usize, CaptureError> {
        let total = order.u32(&self.buf[4..8]) as usize;
        let bad = |why: String| {
            let message = format!("bad block length {total}: {why}");
            match packet {
                Some(n) => packet_error(n, self.offset, message),
                None => plain(self.offset, message),
            }
        };
        if total < ng::SHB_MIN_LEN && order.u32(&self.buf[0..4]) == ng::SECTION_HEADER {
            return Err(bad(format!("less than {}", ng::SHB_MIN_LEN)));
        }
        if total < ng::BLOCK_OVERHEAD {
            return Err(bad(format!("less than {}", ng::BLOCK_OVERHEAD)));
        }
        if !total.is_multiple_of(4) {
            return Err(bad("not a multiple of 4".into()));
        }
        if total > MAX_BLOCK {
            return Err(bad(format!("exceeds the limit of {MAX_BLOCK} bytes")));
        }
        Ok(total)
    }

    /// Reads the rest of a block of `total` bytes, `taken` of which are in
    /// `buf` already, and checks its trailing length.
    fn read_block_rest(
        &mut self,
        total: usize,
        taken: usize,
        packet: Option<u64>,
    ) -> Result<(), CaptureError> {
        let offset = self.offset;
        let err = |message: String| match packet {
            Some(n) => packet_error(n, offset, message),
            None => plain(offset, message),
        };
        self.buf.truncate(taken);
        if taken > total {
            // Only the section header's first read can overshoot a tiny
            // block; block_len refused blocks that small.
            return Err(err(format!("bad block length {total}")));
        }
        match read_up_to(&mut self.input, &mut self.buf, total - taken) {
            Ok(()) => {}
            Err(Short::End { got }) => {
                return Err(err(format!(
                    "truncated: block of {total} bytes, {} present",
                    taken + got
                )));
            }
            Err(Short::Io(err)) => return Err(io_error(packet, offset, &err)),
        }
        let Format::Pcapng { order, .. } = self.format else {
            unreachable!("pcapng block in a pcap file")
        };
        let trailing = order.u32(&self.buf[total - 4..total]) as usize;
        if trailing != total {
            return Err(err(format!(
                "bad block length: trailing length {trailing} does not match {total}"
            )));
        }
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        loop {
            let offset = self.offset;
            self.buf.clear();
            match read_up_to(&mut self.input, &mut self.buf, ng::BLOCK_HEAD) {
                Ok(()) => {}
                Err(Short::End { got: 0 }) => return Ok(None),
                Err(Short::End { got }) => {
                    return Err(plain(
                        offset,
                        format!("truncated: block header incomplete, {got} bytes present"),
                    ));
                }
                Err(Short::Io(err)) => return Err(io_error(None, offset, &err)),
            }
            let Format::Pcapng { order, .. } = self.format else {
                unreachable!("pcapng block in a pcap file")
            };
            let kind = order.u32(&self.buf[0..4]);
            if kind == ng::SECTION_HEADER {
                // A new section, maybe of the other byte order.
                let mut rest = Vec::new();
                match read_up_to(&mut self.input, &mut rest, 4) {
                    Ok(()) => self.buf.extend_from_slice(&rest),
                    Err(Short::End { got }) => {
                        return Err(plain(
                            offset,
                            format!(
                                "truncated: pcapng section header incomplete, {} bytes present",
                                ng::BLOCK_HEAD + got
                            ),
                        ));
                    }
                    Err(Short::Io(err)) => return Err(io_error(None, offset, &err)),
                }
                self.read_section_header()?;
                continue;
            }
            let is_packet = matches!(
                kind,
                ng::ENHANCED_PACKET | ng::SIMPLE_PACKET | ng::OBSOLETE_PACKET
            );
            let number = self.packets + 1;
            let packet = is_packet.then_some(number);
            let total = self.block_len(order, packet)?;
            if !is_packet && kind != ng::INTERFACE {
                self.skip_block(total)?;
                continue;
            }
            self.read_block_rest(total, ng::BLOCK_HEAD, packet)?;
            self.offset += total as u64;
            let body_end = total - 4;
            if kind == ng::INTERFACE {
                self.add_interface(order, offset, body_end)?;
                continue;
            }
            let (link, time_us, start, len) = self.packet_fields(kind, order, number, offset)?;
            self.packets = number;
            let data = &self.buf[start..start + len];
            return Ok(Some(Packet {
                number,
                offset,
                time_us,
                link,
                data,
            }));
        }
    }

    /// Skips a block we do not read, without keeping it.
    fn skip_block(&mut self, total: usize) -> Result<(), CaptureError> {
        let offset = self.offset;
        let rest = (total - ng::BLOCK_HEAD) as u64;
        let skipped = io::copy(&mut (&mut self.input).take(rest), &mut io::sink())
            .map_err(|err| io_error(None, offset, &err))?;
        if skipped < rest {
            return Err(plain(
                offset,
                format!(
                    "truncated: block of {total} bytes, {} present",
                    ng::BLOCK_HEAD as u64 + skipped
                ),
            ));
        }
        self.offset += total as u64;
        Ok(())
    }

    fn add_interface(
        &mut self,
        order: Endian,
        offset: u64,
        body_end: usize,
    ) -> Result<(), CaptureError> {
        let body = &self.buf[ng::BLOCK_HEAD..body_end];
        if body.len() < ng::IDB_OPTIONS {
            return Err(plain(
                offset,
                "interface description block too short".into(),
            ));
        }
        let mut interface = Interface {
            link: u32::from(order.u16(&body[ng::IDB_LINKTYPE])),
            snaplen: order.u32(&body[ng::IDB_SNAPLEN]),
            units: 1_000_000,
            offset_s: 0,
        };
        let mut options = &body[ng::IDB_OPTIONS..];
        while options.len() >= 4 {
            let code = order.u16(&options[0..2]);
            let len = usize::from(order.u16(&options[2..4]));
            let padded = len.div_ceil(4) * 4;
            if code == ng::OPT_END || options.len() < 4 + padded {
                break;
            }
            let value = &options[4..4 + len];
            match (code, len) {
                (ng::OPT_TSRESOL, 1) => {
                    let exp = u32::from(value[0] & 0x7f);
                    let units = if value[0] & 0x80 != 0 {
                        2u128.checked_pow(exp)
                    } else {
                        10u128.checked_pow(exp)
                    };
                    interface.units = units.ok_or_else(|| {
                        plain(
                            offset,
                            format!("unsupported timestamp resolution 0x{:02x}", value[0]),
                        )
                    })?;
                }
                (ng::OPT_TSOFFSET, 8) => interface.offset_s = order.u64(value) as i64,
                _ => {}
            }
            options = &options[4 + padded..];
        }
        let Format::Pcapng { interfaces, .. } = &mut self.format else {
            unreachable!("pcapng block in a pcap file")
        };
        interfaces.push(interface);
        Ok(())
    }

    /// A packet block's link type, time, and where its data is in `buf`.
    fn packet_fields(
        &mut self,
        kind: u32,
        order: Endian,
        number: u64,
        offset: u64,
    ) -> Result<(u32, u64, usize, usize), CaptureError> {
        let Format::Pcapng {
            interfaces,
            last_time_us,
            ..
        } = &mut self.format
        else {
            unreachable!("pcapng block in a pcap file")
        };
        let body_start = ng::BLOCK_HEAD;
        let body = &self.buf[body_start..self.buf.len() - 4];
        let err = |message: String| packet_error(number, offset, message);
        let interface = |id: usize| {
            interfaces.get(id).copied().ok_or_else(|| {
                err(format!(
                    "packet on interface {id}, but the section describes {}",
                    interfaces.len()
                ))
            })
        };
        let (iface, time, data_at, caplen) = match kind {
            ng::SIMPLE_PACKET => {
                if body.len() < ng::SPB_DATA {
                    return Err(err("simple packet block too short".into()));
                }
                let iface = interface(0)?;
                let orig = order.u32(&body[ng::SPB_ORIGLEN]) as usize;
                let mut caplen = orig.min(body.len() - ng::SPB_DATA);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                (iface, None, ng::SPB_DATA, caplen)
            }
            _ => {
                if body.len() < ng::EPB_DATA {
                    return Err(err("packet block too short".into()));
                }
                let id = if kind == ng::ENHANCED_PACKET {
                    order.u32(&body[ng::EPB_INTERFACE]) as usize
                } else {
                    usize::from(order.u16(&body[ng::OPB_INTERFACE]))
                };
                let iface = interface(id)?;
                let high = u64::from(order.u32(&body[ng::EPB_TS_HIGH]));
                let low = u64::from(order.u32(&body[ng::EPB_TS_LOW]));
                let caplen = order.u32(&body[ng::EPB_CAPLEN]) as usize;
                if caplen > MAX_PACKET {
                    return Err(err(format!(
                        "captured length {caplen} exceeds the limit of {MAX_PACKET} bytes"
                    )));
                }
                if caplen > body.len() - ng::EPB_DATA {
                    return Err(err(format!(
                        "captured length {caplen} exceeds the block's {} data bytes",
                        body.len() - ng::EPB_DATA
                    )));
                }
                (iface, Some(high << 32 | low), ng::EPB_DATA, caplen)
            }
        };
        if caplen > MAX_PACKET {
            return Err(err(format!(
                "captured length {caplen} exceeds the limit of {MAX_PACKET} bytes"
            )));
        }
        let time_us = match time {
            Some(ticks) => {
                let us = u128::from(ticks) * 1_000_000 / iface.units;
                let us = i128::try_from(us).unwrap_or(i128::MAX)
                    + i128::from(iface.offset_s) * 1_000_000;
                u64::try_from(us.max(0)).unwrap_or(u64::MAX)
            }
            None => *last_time_us,
        };
        *last_time_us = time_us;
        Ok((iface.link, time_us, body_start + data_at, caplen))
    }
}

/// Appends exactly `n` bytes from `input` to `buf`, growing it only as
/// bytes arrive; says how many came when the input ends first.
fn read_up_to(input: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> Result<(), Short> {
    match input.take(n as u64).read_to_end(buf) {
        Ok(got) if got == n => Ok(()),
        Ok(got) => Err(Short::End { got }),
        Err(err) => Err(Short::Io(err)),
    }
}

fn plain(offset: u64, message: String) -> CaptureError {
    CaptureError {
        packet: None,
        offset,
        message,
    }
}

fn packet_error(number: u64, offset: u64, message: String) -> CaptureError {
    CaptureError {
        packet: Some(number),
        offset,
        message,
    }
}

fn io_error(packet: Option<u64>, offset: u64, err: &io::Error) -> CaptureError {
    CaptureError {
        packet,
        offset,
        message: format!("read error: {}", crate::error::os_reason(err)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A classic pcap file of the given packets (time in µs), in either
    /// byte order, with micro- or nanosecond timestamps.
    pub fn pcap_file(big: bool, nanos: bool, link: u32, packets: &[(u64, &[u8])]) -> Vec<u8> {
        let magic = if nanos {
            PCAP_MAGIC_NANOS
        } else {
            PCAP_MAGIC_MICROS
        };
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

    /// Number, time, link type and bytes of a packet.
    type Got = (u64, u64, u32, Vec<u8>);

    fn read_all(bytes: &[u8]) -> Result<Vec<Got>, CaptureError> {
        let mut reader = CaptureReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(p) = reader.next_packet()? {
            out.push((p.number, p.time_us, p.link, p.data.to_vec()));
        }
        Ok(out)
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
        assert_eq!(err(b""), "offset 0: empty file, not a capture");
        assert_eq!(
            err(b"GET / HTTP/1.1\r\n"),
            "offset 0: not a pcap or pcapng capture: unknown magic 0x47455420"
        );
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

    /// pcapng blocks, for tests here and in import.
    pub struct Ng {
        pub big: bool,
        pub out: Vec<u8>,
    }

    impl Ng {
        pub fn new(big: bool) -> Ng {
            let mut ng = Ng {
                big,
                out: Vec::new(),
            };
            ng.section();
            ng
        }

        fn u16(&self, v: u16) -> [u8; 2] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        pub fn block(&mut self, kind: u32, body: &[u8]) {
            let padded = body.len().div_ceil(4) * 4;
            let total = (12 + padded) as u32;
            let (k, t) = (self.u32(kind), self.u32(total));
            self.out.extend_from_slice(&k);
            self.out.extend_from_slice(&t);
            self.out.extend_from_slice(body);
            self.out.resize(self.out.len() + padded - body.len(), 0);
            self.out.extend_from_slice(&t);
        }

        pub fn section(&mut self) {
            let mut body = self.u32(ng::BYTE_ORDER_MAGIC).to_vec();
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&[0xff; 8]);
            self.block(ng::SECTION_HEADER, &body);
        }

        /// An interface; `tsresol` is the if_tsresol byte, if any.
        pub fn interface(&mut self, link: u16, tsresol: Option<u8>) {
            let mut body = self.u16(link).to_vec();
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&self.u32(0));
            if let Some(res) = tsresol {
                body.extend_from_slice(&self.u16(ng::OPT_TSRESOL));
                body.extend_from_slice(&self.u16(1));
                body.extend_from_slice(&[res, 0, 0, 0]);
                body.extend_from_slice(&[0; 4]);
            }
            self.block(ng::INTERFACE, &body);
        }

        pub fn enhanced(&mut self, iface: u32, ticks: u64, data: &[u8]) {
            let mut body = self.u32(iface).to_vec();
            body.extend_from_slice(&self.u32((ticks >> 32) as u32));
            body.extend_from_slice(&self.u32(ticks as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(data);
            self.block(ng::ENHANCED_PACKET, &body);
        }

        pub fn simple(&mut self, data: &[u8]) {
            let mut body = self.u32(data.len() as u32).to_vec();
            body.extend_from_slice(data);
            self.block(ng::SIMPLE_PACKET, &body);
        }
    }

    #[test]
    fn pcapng_in_both_orders() {
        for big in [false, true] {
            let mut ng = Ng::new(big);
            ng.interface(1, None);
            ng.block(0x0000_0bad, b"custom block, skipped");
            ng.interface(101, Some(9));
            ng.enhanced(0, 1_500_000, b"first");
            ng.enhanced(1, 2_000_000_123, b"second");
            ng.simple(b"simple");
            let packets = read_all(&ng.out).unwrap();
            assert_eq!(
                packets,
                vec![
                    (1, 1_500_000, 1, b"first".to_vec()),
                    (2, 2_000_000, 101, b"second".to_vec()),
                    (3, 2_000_000, 1, b"simple".to_vec()),
                ],
                "big {big}"
            );
        }
    }

    #[test]
    fn pcapng_sections_may_change_byte_order() {
        let mut first = Ng::new(false);
        first.interface(1, None);
        first.enhanced(0, 1, b"le");
        let mut second = Ng::new(true);
        second.interface(228, Some(0x80 | 10));
        second.enhanced(0, 2048, b"be");
        let mut bytes = first.out;
        bytes.extend_from_slice(&second.out);
        let packets = read_all(&bytes).unwrap();
        assert_eq!(packets[0], (1, 1, 1, b"le".to_vec()));
        assert_eq!(packets[1], (2, 2_000_000, 228, b"be".to_vec()));
    }

    #[test]
    fn pcapng_errors() {
        let err = |bytes: &[u8]| read_all(bytes).unwrap_err().to_string();
        let mut ng = Ng::new(false);
        ng.interface(1, None);
        let header_len = ng.out.len();
        ng.enhanced(0, 0, b"data");
        let good = ng.out.clone();
        let at = header_len as u64;

        let mut odd = good.clone();
        odd[header_len + 4] = 13;
        assert_eq!(
            err(&odd),
            format!("packet 1 at offset {at}: bad block length 13: not a multiple of 4")
        );
        let mut tiny = good.clone();
        tiny[header_len + 4] = 8;
        assert!(err(&tiny).contains("bad block length 8: less than 12"));
        let mut huge = good.clone();
        huge[header_len + 4..header_len + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(
            err(&huge),
            format!(
                "packet 1 at offset {at}: bad block length 4294967280: exceeds the limit of 16777216 bytes"
            )
        );
        let mut trailing = good.clone();
        let end = trailing.len();
        trailing[end - 4] = 40;
        assert!(err(&trailing).contains("trailing length 40 does not match"));
        assert!(err(&good[..good.len() - 2]).contains("truncated: block of"));
        let mut caplen = good.clone();
        caplen[header_len + 20..header_len + 24].copy_from_slice(&100u32.to_le_bytes());
        assert!(err(&caplen).contains("captured length 100 exceeds the block's 4 data bytes"));
        let mut no_iface = Ng::new(true);
        no_iface.enhanced(3, 0, b"x");
        assert!(err(&no_iface.out).contains("packet on interface 3, but the section describes 0"));
        let mut bom = good.clone();
        bom[8] = 0;
        assert_eq!(
            err(&bom),
            "offset 8: bad pcapng byte-order magic 0x003c2b1a"
        );
        assert!(err(&good[..6]).contains("section header incomplete"));
    }
}
