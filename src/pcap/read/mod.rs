//! Reading captures, one packet at a time:
//!
//! - `classic`: libpcap files, either byte order, microsecond or
//!   nanosecond timestamps (and the record layout `write` uses too);
//! - `pcapng`: sections, interfaces, enhanced, simple and old packet
//!   blocks; other blocks are skipped.
//!
//! `CaptureReader` tells them apart by the file's first bytes. Memory is
//! one buffer of at most `pcapng::MAX_BLOCK` bytes, and it grows only as
//! bytes actually arrive, so a length field claiming gigabytes in a short
//! file costs nothing. Every length is checked before it is used; errors
//! name the packet (numbered from 1, as Wireshark does) and the byte offset
//! of its record or block.

pub mod classic;
pub mod pcapng;

use std::fmt;
use std::io::{self, Read};

use byteorder::{BigEndian, ByteOrder, LittleEndian};

/// The largest packet a capture may hold: libpcap's own limit
/// (MAXIMUM_SNAPLEN). Larger lengths are malformed, or a memory bomb.
pub const MAX_PACKET: usize = 262_144;

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

/// The byte order of a file or section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
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

/// The file being read: where it stands, and the buffer of the record or
/// block being read.
struct Source<R: Read> {
    input: R,
    /// Bytes consumed so far.
    offset: u64,
    /// Packets returned so far.
    packets: u64,
    buf: Vec<u8>,
}

/// Why a read stopped short: the input ended after `got` bytes, or failed.
enum Short {
    End { got: usize },
    Io(io::Error),
}

impl<R: Read> Source<R> {
    /// Appends exactly `n` bytes to `buf`, growing it only as bytes
    /// arrive; says how many came when the input ends first.
    fn read_up_to(&mut self, n: usize) -> Result<(), Short> {
        match (&mut self.input).take(n as u64).read_to_end(&mut self.buf) {
            Ok(got) if got == n => Ok(()),
            Ok(got) => Err(Short::End { got }),
            Err(err) => Err(Short::Io(err)),
        }
    }
}

#[derive(Debug)]
enum Format {
    Pcap(classic::Header),
    Pcapng(pcapng::Section),
}

pub struct CaptureReader<R: Read> {
    source: Source<R>,
    format: Format,
}

impl<R: Read> fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format)
            .field("offset", &self.source.offset)
            .finish()
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(input: R) -> Result<CaptureReader<R>, CaptureError> {
        let mut source = Source {
            input,
            offset: 0,
            packets: 0,
            buf: Vec::new(),
        };
        let got = match source.read_up_to(classic::HEADER_LEN) {
            Ok(()) => classic::HEADER_LEN,
            Err(Short::End { got }) => got,
            Err(Short::Io(err)) => return Err(io_error(None, 0, &err)),
        };
        if got == 0 {
            return Err(plain(0, "empty file, not a capture".into()));
        }
        if got < 4 {
            return Err(plain(0, "not a pcap or pcapng capture: too short".into()));
        }
        if let Some(header) = classic::Header::parse(&source.buf)? {
            source.offset = classic::HEADER_LEN as u64;
            let format = Format::Pcap(header);
            return Ok(CaptureReader { source, format });
        }
        let magic = BigEndian::read_u32(&source.buf[0..4]);
        if magic == pcapng::SECTION_HEADER {
            // The section header is read as a block, from the bytes
            // already taken.
            let format = Format::Pcapng(pcapng::Section::read(&mut source)?);
            return Ok(CaptureReader { source, format });
        }
        Err(plain(
            0,
            format!("not a pcap or pcapng capture: unknown magic 0x{magic:08x}"),
        ))
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.source.packets
    }

    /// The next packet; `Ok(None)` at the end of the capture.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, CaptureError> {
        match &mut self.format {
            Format::Pcap(header) => header.next_packet(&mut self.source),
            Format::Pcapng(section) => section.next_packet(&mut self.source),
        }
    }
}

fn plain(offset: u64, message: String) -> CaptureError {
    error_at(None, offset, message)
}

fn packet_error(number: u64, offset: u64, message: String) -> CaptureError {
    error_at(Some(number), offset, message)
}

/// An error of a packet, or of the file when `packet` is `None`.
fn error_at(packet: Option<u64>, offset: u64, message: String) -> CaptureError {
    CaptureError {
        packet,
        offset,
        message,
    }
}

fn io_error(packet: Option<u64>, offset: u64, err: &io::Error) -> CaptureError {
    let message = format!("read error: {}", crate::error::os_reason(err));
    error_at(packet, offset, message)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Number, time, link type and bytes of a packet.
    pub type Got = (u64, u64, u32, Vec<u8>);

    /// Every packet of a capture, or the first error.
    pub fn read_all(bytes: &[u8]) -> Result<Vec<Got>, CaptureError> {
        let mut reader = CaptureReader::new(bytes)?;
        let mut out = Vec::new();
        while let Some(p) = reader.next_packet()? {
            out.push((p.number, p.time_us, p.link, p.data.to_vec()));
        }
        Ok(out)
    }

    #[test]
    fn not_a_capture() {
        let err = |bytes: &[u8]| read_all(bytes).unwrap_err().to_string();
        assert_eq!(err(b""), "offset 0: empty file, not a capture");
        assert_eq!(
            err(b"abc"),
            "offset 0: not a pcap or pcapng capture: too short"
        );
        assert_eq!(
            err(b"GET / HTTP/1.1\r\n"),
            "offset 0: not a pcap or pcapng capture: unknown magic 0x47455420"
        );
    }
}
