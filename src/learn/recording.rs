//! A recording read whole: each direction's byte stream, and its frames
//! to write back (data as places in the streams, the rest as they were).

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::tape::frame::Header;
use crate::tape::reader::MAX_CHUNK;
use crate::tape::{self, Direction, Kind, Reader, Source, TapeError};

/// A frame of a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Bytes `start..start + len` of the direction's stream.
    Data {
        dir: Direction,
        start: usize,
        len: usize,
    },
    /// Any other frame, header and payload, to be written as it is.
    Raw(Vec<u8>),
}

/// Where a data frame with bytes starts in its stream, and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub frame: u64,
}

#[derive(Debug)]
pub struct Recording {
    /// The file, as the user named it.
    pub name: String,
    /// Every frame after the magic, in order.
    pub items: Vec<Item>,
    /// The bytes of each direction (`Direction::index`).
    pub streams: [Vec<u8>; 2],
    /// The data frames with bytes of each direction, in order.
    pub chunks: [Vec<Chunk>; 2],
}

impl Recording {
    /// Reads a tape, binary or text.
    pub fn read(path: &Path) -> Result<Recording, Error> {
        let tape = tape::open(path)?;
        let name = path.display().to_string();
        Recording::from_source(name, tape).map_err(|err| match err {
            Refusal::Tape(err) => Error::tape(path, err),
            Refusal::Marked(why) => Error::refused(path, format!("{}: {why}", path.display())),
        })
    }

    /// Reads tapes, binary or text.
    pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Recording>, Error> {
        paths.iter().map(|path| Recording::read(path)).collect()
    }

    /// Reads a tape from bytes in memory.
    #[cfg(test)]
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<Recording, String> {
        Recording::from_source(name.to_string(), bytes).map_err(|err| match err {
            Refusal::Tape(err) => format!("{name}: {err}"),
            Refusal::Marked(why) => format!("{name}: {why}"),
        })
    }

    /// A recording of `steps`, one data frame each, then both EOFs.
    #[cfg(test)]
    pub fn of_steps(name: &str, steps: &[(Direction, &[u8])]) -> Recording {
        let mut bytes = Vec::new();
        let mut w = crate::tape::Writer::new(&mut bytes).unwrap();
        for (dir, data) in steps {
            w.data(*dir, data).unwrap();
        }
        w.eof(Direction::ClientToServer).unwrap();
        w.eof(Direction::ServerToClient).unwrap();
        Recording::from_bytes(name, &bytes).unwrap()
    }

    fn from_source<S: Source>(name: String, source: S) -> Result<Recording, Refusal> {
        let mut reader = Reader::with_read_ahead(source, MAX_CHUNK);
        let mut recording = Recording {
            name,
            items: Vec::new(),
            streams: [Vec::new(), Vec::new()],
            chunks: [Vec::new(), Vec::new()],
        };
        while let Some(frame) = reader.next_frame()? {
            if frame.index == 0 {
                continue;
            }
            let item = match frame.kind {
                Kind::Data(dir) => {
                    let stream = &mut recording.streams[dir.index()];
                    let start = stream.len();
                    reader.read_payload_into(stream)?;
                    if frame.len > 0 {
                        recording.chunks[dir.index()].push(Chunk {
                            start,
                            frame: frame.index,
                        });
                    }
                    Item::Data {
                        dir,
                        start,
                        len: frame.len as usize,
                    }
                }
                // A learned tape's spans stand for bytes of the first
                // recording: wildcards and spans already there would have
                // to be learned again.
                Kind::Any(_) => {
                    return Err(Refusal::Marked(format!(
                        "frame {} is a wildcard: learn takes recordings as the proxy writes them, without wildcards",
                        frame.index
                    )));
                }
                Kind::Span(_) => {
                    return Err(Refusal::Marked(format!(
                        "frame {} is a span: learn takes recordings as the proxy writes them, without spans",
                        frame.index
                    )));
                }
                kind => {
                    let mut raw = Header::new(kind.opcode(), frame.len).emit().to_vec();
                    if kind.has_payload() {
                        reader.read_payload_into(&mut raw)?;
                    }
                    Item::Raw(raw)
                }
            };
            recording.items.push(item);
        }
        Ok(recording)
    }

    pub fn stream(&self, dir: Direction) -> &[u8] {
        &self.streams[dir.index()]
    }

    /// The index of the frame that holds byte `at` of `dir` (the last
    /// frame for the end of the stream, 0 when there is none).
    pub fn frame_of(&self, dir: Direction, at: usize) -> u64 {
        let chunks = &self.chunks[dir.index()];
        let i = chunks.partition_point(|chunk| chunk.start <= at);
        i.checked_sub(1).map_or(0, |i| chunks[i].frame)
    }

    /// What the client sent before the server's first byte, at most `max`
    /// bytes: what a cassette's replay picks a client-first tape by.
    pub fn first_request(&self, max: usize) -> &[u8] {
        let client = self.stream(Direction::ClientToServer);
        let first_server_frame = self.chunks[Direction::ServerToClient.index()]
            .first()
            .map_or(u64::MAX, |chunk| chunk.frame);
        let chunks = &self.chunks[Direction::ClientToServer.index()];
        let end = chunks
            .iter()
            .find(|chunk| chunk.frame > first_server_frame)
            .map_or(client.len(), |chunk| chunk.start);
        &client[..end.min(max)]
    }

    /// True when the server sent the first bytes.
    pub fn server_first(&self) -> bool {
        let first = |dir: Direction| {
            self.chunks[dir.index()]
                .first()
                .map_or(u64::MAX, |chunk| chunk.frame)
        };
        first(Direction::ServerToClient) < first(Direction::ClientToServer)
    }
}

/// Why a tape is not taken.
enum Refusal {
    Tape(TapeError),
    /// It has wildcards or spans.
    Marked(String),
}

impl From<TapeError> for Refusal {
    fn from(err: TapeError) -> Self {
        Refusal::Tape(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Writer;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> Vec<u8> {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        bytes
    }

    #[test]
    fn streams_frames_and_places() {
        let bytes = tape(|w| {
            w.data(S2C, b"220 hi\r\n").unwrap();
            w.data(C2S, b"EHLO").unwrap();
            w.data(C2S, b" x\r\n").unwrap();
            w.delay(5).unwrap();
            w.data(C2S, b"").unwrap();
            w.data(S2C, b"250 ok\r\n").unwrap();
            w.data(C2S, b"QUIT\r\n").unwrap();
            w.eof(C2S).unwrap();
        });
        let recording = Recording::from_bytes("t", &bytes).unwrap();
        assert_eq!(recording.stream(C2S), b"EHLO x\r\nQUIT\r\n");
        assert_eq!(recording.stream(S2C), b"220 hi\r\n250 ok\r\n");
        assert_eq!(recording.items.len(), 8);
        assert_eq!(recording.items[3], Item::Raw(b"\x03\0\0\x05".to_vec()));
        assert_eq!(
            recording.items[4],
            Item::Data {
                dir: C2S,
                start: 8,
                len: 0
            }
        );
        assert_eq!(recording.frame_of(C2S, 0), 2);
        assert_eq!(recording.frame_of(C2S, 5), 3);
        assert_eq!(recording.frame_of(C2S, 8), 7);
        assert_eq!(recording.frame_of(S2C, 9), 6);
        assert!(recording.server_first());
        // The server spoke first: the client sent nothing before it.
        assert_eq!(recording.first_request(100), b"");
    }

    #[test]
    fn the_first_request_ends_at_the_first_answer() {
        let bytes = tape(|w| {
            w.data(C2S, b"GET / HTTP/1.1\r\n").unwrap();
            w.data(C2S, b"\r\n").unwrap();
            w.data(S2C, b"HTTP/1.1 200 OK\r\n").unwrap();
            w.data(C2S, b"GET /more").unwrap();
        });
        let recording = Recording::from_bytes("t", &bytes).unwrap();
        assert!(!recording.server_first());
        assert_eq!(recording.first_request(100), b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(recording.first_request(3), b"GET");
    }

    #[test]
    fn wildcards_spans_and_bad_tapes_are_refused() {
        let wild = tape(|w| w.any(C2S, 3).unwrap());
        let err = Recording::from_bytes("w.tape", &wild).unwrap_err();
        assert_eq!(
            err,
            "w.tape: frame 1 is a wildcard: learn takes recordings as the proxy writes them, without wildcards"
        );
        let span = tape(|w| {
            w.span(
                C2S,
                &crate::tape::Span::fixed(crate::tape::SpanKind::Vary, 0),
            )
            .unwrap()
        });
        let err = Recording::from_bytes("s.tape", &span).unwrap_err();
        assert!(err.contains("frame 1 is a span"), "{err}");
        let err = Recording::from_bytes("x.tape", b"nope").unwrap_err();
        assert_eq!(err, "x.tape: not a tape: no tcptape magic at offset 0");
    }
}
