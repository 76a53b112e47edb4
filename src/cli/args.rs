//! Parsing the command line into plain data: each command's arguments,
//! validated into the option types the services take. Nothing here touches
//! the network or the file system.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

use super::Usage;
use super::flags::{AutoArgs, parse_auto, parse_client, parse_proxy, parse_server};
use super::help::*;
use crate::engine::addr::Endpoint;
use crate::job::Spec;
use crate::{learn, pcap};

#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// A command that runs a service: proxy, server, client.
    Run(Spec, Outputs),
    Auto(AutoArgs),
    Describe(DescribeArgs),
    Print(PrintArgs),
    Build(BuildArgs),
    Learn(learn::Options),
    Repair(PathBuf),
    Review(Review),
    Pcap(pcap::Export),
    Import(pcap::Import),
    Redact(super::rules::RedactArgs),
    Scan(super::rules::ScanArgs),
    /// Print this text to stdout and exit 0.
    Help(&'static str),
    Version,
}

/// Files a running command writes besides its tapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outputs {
    /// Where the bound address goes once listening.
    pub address_file: Option<PathBuf>,
    /// Where the JSON report goes when the command ends.
    pub report: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DescribeArgs {
    pub tape: PathBuf,
    pub verbose: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PrintArgs {
    pub tape: PathBuf,
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BuildArgs {
    pub text: PathBuf,
    pub output: PathBuf,
}

/// Parses the arguments after the program name.
pub(crate) fn parse<I>(args: I) -> Result<Command, Usage>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let usage_err = |e: lexopt::Error| Usage::new(e.to_string(), MAIN_USAGE);
    match parser.next().map_err(usage_err)? {
        None => Err(Usage::new("missing command", MAIN_USAGE)),
        Some(Short('h') | Long("help")) => Ok(Command::Help(MAIN_HELP)),
        Some(Short('V') | Long("version")) => Ok(Command::Version),
        Some(Value(name)) => match name.to_str() {
            Some("proxy") => parse_proxy(&mut parser),
            Some("server") => parse_server(&mut parser),
            Some("client") => parse_client(&mut parser),
            Some("describe") => parse_describe(&mut parser),
            Some("print") => parse_print(&mut parser),
            Some("auto") => parse_auto(&mut parser),
            Some("build") => parse_build(&mut parser),
            Some("learn") => parse_learn(&mut parser),
            Some("repair") => parse_repair(&mut parser),
            Some("review") => parse_review(&mut parser),
            Some("pcap") => parse_pcap(&mut parser),
            Some("import") => parse_import(&mut parser),
            Some("redact") => super::rules::parse_redact(&mut parser),
            Some("scan") => super::rules::parse_scan(&mut parser),
            _ => Err(Usage::new(
                format!("unknown command '{}'", name.to_string_lossy()),
                MAIN_USAGE,
            )),
        },
        Some(arg) => Err(usage_err(arg.unexpected())),
    }
}

pub(super) fn lexopt_error(usage: &'static str) -> impl Fn(lexopt::Error) -> Usage {
    move |err| Usage::new(err.to_string(), usage)
}

pub(super) fn endpoint(
    name: &str,
    value: OsString,
    usage: &'static str,
) -> Result<Endpoint, Usage> {
    let text = value.into_string().map_err(|v| {
        Usage::new(
            format!("{name}: '{}' is not UTF-8", v.to_string_lossy()),
            usage,
        )
    })?;
    Endpoint::parse(&text).map_err(|reason| Usage::new(format!("{name}: {reason}"), usage))
}

/// Parses one command's arguments: `-h`/`--help` (then `None`), the
/// positionals, exactly one per name in `names` and handed back in order,
/// and options, each offered to `option`, which says whether it knew it.
pub(super) fn parse_command<F>(
    parser: &mut lexopt::Parser,
    usage: &'static str,
    names: &[&str],
    mut option: F,
) -> Result<Option<Vec<OsString>>, Usage>
where
    F: FnMut(&mut lexopt::Parser, &str) -> Result<bool, Usage>,
{
    let err = lexopt_error(usage);
    let mut values = Vec::new();
    while let Some(arg) = parser.next().map_err(&err)? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Value(value) => values.push(value),
            other => {
                let name = option_name(&other);
                if !option(parser, &name)? {
                    return Err(Usage::new(format!("invalid option '{name}'"), usage));
                }
            }
        }
    }
    if let Some(extra) = values.get(names.len()) {
        let extra = extra.to_string_lossy();
        return Err(Usage::new(format!("unexpected argument '{extra}'"), usage));
    }
    if let Some(missing) = names.get(values.len()) {
        return Err(Usage::new(format!("missing argument {missing}"), usage));
    }
    Ok(Some(values))
}

/// The option's name as written (`-n`, `--speed`): an owned copy, so the
/// parser's borrow of the argument ends before the option's value is read.
pub(super) fn option_name(arg: &lexopt::Arg<'_>) -> String {
    match arg {
        Short(c) => format!("-{c}"),
        Long(name) => format!("--{name}"),
        Value(value) => value.to_string_lossy().into_owned(),
    }
}

fn parse_describe(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let mut verbose = false;
    let parsed = parse_command(parser, DESCRIBE_USAGE, &["FILE"], |_, name| {
        let known = matches!(name, "-v" | "--verbose");
        verbose |= known;
        Ok(known)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(DESCRIBE_HELP));
    };
    Ok(Command::Describe(DescribeArgs {
        tape: PathBuf::from(next(&mut values.into_iter())),
        verbose,
    }))
}

/// `print` and `build`: one input, and `-o OUT`. `None` for help.
fn parse_input_output(
    parser: &mut lexopt::Parser,
    usage: &'static str,
    input: &str,
) -> Result<Option<(PathBuf, Option<PathBuf>)>, Usage> {
    let mut output = None;
    let parsed = parse_command(parser, usage, &[input], |p, name| {
        if !matches!(name, "-o" | "--output") {
            return Ok(false);
        }
        output = Some(PathBuf::from(p.value().map_err(lexopt_error(usage))?));
        Ok(true)
    })?;
    Ok(parsed.map(|values| (PathBuf::from(next(&mut values.into_iter())), output)))
}

fn parse_print(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    Ok(match parse_input_output(parser, PRINT_USAGE, "FILE")? {
        Some((tape, output)) => Command::Print(PrintArgs { tape, output }),
        None => Command::Help(PRINT_HELP),
    })
}

fn parse_repair(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let parsed = parse_command(parser, REPAIR_USAGE, &["FILE"], |_, _| Ok(false))?;
    Ok(match parsed {
        Some(values) => Command::Repair(PathBuf::from(next(&mut values.into_iter()))),
        None => Command::Help(REPAIR_HELP),
    })
}

/// What `review` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Review {
    pub paths: Vec<PathBuf>,
    pub mode: ReviewMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReviewMode {
    /// One key per pending tape, on a terminal.
    Ask,
    Accept,
    Reject,
    Check,
    Diff,
}

fn parse_review(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = REVIEW_USAGE;
    let err = lexopt_error(usage);
    let mut paths = Vec::new();
    let mut mode = ReviewMode::Ask;
    while let Some(arg) = parser.next().map_err(&err)? {
        let chosen = match arg {
            Short('h') | Long("help") => return Ok(Command::Help(REVIEW_HELP)),
            Long("accept") => ReviewMode::Accept,
            Long("reject") => ReviewMode::Reject,
            Long("check") => ReviewMode::Check,
            Long("diff") => ReviewMode::Diff,
            Value(value) => {
                paths.push(PathBuf::from(value));
                continue;
            }
            other => {
                let name = option_name(&other);
                return Err(Usage::new(format!("invalid option '{name}'"), usage));
            }
        };
        if mode != ReviewMode::Ask && mode != chosen {
            return Err(Usage::new(
                "--accept, --reject, --check and --diff go one at a time",
                usage,
            ));
        }
        mode = chosen;
    }
    if paths.is_empty() {
        paths.push(PathBuf::from("."));
    }
    Ok(Command::Review(Review { paths, mode }))
}

fn parse_build(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    match parse_input_output(parser, BUILD_USAGE, "TEXT")? {
        Some((text, Some(output))) => Ok(Command::Build(BuildArgs { text, output })),
        Some((_, None)) => Err(Usage::new("missing option -o FILE", BUILD_USAGE)),
        None => Ok(Command::Help(BUILD_HELP)),
    }
}

fn parse_learn(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = LEARN_USAGE;
    let err = lexopt_error(usage);
    let mut inputs = Vec::new();
    let mut output = None;
    while let Some(arg) = parser.next().map_err(&err)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help(LEARN_HELP)),
            Short('o') | Long("output") => {
                output = Some(PathBuf::from(parser.value().map_err(&err)?))
            }
            Value(value) => inputs.push(PathBuf::from(value)),
            other => {
                let name = option_name(&other);
                return Err(Usage::new(format!("invalid option '{name}'"), usage));
            }
        }
    }
    if inputs.len() < 2 {
        return Err(Usage::new(
            format!(
                "learn needs two or more recordings of one scenario, {} given",
                inputs.len()
            ),
            usage,
        ));
    }
    let output = output.ok_or_else(|| Usage::new("missing option -o OUT", usage))?;
    Ok(Command::Learn(learn::Options { inputs, output }))
}

fn parse_pcap(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = PCAP_USAGE;
    let mut output = None;
    let mut port = crate::pcap::write::DEFAULT_PORT;
    let parsed = parse_command(parser, usage, &["TAPE"], |p, name| {
        match name {
            "-o" | "--output" => {
                output = Some(PathBuf::from(p.value().map_err(lexopt_error(usage))?))
            }
            "--port" => {
                let value = text(p, usage)?;
                port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        Usage::new(
                            format!("--port: '{value}' is not a port number (1-65535)"),
                            usage,
                        )
                    })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(PCAP_HELP));
    };
    let output = output.ok_or_else(|| Usage::new("missing option -o OUT.pcap", usage))?;
    Ok(Command::Pcap(pcap::Export {
        input: PathBuf::from(next(&mut values.into_iter())),
        output,
        port,
    }))
}

fn parse_import(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = IMPORT_USAGE;
    let mut output = None;
    let mut filter = None;
    let mut allow_gaps = false;
    let parsed = parse_command(parser, usage, &["CAPTURE"], |p, name| {
        match name {
            "-o" | "--output" => {
                output = Some(PathBuf::from(p.value().map_err(lexopt_error(usage))?))
            }
            "--filter" => {
                let value = text(p, usage)?;
                if value.starts_with("unix:") {
                    return Err(Usage::new(
                        format!("--filter: '{value}' is not HOST:PORT"),
                        usage,
                    ));
                }
                Endpoint::parse(&value)
                    .map_err(|reason| Usage::new(format!("--filter: {reason}"), usage))?;
                filter = Some(value);
            }
            "--allow-gaps" => allow_gaps = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(IMPORT_HELP));
    };
    let output = output.ok_or_else(|| Usage::new("missing option -o TAPE|DIR/", usage))?;
    Ok(Command::Import(pcap::Import {
        capture: PathBuf::from(next(&mut values.into_iter())),
        output,
        filter,
        allow_gaps,
    }))
}

/// Takes the next positional; `parse_command` checked the count.
pub(super) fn next(values: &mut impl Iterator<Item = OsString>) -> OsString {
    values.next().unwrap_or_default()
}

/// The value of the option just parsed, as text.
pub(super) fn text(parser: &mut lexopt::Parser, usage: &'static str) -> Result<String, Usage> {
    let value = parser.value().map_err(lexopt_error(usage))?;
    value
        .into_string()
        .map_err(|v| Usage::new(format!("'{}' is not UTF-8", v.to_string_lossy()), usage))
}

/// Sizes as `65536`, `64K`, `64KiB`, `1M`, `1MiB` (binary units).
pub(super) fn parse_size(name: &str, value: &str, usage: &'static str) -> Result<usize, Usage> {
    let lower = value.to_ascii_lowercase();
    let (digits, unit) = match lower.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let multiplier = match unit {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1024,
        "m" | "mib" | "mb" => 1024 * 1024,
        _ => 0,
    };
    let size = digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| (crate::proxy::MIN_BUFFER..=crate::proxy::MAX_BUFFER).contains(n));
    size.ok_or_else(|| {
        Usage::new(
            format!("{name}: '{value}' is not a size between 1K and 1024M"),
            usage,
        )
    })
}

/// The value of a path option.
pub(super) fn path(parser: &mut lexopt::Parser, usage: &'static str) -> Result<PathBuf, Usage> {
    parser
        .value()
        .map(PathBuf::from)
        .map_err(lexopt_error(usage))
}

/// A plain decimal number: digits with at most one point (`30`, `0.5`),
/// nothing else (no sign, exponent, `inf` or `nan`); more than 38 digits
/// is no number an option takes. Read by hand: std's float parser would
/// add its tables to the binary for this one use.
pub(super) fn decimal(value: &str) -> Option<f64> {
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = whole.len() + fraction.len();
    let plain = (1..=38).contains(&digits)
        && whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    let number = whole
        .bytes()
        .chain(fraction.bytes())
        .fold(0u128, |n, b| n * 10 + u128::from(b - b'0'));
    Some(number as f64 / 10f64.powi(fraction.len() as i32))
}

/// Seconds, fractions allowed: `30`, `0.5`; at most about 30 years.
pub(super) fn parse_seconds(
    name: &str,
    value: &str,
    usage: &'static str,
) -> Result<Duration, Usage> {
    decimal(value)
        .filter(|s| *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Usage::new(
                format!("{name}: '{value}' is not a positive number of seconds"),
                usage,
            )
        })
}

/// Seconds where 0 means something: `None` (forever) when `zero_forever`,
/// else no time at all.
pub(super) fn parse_duration(
    name: &str,
    value: &str,
    usage: &'static str,
    zero_forever: bool,
) -> Result<Option<Duration>, Usage> {
    if decimal(value) == Some(0.0) {
        return Ok((!zero_forever).then_some(Duration::ZERO));
    }
    parse_seconds(name, value, usage).map(Some)
}
