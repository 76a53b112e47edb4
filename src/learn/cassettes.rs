//! Learning from cassettes: each tape of the first cassette is learned
//! with its partner in each other cassette, found as replay would pick
//! it, and everything is learned before anything is written.

use std::path::{Path, PathBuf};

use log::info;

use super::recording::Recording;
use super::scratch::Scratch;
use super::{Learned, learn};
use crate::cassette;
use crate::error::Error;
use crate::output;

/// The client's first bytes compared when cassette tapes are paired.
const FIRST_REQUEST: usize = 64 * 1024;

pub fn run_cassettes(inputs: &[PathBuf], out: &Path) -> Result<(), Error> {
    if out.exists() && !out.is_dir() {
        return Err(Error::Learn {
            reason: format!(
                "{}: learning from cassettes writes a cassette: name a folder, not a file",
                out.display()
            ),
        });
    }
    let new = cassette::check_recordable(out)?;
    let mut cassettes = Vec::new();
    for input in inputs {
        let tapes = cassette::tapes(input)?;
        if tapes.is_empty() {
            return Err(Error::Learn {
                reason: format!("{}: the cassette has no tapes", input.display()),
            });
        }
        let recordings = Recording::read_all(&tapes)?;
        cassettes.push((tapes, recordings));
    }
    let count = cassettes[0].0.len();
    if let Some((i, (tapes, _))) = cassettes
        .iter()
        .enumerate()
        .find(|(_, (tapes, _))| tapes.len() != count)
    {
        return Err(Error::Learn {
            reason: format!(
                "the cassettes hold different numbers of tapes: {} {count}, {} {}",
                inputs[0].display(),
                inputs[i].display(),
                tapes.len()
            ),
        });
    }
    let names: Vec<String> = cassettes[0]
        .0
        .iter()
        .map(|path| {
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let (paths, recordings): (Vec<Vec<PathBuf>>, Vec<Vec<Recording>>) =
        cassettes.into_iter().unzip();
    let groups = pair(&recordings, inputs)?;
    // Everything is learned before anything is written.
    let mut scratch = super::scratch(out)?;
    let mut learned = Vec::new();
    let mut taken: Vec<Vec<Option<Recording>>> = recordings
        .into_iter()
        .map(|list| list.into_iter().map(Some).collect())
        .collect();
    for group in &groups {
        let set: Vec<Recording> = group
            .iter()
            .enumerate()
            .map(|(c, &t)| taken[c][t].take().expect("each tape in one group"))
            .collect();
        let again = || {
            let paths: Vec<PathBuf> = (group.iter().enumerate())
                .map(|(c, &t)| paths[c][t].clone())
                .collect();
            Recording::read_all(&paths).map_err(|err| err.to_string())
        };
        learned.push(learn(set, again, &mut scratch).map_err(|reason| Error::Learn { reason })?);
    }
    let written = write_cassette(out, &names, (&learned, &scratch), &inputs[0]);
    if written.is_err() && new {
        let _ = std::fs::remove_dir_all(out);
    }
    written?;
    let spans: usize = learned.iter().map(|l| l.spans).sum();
    info!(
        "learned {spans} spans in {} tapes from {} cassettes into {}",
        learned.len(),
        inputs.len(),
        out.display()
    );
    Ok(())
}

/// Pairs each tape of the first cassette with one of each other: tapes
/// where the server speaks first in order, as replay serves them; the
/// others by their first request (the longest common beginning), as
/// replay picks them, ties in order. `groups[i][c]` is the tape of
/// cassette `c` learned with the first cassette's tape `i`.
fn pair(cassettes: &[Vec<Recording>], inputs: &[PathBuf]) -> Result<Vec<Vec<usize>>, Error> {
    let first = &cassettes[0];
    let mut groups: Vec<Vec<usize>> = (0..first.len()).map(|i| vec![i]).collect();
    for (c, other) in cassettes.iter().enumerate().skip(1) {
        let servers = |tapes: &[Recording]| {
            (0..tapes.len())
                .filter(|&i| tapes[i].server_first())
                .collect::<Vec<_>>()
        };
        let (ours, theirs) = (servers(first), servers(other));
        if ours.len() != theirs.len() {
            return Err(Error::Learn {
                reason: format!(
                    "the cassettes were not recorded the same way: the server speaks first in {} tapes of {} and {} of {}",
                    ours.len(),
                    inputs[0].display(),
                    theirs.len(),
                    inputs[c].display()
                ),
            });
        }
        for (&i, &j) in ours.iter().zip(&theirs) {
            groups[i].push(j);
        }
        let mut free: Vec<usize> = (0..other.len())
            .filter(|&j| !other[j].server_first())
            .collect();
        for (i, tape) in first.iter().enumerate() {
            if tape.server_first() {
                continue;
            }
            let request = tape.first_request(FIRST_REQUEST);
            let agree = |j: usize| {
                let theirs = other[j].first_request(FIRST_REQUEST);
                request
                    .iter()
                    .zip(theirs)
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            // The first of the best: `max_by_key` keeps the last.
            let best = free
                .iter()
                .enumerate()
                .rev()
                .max_by_key(|&(_, &j)| agree(j))
                .map(|(at, _)| at)
                .expect("as many client-first tapes");
            groups[i].push(free.remove(best));
        }
    }
    Ok(groups)
}

/// Writes the learned tapes into `out` under the first cassette's names,
/// and its index, replacing what an earlier learn or recording put there.
fn write_cassette(
    out: &Path,
    names: &[String],
    (learned, scratch): (&[Learned], &Scratch),
    first: &Path,
) -> Result<(), Error> {
    std::fs::create_dir_all(out).map_err(|err| Error::file(out, "create cassette", err))?;
    cassette::clear(out)?;
    for (name, tape) in names.iter().zip(learned) {
        let path = out.join(name);
        output::write_atomically(&path, |file| tape.write(scratch, file))
            .map_err(|err| Error::file(&path, "write", err))?;
    }
    let index = first.join(cassette::INDEX);
    match std::fs::read(&index) {
        Ok(bytes) => {
            let to = out.join(cassette::INDEX);
            output::write_atomically(&to, |file| file.write_all(&bytes))
                .map_err(|err| Error::file(&to, "write", err))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::file(&index, "read cassette index", err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Direction;

    const C2S: Direction = Direction::ClientToServer;
    const S2C: Direction = Direction::ServerToClient;

    #[test]
    fn tapes_pair_by_order_or_by_first_request() {
        let client =
            |name: &str, request: &[u8]| Recording::of_steps(name, &[(C2S, request), (S2C, b"ok")]);
        let server = |name: &str| Recording::of_steps(name, &[(S2C, b"220 hi"), (C2S, b"QUIT")]);
        let first = vec![
            server("a1"),
            client("a2", b"GET /users?id=1"),
            client("a3", b"GET /items?id=1"),
            server("a4"),
        ];
        let second = vec![
            client("b1", b"GET /items?id=2"),
            server("b2"),
            server("b3"),
            client("b4", b"GET /users?id=2"),
        ];
        let inputs = [PathBuf::from("a/"), PathBuf::from("b/")];
        let groups = pair(&[first, second], &inputs).unwrap();
        assert_eq!(groups, [vec![0, 1], vec![1, 3], vec![2, 0], vec![3, 2]]);
        let err = pair(&[vec![server("a1")], vec![client("b1", b"x")]], &inputs).unwrap_err();
        assert!(
            err.to_string()
                .contains("the server speaks first in 1 tapes of a/ and 0 of b/"),
            "{err}"
        );
    }
}
