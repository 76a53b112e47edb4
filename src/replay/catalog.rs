//! The tapes a `server` plays: one tape for every client, or a cassette
//! whose tapes each serve one connection.
//!
//! Narrowing down the cassette tapes for a new connection:
//! - if the lowest-numbered unused tape lets the server speak first (its
//!   client sends nothing before the server's first frame), the unused
//!   server-first tapes are the candidates at once: a client of a
//!   server-first protocol waits for its banner;
//! - otherwise the client's first bytes narrow down the unused client-first
//!   tapes, until one is left, or one's whole first message has arrived,
//!   or the client closed its side. Wildcard and fixed span bytes agree
//!   with anything.
//!
//! The candidates then play side by side until they differ (`pool`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use super::TapeFile;
use super::pool::WINDOW;
use crate::error::Error;
use crate::hexdump;
use crate::tape::span::MAX_PAYLOAD;
use crate::tape::{
    self, Direction, Kind, Locator, Reader, Source, Span, SpanKind, TapeError, WeakLocator,
};

/// Moves past the `len` recorded client bytes a span covers; the reader
/// is then inside a client data frame whose rest (if any) follows the span.
fn skip_client_bytes<S: Source>(reader: &mut Reader<S>, mut len: u32) -> Result<(), TapeError> {
    let mut in_client_data = false;
    while len > 0 {
        let left = reader.payload_left() as u32;
        if in_client_data && left > 0 {
            let n = left.min(len);
            reader.consume_payload(n as usize);
            len -= n;
            continue;
        }
        match reader.next_frame()? {
            Some(frame) => in_client_data = frame.kind == Kind::Data(Direction::ClientToServer),
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Bytes of a tape's first client message kept for choosing: enough for
/// any request line or handshake, small enough for a cassette of tens of
/// thousands of tapes.
pub const PREFIX_LIMIT: usize = 4096;

/// The client's bytes before the server's first move; `None` where the
/// tape has a wildcard.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Prefix(Vec<Option<u8>>);

impl Prefix {
    /// Reads the prefix of a tape played as the server.
    pub fn of(tape: &TapeFile, path: &Path) -> Result<Prefix, Error> {
        let mut reader = Reader::new(tape.clone());
        let mut bytes = Vec::new();
        let tape_error = |err| Error::tape(path, err);
        while bytes.len() < PREFIX_LIMIT {
            let Some(frame) = reader.next_frame().map_err(tape_error)? else {
                break;
            };
            match frame.kind {
                Kind::Data(Direction::ClientToServer) => loop {
                    let want = PREFIX_LIMIT - bytes.len();
                    let chunk = reader.read_payload(want).map_err(tape_error)?;
                    if chunk.is_empty() {
                        break;
                    }
                    bytes.extend(chunk.iter().copied().map(Some));
                },
                Kind::Any(Direction::ClientToServer) => {
                    let count = reader.read_wildcard().map_err(tape_error)? as usize;
                    let count = count.min(PREFIX_LIMIT - bytes.len());
                    bytes.extend(std::iter::repeat_n(None, count));
                }
                // A fixed vary span or capture agrees with any bytes of its
                // length; where the length is not known (a secret's may be
                // any), the prefix ends.
                Kind::Span(Direction::ClientToServer) => {
                    let payload = reader.read_payload(MAX_PAYLOAD).map_err(tape_error)?;
                    let span = Span::parse(payload).map_err(|err| {
                        Error::refused(
                            path,
                            format!("{}: span frame {}: {err}", path.display(), frame.index),
                        )
                    })?;
                    if !span.is_fixed()
                        || matches!(span.kind, SpanKind::Echo(_) | SpanKind::Secret(_))
                    {
                        break;
                    }
                    let count = (span.len as usize).min(PREFIX_LIMIT - bytes.len());
                    bytes.extend(std::iter::repeat_n(None, count));
                    skip_client_bytes(&mut reader, span.len).map_err(tape_error)?;
                    // The rest of the frame the span ended in.
                    loop {
                        let want = PREFIX_LIMIT.saturating_sub(bytes.len());
                        let chunk = reader.read_payload(want).map_err(tape_error)?;
                        if chunk.is_empty() {
                            break;
                        }
                        bytes.extend(chunk.iter().copied().map(Some));
                    }
                }
                Kind::Data(Direction::ServerToClient)
                | Kind::Any(Direction::ServerToClient)
                | Kind::Span(Direction::ServerToClient)
                | Kind::Eof(_)
                | Kind::Cut => break,
                Kind::Noop | Kind::Delay | Kind::Extension(_) => {}
            }
        }
        Ok(Prefix(bytes))
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// True when `received` agrees with the prefix where they overlap,
    /// looking only from `from` on (the bytes before it agreed already).
    fn agrees_from(&self, received: &[u8], from: usize) -> bool {
        let end = self.len().min(received.len());
        (from..end).all(|i| self.0[i].is_none_or(|want| want == received[i]))
    }

    /// How many bytes of `received` agree with the prefix, looking only
    /// from `from` on (the bytes before it agreed already).
    fn agreement_from(&self, received: &[u8], from: usize) -> usize {
        let checked = self
            .0
            .iter()
            .zip(received)
            .skip(from)
            .take_while(|(want, got)| want.is_none_or(|w| w == **got))
            .count();
        from + checked
    }
}

/// Where a cassette tape stands in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Free,
    /// A connection is being served with it.
    Serving,
    /// It was served (and, with `--reuse`, may serve again).
    Served,
}

pub struct Entry {
    pub name: String,
    pub path: PathBuf,
    /// The group of tapes with the same first client bytes.
    group: usize,
    state: Use,
    /// Connections served by it in this run.
    served: u64,
    /// The tape while some connection plays it: every connection that
    /// plays it shares one descriptor.
    open: Option<(Weak<dyn Source>, WeakLocator)>,
}

/// Tapes whose first client bytes are the same: a connection's first
/// bytes are checked once per group, however many tapes it holds.
struct Group {
    prefix: Prefix,
    /// In catalog order.
    entries: Vec<usize>,
}

/// What to do with a new or waiting connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Serve it with these entries, best first (at most `pool::WINDOW`);
    /// `more_after`: more tapes agree, after that entry in catalog order.
    Tapes {
        entries: Vec<usize>,
        more_after: Option<usize>,
    },
    /// Read more of the client's first bytes.
    Wait,
    /// Tapes agree, but each serves another connection now: wait until
    /// one is given back (a probe's tape, or one `--reuse` serves again).
    Queue,
    /// Every tape that agrees was served, and `--reuse` is off.
    Exhausted,
    /// No tape agrees with what the client sent; the text says which came
    /// closest and where they diverged.
    NoMatch(String),
}

/// A connection's candidates while its tape is chosen: the groups that
/// agree with every byte it sent so far (a bit each), and how many of its
/// bytes were checked. New bytes are checked once, against the groups
/// still in the running.
#[derive(Debug, Default)]
pub struct Candidates {
    groups: Vec<u64>,
    checked: usize,
}

impl Candidates {
    fn of(groups: impl Iterator<Item = usize>, count: usize) -> Candidates {
        let mut bits = vec![0u64; count.div_ceil(64)];
        for g in groups {
            bits[g / 64] |= 1 << (g % 64);
        }
        Candidates {
            groups: bits,
            checked: 0,
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.groups.iter().enumerate().flat_map(|(word, &bits)| {
            (0..64)
                .filter(move |bit| bits & (1 << bit) != 0)
                .map(move |bit| word * 64 + bit)
        })
    }

    fn remove(&mut self, group: usize) {
        self.groups[group / 64] &= !(1 << (group % 64));
    }
}

pub struct Catalog {
    dir: PathBuf,
    entries: Vec<Entry>,
    groups: Vec<Group>,
    reuse: bool,
}

impl Catalog {
    /// Lists and checks the tapes of a cassette; `prefix` reads each
    /// tape's first client bytes (and checks it is a tape that replays).
    /// Tapes are opened again when served: a cassette of any size holds
    /// no descriptors while idle.
    pub fn load(
        dir: &Path,
        reuse: bool,
        prefix: impl Fn(&Path) -> Result<Prefix, Error>,
    ) -> Result<Catalog, Error> {
        let mut tapes = Vec::new();
        for path in crate::cassette::tapes(dir)? {
            let prefix = prefix(&path)?;
            tapes.push((path, prefix));
        }
        if tapes.is_empty() {
            return Err(Error::refused(
                dir,
                format!(
                    "{}: the cassette holds no tapes (*.tape files)",
                    dir.display()
                ),
            ));
        }
        Ok(Catalog::of(dir, reuse, tapes))
    }

    /// The catalog of `tapes` (in order) and their prefixes.
    fn of(dir: &Path, reuse: bool, tapes: Vec<(PathBuf, Prefix)>) -> Catalog {
        let mut entries = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut by_prefix: HashMap<Prefix, usize> = HashMap::new();
        for (path, prefix) in tapes {
            let index = entries.len();
            let group = *by_prefix.entry(prefix.clone()).or_insert_with(|| {
                groups.push(Group {
                    prefix,
                    entries: Vec::new(),
                });
                groups.len() - 1
            });
            groups[group].entries.push(index);
            entries.push(Entry {
                name: path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                path,
                group,
                state: Use::Free,
                served: 0,
                open: None,
            });
        }
        Catalog {
            dir: dir.to_path_buf(),
            entries,
            groups,
            reuse,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }

    /// Opens the tape of entry `i`, or shares the handle of a connection
    /// that plays it already.
    pub fn open(&mut self, i: usize) -> Result<(String, TapeFile, Locator), Error> {
        let entry = &mut self.entries[i];
        let shared = entry
            .open
            .as_ref()
            .and_then(|(tape, locator)| Some((tape.upgrade()?, locator.upgrade()?)));
        let (tape, locator) = match shared {
            Some(open) => open,
            None => {
                let (tape, locator) = tape::open_located(&entry.path)?;
                entry.open = Some((Rc::downgrade(&tape), locator.downgrade()));
                (tape, locator)
            }
        };
        Ok((entry.name.clone(), tape, locator))
    }

    /// True once every tape was served and none is serving.
    pub fn all_served(&self) -> bool {
        self.entries.iter().all(|e| e.state == Use::Served)
    }

    /// Tapes served at least once in this run.
    pub fn served_count(&self) -> usize {
        self.entries.iter().filter(|e| e.served > 0).count()
    }

    /// Names of the tapes never served in this run.
    pub fn never_served(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.served == 0)
            .map(|e| e.name.clone())
            .collect()
    }

    /// True while entry `i` serves a connection.
    pub fn serving(&self, i: usize) -> bool {
        self.entries[i].state == Use::Serving
    }

    /// Entry `i` serves a connection.
    pub fn take(&mut self, i: usize) {
        self.entries[i].state = Use::Serving;
    }

    /// The connection entry `i` served is over: a session (counted) or a
    /// probe (the tape is free again).
    pub fn release(&mut self, i: usize, counted: bool) {
        let entry = &mut self.entries[i];
        if counted {
            entry.state = Use::Served;
            entry.served += 1;
        } else {
            entry.state = Use::Free;
        }
    }

    /// Of `agreeing` entries (catalog order), those a new connection may
    /// take: the free ones; with `--reuse`, once none is free, the served
    /// ones again. `Err` says why none: some serve other connections, or
    /// all were served.
    fn usable(&self, agreeing: &[usize]) -> Result<Vec<usize>, Choice> {
        let with = |state: Use| -> Vec<usize> {
            let entries = agreeing.iter().copied();
            entries
                .filter(|&i| self.entries[i].state == state)
                .collect()
        };
        let free = with(Use::Free);
        if !free.is_empty() {
            return Ok(free);
        }
        let served = with(Use::Served);
        if self.reuse && !served.is_empty() {
            return Ok(served);
        }
        match with(Use::Serving).is_empty() {
            true => Err(Choice::Exhausted),
            false => Err(Choice::Queue),
        }
    }

    /// The window of `usable` entries (catalog order) for a connection
    /// that sent `received`, best first, and where the rest begin.
    fn window(&self, usable: Vec<usize>, received: usize) -> Choice {
        let more_after = (usable.len() > WINDOW).then(|| usable[WINDOW - 1]);
        let mut entries = usable;
        entries.truncate(WINDOW);
        // Of the tapes whose whole first message arrived, the longest
        // first: "GET 30" is not the best guess for a client that sent
        // "GET 300".
        entries.sort_by_key(|&i| {
            let len = self.groups[self.entries[i].group].prefix.len();
            (received < len, std::cmp::Reverse(len), i)
        });
        Choice::Tapes {
            entries,
            more_after,
        }
    }

    /// A connection was accepted: serve it now (the first usable tape
    /// lets the server speak first), or wait for its bytes among
    /// `candidates`.
    pub fn on_accept(&mut self, candidates: &mut Candidates) -> Choice {
        let all: Vec<usize> = (0..self.entries.len()).collect();
        let usable = match self.usable(&all) {
            Ok(usable) => usable,
            Err(why) => return why,
        };
        let server_first = |i: &usize| self.groups[self.entries[*i].group].prefix.len() == 0;
        if server_first(&usable[0]) {
            let banner: Vec<usize> = usable.into_iter().filter(server_first).collect();
            return self.window(banner, 0);
        }
        let groups = (0..self.groups.len()).filter(|&g| self.groups[g].prefix.len() > 0);
        *candidates = Candidates::of(groups, self.groups.len());
        Choice::Wait
    }

    /// The client has sent `received` (and closed its side when `eof`):
    /// drops the groups that disagree, and decides when one is left, one's
    /// first message is complete, or nothing more will come.
    pub fn choose(&mut self, candidates: &mut Candidates, received: &[u8], eof: bool) -> Choice {
        if received.is_empty() && !eof {
            return Choice::Wait;
        }
        let from = candidates.checked;
        // A client that closed its side cannot send the rest of a longer
        // first message.
        let disagree: Vec<usize> = candidates
            .iter()
            .filter(|&g| {
                let prefix = &self.groups[g].prefix;
                !prefix.agrees_from(received, from) || (eof && prefix.len() > received.len())
            })
            .collect();
        for g in disagree {
            candidates.remove(g);
        }
        candidates.checked = received.len();
        let left: Vec<usize> = candidates.iter().collect();
        if left.is_empty() {
            return Choice::NoMatch(self.closest(received));
        }
        // Groups whose every tape serves or was served count for nothing
        // while the others are told apart.
        let takes = |g: &usize| {
            self.groups[*g].entries.iter().any(|&i| {
                let state = self.entries[i].state;
                state == Use::Free || (self.reuse && state == Use::Served)
            })
        };
        let live: Vec<usize> = left.iter().copied().filter(takes).collect();
        let complete = live
            .iter()
            .any(|&g| received.len() >= self.groups[g].prefix.len());
        let decided = live.len() <= 1 || complete || eof || received.len() >= PREFIX_LIMIT;
        if !decided {
            return Choice::Wait;
        }
        let mut agreeing: Vec<usize> = left
            .iter()
            .flat_map(|&g| self.groups[g].entries.iter().copied())
            .collect();
        agreeing.sort_unstable();
        match self.usable(&agreeing) {
            Ok(usable) => self.window(usable, received.len()),
            Err(why) => why,
        }
    }

    /// Up to `want` usable entries after entry `after` whose first client
    /// bytes agree with `received`, and the last entry looked at (`None`
    /// when the catalog has no more).
    pub fn more(&self, after: usize, received: &[u8], want: usize) -> (Vec<usize>, Option<usize>) {
        let mut found = Vec::new();
        for i in after + 1..self.entries.len() {
            if found.len() == want {
                return (found, Some(i - 1));
            }
            let entry = &self.entries[i];
            let usable = entry.state == Use::Free || (self.reuse && entry.state == Use::Served);
            if usable && self.groups[entry.group].prefix.agrees_from(received, 0) {
                found.push(i);
            }
        }
        (found, None)
    }

    /// Names the tapes that agree longest and where they diverge.
    fn closest(&self, received: &[u8]) -> String {
        let mut ranked: Vec<(usize, usize)> = self
            .groups
            .iter()
            .filter(|group| group.prefix.len() > 0)
            .filter_map(|group| {
                let first = *group
                    .entries
                    .iter()
                    .find(|&&i| self.entries[i].state != Use::Serving)?;
                Some((first, group.prefix.agreement_from(received, 0)))
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut text = format!(
            "its first {} bytes match no unused tape of {}; closest:",
            received.len(),
            self.dir.display()
        );
        for &(i, agree) in ranked.iter().take(3) {
            let entry = &self.entries[i];
            let expected = self.groups[entry.group]
                .prefix
                .0
                .get(agree)
                .copied()
                .flatten();
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
    use crate::tape::{Span, SpanKind, Writer};
    use std::rc::Rc;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    fn tape(build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) -> TapeFile {
        let mut bytes = Vec::new();
        build(&mut Writer::new(&mut bytes).unwrap());
        Rc::new(bytes)
    }

    fn catalog(tapes: Vec<TapeFile>, reuse: bool) -> Catalog {
        let tapes = tapes
            .into_iter()
            .enumerate()
            .map(|(i, tape)| {
                let name = crate::cassette::tape_name(i as u64 + 1);
                let prefix = Prefix::of(&tape, Path::new("t")).unwrap();
                (PathBuf::from(name), prefix)
            })
            .collect();
        Catalog::of(Path::new("pool/"), reuse, tapes)
    }

    fn tapes(entries: &[usize]) -> Choice {
        Choice::Tapes {
            entries: entries.to_vec(),
            more_after: None,
        }
    }

    fn request(path: &'static [u8]) -> TapeFile {
        tape(move |w| {
            w.data(C2S, path).unwrap();
            w.data(S2C, b"ok").unwrap();
        })
    }

    /// What a new connection that sends `received` gets.
    fn choose(c: &mut Catalog, received: &[u8], eof: bool) -> Choice {
        let mut candidates = Candidates::default();
        match c.on_accept(&mut candidates) {
            Choice::Wait => c.choose(&mut candidates, received, eof),
            other => other,
        }
    }

    #[test]
    fn first_bytes_pick_among_client_first_tapes() {
        let mut c = catalog(
            vec![request(b"GET /a"), request(b"GET /b"), request(b"PUT /a")],
            false,
        );
        let mut candidates = Candidates::default();
        assert_eq!(c.on_accept(&mut candidates), Choice::Wait);
        assert_eq!(c.choose(&mut candidates, b"GET /", false), Choice::Wait);
        assert_eq!(
            candidates.iter().collect::<Vec<_>>(),
            vec![0, 1],
            "PUT dropped out"
        );
        assert_eq!(c.choose(&mut candidates, b"GET /b", false), tapes(&[1]));
        assert_eq!(choose(&mut c, b"P", false), tapes(&[2]), "only one agrees");
    }

    #[test]
    fn a_complete_first_message_wins_over_a_longer_one() {
        let mut c = catalog(vec![request(b"GET /a/b"), request(b"GET /a")], false);
        assert_eq!(
            choose(&mut c, b"GET /a", false),
            tapes(&[1, 0]),
            "the complete one first, the longer one still in the running"
        );
        assert_eq!(
            choose(&mut c, b"GET /a/b", false),
            tapes(&[0, 1]),
            "the longest complete first message"
        );
        assert!(
            matches!(choose(&mut c, b"GET /", true), Choice::NoMatch(_)),
            "at EOF: a client cannot send the rest of a longer first message"
        );
        assert_eq!(
            choose(&mut c, b"GET /a", true),
            tapes(&[1]),
            "at EOF: only the first message it completed"
        );
    }

    #[test]
    fn a_tape_taken_by_another_connection_drops_out() {
        let mut c = catalog(vec![request(b"A1"), request(b"A2")], false);
        let mut candidates = Candidates::default();
        c.on_accept(&mut candidates);
        assert_eq!(c.choose(&mut candidates, b"A", false), Choice::Wait);
        c.take(1);
        assert_eq!(c.choose(&mut candidates, b"A", false), tapes(&[0]));
    }

    #[test]
    fn served_tapes_are_skipped_probes_give_them_back_and_reuse_brings_them_back() {
        let mut c = catalog(vec![request(b"A"), request(b"A")], false);
        c.take(0);
        c.release(0, true);
        assert_eq!(choose(&mut c, b"A", false), tapes(&[1]));
        c.take(1);
        c.release(1, false);
        assert!(!c.all_served(), "a probe does not use a tape up");
        assert_eq!(choose(&mut c, b"A", false), tapes(&[1]));
        c.take(1);
        c.release(1, true);
        assert!(c.all_served());
        assert!(c.never_served().is_empty());
        assert_eq!(c.on_accept(&mut Candidates::default()), Choice::Exhausted);
        let mut c = catalog(vec![request(b"A")], true);
        c.take(0);
        c.release(0, true);
        assert_eq!(choose(&mut c, b"A", false), tapes(&[0]));
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
        let mut candidates = Candidates::default();
        assert_eq!(c.on_accept(&mut candidates), tapes(&[0, 1]));
        c.take(0);
        assert_eq!(c.on_accept(&mut candidates), tapes(&[1]));
        assert_eq!(c.never_served(), ["0001.tape", "0002.tape"]);
    }

    #[test]
    fn fixed_spans_agree_with_anything_and_a_variable_one_ends_the_prefix() {
        let span = |w: &mut Writer<&mut Vec<u8>>, span: Span| {
            w.extension(C2S.span_opcode(), &span.emit()).unwrap();
        };
        let fixed = tape(|w| {
            w.data(C2S, b"GET /").unwrap();
            span(w, Span::fixed(SpanKind::Vary, 3));
            w.data(C2S, b"abc?x").unwrap();
            w.data(S2C, b"ok").unwrap();
        });
        let prefix = Prefix::of(&fixed, Path::new("t")).unwrap();
        let want: Vec<Option<u8>> = b"GET /"
            .iter()
            .map(|&b| Some(b))
            .chain([None, None, None])
            .chain(b"?x".iter().map(|&b| Some(b)))
            .collect();
        assert_eq!(prefix.0, want);
        let variable = tape(|w| {
            w.data(C2S, b"id=").unwrap();
            span(
                w,
                Span {
                    kind: SpanKind::Vary,
                    len: 2,
                    min: 1,
                    max: 9,
                },
            );
            w.data(C2S, b"42;").unwrap();
        });
        assert_eq!(Prefix::of(&variable, Path::new("t")).unwrap().len(), 3);
    }

    #[test]
    fn wildcards_agree_with_anything() {
        let nonce = tape(|w| {
            w.data(C2S, b"N=").unwrap();
            w.any(C2S, 2).unwrap();
            w.data(S2C, b"ok").unwrap();
        });
        let mut c = catalog(vec![nonce, request(b"N=zz!")], false);
        assert_eq!(choose(&mut c, b"N=xy", false), tapes(&[0]));
    }

    #[test]
    fn no_match_names_the_closest_tapes() {
        let mut c = catalog(vec![request(b"HELLO"), request(b"HELP me")], false);
        let Choice::NoMatch(text) = choose(&mut c, b"HELIX", false) else {
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
