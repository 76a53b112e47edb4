//! A SPEC's text into a [`Fault`]: a kind and options, comma-separated.
//!
//! ```text
//! SPEC   = ITEM *("," ITEM)             exactly one ITEM is a kind
//! kind   = "latency=" MS | "bandwidth=" RATE | "slice=" BYTES | "slow_close=" MS
//!        | "reset" | "close" | "stall" | "truncate"
//! option = "jitter=" MS (latency) | "gap=" MS (slice)
//!        | "dir=" ("up" | "down" | "both")
//!        | "at=" ("byte:" N | "frame:" K | "ms:" MS)
//!        | "conn=" N [".." M] | "p=" 0..1 | "seed=" S
//! ```
//!
//! Every number has a bound (a day of milliseconds, 10 GiB/s, 16 MiB
//! slices, 2^50 bytes), so no SPEC asks for what cannot be kept.

use super::{At, Dir, Fault, Kind};

/// Milliseconds a SPEC may ask for: a day.
const MAX_MS: u64 = 86_400_000;
/// Bytes per second, at most: 10 GiB.
const MAX_RATE: u64 = 10 << 30;
/// The largest slice: 16 MiB.
const MAX_SLICE: u64 = 16 << 20;
/// The furthest byte position: 1 PiB.
const MAX_BYTE: u64 = 1 << 50;
/// The furthest frame, and the highest connection number.
const MAX_COUNT: u64 = 1 << 40;

const KINDS: &str =
    "latency=MS, bandwidth=RATE, slice=BYTES, slow_close=MS, reset, close, stall or truncate";

/// What the items of a SPEC said, before they are put together.
#[derive(Default)]
struct Items<'a> {
    kind: Option<(Kind, &'a str)>,
    jitter: Option<u64>,
    gap: Option<u64>,
    vary: Option<u64>,
    dirs: Option<Vec<Dir>>,
    at: Option<At>,
    conns: Option<(u64, u64)>,
    p: Option<f64>,
    seed: Option<u64>,
    /// The options as written, in order, for the canonical text.
    options: Vec<&'a str>,
}

/// Parses one SPEC; the error names it and says what is wrong.
pub fn parse(spec: &str) -> Result<Fault, String> {
    parse_items(spec).map_err(|why| format!("'{spec}': {why}"))
}

fn parse_items(spec: &str) -> Result<Fault, String> {
    let mut items = Items::default();
    for item in spec.split(',').map(str::trim) {
        if item.is_empty() {
            return Err("an empty item (two commas, or one at an end)".into());
        }
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim())),
            None => (item, None),
        };
        let stopping = match name {
            "reset" => Some(Kind::Reset),
            "close" => Some(Kind::Close),
            "stall" => Some(Kind::Stall),
            "truncate" => Some(Kind::Truncate),
            _ => None,
        };
        if let Some(kind) = stopping {
            if value.is_some() {
                return Err(format!("{name} takes no value"));
            }
            set_kind(&mut items, kind, item)?;
            continue;
        }
        let Some(value) = value else {
            return Err(format!("'{item}' is not a kind of fault ({KINDS})"));
        };
        match name {
            "latency" => {
                let kind = Kind::Latency {
                    ms: millis(name, value)?,
                    jitter: 0,
                };
                set_kind(&mut items, kind, item)?;
            }
            "bandwidth" => {
                let rate = size(name, value, MAX_RATE, "bytes per second")?;
                set_kind(&mut items, Kind::Bandwidth { rate }, item)?;
            }
            "slice" => {
                let bytes = size(name, value, MAX_SLICE, "bytes")?;
                let kind = Kind::Slice {
                    bytes,
                    gap: 0,
                    vary: 0,
                };
                set_kind(&mut items, kind, item)?;
            }
            "slow_close" => {
                let kind = Kind::SlowClose {
                    ms: millis(name, value)?,
                };
                set_kind(&mut items, kind, item)?;
            }
            _ => option(&mut items, name, value, item)?,
        }
    }
    build(items)
}

fn set_kind<'a>(items: &mut Items<'a>, kind: Kind, item: &'a str) -> Result<(), String> {
    if let Some((_, first)) = items.kind {
        return Err(format!(
            "two kinds, '{first}' and '{item}': one SPEC is one fault"
        ));
    }
    items.kind = Some((kind, item));
    Ok(())
}

/// An option's item.
fn option<'a>(items: &mut Items<'a>, name: &str, value: &str, item: &'a str) -> Result<(), String> {
    let twice = || format!("{name} given twice");
    match name {
        "jitter" => replace(&mut items.jitter, millis(name, value)?).ok_or_else(twice)?,
        "gap" => replace(&mut items.gap, millis(name, value)?).ok_or_else(twice)?,
        "vary" => {
            let vary = size(name, value, MAX_SLICE, "bytes")?;
            replace(&mut items.vary, vary).ok_or_else(twice)?
        }
        "dir" => {
            let dirs = match value {
                "up" => vec![Dir::Up],
                "down" => vec![Dir::Down],
                "both" => vec![Dir::Up, Dir::Down],
                _ => return Err(format!("dir={value}: not up, down or both")),
            };
            replace(&mut items.dirs, dirs).ok_or_else(twice)?
        }
        "at" => replace(&mut items.at, position(value)?).ok_or_else(twice)?,
        "conn" => replace(&mut items.conns, conns(value)?).ok_or_else(twice)?,
        "p" => {
            let p = probability(value)
                .ok_or_else(|| format!("p={value}: not a chance between 0 and 1"))?;
            replace(&mut items.p, p).ok_or_else(twice)?
        }
        "seed" => {
            let seed = value
                .parse::<u64>()
                .ok()
                .filter(|_| digits(value))
                .ok_or_else(|| format!("seed={value}: not a whole number"))?;
            replace(&mut items.seed, seed).ok_or_else(twice)?
        }
        _ => {
            return Err(format!(
                "'{name}' is neither a kind of fault ({KINDS}) nor an option (jitter, gap, vary, dir, at, conn, p, seed)"
            ));
        }
    }
    items.options.push(item);
    Ok(())
}

/// Sets `slot` once; `None` when it was set already.
fn replace<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// Puts the items together, with the defaults: both directions for the
/// kinds that pace bytes, down for the others; from the start; every
/// connection; always.
fn build(items: Items<'_>) -> Result<Fault, String> {
    let Some((mut kind, kind_text)) = items.kind else {
        return Err(format!("no kind of fault ({KINDS})"));
    };
    match (&mut kind, items.jitter) {
        (Kind::Latency { jitter, .. }, Some(j)) => *jitter = j,
        (_, None) => {}
        (_, Some(_)) => return Err("jitter goes with latency only".into()),
    }
    match (&mut kind, items.gap, items.vary) {
        (Kind::Slice { gap, vary, .. }, g, v) => {
            *gap = g.unwrap_or(0);
            *vary = v.unwrap_or(0);
        }
        (_, None, None) => {}
        (_, Some(_), _) => return Err("gap goes with slice only".into()),
        (_, _, Some(_)) => return Err("vary goes with slice only".into()),
    }
    let dirs = items.dirs.unwrap_or_else(|| match kind.shapes() {
        true => vec![Dir::Up, Dir::Down],
        false => vec![Dir::Down],
    });
    let mut text = kind_text.to_string();
    for option in &items.options {
        text.push(',');
        text.push_str(option);
    }
    Ok(Fault {
        kind,
        dirs,
        at: items.at.unwrap_or(At::Byte(0)),
        conns: items.conns.unwrap_or((1, u64::MAX)),
        p: items.p.unwrap_or(1.0),
        seed: items.seed.unwrap_or(0),
        text,
    })
}

fn digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

/// A whole number of at most `max`.
fn number(value: &str, max: u64) -> Option<u64> {
    value
        .parse::<u64>()
        .ok()
        .filter(|&n| digits(value) && n <= max)
}

fn millis(name: &str, value: &str) -> Result<u64, String> {
    number(value, MAX_MS).ok_or_else(|| {
        format!("{name}={value}: not a whole number of milliseconds up to a day ({MAX_MS})")
    })
}

/// A size with an optional `K` (1024) or `M` (1024 * 1024) suffix, 1 to
/// `max`.
fn size(name: &str, value: &str, max: u64, unit: &str) -> Result<u64, String> {
    let (count, multiplier) = match value.as_bytes().last() {
        Some(b'k' | b'K') => (&value[..value.len() - 1], 1 << 10),
        Some(b'm' | b'M') => (&value[..value.len() - 1], 1 << 20),
        _ => (value, 1),
    };
    number(count, max)
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|&n| (1..=max).contains(&n))
        .ok_or_else(|| {
            format!("{name}={value}: not a number of {unit} from 1 to {max} (suffixes K and M)")
        })
}

fn position(value: &str) -> Result<At, String> {
    let bad = |what: &str| format!("at={value}: {what}");
    let (unit, n) = value
        .split_once(':')
        .ok_or_else(|| bad("not byte:N, frame:K or ms:MS"))?;
    match unit {
        "byte" => number(n, MAX_BYTE)
            .map(At::Byte)
            .ok_or_else(|| bad(&format!("'{n}' is not a byte count up to {MAX_BYTE}"))),
        "frame" => number(n, MAX_COUNT)
            .filter(|&k| k > 0)
            .map(At::Frame)
            .ok_or_else(|| {
                bad(&format!(
                    "'{n}' is not a frame number from 1 (0 is the tape's magic) to {MAX_COUNT}"
                ))
            }),
        "ms" => number(n, MAX_MS)
            .map(At::Ms)
            .ok_or_else(|| bad(&format!("'{n}' is not milliseconds up to a day ({MAX_MS})"))),
        _ => Err(bad("not byte:N, frame:K or ms:MS")),
    }
}

fn conns(value: &str) -> Result<(u64, u64), String> {
    let count = |n: &str| {
        number(n, MAX_COUNT)
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("conn={value}: '{n}' is not a connection number (from 1)"))
    };
    match value.split_once("..") {
        Some((first, last)) => {
            let (first, last) = (count(first)?, count(last)?);
            if first > last {
                return Err(format!("conn={value}: the range runs backwards"));
            }
            Ok((first, last))
        }
        None => count(value).map(|n| (n, n)),
    }
}

/// A chance: `0`, `1`, `0.25`, `.5`: digits with at most one point, read
/// by hand (std's float parser would add its tables to the binary), at
/// most nine decimals.
fn probability(value: &str) -> Option<f64> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let plain = !(whole.is_empty() && fraction.is_empty())
        && fraction.len() <= 9
        && whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let scale = 10u64.pow(fraction.len() as u32);
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    let p = whole as f64 + fraction as f64 / scale as f64;
    (p <= 1.0).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> Fault {
        parse(spec).unwrap_or_else(|err| panic!("{spec}: {err}"))
    }

    fn err(spec: &str) -> String {
        parse(spec).expect_err(spec)
    }

    #[test]
    fn each_kind_parses_with_its_defaults() {
        let f = ok("latency=200,jitter=50");
        assert_eq!(
            f.kind,
            Kind::Latency {
                ms: 200,
                jitter: 50
            }
        );
        assert_eq!(f.dirs, [Dir::Up, Dir::Down], "shaping: both ways");
        assert_eq!(
            (f.at, f.conns, f.p, f.seed),
            (At::Byte(0), (1, u64::MAX), 1.0, 0)
        );
        assert_eq!(ok("bandwidth=1M").kind, Kind::Bandwidth { rate: 1 << 20 });
        assert_eq!(ok("bandwidth=64k").kind, Kind::Bandwidth { rate: 65536 });
        assert_eq!(ok("bandwidth=1000").kind, Kind::Bandwidth { rate: 1000 });
        assert_eq!(
            ok("slice=1,gap=5").kind,
            Kind::Slice {
                bytes: 1,
                gap: 5,
                vary: 0
            }
        );
        assert_eq!(
            ok("slice=8,vary=4").kind,
            Kind::Slice {
                bytes: 8,
                gap: 0,
                vary: 4
            }
        );
        assert_eq!(ok("slow_close=300").kind, Kind::SlowClose { ms: 300 });
        for (spec, kind) in [
            ("reset", Kind::Reset),
            ("close", Kind::Close),
            ("stall", Kind::Stall),
            ("truncate", Kind::Truncate),
        ] {
            let f = ok(spec);
            assert_eq!(f.kind, kind);
            assert_eq!(f.dirs, [Dir::Down], "stopping kinds: down");
        }
    }

    #[test]
    fn options_say_where_and_to_whom() {
        let f = ok(" reset , at=byte:3 , conn=1 ");
        assert_eq!((f.at, f.conns), (At::Byte(3), (1, 1)));
        assert_eq!(f.text(), "reset,at=byte:3,conn=1");
        let f = ok("conn=2..5,dir=up,stall,at=frame:7");
        assert_eq!(
            (f.at, f.conns, f.dirs.as_slice()),
            (At::Frame(7), (2, 5), &[Dir::Up][..])
        );
        assert_eq!(
            f.text(),
            "stall,conn=2..5,dir=up,at=frame:7",
            "the kind first"
        );
        assert_eq!(ok("close,at=ms:1500").at, At::Ms(1500));
        assert_eq!(ok("latency=5,dir=both").dirs, [Dir::Up, Dir::Down]);
        let f = ok("reset,p=0.5,seed=7");
        assert_eq!((f.p, f.seed), (0.5, 7));
        assert_eq!(ok("reset,p=.25").p, 0.25);
        assert_eq!(ok("reset,p=1").p, 1.0);
    }

    #[test]
    fn a_bad_spec_says_what_is_wrong_with_it() {
        for (spec, why) in [
            ("", "'': an empty item"),
            ("reset,", "'reset,': an empty item"),
            ("explode", "'explode' is not a kind of fault"),
            ("conn=1", "no kind of fault"),
            ("reset,close", "two kinds, 'reset' and 'close'"),
            ("reset=1", "reset takes no value"),
            (
                "latency=abc",
                "latency=abc: not a whole number of milliseconds",
            ),
            ("latency=-5", "latency=-5: not a whole number"),
            ("latency=86400001", "up to a day"),
            (
                "bandwidth=0",
                "bandwidth=0: not a number of bytes per second from 1",
            ),
            ("bandwidth=11G", "bandwidth=11G: not a number"),
            ("bandwidth=20000M", "bandwidth=20000M"),
            ("slice=0", "slice=0: not a number of bytes from 1"),
            ("slice=17M", "slice=17M"),
            ("reset,jitter=5", "jitter goes with latency only"),
            ("latency=5,gap=5", "gap goes with slice only"),
            ("latency=5,vary=2", "vary goes with slice only"),
            ("slice=4,vary=x", "vary=x: not a number of bytes"),
            ("slice=4,vary=1,vary=2", "vary given twice"),
            ("stall,dir=sideways", "dir=sideways: not up, down or both"),
            ("stall,dir=up,dir=down", "dir given twice"),
            ("reset,at=3", "at=3: not byte:N, frame:K or ms:MS"),
            ("reset,at=byte:x", "at=byte:x: 'x' is not a byte count"),
            ("reset,at=byte:1125899906842625", "not a byte count up to"),
            ("reset,at=frame:0", "0 is the tape's magic"),
            ("reset,at=ms:99999999999", "not milliseconds up to a day"),
            ("reset,at=page:1", "at=page:1: not byte:N"),
            ("reset,conn=0", "conn=0: '0' is not a connection number"),
            ("reset,conn=3..1", "conn=3..1: the range runs backwards"),
            ("reset,conn=1..", "conn=1..: '' is not a connection number"),
            ("reset,p=1.5", "p=1.5: not a chance between 0 and 1"),
            ("reset,p=0.1234567891", "p=0.1234567891: not a chance"),
            ("reset,p=-1", "p=-1"),
            ("reset,p=.", "p=."),
            ("reset,seed=x", "seed=x: not a whole number"),
            ("reset,colour=red", "'colour' is neither a kind of fault"),
        ] {
            let message = err(spec);
            assert!(message.starts_with(&format!("'{spec}': ")), "{message}");
            assert!(message.contains(why), "{spec}: {message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
    }
}
