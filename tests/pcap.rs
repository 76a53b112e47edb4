//! `tcptape pcap` and `tcptape import` through the real binary: round
//! trips of tapes and cassettes, captures built here with every kind of
//! damage TCP and capturing produce, bad files, and (where installed)
//! what tshark makes of an export.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use tcptape::tape::{Direction, Kind, Reader, Writer};

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------
// Tapes: building them, and what they say over time.

fn write_tape(path: &Path, build: impl FnOnce(&mut Writer<&mut Vec<u8>>)) {
    let mut bytes = Vec::new();
    let mut writer = Writer::new(&mut bytes).unwrap();
    build(&mut writer);
    std::fs::write(path, bytes).unwrap();
}

/// What happens on a tape, in order: bytes of a direction (wildcards as
/// zeros, consecutive frames of one direction at one time joined), or an
/// EOF, each at its time in ms.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Bytes(Direction, Vec<u8>),
    Eof(Direction),
}

fn timeline(path: &Path) -> Vec<(u64, Event)> {
    let mut reader = Reader::new(std::fs::File::open(path).unwrap());
    let mut out: Vec<(u64, Event)> = Vec::new();
    let mut now = 0;
    while let Some(frame) = reader.next_frame().unwrap() {
        let (dir, bytes) = match frame.kind {
            Kind::Delay => {
                now += u64::from(frame.len);
                continue;
            }
            Kind::Eof(dir) => {
                out.push((now, Event::Eof(dir)));
                continue;
            }
            Kind::Data(dir) => {
                let mut bytes = Vec::new();
                reader.read_payload_into(&mut bytes).unwrap();
                (dir, bytes)
            }
            Kind::Any(dir) => (dir, vec![0; reader.read_wildcard().unwrap() as usize]),
            _ => continue,
        };
        if bytes.is_empty() {
            continue;
        }
        if let Some((t, Event::Bytes(d, last))) = out.last_mut()
            && *t == now
            && *d == dir
        {
            last.extend_from_slice(&bytes);
            continue;
        }
        out.push((now, Event::Bytes(dir, bytes)));
    }
    out
}

/// The two tapes say the same, at times within a millisecond.
fn assert_same_timeline(original: &Path, imported: &Path) {
    let (a, b) = (timeline(original), timeline(imported));
    let events = |t: &[(u64, Event)]| t.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>();
    assert!(
        events(&a) == events(&b),
        "{} and {} differ:\n{}\n{}",
        original.display(),
        imported.display(),
        summarize(&a),
        summarize(&b)
    );
    for ((ta, _), (tb, _)) in a.iter().zip(&b) {
        assert!(ta.abs_diff(*tb) <= 1, "times {ta} and {tb} ms");
    }
}

fn summarize(timeline: &[(u64, Event)]) -> String {
    let lines: Vec<String> = timeline
        .iter()
        .map(|(t, e)| match e {
            Event::Bytes(d, b) => format!("{t}ms {d:?} {} bytes", b.len()),
            Event::Eof(d) => format!("{t}ms {d:?} EOF"),
        })
        .collect();
    lines.join(", ")
}

fn export(input: &Path, output: &Path, extra: &[&str]) {
    let mut args = vec!["pcap", s(input), "-o", s(output)];
    args.extend_from_slice(extra);
    let (code, _, stderr) = run(&args);
    assert_eq!(code, 0, "pcap {}: {stderr}", input.display());
}

fn import(capture: &Path, output: &str, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["import", s(capture), "-o", output];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run(&args);
    assert_eq!(stdout, "");
    (code, stderr)
}

fn import_ok(capture: &Path, output: &Path, extra: &[&str]) {
    let (code, stderr) = import(capture, s(output), extra);
    assert_eq!(code, 0, "import {}: {stderr}", capture.display());
}

/// The only error line of a failed run.
fn error_line(code: i32, stderr: &str) -> &str {
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0]
}

// ---------------------------------------------------------------------
// Round trips: tape -> pcap -> tape.

#[test]
fn every_fixture_survives_a_round_trip() {
    let dir = temp_dir("pcap-fixtures");
    for name in ["banner", "bulk", "echo", "halfclose-reply"] {
        let tape = fixture(&format!("{name}.tape"));
        let capture = dir.join(format!("{name}.pcap"));
        let back = dir.join(format!("{name}.tape"));
        export(&tape, &capture, &[]);
        import_ok(&capture, &back, &[]);
        assert_same_timeline(&tape, &back);
        assert_eq!(tape_stream(&tape, 1), tape_stream(&back, 1), "{name}");
        assert_eq!(tape_stream(&tape, 2), tape_stream(&back, 2), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn large_frames_many_small_ones_and_wildcards_round_trip() {
    let dir = temp_dir("pcap-large");
    let tape = dir.join("big.tape");
    let upload = random_bytes(5 * 1024 * 1024 + 3, 1);
    let download = random_bytes(3 * 1024 * 1024, 2);
    write_tape(&tape, |w| {
        w.data(C2S, b"PUT /blob\r\n").unwrap();
        w.data(C2S, &upload).unwrap();
        w.eof(C2S).unwrap();
        w.delay(40).unwrap();
        w.data(S2C, &download).unwrap();
        for i in 0..3000u32 {
            let dir = if i % 3 == 0 { C2S } else { S2C };
            if dir == C2S {
                continue; // the client closed
            }
            w.data(dir, &i.to_be_bytes()).unwrap();
            if i % 7 == 0 {
                w.delay(u64::from(i % 5) + 1).unwrap();
            }
        }
        w.any(S2C, 70_000).unwrap();
        w.data(S2C, b"tail").unwrap();
        w.delay(3).unwrap();
        w.eof(S2C).unwrap();
    });
    let capture = dir.join("big.pcap");
    let back = dir.join("back.tape");
    export(&tape, &capture, &[]);
    import_ok(&capture, &back, &[]);
    assert_same_timeline(&tape, &back);
    assert_eq!(tape_stream(&back, 1)[11..], upload[..]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn many_small_frames_both_ways_round_trip() {
    let dir = temp_dir("pcap-small");
    let tape = dir.join("chatty.tape");
    write_tape(&tape, |w| {
        for i in 0..5000u32 {
            let dir = if i % 2 == 0 { C2S } else { S2C };
            w.data(dir, format!("message {i}\n").as_bytes()).unwrap();
            if i % 100 == 99 {
                w.delay(1).unwrap();
            }
        }
        w.eof(S2C).unwrap();
        w.data(C2S, b"after the server closed").unwrap();
        w.eof(C2S).unwrap();
    });
    let capture = dir.join("chatty.pcap");
    let back = dir.join("back.tape");
    export(&tape, &capture, &[]);
    import_ok(&capture, &back, &[]);
    assert_same_timeline(&tape, &back);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tape's name in a cassette.
fn tape_name(number: u64) -> String {
    format!("{number:04}.tape")
}

/// A cassette of three tapes, with an index giving their start times.
fn cassette_of(dir: &Path, starts: Option<&[u64]>) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    // An index with a column more than today's: only three are read.
    let mut index = String::from("# tcptape cassette index\n# tape order start_ms ...\n");
    for i in 0..3u64 {
        let path = dir.join(tape_name(i + 1));
        write_tape(&path, |w| {
            w.data(C2S, format!("request {i}").as_bytes()).unwrap();
            w.delay(20).unwrap();
            w.data(S2C, format!("answer {i}").as_bytes()).unwrap();
            w.eof(S2C).unwrap();
            w.eof(C2S).unwrap();
        });
        if let Some(starts) = starts {
            let start = starts[i as usize];
            index.push_str(&format!(
                "{} {} {start} 9 8 client whole extra\n",
                tape_name(i + 1),
                i + 1
            ));
        }
        paths.push(path);
    }
    if starts.is_some() {
        std::fs::write(dir.join("index"), index).unwrap();
    }
    paths
}

/// The start_ms column of a cassette's index.
fn index_starts(dir: &Path) -> Vec<u64> {
    std::fs::read_to_string(dir.join("index"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn a_cassette_round_trips_with_its_start_times() {
    let dir = temp_dir("pcap-cassette");
    // The first two overlap in time.
    let tapes = cassette_of(&dir.join("in"), Some(&[0, 5, 100]));
    let capture = dir.join("all.pcap");
    export(&dir.join("in/"), &capture, &[]);
    let out = dir.join("out");
    import_ok(&capture, Path::new(&format!("{}/", out.display())), &[]);
    assert_eq!(index_starts(&out), vec![0, 5, 100]);
    for (i, tape) in tapes.iter().enumerate() {
        assert_same_timeline(tape, &out.join(tape_name(i as u64 + 1)));
    }
    let index = std::fs::read_to_string(out.join("index")).unwrap();
    assert!(index.starts_with("# tcptape cassette index\n"), "{index}");
    assert!(
        index.contains("0001.tape 1 0 9 8 client whole\n"),
        "byte counts and first speaker: {index}"
    );
    // Without an index the tapes follow each other.
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_file(dir.join("in/index")).unwrap();
    export(&dir.join("in"), &capture, &[]);
    import_ok(&capture, Path::new(&format!("{}/", out.display())), &[]);
    assert_eq!(index_starts(&out), vec![0, 20, 40]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn client_ports_count_up_per_tape() {
    let dir = temp_dir("pcap-ports");
    cassette_of(&dir.join("in"), None);
    let capture = dir.join("all.pcap");
    export(&dir.join("in"), &capture, &["--port", "5432"]);
    let bytes = std::fs::read(&capture).unwrap();
    // Raw IPv4 records: the client port of every SYN.
    let mut syns = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let packet = &bytes[at + 16..at + 16 + len];
        let tcp = &packet[20..];
        if tcp[13] == 0x02 {
            let ports = (
                u16::from_be_bytes([tcp[0], tcp[1]]),
                u16::from_be_bytes([tcp[2], tcp[3]]),
            );
            syns.push((packet[12..20].to_vec(), ports));
        }
        at += 16 + len;
    }
    let addrs = [10, 0, 0, 1, 10, 0, 0, 2].to_vec();
    assert_eq!(
        syns,
        vec![
            (addrs.clone(), (40001, 5432)),
            (addrs.clone(), (40002, 5432)),
            (addrs, (40003, 5432))
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------
// Captures built by hand.

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN: u8 = 0x01;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;

#[derive(Debug, Clone)]
struct Seg {
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    data: Vec<u8>,
    time_us: u64,
}

/// The IP packet of a segment (checksums left zero: import does not check
/// them, as captures on the sending host have them wrong).
fn ip_packet(seg: &Seg) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&seg.src.port().to_be_bytes());
    tcp[2..4].copy_from_slice(&seg.dst.port().to_be_bytes());
    tcp[4..8].copy_from_slice(&seg.seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&seg.ack.to_be_bytes());
    tcp[12] = 0x50;
    tcp[13] = seg.flags;
    tcp[14..16].copy_from_slice(&65535u16.to_be_bytes());
    tcp.extend_from_slice(&seg.data);
    let mut ip = match (seg.src, seg.dst) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
            ip[2..4].copy_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&src.ip().octets());
            ip.extend_from_slice(&dst.ip().octets());
            ip
        }
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
            // With a hop-by-hop options header to step over.
            let mut ip = vec![0x60, 0, 0, 0];
            ip.extend_from_slice(&((8 + tcp.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 64]);
            ip.extend_from_slice(&src.ip().octets());
            ip.extend_from_slice(&dst.ip().octets());
            ip.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
            ip
        }
        _ => panic!("mixed address families"),
    };
    ip.extend_from_slice(&tcp);
    ip
}

/// The frame of an IP packet on a link type.
fn frame(link: u32, ip: &[u8]) -> Vec<u8> {
    let v6 = ip[0] >> 4 == 6;
    let ethertype: [u8; 2] = if v6 { [0x86, 0xdd] } else { [0x08, 0x00] };
    let mut out = Vec::new();
    match link {
        1 => {
            out.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
            out.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]); // VLAN 7
            out.extend_from_slice(&ethertype);
        }
        101 | 228 | 229 => {}
        113 => {
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            out.extend_from_slice(&ethertype);
        }
        276 => {
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        }
        0 => out.extend_from_slice(&(if v6 { 30u32 } else { 2 }).to_le_bytes()),
        108 => out.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_be_bytes()),
        _ => panic!("link type {link}"),
    }
    out.extend_from_slice(ip);
    if link == 1 && out.len() < 60 {
        out.resize(60, 0); // Ethernet padding
    }
    out
}

fn put32(out: &mut Vec<u8>, big: bool, v: u32) {
    out.extend_from_slice(&if big {
        v.to_be_bytes()
    } else {
        v.to_le_bytes()
    });
}

fn pcap_file(segs: &[Seg], link: u32, big: bool, nanos: bool) -> Vec<u8> {
    let mut out = Vec::new();
    put32(&mut out, big, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 });
    out.extend_from_slice(if big { &[0, 2, 0, 4] } else { &[2, 0, 4, 0] });
    put32(&mut out, big, 0);
    put32(&mut out, big, 0);
    put32(&mut out, big, 262_144);
    put32(&mut out, big, link);
    for seg in segs {
        let data = frame(link, &ip_packet(seg));
        put32(&mut out, big, (seg.time_us / 1_000_000) as u32);
        let frac = seg.time_us % 1_000_000;
        put32(&mut out, big, if nanos { frac * 1000 } else { frac } as u32);
        put32(&mut out, big, data.len() as u32);
        put32(&mut out, big, data.len() as u32);
        out.extend_from_slice(&data);
    }
    out
}

fn pcapng_block(out: &mut Vec<u8>, big: bool, kind: u32, body: &[u8]) {
    let padded = body.len().div_ceil(4) * 4;
    put32(out, big, kind);
    put32(out, big, (12 + padded) as u32);
    out.extend_from_slice(body);
    out.resize(out.len() + padded - body.len(), 0);
    put32(out, big, (12 + padded) as u32);
}

/// A pcapng file: section, interface (with nanosecond resolution), an
/// unknown block, then an enhanced packet block per segment and, for the
/// last, a simple packet block.
fn pcapng_file(segs: &[Seg], link: u16, big: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    put32(&mut shb, big, 0x1a2b_3c4d);
    shb.extend_from_slice(if big { &[0, 1, 0, 0] } else { &[1, 0, 0, 0] });
    shb.extend_from_slice(&[0xff; 8]);
    pcapng_block(&mut out, big, 0x0a0d_0d0a, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&if big {
        link.to_be_bytes()
    } else {
        link.to_le_bytes()
    });
    idb.extend_from_slice(&[0, 0]);
    put32(&mut idb, big, 0);
    let option = |code: u16| {
        if big {
            code.to_be_bytes()
        } else {
            code.to_le_bytes()
        }
    };
    idb.extend_from_slice(&option(9));
    idb.extend_from_slice(&option(1));
    idb.extend_from_slice(&[9, 0, 0, 0]);
    idb.extend_from_slice(&[0; 4]);
    pcapng_block(&mut out, big, 1, &idb);
    pcapng_block(&mut out, big, 0x0000_0bad, b"a block nobody knows");
    for (i, seg) in segs.iter().enumerate() {
        let data = frame(u32::from(link), &ip_packet(seg));
        let mut body = Vec::new();
        if i + 1 == segs.len() && i > 0 {
            put32(&mut body, big, data.len() as u32);
            body.extend_from_slice(&data);
            pcapng_block(&mut out, big, 3, &body);
            continue;
        }
        let ticks = seg.time_us * 1000;
        put32(&mut body, big, 0);
        put32(&mut body, big, (ticks >> 32) as u32);
        put32(&mut body, big, ticks as u32);
        put32(&mut body, big, data.len() as u32);
        put32(&mut body, big, data.len() as u32);
        body.extend_from_slice(&data);
        pcapng_block(&mut out, big, 6, &body);
    }
    out
}

/// Segments of one connection, with sequence numbers kept.
struct Flow {
    client: SocketAddr,
    server: SocketAddr,
    seq: [u32; 2],
    time_us: u64,
    segs: Vec<Seg>,
}

impl Flow {
    fn new(client: &str, server: &str, isn: [u32; 2]) -> Flow {
        Flow {
            client: client.parse().unwrap(),
            server: server.parse().unwrap(),
            seq: isn,
            time_us: 1_700_000_000_000_000,
            segs: Vec::new(),
        }
    }

    fn at_ms(&mut self, ms: u64) -> &mut Flow {
        self.time_us = 1_700_000_000_000_000 + ms * 1000;
        self
    }

    fn seg(&mut self, from: Direction, flags: u8, data: &[u8]) -> Seg {
        let (me, peer) = (from.index(), from.reverse().index());
        let (src, dst) = match from {
            Direction::ClientToServer => (self.client, self.server),
            Direction::ServerToClient => (self.server, self.client),
        };
        let seg = Seg {
            src,
            dst,
            flags,
            seq: self.seq[me],
            ack: if flags & ACK != 0 { self.seq[peer] } else { 0 },
            data: data.to_vec(),
            time_us: self.time_us,
        };
        let control = u32::from(flags & (SYN | FIN) != 0);
        self.seq[me] = self.seq[me]
            .wrapping_add(data.len() as u32)
            .wrapping_add(control);
        self.segs.push(seg.clone());
        seg
    }

    fn handshake(&mut self) -> &mut Flow {
        self.seg(C2S, SYN, b"");
        self.seg(S2C, SYN | ACK, b"");
        self.seg(C2S, ACK, b"");
        self
    }

    fn send(&mut self, from: Direction, data: &[u8]) -> &mut Flow {
        self.seg(from, PSH | ACK, data);
        self
    }

    fn close(&mut self) -> &mut Flow {
        self.seg(C2S, FIN | ACK, b"");
        self.seg(S2C, FIN | ACK, b"");
        self.seg(C2S, ACK, b"");
        self
    }
}

/// A simple exchange: request, answer 30 ms later, both closed.
fn exchange(client: &str, server: &str) -> Flow {
    let mut flow = Flow::new(client, server, [1000, 9000]);
    flow.handshake().send(C2S, b"GET / HTTP/1.0\r\n\r\n");
    flow.at_ms(30)
        .send(S2C, b"HTTP/1.0 200 OK\r\n\r\nhi")
        .close();
    flow
}

fn check_exchange(tape: &Path) {
    assert_eq!(
        timeline(tape),
        vec![
            (0, Event::Bytes(C2S, b"GET / HTTP/1.0\r\n\r\n".to_vec())),
            (30, Event::Bytes(S2C, b"HTTP/1.0 200 OK\r\n\r\nhi".to_vec())),
            (30, Event::Eof(C2S)),
            (30, Event::Eof(S2C)),
        ]
    );
}

#[test]
fn every_link_type_and_both_ip_versions() {
    let dir = temp_dir("pcap-links");
    for link in [0u32, 1, 101, 108, 113, 228, 229, 276] {
        for v6 in [false, true] {
            if (link == 228 && v6) || (link == 229 && !v6) {
                continue;
            }
            let flow = match v6 {
                false => exchange("192.0.2.1:50000", "192.0.2.2:80"),
                true => exchange("[2001:db8::1]:50000", "[2001:db8::2]:80"),
            };
            let capture = dir.join(format!("link{link}-v6{v6}.pcap"));
            std::fs::write(&capture, pcap_file(&flow.segs, link, false, false)).unwrap();
            let tape = dir.join(format!("link{link}-v6{v6}.tape"));
            import_ok(&capture, &tape, &[]);
            check_exchange(&tape);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pcap_and_pcapng_in_both_byte_orders() {
    let dir = temp_dir("pcap-formats");
    let flow = exchange("192.0.2.1:50000", "192.0.2.2:80");
    let mut files = Vec::new();
    for big in [false, true] {
        for nanos in [false, true] {
            files.push((
                format!("big{big}-nanos{nanos}.pcap"),
                pcap_file(&flow.segs, 1, big, nanos),
            ));
        }
        files.push((format!("big{big}.pcapng"), pcapng_file(&flow.segs, 1, big)));
    }
    for (name, bytes) in files {
        let capture = dir.join(&name);
        std::fs::write(&capture, bytes).unwrap();
        let tape = dir.join(format!("{name}.tape"));
        import_ok(&capture, &tape, &[]);
        check_exchange(&tape);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reordered_duplicated_overlapping_retransmitted_and_wrapping_segments() {
    let dir = temp_dir("pcap-messy");
    // The client's sequence numbers wrap around in the middle of its data.
    let mut flow = Flow::new("192.0.2.1:50000", "192.0.2.2:6379", [u32::MAX - 9, 77]);
    flow.handshake();
    let body = random_bytes(40_000, 3);
    let pieces: Vec<Seg> = body
        .chunks(1000)
        .map(|chunk| flow.seg(C2S, ACK, chunk))
        .collect();
    flow.segs.truncate(3);
    // Shuffled, some twice, one overlapping its neighbours, one lost and
    // retransmitted later (its ACK only after the retransmission).
    let order = [0usize, 2, 1, 3, 5, 4, 4, 6, 8, 9, 7, 12, 11, 10, 13];
    for &i in &order {
        flow.segs.push(pieces[i].clone());
    }
    let mut overlap = pieces[14].clone();
    overlap.seq = overlap.seq.wrapping_sub(500);
    overlap.data = body[13_500..15_500].to_vec();
    flow.segs.push(overlap);
    for piece in &pieces[15..] {
        if piece.data.as_ptr() != pieces[20].data.as_ptr() {
            flow.segs.push(piece.clone());
        }
    }
    let mut retransmitted = pieces[20].clone();
    retransmitted.time_us += 200_000;
    flow.segs.push(retransmitted);
    flow.at_ms(250);
    flow.send(S2C, b"+OK\r\n").close();
    let capture = dir.join("messy.pcap");
    std::fs::write(&capture, pcap_file(&flow.segs, 1, false, false)).unwrap();
    let tape = dir.join("messy.tape");
    import_ok(&capture, &tape, &[]);
    assert_eq!(tape_stream(&tape, 1), body);
    assert_eq!(tape_stream(&tape, 2), b"+OK\r\n");
    let events = timeline(&tape);
    assert_eq!(
        events[events.len() - 3].1,
        Event::Bytes(S2C, b"+OK\r\n".to_vec())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_capture_without_the_handshake() {
    let dir = temp_dir("pcap-midstream");
    let mut flow = Flow::new("192.0.2.1:50000", "192.0.2.2:5432", [123_456, 654_321]);
    // The capture starts after the handshake, with the server speaking.
    flow.send(S2C, b"ready\n").send(C2S, b"query\n");
    flow.at_ms(12).send(S2C, b"rows\n");
    let capture = dir.join("mid.pcap");
    std::fs::write(&capture, pcap_file(&flow.segs, 101, false, false)).unwrap();
    let tape = dir.join("mid.tape");
    import_ok(&capture, &tape, &[]);
    assert_eq!(
        timeline(&tape),
        vec![
            (0, Event::Bytes(S2C, b"ready\n".to_vec())),
            (0, Event::Bytes(C2S, b"query\n".to_vec())),
            (12, Event::Bytes(S2C, b"rows\n".to_vec())),
        ],
        "the lower port (5432) is the server"
    );
    // The capture ended before the connection did: the tape says so.
    let frames = tape_frames(&tape);
    let (op, _, reason) = frames.last().unwrap();
    assert_eq!(*op, 0x83, "a CUT frame");
    assert_eq!(reason, b"the capture ended before the connection closed");
    // Two high ports: --filter says which is the server.
    let mut flow = Flow::new("192.0.2.1:50000", "192.0.2.2:60000", [1, 1]);
    flow.send(C2S, b"ask\n").send(S2C, b"tell\n");
    std::fs::write(&capture, pcap_file(&flow.segs, 101, false, false)).unwrap();
    import_ok(&capture, &tape, &["--filter", "192.0.2.2:60000"]);
    assert_eq!(tape_stream(&tape, 1), b"ask\n");
    assert_eq!(tape_stream(&tape, 2), b"tell\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A connection whose client bytes 5..8 the capture lost.
fn gap_capture(dir: &Path) -> PathBuf {
    let mut flow = Flow::new("192.0.2.1:50000", "192.0.2.2:80", [0, 0]);
    flow.handshake().send(C2S, b"hello");
    let lost = flow.seg(C2S, ACK, b"abc");
    flow.segs.retain(|s| s.data != lost.data);
    flow.send(C2S, b"world").send(S2C, b"ok").close();
    let capture = dir.join("gap.pcap");
    std::fs::write(&capture, pcap_file(&flow.segs, 1, false, false)).unwrap();
    capture
}

#[test]
fn a_gap_is_an_error_unless_allowed() {
    let dir = temp_dir("pcap-gap");
    let capture = gap_capture(&dir);
    let tape = dir.join("gap.tape");
    std::fs::write(&tape, b"precious").unwrap();
    let (code, stderr) = import(&capture, s(&tape), &[]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {}: connection 192.0.2.1:50000 -> 192.0.2.2:80 (from packet 1): 3 bytes missing at client stream offset 5: packets lost by the capture; --allow-gaps imports it with the gap marked",
            capture.display()
        )
    );
    assert_eq!(
        std::fs::read(&tape).unwrap(),
        b"precious",
        "output untouched"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        2,
        "no temporary left"
    );
    let (code, stderr) = import(&capture, s(&tape), &["--allow-gaps"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("3 bytes missing at client stream offset 5: marked as a wildcard"),
        "{stderr}"
    );
    let frames = tape_frames(&tape);
    let wildcard = frames
        .iter()
        .find(|(op, _, _)| *op == 0x81)
        .expect("a wildcard");
    assert_eq!(wildcard.2, 3u32.to_be_bytes());
    assert_eq!(tape_stream(&tape, 1), b"helloworld");
    let (code, stdout, _) = run(&["print", s(&tape)]);
    assert_eq!(code, 0);
    assert!(stdout.contains("any 3"), "{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn several_connections_make_a_cassette() {
    let dir = temp_dir("pcap-several");
    let mut segs = Vec::new();
    let mut first = exchange("192.0.2.1:50000", "192.0.2.2:80");
    let mut second = exchange("192.0.2.1:50001", "192.0.2.3:443");
    second.segs.iter_mut().for_each(|s| s.time_us += 10_000);
    // Port reuse: the first 4-tuple again, after it closed.
    let mut third = exchange("192.0.2.1:50000", "192.0.2.2:80");
    third.segs.iter_mut().for_each(|s| s.time_us += 100_000);
    segs.append(&mut first.segs);
    segs.append(&mut second.segs);
    segs.append(&mut third.segs);
    segs.sort_by_key(|s| s.time_us);
    let capture = dir.join("three.pcap");
    std::fs::write(&capture, pcap_file(&segs, 1, false, false)).unwrap();
    let (code, stderr) = import(&capture, s(&dir.join("one.tape")), &[]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {}: holds several TCP connections (192.0.2.1:50000 -> 192.0.2.2:80 from packet 1 and 192.0.2.1:50001 -> 192.0.2.3:443 from packet 5): import them into a cassette with -o DIR/, or pick one with --filter HOST:PORT",
            capture.display()
        )
    );
    assert!(!dir.join("one.tape").exists());
    let out = dir.join("cassette");
    import_ok(&capture, Path::new(&format!("{}/", out.display())), &[]);
    assert_eq!(index_starts(&out), vec![0, 10, 100]);
    for n in 1..=3 {
        check_exchange(&out.join(tape_name(n)));
    }
    // Only the connections to one server.
    let tape = dir.join("https.tape");
    import_ok(&capture, &tape, &["--filter", "192.0.2.3:443"]);
    check_exchange(&tape);
    let (code, stderr) = import(&capture, s(&tape), &["--filter", "192.0.2.9:1"]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {}: no TCP connection to 192.0.2.9:1 with data found in {} packets",
            capture.display(),
            segs.len()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn imported_tapes_replay() {
    let dir = temp_dir("pcap-replay");
    // A messy capture, imported, then both sides of it played against
    // each other: the mock server checks the recorded client.
    let mut flow = Flow::new("192.0.2.1:50000", "192.0.2.2:80", [u32::MAX - 2, 4]);
    flow.handshake().send(C2S, b"GET /a HTTP/1.0\r\n\r\n");
    let answer = flow.seg(S2C, ACK, b"HTTP/1.0 200 OK\r\n\r\nbody");
    flow.segs.insert(3, answer); // the answer seen before its request
    flow.at_ms(5).send(C2S, b"more").close();
    let capture = dir.join("c.pcap");
    std::fs::write(&capture, pcap_file(&flow.segs, 1, false, false)).unwrap();
    let tape = dir.join("c.tape");
    import_ok(&capture, &tape, &[]);
    let mock = tcptape::MockServer::start(&tape).unwrap();
    let client = tcptape::MockClient::run(mock.addr(), &tape).unwrap();
    assert!(client.passed(), "{client:?}");
    let server = mock.finish().unwrap();
    assert!(server.passed(), "{server:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_reset_ends_the_tape() {
    let dir = temp_dir("pcap-reset");
    let mut flow = Flow::new("192.0.2.1:50000", "192.0.2.2:80", [5, 5]);
    flow.handshake().send(C2S, b"bye");
    flow.seg(S2C, RST | ACK, b"");
    // A refused connection (SYN, RST) makes no tape.
    let mut refused = Flow::new("192.0.2.1:50001", "192.0.2.2:81", [5, 5]);
    refused.seg(C2S, SYN, b"");
    refused.seg(S2C, RST | ACK, b"");
    let mut segs = flow.segs.clone();
    segs.extend(refused.segs);
    let capture = dir.join("reset.pcap");
    std::fs::write(&capture, pcap_file(&segs, 1, false, false)).unwrap();
    let tape = dir.join("reset.tape");
    import_ok(&capture, &tape, &[]);
    assert_eq!(
        timeline(&tape),
        vec![(0, Event::Bytes(C2S, b"bye".to_vec()))]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------
// Bad captures and outputs.

#[test]
fn bad_captures_are_one_line_errors() {
    let dir = temp_dir("pcap-bad");
    let flow = exchange("192.0.2.1:50000", "192.0.2.2:80");
    let good = pcap_file(&flow.segs, 1, false, false);
    let mut bomb = good.clone();
    bomb[32..36].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let ng = pcapng_file(&flow.segs, 1, false);
    // Section header (28 bytes) and interface block (32 bytes) come first.
    let mut bad_block = ng.clone();
    bad_block[28 + 4..28 + 8].copy_from_slice(&30u32.to_le_bytes());
    let mut bad_trailer = ng.clone();
    let len = bad_trailer.len();
    let last_block = u32::from_le_bytes(ng[len - 4..].try_into().unwrap()) as usize;
    bad_trailer[len - 4] ^= 0x40;
    let first_len = u32::from_le_bytes(good[32..36].try_into().unwrap()) as usize;
    let first_record = 24 + 16 + first_len;
    let second_len = u32::from_le_bytes(
        good[first_record + 8..first_record + 12]
            .try_into()
            .unwrap(),
    );
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "empty",
            Vec::new(),
            "offset 0: empty file, not a capture".into(),
        ),
        (
            "magic",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(),
            "offset 0: not a pcap or pcapng capture: unknown magic 0x7f454c46".into(),
        ),
        (
            "header",
            good[..20].to_vec(),
            "offset 0: truncated: the 24-byte pcap file header is incomplete, 20 bytes present"
                .into(),
        ),
        (
            "record",
            good[..first_record + 16 + 10].to_vec(),
            format!(
                "packet 2 at offset {first_record}: truncated: {second_len} packet bytes announced, 10 present"
            ),
        ),
        (
            "bomb",
            bomb,
            "packet 1 at offset 24: captured length 2147483647 exceeds the limit of 262144 bytes"
                .into(),
        ),
        (
            "block",
            bad_block,
            "offset 28: bad block length 30: not a multiple of 4".into(),
        ),
        (
            "trailer",
            bad_trailer,
            format!(
                "packet {} at offset {}: bad block length: trailing length {} does not match {last_block}",
                flow.segs.len(),
                ng.len() - last_block,
                last_block ^ 0x40,
            ),
        ),
    ];
    for (name, bytes, message) in cases {
        let capture = dir.join(format!("{name}.pcap"));
        std::fs::write(&capture, &bytes).unwrap();
        let (code, stderr) = import(&capture, s(&dir.join("out.tape")), &[]);
        assert_eq!(
            error_line(code, &stderr),
            format!("error: {}: {message}", capture.display()),
            "{name}"
        );
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
    assert!(!dir.join("out.tape").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unsupported_link_types_and_truncated_packets() {
    let dir = temp_dir("pcap-unsupported");
    let flow = exchange("192.0.2.1:50000", "192.0.2.2:80");
    let mut wifi = pcap_file(&flow.segs, 101, false, false);
    wifi[20..24].copy_from_slice(&105u32.to_le_bytes());
    let capture = dir.join("wifi.pcap");
    std::fs::write(&capture, &wifi).unwrap();
    let (code, stderr) = import(&capture, s(&dir.join("out.tape")), &[]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {}: packet 1 at offset 24: link type 105 is not supported (Ethernet, raw IP, Linux cooked and loopback captures are)",
            capture.display()
        )
    );
    // A capture with a small snaplen cuts the request short.
    let mut short = pcap_file(&flow.segs[..4], 101, false, false);
    let cut = short.len() - 5;
    short.truncate(cut);
    let record = short.len() - (58 - 5) - 16;
    short[record + 8..record + 12].copy_from_slice(&(58u32 - 5).to_le_bytes());
    std::fs::write(&capture, &short).unwrap();
    let (code, stderr) = import(&capture, s(&dir.join("out.tape")), &[]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {}: packet 4 at offset {record}: only 53 of its 58 bytes were captured: capture whole packets (a larger snaplen)",
            capture.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outputs_never_destroy_user_data() {
    let dir = temp_dir("pcap-outputs");
    let flow = exchange("192.0.2.1:50000", "192.0.2.2:80");
    let capture = dir.join("c.pcap");
    std::fs::write(&capture, pcap_file(&flow.segs, 1, false, false)).unwrap();
    // Output = input.
    let (code, stderr) = import(&capture, s(&capture), &[]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {} is the input: choose another output",
            capture.display()
        )
    );
    let tape = fixture("echo.tape");
    let (code, _, stderr) = run(&["pcap", s(&tape), "-o", s(&tape)]);
    assert!(error_line(code, &stderr).ends_with("is the input: choose another output"));
    // A folder with other things in it is not a cassette to replace.
    let notes = dir.join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("todo.txt"), b"keep me").unwrap();
    let (code, stderr) = import(&capture, &format!("{}/", notes.display()), &[]);
    assert_eq!(
        error_line(code, &stderr),
        format!(
            "error: {}/ is not empty and is not a tcptape cassette (no index starting with '# tcptape cassette index'): refusing to write into it",
            notes.display()
        )
    );
    assert_eq!(std::fs::read(notes.join("todo.txt")).unwrap(), b"keep me");
    // A capture inside the cassette that would be replaced.
    let cassette_dir = dir.join("cassette");
    import_ok(
        &capture,
        Path::new(&format!("{}/", cassette_dir.display())),
        &[],
    );
    let inside = cassette_dir.join("c.pcap");
    std::fs::copy(&capture, &inside).unwrap();
    let (code, stderr) = import(&inside, &format!("{}/", cassette_dir.display()), &[]);
    assert!(
        error_line(code, &stderr).contains("which would be replaced"),
        "{stderr}"
    );
    std::fs::remove_file(&inside).unwrap();
    // An existing cassette is replaced whole, and only once the import
    // succeeded.
    let gap = gap_capture(&dir);
    let (code, _) = import(&gap, &format!("{}/", cassette_dir.display()), &[]);
    assert_eq!(code, 1);
    check_exchange(&cassette_dir.join("0001.tape"));
    std::fs::write(cassette_dir.join("0002.tape"), b"stale").unwrap();
    import_ok(
        &capture,
        Path::new(&format!("{}/", cassette_dir.display())),
        &[],
    );
    let mut names: Vec<String> = std::fs::read_dir(&cassette_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["0001.tape", "index"]);
    // A failed export leaves no file.
    let out = dir.join("out.pcap");
    let (code, _, stderr) = run(&["pcap", "/nonexistent/t.tape", "-o", s(&out)]);
    assert_eq!(
        error_line(code, &stderr),
        "error: cannot open tape /nonexistent/t.tape: No such file or directory"
    );
    assert!(!out.exists());
    // Exporting a cassette into itself.
    let (code, _, stderr) = run(&[
        "pcap",
        s(&cassette_dir),
        "-o",
        s(&cassette_dir.join("x.pcap")),
    ]);
    assert!(
        error_line(code, &stderr).contains("is inside the cassette"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_lists_both_commands() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("\n  pcap "), "{stdout}");
    assert!(stdout.contains("\n  import "), "{stdout}");
    let (code, stdout, _) = run(&["import", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--allow-gaps"));
    let (code, _, stderr) = run(&["pcap", "t.tape"]);
    assert_eq!(code, 2);
    assert!(stderr.starts_with("error: missing option -o OUT.pcap\nusage: tcptape pcap"));
}

#[test]
fn the_fuzzing_entry_survives_damaged_captures() {
    let flow = exchange("192.0.2.1:50000", "192.0.2.2:80");
    let samples = [
        pcap_file(&flow.segs, 1, false, false),
        pcap_file(&flow.segs, 113, true, true),
        pcapng_file(&flow.segs, 1, true),
        pcapng_file(&flow.segs, 276, false),
    ];
    for sample in &samples {
        tcptape::fuzzing::pcap_import(sample);
        for cut in 0..sample.len() {
            tcptape::fuzzing::pcap_import(&sample[..cut]);
        }
        let noise = random_bytes(4096, sample.len() as u64);
        for i in 0..2000 {
            let mut damaged = sample.clone();
            for j in 0..(i % 4 + 1) {
                let at = noise[(i * 4 + j) % noise.len()] as usize * 7 + i;
                let at = at % damaged.len();
                damaged[at] ^= noise[(i + j * 13) % noise.len()] | 1;
            }
            tcptape::fuzzing::pcap_import(&damaged);
        }
    }
}

// ---------------------------------------------------------------------
// What tshark sees (skipped where it is not installed).

fn tshark() -> Option<&'static str> {
    let found = Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        // Straight to stderr: the test harness would swallow println!.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: tshark is not installed (apt-get install tshark)"
        );
    }
    found.then_some("tshark")
}

fn run_tshark(args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("120")
        .arg("tshark")
        .args(args)
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn tshark_follows_the_exported_streams() {
    let Some(_) = tshark() else { return };
    let dir = temp_dir("pcap-tshark-follow");
    for name in ["banner", "bulk", "halfclose-reply"] {
        let tape = fixture(&format!("{name}.tape"));
        let capture = dir.join(format!("{name}.pcap"));
        export(&tape, &capture, &[]);
        let out = run_tshark(&["-r", s(&capture), "-q", "-z", "follow,tcp,raw,0"]);
        // Client lines start at the margin, server lines with a tab.
        let mut streams = [Vec::new(), Vec::new()];
        for line in out.lines() {
            let hex = line.trim_start_matches('\t');
            if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let side = usize::from(line.starts_with('\t'));
            streams[side].extend(unhex(hex));
        }
        assert_eq!(streams[0], tape_stream(&tape, 1), "{name}: client bytes");
        assert_eq!(streams[1], tape_stream(&tape, 2), "{name}: server bytes");
        // No analysis warnings: nothing lost, out of order or retransmitted.
        let expert = run_tshark(&["-r", s(&capture), "-q", "-z", "expert,warn"]);
        assert!(!expert.contains("Warn"), "{name}: {expert}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tshark_dissects_http_on_port_80() {
    let Some(_) = tshark() else { return };
    let dir = temp_dir("pcap-tshark-http");
    let tape = dir.join("http.tape");
    write_tape(&tape, |w| {
        w.data(
            C2S,
            b"GET /index.html HTTP/1.1\r\nHost: example.test\r\n\r\n",
        )
        .unwrap();
        w.delay(12).unwrap();
        w.data(S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            .unwrap();
        w.eof(C2S).unwrap();
        w.eof(S2C).unwrap();
    });
    let capture = dir.join("http.pcap");
    export(&tape, &capture, &["--port", "80"]);
    let out = run_tshark(&["-r", s(&capture), "-Y", "http"]);
    assert!(out.contains("GET /index.html HTTP/1.1"), "{out}");
    assert!(out.contains("HTTP/1.1 200 OK"), "{out}");
    let large = dir.join("large.tape");
    let body = random_bytes(2 * 1024 * 1024, 9);
    write_tape(&large, |w| {
        w.data(
            C2S,
            b"POST /upload HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n",
        )
        .unwrap();
        w.data(C2S, &body).unwrap();
        w.data(S2C, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    export(&large, &capture, &["--port", "80"]);
    let out = run_tshark(&["-r", s(&capture), "-Y", "http"]);
    assert!(out.contains("POST /upload HTTP/1.1"), "{out}");
    assert!(out.contains("201 Created"), "{out}");
    let expert = run_tshark(&["-r", s(&capture), "-q", "-z", "expert,warn"]);
    assert!(!expert.contains("Warn"), "{expert}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn packets_centuries_apart_make_one_capped_delay_not_gigabytes() {
    // Found by the pcap_import fuzz target: pcapng timestamps are 64 bits,
    // and a jump of ~10^16 ms once became a billion DELAY frames.
    let dir = temp_dir("pcap-centuries");
    let out = format!("{}/", dir.join("c").display());
    let capture = fixture("captures/centuries-apart.pcapng");
    let (code, _, stderr) = run(&[
        "import",
        capture.to_str().unwrap(),
        "-o",
        &out,
        "--allow-gaps",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let tape = dir.join("c/0001.tape");
    let frames = tape_frames(&tape);
    let delays: Vec<u32> = frames.iter().filter(|f| f.0 == 3).map(|f| f.1).collect();
    assert!(
        !delays.is_empty() && delays.len() < frames.len(),
        "{delays:?}"
    );
    assert!(std::fs::metadata(&tape).unwrap().len() < 64 * 1024);
}

/// A tape of a few bytes may declare gigabytes of wildcard bytes (`any
/// 4294967295`): its export is refused past 64 MiB of them, naming it,
/// and leaves no file, where it wrote without end before.
#[test]
fn wildcards_past_a_limit_are_not_exported_as_gigabytes_of_zeros() {
    let dir = temp_dir("pcap-huge-wildcard");
    let tape = text_tape(
        &dir,
        "t.txt",
        "tcptape text 1\n> \"GET\"\n< any 4294967295\n",
    );
    let out = dir.join("o.pcap");
    let (code, _, stderr) = run(&["pcap", tape.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&tape.display().to_string()), "{stderr}");
    assert!(stderr.contains("more than 64 MiB"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["t.txt"], "no capture, no temporary file");
}
