//! Frame header layout, opcodes and their meaning.

use byteorder::{BigEndian, ByteOrder};

/// The largest length a header can carry (24 bits).
pub const MAX_LEN: u32 = 0xFF_FFFF;
pub const HEADER_LEN: usize = 4;
/// The payload of the NOOP frame every tape starts with.
pub const MAGIC: &[u8; 8] = b"tcptape\0";

/// Byte ranges of the header fields.
mod field {
    use std::ops::Range;
    pub const OPCODE: usize = 0;
    pub const LENGTH: Range<usize> = 1..4;
}

pub mod opcode {
    pub const NOOP: u8 = 0x00;
    pub const CLIENT_TO_SERVER: u8 = 0x01;
    pub const SERVER_TO_CLIENT: u8 = 0x02;
    pub const DELAY: u8 = 0x03;
    pub const CLIENT_TO_SERVER_EOF: u8 = 0x04;
    pub const SERVER_TO_CLIENT_EOF: u8 = 0x05;
    /// Opcodes from here up are extensions that readers skip.
    pub const EXTENSION_MIN: u8 = 0x80;
    /// Extension: "any N bytes" from the client (payload: N as u32 BE).
    pub const ANY_CLIENT_TO_SERVER: u8 = 0x81;
    /// Extension: "any N bytes" from the server (payload: N as u32 BE).
    pub const ANY_SERVER_TO_CLIENT: u8 = 0x82;
    /// Extension: the recording ended before the session did (payload: the
    /// reason, UTF-8). Nothing of the session follows it.
    pub const CUT: u8 = 0x83;
    /// Extension: a span of the client's recorded bytes (payload: see
    /// `tape::span`).
    pub const SPAN_CLIENT_TO_SERVER: u8 = 0x84;
    /// Extension: a span of the server's recorded bytes.
    pub const SPAN_SERVER_TO_CLIENT: u8 = 0x85;
}

/// Payload size of a wildcard frame: the count, u32 big-endian.
pub const WILDCARD_LEN: u32 = 4;

/// Which way bytes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    /// The side that sends in this direction: "client" or "server".
    pub fn sender(self) -> &'static str {
        match self {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        }
    }

    /// The side that receives in this direction.
    pub fn receiver(self) -> &'static str {
        self.reverse().sender()
    }

    pub fn reverse(self) -> Direction {
        match self {
            Direction::ClientToServer => Direction::ServerToClient,
            Direction::ServerToClient => Direction::ClientToServer,
        }
    }

    /// 0 for client to server, 1 for server to client: for per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }

    pub fn data_opcode(self) -> u8 {
        match self {
            Direction::ClientToServer => opcode::CLIENT_TO_SERVER,
            Direction::ServerToClient => opcode::SERVER_TO_CLIENT,
        }
    }

    pub fn eof_opcode(self) -> u8 {
        match self {
            Direction::ClientToServer => opcode::CLIENT_TO_SERVER_EOF,
            Direction::ServerToClient => opcode::SERVER_TO_CLIENT_EOF,
        }
    }

    pub fn any_opcode(self) -> u8 {
        match self {
            Direction::ClientToServer => opcode::ANY_CLIENT_TO_SERVER,
            Direction::ServerToClient => opcode::ANY_SERVER_TO_CLIENT,
        }
    }

    pub fn span_opcode(self) -> u8 {
        match self {
            Direction::ClientToServer => opcode::SPAN_CLIENT_TO_SERVER,
            Direction::ServerToClient => opcode::SPAN_SERVER_TO_CLIENT,
        }
    }
}

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Noop,
    Data(Direction),
    Delay,
    Eof(Direction),
    /// A wildcard: that many bytes of that direction, whatever their value.
    /// An extension frame, so readers that predate it skip it.
    Any(Direction),
    /// The recording was cut short here; the payload says why. An
    /// extension frame too.
    Cut,
    /// A span of that direction's recorded bytes (see `tape::span`).
    Span(Direction),
    Extension(u8),
}

impl Kind {
    /// `None` for the reserved opcodes 0x06..=0x7F.
    pub fn from_opcode(op: u8) -> Option<Kind> {
        Some(match op {
            opcode::NOOP => Kind::Noop,
            opcode::CLIENT_TO_SERVER => Kind::Data(Direction::ClientToServer),
            opcode::SERVER_TO_CLIENT => Kind::Data(Direction::ServerToClient),
            opcode::DELAY => Kind::Delay,
            opcode::CLIENT_TO_SERVER_EOF => Kind::Eof(Direction::ClientToServer),
            opcode::SERVER_TO_CLIENT_EOF => Kind::Eof(Direction::ServerToClient),
            opcode::ANY_CLIENT_TO_SERVER => Kind::Any(Direction::ClientToServer),
            opcode::ANY_SERVER_TO_CLIENT => Kind::Any(Direction::ServerToClient),
            opcode::CUT => Kind::Cut,
            opcode::SPAN_CLIENT_TO_SERVER => Kind::Span(Direction::ClientToServer),
            opcode::SPAN_SERVER_TO_CLIENT => Kind::Span(Direction::ServerToClient),
            op if op >= opcode::EXTENSION_MIN => Kind::Extension(op),
            _ => return None,
        })
    }

    pub fn opcode(self) -> u8 {
        match self {
            Kind::Noop => opcode::NOOP,
            Kind::Data(dir) => dir.data_opcode(),
            Kind::Delay => opcode::DELAY,
            Kind::Eof(dir) => dir.eof_opcode(),
            Kind::Any(dir) => dir.any_opcode(),
            Kind::Cut => opcode::CUT,
            Kind::Span(dir) => dir.span_opcode(),
            Kind::Extension(op) => op,
        }
    }

    /// False for DELAY (its length is a value) and EOF frames.
    pub fn has_payload(self) -> bool {
        !matches!(self, Kind::Delay | Kind::Eof(_))
    }

    /// The name `describe` prints: tcptape 0.1.0's names for its frames,
    /// and NOOP for extension frames this version does not know, as 0.1.0
    /// listed every extension frame.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Noop | Kind::Extension(_) => "NOOP",
            Kind::Any(Direction::ClientToServer) => "ANY_CLIENT_TO_SERVER",
            Kind::Any(Direction::ServerToClient) => "ANY_SERVER_TO_CLIENT",
            Kind::Cut => "CUT",
            Kind::Span(Direction::ClientToServer) => "SPAN_CLIENT_TO_SERVER",
            Kind::Span(Direction::ServerToClient) => "SPAN_SERVER_TO_CLIENT",
            Kind::Data(Direction::ClientToServer) => "CLIENT_TO_SERVER",
            Kind::Data(Direction::ServerToClient) => "SERVER_TO_CLIENT",
            Kind::Delay => "DELAY",
            Kind::Eof(Direction::ClientToServer) => "CLIENT_TO_SERVER_EOF",
            Kind::Eof(Direction::ServerToClient) => "SERVER_TO_CLIENT_EOF",
        }
    }
}

/// A frame header: opcode and 24-bit length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub opcode: u8,
    pub len: u32,
}

impl Header {
    pub fn new(opcode: u8, len: u32) -> Header {
        debug_assert!(len <= MAX_LEN, "frame length {len} over 24 bits");
        Header { opcode, len }
    }

    pub fn data(dir: Direction, len: usize) -> Header {
        debug_assert!(len <= MAX_LEN as usize);
        Header::new(dir.data_opcode(), len as u32)
    }

    /// A DELAY of `ms`, capped at the largest the format holds.
    pub fn delay(ms: u64) -> Header {
        Header::new(opcode::DELAY, ms.min(u64::from(MAX_LEN)) as u32)
    }

    pub fn eof(dir: Direction) -> Header {
        Header::new(dir.eof_opcode(), 0)
    }

    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut bytes = [0; HEADER_LEN];
        bytes[field::OPCODE] = self.opcode;
        BigEndian::write_u24(&mut bytes[field::LENGTH], self.len);
        bytes
    }

    pub fn parse(bytes: [u8; HEADER_LEN]) -> Header {
        Header {
            opcode: bytes[field::OPCODE],
            len: BigEndian::read_u24(&bytes[field::LENGTH]),
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        Kind::from_opcode(self.opcode)
    }

    /// Payload bytes that follow the header.
    pub fn payload_len(&self) -> usize {
        match self.kind() {
            Some(kind) if !kind.has_payload() => 0,
            _ => self.len as usize,
        }
    }
}

/// The NOOP frame that starts every tape.
pub fn magic_frame() -> [u8; HEADER_LEN + 8] {
    let mut frame = [0; HEADER_LEN + 8];
    frame[..HEADER_LEN].copy_from_slice(&Header::new(opcode::NOOP, 8).emit());
    frame[HEADER_LEN..].copy_from_slice(MAGIC);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let header = Header::new(opcode::SERVER_TO_CLIENT, 0x01_02_03);
        assert_eq!(header.emit(), [0x02, 0x01, 0x02, 0x03]);
        assert_eq!(Header::parse(header.emit()), header);
        assert_eq!(Header::parse([0xff, 0xff, 0xff, 0xff]).len, MAX_LEN);
    }

    #[test]
    fn every_opcode_has_a_kind_or_is_reserved() {
        for op in 0..=255u8 {
            match Kind::from_opcode(op) {
                Some(kind) => assert_eq!(kind.opcode(), op),
                None => assert!((0x06..=0x7f).contains(&op), "{op:#x}"),
            }
        }
    }

    #[test]
    fn delay_is_capped_and_has_no_payload() {
        assert_eq!(Header::delay(u64::MAX).len, MAX_LEN);
        assert_eq!(Header::delay(150).payload_len(), 0);
        assert_eq!(Header::eof(Direction::ClientToServer).payload_len(), 0);
        assert_eq!(Header::new(0x90, 7).payload_len(), 7);
    }

    #[test]
    fn magic_frame_bytes() {
        assert_eq!(magic_frame(), *b"\0\0\0\x08tcptape\0");
    }

    #[test]
    fn direction_helpers() {
        let c2s = Direction::ClientToServer;
        assert_eq!(c2s.reverse(), Direction::ServerToClient);
        assert_eq!((c2s.index(), c2s.reverse().index()), (0, 1));
        assert_eq!(Kind::Extension(0x90).name(), "NOOP");
        assert_eq!(Kind::Any(c2s).name(), "ANY_CLIENT_TO_SERVER");
    }
}
