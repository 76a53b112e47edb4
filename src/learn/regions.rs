//! Where recordings differ: from the alignments of the first recording's
//! stream (the base) with each other's, the places of the base where some
//! recording has other bytes, widened to whole values, and each
//! recording's bytes at each place.

use std::ops::Range;

use super::align::{Block, align};
use super::recording::Recording;
use super::turns::{Judge, Turn};
use crate::tape::span::MAX_SPAN;

/// Differing places this close (equal bytes between them) are one place:
/// the parts of a date or a UUID between their separators.
pub const MERGE_GAP: usize = 2;

/// A place where the recordings differ: `ranges[i]` is recording i's bytes
/// there (the base is recording 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub ranges: Vec<Range<usize>>,
}

impl Region {
    pub fn base(&self) -> Range<usize> {
        self.ranges[0].clone()
    }

    /// True when every recording has as many bytes here.
    #[cfg(test)]
    fn is_fixed(&self) -> bool {
        let base = self.ranges[0].len();
        self.ranges.iter().all(|range| range.len() == base)
    }
}

/// One turn (or one stream) of each recording, and how the base's bytes
/// align with each other's.
pub struct Streams<'a> {
    /// Recording 0 is the base.
    pub bytes: Vec<&'a [u8]>,
    /// `blocks[i]`: the alignment of the base with recording `i + 1`.
    pub blocks: Vec<Vec<Block>>,
}

/// The places where the recordings differ, turn by turn (each turn's
/// places found in its bytes alone, so that none reaches into the next
/// turn), in stream offsets, per direction; or why the recordings do not
/// look alike. `turns[i]`: recording `i`'s, all the same path. A turn's
/// alignments are forgotten once its places are found.
pub fn by_turn(recordings: &[Recording], turns: &[&[Turn]]) -> Result<[Vec<Region>; 2], String> {
    let mut out = [Vec::new(), Vec::new()];
    let mut judges: Vec<Judge> = recordings[1..].iter().map(|_| Judge::default()).collect();
    for t in 0..turns[0].len() {
        let dir = turns[0][t].dir;
        let starts: Vec<usize> = turns.iter().map(|list| list[t].range.start).collect();
        let bytes: Vec<&[u8]> = recordings
            .iter()
            .zip(turns)
            .map(|(recording, list)| &recording.stream(dir)[list[t].range.clone()])
            .collect();
        let blocks: Vec<Vec<Block>> = bytes[1..].iter().map(|b| align(bytes[0], b)).collect();
        for ((judge, other), blocks) in judges.iter_mut().zip(&bytes[1..]).zip(&blocks) {
            judge.turn(t, bytes[0], other, blocks);
        }
        for mut region in regions(&Streams { bytes, blocks }) {
            for (range, start) in region.ranges.iter_mut().zip(&starts) {
                *range = range.start + start..range.end + start;
            }
            out[dir.index()].push(region);
        }
    }
    for (i, judge) in judges.iter().enumerate() {
        judge.verdict(&recordings[0], turns[0], &recordings[i + 1], turns[i + 1])?;
    }
    Ok(out)
}

/// The places where the recordings differ, in order, each widened to the
/// whole values it touches, and the ones a couple of bytes apart merged.
pub fn regions(streams: &Streams<'_>) -> Vec<Region> {
    let base = streams.bytes[0];
    let mut differing = Vec::new();
    for (blocks, other) in streams.blocks.iter().zip(&streams.bytes[1..]) {
        differing.extend(gaps(blocks, base.len(), other.len()));
    }
    let widened = union(differing)
        .into_iter()
        .map(|range| widen(base, range))
        .collect();
    let places = merge_close(union(widened), MERGE_GAP);
    let maps: Vec<Map> = streams
        .blocks
        .iter()
        .zip(&streams.bytes[1..])
        .map(|(blocks, other)| Map::new(blocks, base.len(), other.len()))
        .collect();
    places
        .into_iter()
        .map(|place| {
            let mut ranges = vec![place.clone()];
            ranges.extend(maps.iter().map(|map| map.range(&place)));
            Region { ranges }
        })
        // A place whose bytes are the same in every recording is the
        // alignment's choice (a one-letter token matched elsewhere in one
        // recording), not a value.
        .filter(|region| {
            let first = &base[region.base()];
            let mut all = streams.bytes.iter().zip(&region.ranges);
            !all.all(|(bytes, range)| &bytes[range.clone()] == first)
        })
        .collect()
}

/// The base's bytes that differ from the other stream's: the gaps between
/// blocks, empty where the other stream has bytes the base has not.
pub fn gaps(blocks: &[Block], base_len: usize, other_len: usize) -> Vec<Range<usize>> {
    let end = Block {
        a: base_len,
        b: other_len,
        len: 0,
    };
    let mut gaps = Vec::new();
    let (mut a, mut b) = (0, 0);
    for block in blocks.iter().chain([&end]) {
        if block.a > a || block.b > b {
            gaps.push(a..block.a);
        }
        (a, b) = (block.a + block.len, block.b + block.len);
    }
    gaps
}

/// Ranges sorted and joined where they overlap or touch (an empty range
/// too: it marks a place between two bytes).
fn union(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_unstable_by_key(|range| (range.start, range.end));
    merge_close(ranges, 0)
}

/// Sorted ranges joined where at most `gap` bytes are between them.
fn merge_close(ranges: Vec<Range<usize>>, gap: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last) if range.start <= last.end + gap => last.end = last.end.max(range.end),
            _ => out.push(range),
        }
    }
    out
}

/// Bytes beside a place that a binary number there may reach: a carry
/// changes a number's other bytes in another run (PostgreSQL's backend pid
/// `00 00 1f 33` next run is `00 00 20 01`), up to a 32-bit field's.
pub const NUMBER_REACH: usize = 3;

/// A byte of a token: a value is a run of letters and digits.
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

/// A word of text, three or more letters or digits: no binary number's
/// bytes, so the binary bytes around it (a NUL that ends a C string, the
/// length byte before a decimal pid) are not its high bytes. (A binary
/// number whose low bytes happen to be three letters or digits is rare,
/// and then only its high bytes go unmarked.)
fn is_word(value: &[u8]) -> bool {
    value.len() >= 3 && value.iter().all(|&b| is_token(b))
}

/// A byte no text has: not printable ASCII, a space or a line's end.
pub fn is_binary(byte: u8) -> bool {
    !(byte.is_ascii_graphic() || matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
}

/// `range` grown to the whole tokens its ends are in: a differing digit of
/// a number makes the whole number differ. An empty range (bytes only the
/// other side has) grows over the tokens it touches. Then, where binary
/// bytes border it, over up to `NUMBER_REACH` of them each side: a binary
/// number's high bytes that happened to be equal (the cost is a few equal
/// bytes left unchecked, not a false mismatch on the next run).
pub fn widen(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let differed = range.start;
    let Range { mut start, mut end } =
        widen_date(bytes, widen_number(bytes, widen_tokens(bytes, range)));
    if start == end || is_word(&bytes[start..end]) {
        return start..end;
    }
    // Before it, to the farthest binary byte within reach: the bytes
    // between are a big-endian number's too, printable or not
    // (PostgreSQL's pid `00 00 4e 9b` is `00 00 4f 02` a few connections
    // later). After it, over binary bytes only: what follows a value is
    // as often the next message's type byte.
    let floor = differed.saturating_sub(NUMBER_REACH);
    if let Some(i) = (floor..start).find(|&i| is_binary(bytes[i])) {
        start = i;
    }
    let ceiling = (end + NUMBER_REACH).min(bytes.len());
    while end < ceiling && is_binary(bytes[end]) {
        end += 1;
    }
    start..end
}

/// A byte between the parts of a number written in parts: a time
/// (`11:49:01`), a date (`2026-11-25`), a version or an address
/// (`3.11.7`, `127.0.0.1:8080`).
pub fn is_number_separator(byte: u8) -> bool {
    matches!(byte, b':' | b'-' | b'.' | b'/')
}

/// True for digits, maybe in parts: `97`, `0.25`, `11:49:01`.
pub fn is_number(value: &[u8]) -> bool {
    value.iter().any(u8::is_ascii_digit)
        && value
            .iter()
            .all(|&b| b.is_ascii_digit() || is_number_separator(b))
}

/// A time of day grown to the date written before it, when one is: when
/// the seconds differed, the day will on another run, even if every
/// recording was made the same day (`Wed, 25 Nov 2026 11:49:01`, as HTTP
/// and mail headers write it; `2026-11-25T11:49:01`, as ISO 8601 does).
fn widen_date(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let time = &bytes[range.clone()];
    let is_time = time.contains(&b':')
        && time
            .iter()
            .all(|&b| b.is_ascii_digit() || matches!(b, b':' | b'.'));
    if !is_time {
        return range;
    }
    let before = &bytes[..range.start];
    let digits = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_digit);
    let letters = |b: &[u8]| b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic);
    // 2026-11-25T or 2026-11-25 followed by a space.
    if let Some(date) = before.len().checked_sub(11).map(|at| &before[at..]) {
        let iso = digits(&date[0..4])
            && date[4] == b'-'
            && digits(&date[5..7])
            && date[7] == b'-'
            && digits(&date[8..10])
            && matches!(date[10], b'T' | b' ');
        if iso {
            return range.start - 11..range.end;
        }
    }
    // [Wed, ]25 Nov 2026 followed by a space.
    let Some(rest) = before.strip_suffix(b" ") else {
        return range;
    };
    let Some((rest, year)) = rest.len().checked_sub(4).map(|at| rest.split_at(at)) else {
        return range;
    };
    let Some(rest) = rest.strip_suffix(b" ").filter(|_| digits(year)) else {
        return range;
    };
    let Some((rest, month)) = rest.len().checked_sub(3).map(|at| rest.split_at(at)) else {
        return range;
    };
    let Some(rest) = rest.strip_suffix(b" ").filter(|_| letters(month)) else {
        return range;
    };
    let day = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=2).contains(&day) {
        return range;
    }
    let mut start = rest.len() - day;
    let weekday = bytes[..start]
        .strip_suffix(b", ")
        .and_then(|r| r.len().checked_sub(3).map(|at| &r[at..]));
    if weekday.is_some_and(letters) {
        start -= 5;
    }
    start..range.end
}

/// A number grown to all its parts: when the seconds of a time differed,
/// its minutes and hours will on another run.
fn widen_number(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let (mut start, mut end) = (range.start, range.end);
    if !is_number(&bytes[range]) {
        return start..end;
    }
    let digit = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_digit);
    while start >= 2 && is_number_separator(bytes[start - 1]) && digit(start - 2) {
        start -= 1;
        while start > 0 && digit(start - 1) {
            start -= 1;
        }
    }
    while end + 1 < bytes.len() && is_number_separator(bytes[end]) && digit(end + 1) {
        end += 1;
        while digit(end) {
            end += 1;
        }
    }
    start..end
}

fn widen_tokens(bytes: &[u8], range: Range<usize>) -> Range<usize> {
    let (mut start, mut end) = (range.start, range.end);
    let token_at_start = start == end || is_token(bytes[start]);
    if token_at_start {
        while start > 0 && is_token(bytes[start - 1]) {
            start -= 1;
        }
    }
    let token_at_end = start == end || is_token(bytes[end - 1]);
    if token_at_end {
        while end < bytes.len() && is_token(bytes[end]) {
            end += 1;
        }
    }
    start..end
}

/// Maps places of the base to places of another stream, by their
/// alignment. Every edge of a region is at an aligned byte (regions hold
/// all that differs), so it maps exactly.
pub struct Map {
    /// The blocks, between an empty one at the starts and one at the ends.
    blocks: Vec<Block>,
}

impl Map {
    pub fn new(blocks: &[Block], base_len: usize, other_len: usize) -> Map {
        let mut all = Vec::with_capacity(blocks.len() + 2);
        all.push(Block { a: 0, b: 0, len: 0 });
        all.extend_from_slice(blocks);
        all.push(Block {
            a: base_len,
            b: other_len,
            len: 0,
        });
        Map { blocks: all }
    }

    /// The other stream's bytes that correspond to the base's `range`:
    /// from as early as its start maps to, to as late as its end does, so
    /// that bytes only the other side has at either edge are in.
    pub fn range(&self, range: &Range<usize>) -> Range<usize> {
        let start = self.earliest(range.start);
        let end = self.latest(range.end).max(start);
        start..end
    }

    fn earliest(&self, at: usize) -> usize {
        let i = self
            .blocks
            .partition_point(|block| block.a + block.len < at);
        let block = self.blocks[i.min(self.blocks.len() - 1)];
        if block.a <= at {
            block.b + (at - block.a)
        } else {
            // Not at an aligned byte: the gap's start.
            let before = self.blocks[i - 1];
            before.b + before.len
        }
    }

    fn latest(&self, at: usize) -> usize {
        let i = self.blocks.partition_point(|block| block.a <= at).max(1) - 1;
        let block = self.blocks[i];
        if block.a + block.len >= at {
            block.b + (at - block.a)
        } else {
            // Not at an aligned byte: the gap's end.
            self.blocks[i + 1].b
        }
    }
}

/// The live lengths a variable span allows, from the lengths seen: from
/// half the shortest to twice the longest and 16 more, so that a further
/// run's value fits; at most `MAX_SPAN`.
pub fn bounds(lengths: impl Iterator<Item = usize>) -> (u32, u32) {
    let (mut shortest, mut longest) = (usize::MAX, 0);
    for len in lengths {
        shortest = shortest.min(len);
        longest = longest.max(len);
    }
    let min = shortest / 2;
    let max = longest.saturating_mul(2).saturating_add(16);
    let cap = MAX_SPAN as usize;
    (min.min(cap) as u32, max.min(cap) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regions_of(recordings: &[&[u8]]) -> Vec<Region> {
        let base = recordings[0];
        let streams = Streams {
            bytes: recordings.to_vec(),
            blocks: recordings[1..]
                .iter()
                .map(|other| align(base, other))
                .collect(),
        };
        regions(&streams)
    }

    /// Each recording's bytes at each region.
    fn values<'a>(recordings: &[&'a [u8]], regions: &[Region]) -> Vec<Vec<&'a [u8]>> {
        regions
            .iter()
            .map(|region| {
                region
                    .ranges
                    .iter()
                    .zip(recordings)
                    .map(|(range, bytes)| &bytes[range.clone()])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn gaps_between_blocks() {
        let blocks = [Block { a: 0, b: 0, len: 3 }, Block { a: 3, b: 5, len: 2 }];
        // Bytes only the other has, between the blocks; then the base's
        // last byte, which the other has not.
        assert_eq!(gaps(&blocks, 6, 7), [3..3, 5..6]);
        assert_eq!(gaps(&blocks, 5, 8), [3..3, 5..5]);
        assert_eq!(gaps(&blocks, 5, 7), vec![3..3]);
        assert_eq!(gaps(&[], 0, 0), []);
        assert_eq!(gaps(&[], 4, 0), vec![0..4]);
    }

    #[test]
    fn widening_takes_whole_tokens() {
        let bytes = b"id=abc123; n=7";
        assert_eq!(widen(bytes, 5..6), 3..9, "a letter inside a token");
        assert_eq!(widen(bytes, 9..9), 3..9, "bytes added after a token");
        assert_eq!(widen(bytes, 3..3), 3..9, "bytes added before a token");
        assert_eq!(widen(bytes, 8..10), 3..10, "a token and a separator");
        assert_eq!(widen(bytes, 9..11), 9..11, "separators");
        assert_eq!(widen(bytes, 10..11), 10..11, "a separator alone");
        assert_eq!(widen(bytes, 13..14), 13..14, "the last byte");
        assert_eq!(widen(b"\x00\x01\x02", 1..2), 0..3, "binary neighbours join");
    }

    #[test]
    fn a_number_in_parts_is_widened_to_all_of_them() {
        let clock = b"uptime 11:49:01 up";
        assert_eq!(&clock[widen(clock, 13..15)], b"11:49:01");
        let host = b"Host: 127.0.0.1:43371\r\n";
        assert_eq!(&host[widen(host, 16..21)], b"127.0.0.1:43371");
        let text = b"rev 7-beta: 12";
        assert_eq!(&text[widen(text, 4..5)], b"7", "a word is not a part");
        assert!(is_number(b"0.25") && is_number(b"11:49:01") && !is_number(b"1a"));
        assert!(!is_number(b":-"), "separators alone");
    }

    #[test]
    fn a_binary_number_is_widened_to_its_field() {
        // PostgreSQL's BackendKeyData: 'K', length 12, pid, secret key,
        // then ReadyForQuery 'Z'. Only the pid's low byte differed.
        let bytes = b"K\x00\x00\x00\x0c\x00\x00\x1f\x33\x9c\xcf\xac\xd7Z\x00\x00\x00\x05I";
        assert_eq!(widen(bytes, 8..13), 5..13, "the pid's high bytes, not 'K'");
        // A printable byte of the number is the number's too.
        let bytes = b"K\x00\x00\x00\x0c\x00\x00\x4e\x33\x9c\xcf\xac\xd7Z\x00\x00\x00\x05I";
        assert_eq!(widen(bytes, 8..13), 5..13, "'N' is the pid's");
        // Text beside a value is never taken for a number's bytes.
        assert_eq!(widen(b"id=\x01\x02\r\n", 4..5), 3..5);
        // Nor are binary bytes beside a word: a C string's NUL, a length.
        assert_eq!(widen(b"\x05\x00name=nsela\x00Q", 11..12), 7..12);
        assert_eq!(widen(b"_pid\x047558\x0f_os", 8..9), 5..9, "a decimal pid");
        assert_eq!(
            widen(b"\x00\x00\x00\x00\x00\x07", 5..6),
            2..6,
            "three at most"
        );
    }

    #[test]
    fn a_time_of_day_takes_the_date_before_it() {
        let http = b"Date: Wed, 25 Nov 2026 11:49:01 GMT\r\n";
        assert_eq!(&http[widen(http, 30..31)], b"Wed, 25 Nov 2026 11:49:01");
        let mail = b"Date: 5 Nov 2026 11:49:01 +0000\r\n";
        assert_eq!(&mail[widen(mail, 23..24)], b"5 Nov 2026 11:49:01");
        let iso = b"{\"at\":\"2026-11-25T11:49:01.25Z\"}";
        assert_eq!(&iso[widen(iso, 24..25)], b"2026-11-25T11:49:01.25");
        // A time alone stays a time; a version is no time.
        assert_eq!(
            &b"up 11:49:01\n"[widen(b"up 11:49:01\n", 9..10)],
            b"11:49:01"
        );
        let version = b"Nov 2026 3.11.7";
        assert_eq!(&version[widen(version, 14..15)], b"3.11.7");
    }

    #[test]
    fn close_places_merge() {
        let ranges = vec![0..2, 3..5, 7..8, 8..8, 12..13];
        assert_eq!(merge_close(ranges.clone(), 0), [0..2, 3..5, 7..8, 12..13]);
        assert_eq!(merge_close(ranges, MERGE_GAP), [0..8, 12..13]);
    }

    #[test]
    fn a_date_is_one_region() {
        let recordings: [&[u8]; 3] = [
            b"Date: Wed, 25 Nov 2026 09:31:29 GMT\r\n",
            b"Date: Thu, 03 Dec 2026 17:02:11 GMT\r\n",
            b"Date: Mon, 11 Jan 2027 23:45:01 GMT\r\n",
        ];
        let regions = regions_of(&recordings);
        assert_eq!(
            values(&recordings, &regions),
            [[
                &b"Wed, 25 Nov 2026 09:31:29"[..],
                b"Thu, 03 Dec 2026 17:02:11",
                b"Mon, 11 Jan 2027 23:45:01"
            ]]
        );
        assert!(regions[0].is_fixed());
    }

    #[test]
    fn values_of_other_lengths_map_to_their_bytes() {
        let recordings: [&[u8]; 3] = [
            b"Message-ID: <a8f3k2@mail.example>\r\nSubject: hi\r\n",
            b"Message-ID: <zq81bbc7x0@mail.example>\r\nSubject: hi\r\n",
            b"Message-ID: <7@mail.example>\r\nSubject: hi\r\n",
        ];
        let regions = regions_of(&recordings);
        assert_eq!(
            values(&recordings, &regions),
            [[&b"a8f3k2"[..], b"zq81bbc7x0", b"7"]]
        );
        assert!(!regions[0].is_fixed());
    }

    #[test]
    fn bytes_only_another_recording_has_are_a_region() {
        // The base has an empty value; the other has one.
        let recordings: [&[u8]; 2] = [b"x=\"\" y\r\n", b"x=\"abc\" y\r\n"];
        let regions = regions_of(&recordings);
        assert_eq!(values(&recordings, &regions), [[&b""[..], b"abc"]]);
        assert_eq!(regions[0].base(), 3..3);
        // Binary bytes next to a binary value may be its number's: they
        // join it, text does not.
        let recordings: [&[u8]; 2] = [
            b"\x01\x02KEY\x10\x20\x30\x40\x03",
            b"\x01\x02KEY\x11\x22\x33\x44\x03",
        ];
        let regions = regions_of(&recordings);
        assert_eq!(
            values(&recordings, &regions),
            [[&b"\x10\x20\x30\x40\x03"[..], b"\x11\x22\x33\x44\x03"]]
        );
    }

    #[test]
    fn places_apart_stay_apart() {
        let recordings: [&[u8]; 2] = [b"a=1111 b=2222\r\n", b"a=3333 b=4444\r\n"];
        let regions = regions_of(&recordings);
        assert_eq!(
            values(&recordings, &regions),
            [[&b"1111"[..], b"3333"], [&b"2222"[..], b"4444"]]
        );
        // Equal recordings have no regions.
        assert_eq!(regions_of(&[b"same", b"same"]), []);
    }

    #[test]
    fn bounds_leave_room_for_another_run() {
        assert_eq!(bounds([29, 31, 30].into_iter()), (14, 78));
        assert_eq!(bounds([0, 1].into_iter()), (0, 18));
        assert_eq!(bounds([40_000, 60_000].into_iter()), (20_000, MAX_SPAN));
    }
}
