//! pcapng files: a sequence of blocks (type, total length, body, total
//! length again), in sections that each start with a section header giving
//! their byte order. Interface description blocks give each interface's
//! link type and clock; enhanced, simple and the old packet blocks carry
//! packets; other blocks are skipped without being kept.

use std::io::{self, Read};

use byteorder::{BigEndian, ByteOrder, LittleEndian};

use super::{CaptureError, Endian, MAX_PACKET, Packet, Short, Source};
use super::{error_at, io_error, packet_error, plain};

/// The largest block read into memory (Wireshark's limit too).
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;

pub const SECTION_HEADER: u32 = 0x0a0d_0d0a;
const INTERFACE: u32 = 0x0000_0001;
const OBSOLETE_PACKET: u32 = 0x0000_0002;
const SIMPLE_PACKET: u32 = 0x0000_0003;
const ENHANCED_PACKET: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Block type, total length.
const BLOCK_HEAD: usize = 8;
/// Block type, total length, trailing total length.
const BLOCK_OVERHEAD: usize = 12;
/// A section header with its fixed fields and no options.
const SHB_MIN_LEN: usize = 28;

/// Byte ranges within a block's body (after type and length), and option
/// codes.
mod field {
    use std::ops::Range;
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

/// The section being read.
#[derive(Debug)]
pub struct Section {
    order: Endian,
    interfaces: Vec<Interface>,
    /// The last timestamp seen: simple packet blocks have none.
    last_time_us: u64,
}

impl Section {
    /// Reads a section header block whose first bytes (its head at
    /// least) are in the source's buffer.
    pub(super) fn read<R: Read>(source: &mut Source<R>) -> Result<Section, CaptureError> {
        let offset = source.offset;
        let have = source.buf.len();
        if have < BLOCK_OVERHEAD {
            match source.read_up_to(BLOCK_OVERHEAD - have) {
                Ok(()) => {}
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
        let bom = &source.buf[BLOCK_HEAD..BLOCK_HEAD + 4];
        let order = if BigEndian::read_u32(bom) == BYTE_ORDER_MAGIC {
            Endian::Big
        } else if LittleEndian::read_u32(bom) == BYTE_ORDER_MAGIC {
            Endian::Little
        } else {
            return Err(plain(
                offset + BLOCK_HEAD as u64,
                format!(
                    "bad pcapng byte-order magic 0x{:08x}",
                    BigEndian::read_u32(bom)
                ),
            ));
        };
        let total = block_len(source, order, None)?;
        let taken = source.buf.len();
        read_block_rest(source, order, total, taken, None)?;
        let body = &source.buf[BLOCK_HEAD..total - 4];
        let major = order.u16(&body[field::SHB_MAJOR]);
        if major != 1 {
            return Err(plain(offset, format!("unsupported pcapng version {major}")));
        }
        debug_assert_eq!(order.u32(&body[field::SHB_BOM]), BYTE_ORDER_MAGIC);
        source.offset += total as u64;
        Ok(Section {
            order,
            interfaces: Vec::new(),
            last_time_us: 0,
        })
    }

    /// The next packet block's packet, reading the blocks before it;
    /// `Ok(None)` at the end of the file.
    pub(super) fn next_packet<'a, R: Read>(
        &mut self,
        source: &'a mut Source<R>,
    ) -> Result<Option<Packet<'a>>, CaptureError> {
        loop {
            let offset = source.offset;
            source.buf.clear();
            match source.read_up_to(BLOCK_HEAD) {
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
            let order = self.order;
            let kind = order.u32(&source.buf[0..4]);
            if kind == SECTION_HEADER {
                // A new section, maybe of the other byte order.
                *self = Section::read(source)?;
                continue;
            }
            let is_packet = matches!(kind, ENHANCED_PACKET | SIMPLE_PACKET | OBSOLETE_PACKET);
            let number = source.packets + 1;
            let packet = is_packet.then_some(number);
            let total = block_len(source, order, packet)?;
            if !is_packet && kind != INTERFACE {
                skip_block(source, total)?;
                continue;
            }
            read_block_rest(source, order, total, BLOCK_HEAD, packet)?;
            source.offset += total as u64;
            let body = &source.buf[BLOCK_HEAD..total - 4];
            if kind == INTERFACE {
                self.add_interface(body, offset)?;
                continue;
            }
            let (link, time_us, start, len) = self.packet_fields(kind, body, number, offset)?;
            source.packets = number;
            let data = &source.buf[BLOCK_HEAD + start..BLOCK_HEAD + start + len];
            return Ok(Some(Packet {
                number,
                offset,
                time_us,
                link,
                data,
            }));
        }
    }

    /// An interface description block's body: link type, snap length, and
    /// the clock options.
    fn add_interface(&mut self, body: &[u8], offset: u64) -> Result<(), CaptureError> {
        let order = self.order;
        if body.len() < field::IDB_OPTIONS {
            return Err(plain(
                offset,
                "interface description block too short".into(),
            ));
        }
        let mut interface = Interface {
            link: u32::from(order.u16(&body[field::IDB_LINKTYPE])),
            snaplen: order.u32(&body[field::IDB_SNAPLEN]),
            units: 1_000_000,
            offset_s: 0,
        };
        let mut options = &body[field::IDB_OPTIONS..];
        while options.len() >= 4 {
            let code = order.u16(&options[0..2]);
            let len = usize::from(order.u16(&options[2..4]));
            let padded = len.div_ceil(4) * 4;
            if code == field::OPT_END || options.len() < 4 + padded {
                break;
            }
            let value = &options[4..4 + len];
            match (code, len) {
                (field::OPT_TSRESOL, 1) => {
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
                (field::OPT_TSOFFSET, 8) => interface.offset_s = order.u64(value) as i64,
                _ => {}
            }
            options = &options[4 + padded..];
        }
        self.interfaces.push(interface);
        Ok(())
    }

    /// A packet block's link type, time, and where its data is in `body`.
    fn packet_fields(
        &mut self,
        kind: u32,
        body: &[u8],
        number: u64,
        offset: u64,
    ) -> Result<(u32, u64, usize, usize), CaptureError> {
        let order = self.order;
        let interfaces = &self.interfaces;
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
            SIMPLE_PACKET => {
                if body.len() < field::SPB_DATA {
                    return Err(err("simple packet block too short".into()));
                }
                let iface = interface(0)?;
                let orig = order.u32(&body[field::SPB_ORIGLEN]) as usize;
                let mut caplen = orig.min(body.len() - field::SPB_DATA);
                if iface.snaplen != 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                (iface, None, field::SPB_DATA, caplen)
            }
            _ => {
                if body.len() < field::EPB_DATA {
                    return Err(err("packet block too short".into()));
                }
                let id = if kind == ENHANCED_PACKET {
                    order.u32(&body[field::EPB_INTERFACE]) as usize
                } else {
                    usize::from(order.u16(&body[field::OPB_INTERFACE]))
                };
                let iface = interface(id)?;
                let high = u64::from(order.u32(&body[field::EPB_TS_HIGH]));
                let low = u64::from(order.u32(&body[field::EPB_TS_LOW]));
                let caplen = order.u32(&body[field::EPB_CAPLEN]) as usize;
                if caplen > MAX_PACKET {
                    return Err(err(format!(
                        "captured length {caplen} exceeds the limit of {MAX_PACKET} bytes"
                    )));
                }
                if caplen > body.len() - field::EPB_DATA {
                    return Err(err(format!(
                        "captured length {caplen} exceeds the block's {} data bytes",
                        body.len() - field::EPB_DATA
                    )));
                }
                (iface, Some(high << 32 | low), field::EPB_DATA, caplen)
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
            None => self.last_time_us,
        };
        self.last_time_us = time_us;
        Ok((iface.link, time_us, data_at, caplen))
    }
}

/// Checks the total length of the block whose head is in the buffer.
fn block_len<R: Read>(
    source: &Source<R>,
    order: Endian,
    packet: Option<u64>,
) -> Result<usize, CaptureError> {
    let total = order.u32(&source.buf[4..8]) as usize;
    let bad = |why: String| {
        let message = format!("bad block length {total}: {why}");
        error_at(packet, source.offset, message)
    };
    if total < SHB_MIN_LEN && order.u32(&source.buf[0..4]) == SECTION_HEADER {
        return Err(bad(format!("less than {SHB_MIN_LEN}")));
    }
    if total < BLOCK_OVERHEAD {
        return Err(bad(format!("less than {BLOCK_OVERHEAD}")));
    }
    if !total.is_multiple_of(4) {
        return Err(bad("not a multiple of 4".into()));
    }
    if total > MAX_BLOCK {
        return Err(bad(format!("exceeds the limit of {MAX_BLOCK} bytes")));
    }
    Ok(total)
}

/// Reads the rest of a block of `total` bytes, `taken` of which are in the
/// buffer already, and checks its trailing length.
fn read_block_rest<R: Read>(
    source: &mut Source<R>,
    order: Endian,
    total: usize,
    taken: usize,
    packet: Option<u64>,
) -> Result<(), CaptureError> {
    let offset = source.offset;
    let err = |message: String| error_at(packet, offset, message);
    source.buf.truncate(taken);
    if taken > total {
        // Only the section header's first read can overshoot a tiny
        // block; block_len refused blocks that small.
        return Err(err(format!("bad block length {total}")));
    }
    match source.read_up_to(total - taken) {
        Ok(()) => {}
        Err(Short::End { got }) => {
            return Err(err(format!(
                "truncated: block of {total} bytes, {} present",
                taken + got
            )));
        }
        Err(Short::Io(err)) => return Err(io_error(packet, offset, &err)),
    }
    let trailing = order.u32(&source.buf[total - 4..total]) as usize;
    if trailing != total {
        return Err(err(format!(
            "bad block length: trailing length {trailing} does not match {total}"
        )));
    }
    Ok(())
}

/// Skips a block we do not read, without keeping it.
fn skip_block<R: Read>(source: &mut Source<R>, total: usize) -> Result<(), CaptureError> {
    let offset = source.offset;
    let rest = (total - BLOCK_HEAD) as u64;
    let skipped = io::copy(&mut (&mut source.input).take(rest), &mut io::sink())
        .map_err(|err| io_error(None, offset, &err))?;
    if skipped < rest {
        return Err(plain(
            offset,
            format!(
                "truncated: block of {total} bytes, {} present",
                BLOCK_HEAD as u64 + skipped
            ),
        ));
    }
    source.offset += total as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::read::tests::read_all;

    /// pcapng blocks, built in either byte order.
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
            let mut body = self.u32(BYTE_ORDER_MAGIC).to_vec();
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&[0xff; 8]);
            self.block(SECTION_HEADER, &body);
        }

        /// An interface; `tsresol` is the if_tsresol byte, if any.
        pub fn interface(&mut self, link: u16, tsresol: Option<u8>) {
            let mut body = self.u16(link).to_vec();
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&self.u32(0));
            if let Some(res) = tsresol {
                body.extend_from_slice(&self.u16(field::OPT_TSRESOL));
                body.extend_from_slice(&self.u16(1));
                body.extend_from_slice(&[res, 0, 0, 0]);
                body.extend_from_slice(&[0; 4]);
            }
            self.block(INTERFACE, &body);
        }

        pub fn enhanced(&mut self, iface: u32, ticks: u64, data: &[u8]) {
            let mut body = self.u32(iface).to_vec();
            body.extend_from_slice(&self.u32((ticks >> 32) as u32));
            body.extend_from_slice(&self.u32(ticks as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(&self.u32(data.len() as u32));
            body.extend_from_slice(data);
            self.block(ENHANCED_PACKET, &body);
        }

        pub fn simple(&mut self, data: &[u8]) {
            let mut body = self.u32(data.len() as u32).to_vec();
            body.extend_from_slice(data);
            self.block(SIMPLE_PACKET, &body);
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
