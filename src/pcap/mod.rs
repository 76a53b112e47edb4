//! Wireshark interop: `tcptape pcap` exports tapes as a capture of
//! synthetic TCP connections, `tcptape import` turns a capture's TCP
//! connections into tapes. docs/pcap.md describes both.
//!
//! - `write`: tapes to a pcap file (the synthetic connections);
//! - `read`: classic pcap and pcapng files, packet by packet;
//! - `link`, `ip`, `tcp`: the headers, parsed and emitted;
//! - `reassembly`: one connection's segments back into its tape;
//! - `import`: the packets of a capture to their connections' tapes.
//!
//! Outputs never replace user data half-written: a capture is written
//! under a temporary name and renamed into place (`output`); an import's
//! tapes are built in a hidden folder beside the output and moved in once
//! the whole capture was read.

pub mod import;
pub mod ip;
pub mod link;
pub mod read;
pub mod reassembly;
pub mod tcp;
pub mod write;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use log::info;

use crate::cassette::{self, Entry};
use crate::error::Error;
use crate::output::{self, parent_of, refuse_input_as_output};
use import::{Imported, Options, Sink};
use write::{PcapWriter, Placed};

/// The first line of a cassette's index: what makes a folder a cassette
/// that may be replaced.
const INDEX_HEADER: &str = "# tcptape cassette index";
/// Buffer sizes of file reads and writes.
const IO_BUFFER: usize = 256 * 1024;

/// `tcptape pcap`.
#[derive(Debug, Clone, PartialEq)]
/// What `pcap` is asked to do: a tape or cassette exported as a capture.
pub(crate) struct Export {
    /// A tape or a cassette folder.
    pub input: PathBuf,
    pub output: PathBuf,
    /// The synthetic server's port.
    pub port: u16,
}

pub(crate) fn run_pcap(args: &Export) -> Result<(), Error> {
    let tapes = placed_tapes(&args.input)?;
    if args.output.is_dir() {
        return Err(Error::refused(
            &args.output,
            format!(
                "{} is a folder: name the capture file to write",
                args.output.display()
            ),
        ));
    }
    refuse_input_as_output(&args.input, &args.output)
        .map_err(|reason| Error::refused(&args.output, reason))?;
    // The export's own error, kept apart from the file's I/O errors.
    let mut failure = None;
    let mut packets = 0;
    let written = output::write_atomically(&args.output, |out| {
        let mut out = PcapWriter::new(out)?;
        match write::export(&tapes, args.port, &mut out) {
            Ok(n) => {
                packets = n;
                Ok(())
            }
            Err(err) => {
                failure = Some(err);
                Err(io::Error::other("export failed"))
            }
        }
    });
    if let Some(err) = failure {
        return Err(err);
    }
    written.map_err(|err| Error::file(&args.output, "write", err))?;
    info!(
        "wrote {packets} packets of {} tapes to {}",
        tapes.len(),
        args.output.display()
    );
    Ok(())
}

/// The tapes to export and where each starts: a cassette's by its index
/// when the index lists them all, else one after another.
fn placed_tapes(input: &Path) -> Result<Vec<Placed>, Error> {
    if !cassette::is_cassette(input) {
        return Ok(vec![Placed {
            path: input.to_path_buf(),
            number: 1,
            start_ms: None,
        }]);
    }
    let paths = cassette::tapes(input)?;
    if paths.is_empty() {
        return Err(Error::refused(
            input,
            format!("{}: the cassette has no tapes", input.display()),
        ));
    }
    // The index `server` and `repair` read: lines that are not entries
    // as tcptape writes them are left out, and their tapes placed as
    // unlisted ones.
    let index = cassette::read_index(input)?;
    let mut placed = Vec::new();
    for (i, path) in paths.into_iter().enumerate() {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let start_ms = index.iter().find(|e| e.tape == name).map(|e| e.start_ms);
        placed.push(Placed {
            path,
            number: i as u64 + 1,
            start_ms,
        });
    }
    if placed.iter().any(|p| p.start_ms.is_none()) {
        if !index.is_empty() {
            log::warn!(
                "{}: the index does not list every tape: placing the tapes one after another",
                input.display()
            );
        }
        placed.iter_mut().for_each(|p| p.start_ms = None);
    }
    Ok(placed)
}

/// `tcptape import`.
#[derive(Debug, Clone, PartialEq)]
/// What `import` is asked to do: a capture's connections made tapes.
pub(crate) struct Import {
    pub capture: PathBuf,
    /// A tape, or a cassette folder.
    pub output: PathBuf,
    /// HOST:PORT of the server whose connections are kept.
    pub filter: Option<String>,
    pub allow_gaps: bool,
}

pub(crate) fn run_import(args: &Import) -> Result<(), Error> {
    let into_cassette = cassette::is_cassette(&args.output);
    refuse_input_as_output(&args.capture, &args.output)
        .map_err(|reason| Error::refused(&args.output, reason))?;
    let filter = match &args.filter {
        Some(text) => Some(resolve_filter(text)?),
        None => None,
    };
    let options = Options {
        filter,
        filter_text: args.filter.clone().unwrap_or_default(),
        allow_gaps: args.allow_gaps,
        one_connection: !into_cassette,
    };
    let file =
        File::open(&args.capture).map_err(|err| Error::file(&args.capture, "open capture", err))?;
    let input = BufReader::with_capacity(IO_BUFFER, file);
    let name = args.capture.display().to_string();
    if into_cassette {
        import_cassette(input, &name, &options, &args.output)
    } else {
        import_tape(input, &name, &options, &args.output)
    }
}

/// HOST:PORT to the addresses it names.
fn resolve_filter(text: &str) -> Result<Vec<SocketAddr>, Error> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|err| Error::address(text, "resolve", err))?
        .collect();
    if addrs.is_empty() {
        let none = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found");
        return Err(Error::address(text, "resolve", none));
    }
    Ok(addrs)
}

fn import_tape(
    input: impl std::io::Read,
    name: &str,
    options: &Options,
    output: &Path,
) -> Result<(), Error> {
    let staging = Staging::create(&parent_of(output))?;
    let mut sink = FileSink { dir: &staging.path };
    let imported = import::import(input, name, options, &mut sink)?;
    let conn = &imported[0];
    let from = staging.path.join(FileSink::name(conn.id));
    fs::rename(&from, output).map_err(|err| Error::file(output, "write", err))?;
    info!(
        "imported {} -> {} ({} client bytes, {} server bytes) into {}",
        conn.client,
        conn.server,
        conn.summary.bytes[0],
        conn.summary.bytes[1],
        output.display()
    );
    Ok(())
}

fn import_cassette(
    input: impl std::io::Read,
    name: &str,
    options: &Options,
    dir: &Path,
) -> Result<(), Error> {
    let existed = dir.exists();
    if existed && !is_empty_dir(dir)? && !is_cassette_dir(dir) {
        return Err(Error::refused(
            dir,
            format!(
                "{} is not empty and is not a tcptape cassette (no index starting with '{INDEX_HEADER}'): refusing to write into it",
                dir.display()
            ),
        ));
    }
    fs::create_dir_all(dir).map_err(|err| Error::file(dir, "create cassette", err))?;
    let result = import_cassette_into(input, name, options, dir);
    if result.is_err() && !existed {
        // Leave no empty folder behind.
        let _ = fs::remove_dir(dir);
    }
    result
}

fn import_cassette_into(
    input: impl std::io::Read,
    name: &str,
    options: &Options,
    dir: &Path,
) -> Result<(), Error> {
    let staging = Staging::create(dir)?;
    let mut sink = FileSink { dir: &staging.path };
    let imported = import::import(input, name, options, &mut sink)?;
    let first_us = imported[0].start_us;
    let entries: Vec<Entry> = imported
        .iter()
        .enumerate()
        .map(|(i, conn)| entry(i as u64 + 1, conn, first_us))
        .collect();
    cassette::write_index(&staging.path, &entries)
        .map_err(|err| Error::file(&staging.path.join(cassette::INDEX), "write", err))?;
    // Everything is written: now the old cassette may go.
    cassette::clear(dir)?;
    for (conn, entry) in imported.iter().zip(&entries) {
        let to = dir.join(&entry.tape);
        fs::rename(staging.path.join(FileSink::name(conn.id)), &to)
            .map_err(|err| Error::file(&to, "write", err))?;
    }
    let index = dir.join(cassette::INDEX);
    fs::rename(staging.path.join(cassette::INDEX), &index)
        .map_err(|err| Error::file(&index, "write", err))?;
    info!(
        "imported {} connections into {}",
        imported.len(),
        dir.display()
    );
    Ok(())
}

fn entry(order: u64, conn: &Imported, first_us: u64) -> Entry {
    Entry {
        tape: cassette::tape_name(order),
        order,
        start_ms: conn.start_us.saturating_sub(first_us) / 1000,
        client_bytes: conn.summary.bytes[0],
        server_bytes: conn.summary.bytes[1],
        first: conn.summary.first,
        whole: !conn.summary.cut,
    }
}

fn is_empty_dir(dir: &Path) -> Result<bool, Error> {
    let mut entries = fs::read_dir(dir).map_err(|err| Error::file(dir, "read", err))?;
    Ok(entries.next().is_none())
}

/// A folder whose index starts with the cassette header.
fn is_cassette_dir(dir: &Path) -> bool {
    fs::read_to_string(dir.join(cassette::INDEX))
        .is_ok_and(|text| text.lines().next() == Some(INDEX_HEADER))
}

/// A hidden folder for an import's tapes while it runs; removed with what
/// is left in it when dropped. Being hidden, it is never taken for a tape
/// of the cassette it sits in.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn create(parent: &Path) -> Result<Staging, Error> {
        let path = parent.join(format!(".tcptape-import-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        // The error names the user's folder, not our hidden one.
        fs::create_dir(&path).map_err(|err| Error::file(parent, "write into", err))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Each connection's tape as a file in the staging folder, opened for each
/// append: a capture may hold more connections than a process may have
/// files open.
struct FileSink<'a> {
    dir: &'a Path,
}

impl FileSink<'_> {
    fn name(id: usize) -> String {
        format!("{id}.tape")
    }
}

impl Sink for FileSink<'_> {
    fn append(&mut self, id: usize, bytes: &[u8]) -> Result<(), Error> {
        let path = self.dir.join(FileSink::name(id));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|err| Error::file(&path, "create", err))?;
        file.write_all(bytes)
            .map_err(|err| Error::file(&path, "write", err))
    }

    fn discard(&mut self, id: usize) -> Result<(), Error> {
        let path = self.dir.join(FileSink::name(id));
        match fs::remove_file(&path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::file(&path, "remove", err))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tcptape-pcap-mod-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A tape written as `0001.tape`... into `dir`: a client's "hi".
    fn tapes_in(dir: &Path, count: u64) {
        for n in 1..=count {
            let mut w = crate::tape::Writer::new(Vec::new()).unwrap();
            w.data(crate::tape::Direction::ClientToServer, b"hi")
                .unwrap();
            fs::write(dir.join(cassette::tape_name(n)), w.into_inner()).unwrap();
        }
    }

    #[test]
    fn tapes_are_placed_by_the_index() {
        let dir = temp("index");
        tapes_in(&dir, 2);
        let starts = |dir: &Path| -> Vec<Option<u64>> {
            placed_tapes(dir)
                .unwrap()
                .iter()
                .map(|p| p.start_ms)
                .collect()
        };
        assert_eq!(starts(&dir), vec![None, None], "no index");
        // Columns after the status are not read.
        fs::write(
            dir.join("index"),
            "# tcptape cassette index\n# comment\n0002.tape 2 150 0 0 nobody whole extra\n0001.tape 1 0 5 7 client cut\n",
        )
        .unwrap();
        assert_eq!(starts(&dir), vec![Some(0), Some(150)]);
        // A line that is not an index entry leaves its tape unplaced, and
        // then every tape follows the one before.
        fs::write(
            dir.join("index"),
            "0001.tape 1 0 5 7 client whole\n0002.tape two 150 0 0 nobody whole\n",
        )
        .unwrap();
        assert_eq!(starts(&dir), vec![None, None]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn staging_cleans_up() {
        let dir = temp("cleanup");
        let staging = Staging::create(&dir).unwrap();
        let mut sink = FileSink { dir: &staging.path };
        sink.append(3, b"ab").unwrap();
        sink.append(3, b"cd").unwrap();
        assert_eq!(fs::read(staging.path.join("3.tape")).unwrap(), b"abcd");
        sink.discard(3).unwrap();
        sink.discard(4).unwrap();
        drop(staging);
        assert!(is_empty_dir(&dir).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
