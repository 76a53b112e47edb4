//! The tapes a `server` plays: one tape for every client, or a cassette
//! whose tapes each serve one connection.
//!
//! Choosing a cassette tape for a new connection:
//! - if the lowest-numbered unused tape lets the server speak first (its
//!   client sends nothing before the server's first frame), it is taken at
//!   once: a client of a server-first protocol waits for its banner;
//! - otherwise the client's first bytes decide among the unused client-first
//!   tapes: a tape is chosen once it is the only one they agree with, or
//!   its whole first message has arrived (the lowest-numbered such tape).
//!   Wildcard bytes agree with anything.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::TapeFile;
use crate::error::Error;
use crate::hexdump;
use crate::tape::{Direction, Kind, Locator, Reader};

/// Bytes of a tape's first client message looked at when choosing.
pub const PREFIX_LIMIT: usize = 64 * 1024;

/// The client's bytes before the server's first move; `None` where the
/// tape has a wildcard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefix(Vec<Option<u8>>);

impl Prefix {
    /// Reads the prefix of a tape played as the server.
    fn of(tape: &TapeFile, path: &Path) -> Result<Prefix, Error> {
        let mut reader = Reader::new(tape.clone());
        let mut bytes = Vec::new();
        let tape_error = |err| Error::tape(path, err);
        while bytes.len() < PREFIX_LIMIT {
            let Some(frame) = reader.next_frame().map_err(tape_error)? else {
                break;
            };
            match frame.kind {
                Kind::Data(Direction::ClientToServer) => {
                    let mut payload = Vec::new();
                    reader.read_payload_into(&mut payload).map_err(tape_error)?;
                    bytes.extend(payload.into_iter().map(Some));
                }
                Kind::Any(Direction::ClientToServer) => {
                    let count = reader.read_wildcard().map_err(tape_error)? as usize;
                    bytes.extend(std::iter::repeat_n(None, count.min(PREFIX_LIMIT)));
                }
                Kind::Data(Direction::ServerToClient)
                | Kind::Any(Direction::ServerToClient)
                | Kind::Eof(_) => break,
                Kind::Noop | Kind::Delay | Kind::Extension(_) => {}
            }
        }
        bytes.truncate(PREFIX_LIMIT);
        Ok(Prefix(bytes))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Leading bytes of `received` that agree with the prefix.
    fn agreement(&self, received: &[u8]) -> usize {
        self.0
            .iter()
            .zip(received)
            .take_while(|(want, got)| want.is_none_or(|w| w == **got))
            .count()
    }

    fn consistent(&self, received: &[u8]) -> bool {
        self.agreement(received) == self.len().min(received.len())
    }
}

pub struct Entry {
    pub name: String,
    pub tape: TapeFile,
    pub locator: Locator,
    prefix: Prefix,
    used: bool,
}

/// What to do with a new or waiting connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Serve it with entry `i`.
    Tape(usize),
    /// Read more of the client's first bytes.
    Wait,
    /// Every tape was served and `--reuse` is off.
    Exhausted,
    /// No unused tape agrees with what the client sent; the text says
    /// which came closest and where they diverged.
    NoMatch(String),
}

pub struct Catalog {
    dir: PathBuf,
    entries: Vec<Entry>,
    reuse: bool,
}

impl Catalog {
    /// Loads the tapes of a cassette, each checked with `load`.
    pub fn load(
        dir: &Path,
        reuse: bool,
        load: impl Fn(&Path) -> Result<(TapeFile, Locator), Error>,
    ) -> Result<Catalog, Error> {
        let mut entries = Vec::new();
        for path in crate::cassette::tapes(dir)? {
            let (tape, locator) = load(&path)?;
            entries.push(Entry {
                locator,
                name: path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                prefix: Prefix::of(&tape, &path)?,
                tape,
                used: false,
            });
        }
        if entries.is_empty() {
            return Err(Error::Session(format!(
                "{}: the cassette holds no tapes",
                dir.display()
            )));
        }
        Ok(Catalog {
            dir: dir.to_path_buf(),
            entries,
            reuse,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// True once every tape has been handed out.
    pub fn all_used(&self) -> bool {
        self.entries.iter().all(|e| e.used)
    }

    /// Marks entry `i` as serving a connection.
    pub fn take(&mut self, i: usize) {
        self.entries[i].used = true;
    }

    /// Unused entries in order; with `--reuse`, all of them once they were
    /// all used.
    fn unused(&mut self) -> Vec<usize> {
        if self.reuse && self.all_used() {
            self.entries.iter_mut().for_each(|e| e.used = false);
        }
        (0..self.entries.len())
            .filter(|&i| !self.entries[i].used)
            .collect()
    }

    /// A connection was accepted: serve it now, or wait for its bytes.
    pub fn on_accept(&mut self) -> Choice {
        match self.unused().first() {
            None => Choice::Exhausted,
            Some(&i) if self.entries[i].prefix.len() == 0 => Choice::Tape(i),
            Some(_) => Choice::Wait,
        }
    }

    /// The client has sent `received` (and closed its side when `eof`).
    pub fn choose(&mut self, received: &[u8], eof: bool) -> Choice {
        let candidates: Vec<usize> = self
            .unused()
            .into_iter()
            .filter(|&i| self.entries[i].prefix.len() > 0)
            .collect();
        let consistent: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.entries[i].prefix.consistent(received))
            .collect();
        let Some(&first) = consistent.first() else {
            return if candidates.is_empty() {
                Choice::Exhausted
            } else {
                Choice::NoMatch(self.closest(&candidates, received))
            };
        };
        let complete = consistent
            .iter()
            .copied()
            .find(|&i| received.len() >= self.entries[i].prefix.len());
        match complete {
            Some(i) => Choice::Tape(i),
            None if consistent.len() == 1 || eof || received.len() >= PREFIX_LIMIT => {
                Choice::Tape(first)
            }
            None => Choice::Wait,
        }
    }

    /// Names the candidates that agree longest and where they diverge.
    fn closest(&self, candidates: &[usize], received: &[u8]) -> String {
        let mut ranked: Vec<(usize, usize)> = candidates
            .iter()
            .map(|&i| (self.entries[i].prefix.agreement(received), i))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut text = format!(
            "its first {} bytes match no unused tape of {}; closest:",
            received.len(),
            self.dir.display()
        );
        for &(agree, i) in ranked.iter().take(3) {
            let entry = &self.entries[i];
            let expected = entry.prefix.0.get(agree).copied().flatten();
            let _ = write!(
                text,
                "\n  {} agrees on {agree} bytes, then expects {} where the client sent {}",
                entry.name,
                describe(expected),
                describe(received.get(agree).copied())
            );
        }
        let shown = &received[..received.len().min(64)];
        text.push_str("\n  received:\n");
        let mut dump = Vec::new();
        let _ = hexdump::dump(0, shown, &mut dump, "    ");
        text.push_str(&String::from_utf8_lossy(&dump));
        text
    }
}

fn describe(byte: Option<u8>) -> String {
    match byte {
        Some(b) if b.is_ascii_graphic() || b == b' ' => format!("0x{b:02x} '{}'", b as char),
        Some(b) => format!("0x{b:02x}"),
        None => "nothing".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Writer;
    use std::rc::Rc;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> TapeFile {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        Rc::new(bytes)
    }

    fn catalog(tapes: Vec<TapeFile>, reuse: bool) -> Catalog {
        let entries = tapes
            .into_iter()
            .enumerate()
            .map(|(i, tape)| Entry {
                name: crate::cassette::tape_name(i as u64 + 1),
                prefix: Prefix::of(&tape, Path::new("t")).unwrap(),
                tape,
                locator: Locator::default(),
                used: false,
            })
            .collect();
        Catalog {
            dir: PathBuf::from("pool/"),
            entries,
            reuse,
        }
    }

    fn request(path: &'static [u8]) -> TapeFile {
        tape(move |w| {
            w.data(C2S, path).unwrap();
            w.data(S2C, b"ok").unwrap();
        })
    }

    #[test]
    fn first_bytes_pick_among_client_first_tapes() {
        let mut c = catalog(
            vec![request(b"GET /a"), request(b"GET /b"), request(b"PUT /a")],
            false,
        );
        assert_eq!(c.on_accept(), Choice::Wait);
        assert_eq!(c.choose(b"GET /", false), Choice::Wait);
        assert_eq!(c.choose(b"GET /b", false), Choice::Tape(1));
        assert_eq!(c.choose(b"P", false), Choice::Tape(2), "only one agrees");
    }

    #[test]
    fn a_complete_first_message_wins_over_a_longer_one() {
        let mut c = catalog(vec![request(b"GET /a/b"), request(b"GET /a")], false);
        assert_eq!(c.choose(b"GET /a", false), Choice::Tape(1));
        assert_eq!(
            c.choose(b"GET /", true),
            Choice::Tape(0),
            "at EOF: the first that agrees"
        );
    }

    #[test]
    fn used_tapes_are_skipped_and_reuse_brings_them_back() {
        let mut c = catalog(vec![request(b"A"), request(b"A")], false);
        c.take(0);
        assert_eq!(c.choose(b"A", false), Choice::Tape(1));
        c.take(1);
        assert!(c.all_used());
        assert_eq!(c.on_accept(), Choice::Exhausted);
        let mut c = catalog(vec![request(b"A")], true);
        c.take(0);
        assert_eq!(c.on_accept(), Choice::Wait);
        assert_eq!(c.choose(b"A", false), Choice::Tape(0));
    }

    #[test]
    fn server_first_tapes_are_served_in_order_at_once() {
        let banner = || {
            tape(|w| {
                w.data(S2C, b"220 hi\r\n").unwrap();
                w.data(C2S, b"QUIT\r\n").unwrap();
            })
        };
        let mut c = catalog(vec![banner(), banner()], false);
        assert_eq!(c.on_accept(), Choice::Tape(0));
        c.take(0);
        assert_eq!(c.on_accept(), Choice::Tape(1));
    }

    #[test]
    fn wildcards_agree_with_anything() {
        let nonce = tape(|w| {
            w.data(C2S, b"N=").unwrap();
            w.any(C2S, 2).unwrap();
            w.data(S2C, b"ok").unwrap();
        });
        let mut c = catalog(vec![nonce, request(b"N=zz!")], false);
        assert_eq!(c.choose(b"N=xy", false), Choice::Tape(0));
    }

    #[test]
    fn no_match_names_the_closest_tapes() {
        let mut c = catalog(vec![request(b"HELLO"), request(b"HELP me")], false);
        let Choice::NoMatch(text) = c.choose(b"HELIX", false) else {
            panic!("expected no match")
        };
        assert!(
            text.starts_with("its first 5 bytes match no unused tape of pool/; closest:"),
            "{text}"
        );
        assert!(
            text.contains(
                "0001.tape agrees on 3 bytes, then expects 0x4c 'L' where the client sent 0x49 'I'"
            ),
            "{text}"
        );
        assert!(text.contains("|HELIX|"), "{text}");
    }
}
