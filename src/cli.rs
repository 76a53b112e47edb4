//! The command line: lexopt parsing into the engine's own option types, one
//! function and one help text per command. Nothing here touches the network
//! or the file system.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;

use crate::engine::addr::Endpoint;
use crate::error::Error;
use crate::job::Spec;
use crate::proxy::{self, NUMBER};
use crate::replay::{ClientOptions, ReplayOptions, ServerOptions};

pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

const MAIN_USAGE: &str = "usage: tcptape <proxy|server|client|auto|describe|print|build|learn|repair|pcap|import> [OPTIONS] [ARGS]";
pub(crate) const PROXY_USAGE: &str = "usage: tcptape proxy [OPTIONS] LISTEN CONNECT FILE";
const SERVER_USAGE: &str = "usage: tcptape server [OPTIONS] LISTEN FILE";
const CLIENT_USAGE: &str = "usage: tcptape client [OPTIONS] CONNECT FILE";
const DESCRIBE_USAGE: &str = "usage: tcptape describe [-v] FILE";
const AUTO_USAGE: &str = "usage: tcptape auto [OPTIONS] LISTEN CONNECT PATH";
const PRINT_USAGE: &str = "usage: tcptape print FILE [-o OUT]";
const BUILD_USAGE: &str = "usage: tcptape build TEXT -o FILE";
const LEARN_USAGE: &str = "usage: tcptape learn A B [C ...] -o OUT";
const REPAIR_USAGE: &str = "usage: tcptape repair FILE|DIR/";
const PCAP_USAGE: &str = "usage: tcptape pcap TAPE|DIR/ -o OUT.pcap [--port N]";
const IMPORT_USAGE: &str =
    "usage: tcptape import CAPTURE -o TAPE|DIR/ [--filter HOST:PORT] [--allow-gaps]";

const MAIN_HELP: &str = "\
tcptape: record TCP sessions into tapes, replay either side byte for byte

usage: tcptape <COMMAND> [OPTIONS] [ARGS]

commands:
  proxy     record sessions between clients and a server into tapes
  server    play the recorded server to clients, checking what they send
  client    play the recorded client against a server, checking its answers
  auto      replay PATH if it exists, else record it (TCPTAPE_MODE overrides)
  describe  list the frames of a tape
  print     write a tape as text, for review and editing
  build     turn a text tape back into a binary tape
  learn     mark what differs between recordings of one scenario as spans
  repair    keep the complete frames of a tape whose recording was interrupted
  pcap      export tapes as a pcap capture, for Wireshark and tshark
  import    turn the TCP connections of a pcap or pcapng capture into tapes

options:
  -h, --help     print help (also after a command: tcptape proxy --help)
  -V, --version  print the version

exit codes: 0 success, 1 error, 2 usage error, 3 replay mismatch
logging: RUST_LOG=debug|info|warn|error (default info), on stderr
proxy, server and auto print one line `listening on ADDR` on stdout once
listening; SIGINT/SIGTERM stop them cleanly (a second signal at once).
";

const PROXY_HELP: &str = "\
Record sessions between clients and a server into tapes.

usage: tcptape proxy [OPTIONS] LISTEN CONNECT FILE

Accepts clients on LISTEN, connects each to CONNECT, forwards both directions
and records every byte, pause and half-close. With a plain FILE one session is
recorded, then the proxy exits. With {n} in FILE it keeps serving: the k-th
session is recorded to FILE with {n} replaced by k. With a folder (DIR/) it
records a cassette: DIR/0001.tape, DIR/0002.tape... and DIR/index.

arguments:
  LISTEN    address to accept clients on: IP:PORT, [IPv6]:PORT, HOST:PORT
            (port 0 picks a free port) or unix:PATH
  CONNECT   address of the real server, in the same forms
  FILE      tape to write; may contain {n} in its name; or a cassette DIR/

options:
  --buffer SIZE         largest ring buffer per direction and session (default
                        2M; rings start at 16K and double while a transfer
                        fills them; suffixes K and M; 1K to 1024M)
  --max-sessions N      with {n} or DIR/: stop after N sessions
  --idle-timeout SECS   end a session after SECS without traffic (default:
                        never)
  --grace SECS          after SIGINT/SIGTERM, let sessions finish for SECS
                        (default 5), then cut the rest
  --backlog N           listen queue length (default 4096)
  --address-file PATH   once listening, write the address to PATH
  --report FILE         when done, write a JSON report to FILE
  -h, --help            print this help
";

const SERVER_HELP: &str = "\
Play the recorded server to every client that connects, checking every byte
the client sends against the tape. FILE may be a cassette folder (DIR/):
each connection is served by an unused tape that matches it. FILE may be a
binary or a text tape. LISTEN is IP:PORT, [IPv6]:PORT, HOST:PORT or
unix:PATH.

usage: tcptape server [OPTIONS] LISTEN FILE

options:
  -n, --no-assert       count the client's bytes, don't compare them
  -d, --delay           replay the recorded delays before the server's sends
      --speed F         scale delays by 1/F (implies --delay)
  -a, --abort           exit 3 at the first mismatch
      --once            serve one connection (a cassette: each tape once),
                        then exit with the verdict
      --reuse           cassette: serve its tapes again once all were used
      --allow-unused    pass even if a tape was never played (by default a
                        tape, or a cassette's tape, never played fails the
                        run as a mismatch)
      --timeout SECS    fail a session that waits longer than SECS for its
                        peer, and --once when no client comes for SECS
                        (default 30; 0 waits forever)
      --text-diff       add a line diff to mismatch reports when both are text
      --grace SECS      after SIGINT/SIGTERM, let sessions finish for SECS
                        (default 5)
      --backlog N       listen queue length (default 4096)
      --address-file PATH  once listening, write the address to PATH
      --report FILE     when done, write a JSON report to FILE
  -h, --help            print this help
";

const CLIENT_HELP: &str = "\
Play the recorded client against a real server, checking every byte the
server sends against the tape (binary or text). CONNECT is IP:PORT,
[IPv6]:PORT, HOST:PORT or unix:PATH.

usage: tcptape client [OPTIONS] CONNECT FILE

options:
  -n, --no-assert     count the server's bytes, don't compare them
  -d, --delay         replay the recorded delays before the client's sends
      --speed F       scale delays by 1/F (implies --delay)
      --timeout SECS  fail if the server keeps us waiting longer than SECS
                      (default 30; 0 waits forever)
      --text-diff     add a line diff to mismatch reports when both are text
      --report FILE   when done, write a JSON report to FILE
  -h, --help          print this help
";

const AUTO_HELP: &str = "\
Replay PATH as `server` if it exists, otherwise record it through the proxy
to CONNECT: the everyday test loop in one command. PATH is a tape or a
cassette folder (a path ending in /).

usage: tcptape auto [OPTIONS] LISTEN CONNECT PATH

TCPTAPE_MODE forces a mode: `record` always records (an existing tape is
overwritten, an existing cassette's tapes are replaced), `replay` always
replays (a missing PATH is an error: CI can forbid recording), `auto` (the
default) decides by whether PATH exists. With TCPTAPE_MODE unset and CI=true
(as CI services set it), auto never records.

A FILE is one session in either mode. A cassette is recorded until stopped
(or --max-sessions, or with --once until a session was recorded and none is
open), and replayed until stopped (with --once: until every tape played).

options: those of `server` when replaying, those of `proxy` when recording
  -n, -d, --speed F, -a, --once, --reuse, --allow-unused, --timeout SECS,
  --text-diff
  --buffer SIZE, --max-sessions N, --idle-timeout SECS
  --grace SECS, --backlog N, --address-file PATH, --report FILE
  -h, --help   print this help
";

const PRINT_HELP: &str = "\
Write a tape as text: one frame per line, data as escaped strings or hex.
`tcptape build` turns the text back into the same binary tape, byte for byte.
server, client and describe read text tapes too.

usage: tcptape print FILE [-o OUT]

options:
  -o, --output OUT  write to OUT instead of stdout
  -h, --help        print this help
";

const BUILD_HELP: &str = "\
Turn a text tape (see `tcptape print`) into a binary tape.

usage: tcptape build TEXT -o FILE

options:
  -o, --output FILE  the binary tape to write (required)
  -h, --help         print this help
";

const LEARN_HELP: &str = "\
Learn from two or more recordings of one scenario (tapes, or cassettes
recorded the same way) what changes from run to run: writes the first
recording as a text tape in which the bytes that differ between the
recordings are spans ([vary ...], with a length range where the lengths
differ), and a value one side sends that the other sends back later is a
capture and its echoes. Each span has a comment saying why it is there.
From cassettes, OUT is a cassette folder of text tapes named as the first
cassette's, with its index. See docs/learn.md.

usage: tcptape learn A B [C ...] -o OUT

options:
  -o, --output OUT  the text tape, or cassette folder, to write (required)
  -h, --help        print this help
";

const REPAIR_HELP: &str = "\
Keep the complete frames of a tape whose recording was interrupted (kill -9,
power loss, a full disk): a last frame cut short is removed and the tape is
marked as cut, so describe, print and replay take it. A cassette (DIR/):
every tape, and the index gets a line for each tape it lacks.

usage: tcptape repair FILE|DIR/

options:
  -h, --help   print this help
";

const DESCRIBE_HELP: &str = "\
List the frames of a tape (binary or text), or one line per tape of a
cassette folder (DIR/).

usage: tcptape describe [-v] FILE

options:
  -v, --verbose  show each data frame's payload as a hexdump
  -h, --help     print this help
";

const PCAP_HELP: &str = "\
Export a tape, or a cassette (DIR/), as a pcap capture that Wireshark and
tshark read: each tape becomes one TCP connection over IPv4 from 10.0.0.1
(port 40000 + n for the n-th tape) to 10.0.0.2, with handshake, segments,
acknowledgements and a FIN per half-close, timed by the tape's delays.
Wildcard bytes are written as zeros.

usage: tcptape pcap TAPE|DIR/ -o OUT.pcap [--port N]

options:
  -o, --output OUT  the capture to write (required)
      --port N      the server's port (default 7777): pick the protocol's
                    port so Wireshark dissects it (80 HTTP, 5432 PostgreSQL)
  -h, --help        print this help
";

const IMPORT_HELP: &str = "\
Turn the TCP connections of a capture (pcap or pcapng) into tapes: one tape
per connection, both directions in the order the bytes were sent, delays
from packet times, EOFs from FINs. Several connections make a cassette:
-o DIR/ writes DIR/0001.tape... in connection order, and DIR/index.

usage: tcptape import CAPTURE -o TAPE|DIR/ [--filter HOST:PORT] [--allow-gaps]

options:
  -o, --output OUT      the tape, or the cassette folder DIR/, to write
                        (required); an existing cassette is replaced
      --filter HOST:PORT  only connections to this server
      --allow-gaps      import connections with packets missing from the
                        capture; the missing bytes become wildcards
  -h, --help            print this help
";

#[derive(Debug, Clone)]
pub(crate) enum Command {
    /// A command that runs a service: proxy, server, client.
    Run(Spec, Outputs),
    Auto(AutoArgs),
    Describe(DescribeArgs),
    Print(PrintArgs),
    Build(BuildArgs),
    Learn(LearnArgs),
    Repair(PathBuf),
    Pcap(PcapArgs),
    Import(ImportArgs),
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

/// `auto`: the same LISTEN and PATH, replayed as `server` or recorded as
/// `proxy`, whichever applies.
#[derive(Debug, Clone)]
pub(crate) struct AutoArgs {
    pub server: ServerOptions,
    pub proxy: proxy::Options,
    pub outputs: Outputs,
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

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LearnArgs {
    /// Two or more tapes, or two or more cassettes; the first is written.
    pub inputs: Vec<PathBuf>,
    pub output: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PcapArgs {
    /// A tape or a cassette folder.
    pub input: PathBuf,
    pub output: PathBuf,
    /// The synthetic server's port.
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImportArgs {
    pub capture: PathBuf,
    /// A tape, or a cassette folder.
    pub output: PathBuf,
    /// HOST:PORT of the server whose connections are kept.
    pub filter: Option<String>,
    pub allow_gaps: bool,
}

/// The largest ring per direction: rings start small and double while a
/// transfer fills them; 2 MiB reads and writes measured fastest here (4 MiB
/// fell out of the cache and got erratic: docs/performance.md).
pub(crate) const DEFAULT_BUFFER: usize = 2 * 1024 * 1024;
const MIN_BUFFER: usize = 1024;
const MAX_BUFFER: usize = 1024 * 1024 * 1024;
/// How long sessions may finish after a stop, unless told otherwise.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// The listen queue: room for a burst of a thousand clients and more
/// (the kernel caps it at `net.core.somaxconn`).
pub(crate) const DEFAULT_BACKLOG: u32 = 4096;

/// Parses the arguments after the program name.
pub(crate) fn parse<I>(args: I) -> Result<Command, Error>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut parser = lexopt::Parser::from_args(args);
    let usage_err = |e: lexopt::Error| Error::usage(e.to_string(), MAIN_USAGE);
    match parser.next().map_err(usage_err)? {
        None => Err(Error::usage("missing command", MAIN_USAGE)),
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
            Some("pcap") => parse_pcap(&mut parser),
            Some("import") => parse_import(&mut parser),
            _ => Err(Error::usage(
                format!("unknown command '{}'", name.to_string_lossy()),
                MAIN_USAGE,
            )),
        },
        Some(arg) => Err(usage_err(arg.unexpected())),
    }
}

fn lexopt_error(usage: &'static str) -> impl Fn(lexopt::Error) -> Error {
    move |err| Error::usage(err.to_string(), usage)
}

fn endpoint(name: &str, value: OsString, usage: &'static str) -> Result<Endpoint, Error> {
    let text = value.into_string().map_err(|v| {
        Error::usage(
            format!("{name}: '{}' is not UTF-8", v.to_string_lossy()),
            usage,
        )
    })?;
    Endpoint::parse(&text).map_err(|reason| Error::usage(format!("{name}: {reason}"), usage))
}

/// Options of `proxy`, also taken by `auto`.
struct ProxyFlags {
    buffer: usize,
    max_sessions: Option<u64>,
    idle_timeout: Option<Duration>,
}

impl ProxyFlags {
    fn new() -> ProxyFlags {
        ProxyFlags {
            buffer: DEFAULT_BUFFER,
            max_sessions: None,
            idle_timeout: None,
        }
    }

    /// Parses one of the proxy's options; false when `name` is not one.
    fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
    ) -> Result<bool, Error> {
        match name {
            "--buffer" => self.buffer = parse_size("--buffer", &text(parser, usage)?, usage)?,
            "--max-sessions" => {
                let value = text(parser, usage)?;
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0 && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        Error::usage(
                            format!("--max-sessions: '{value}' is not a positive whole number"),
                            usage,
                        )
                    })?;
                self.max_sessions = Some(n);
            }
            "--idle-timeout" => {
                let value = text(parser, usage)?;
                self.idle_timeout = Some(parse_seconds("--idle-timeout", &value, usage)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn into_options(
        self,
        listen: Endpoint,
        connect: Endpoint,
        tape: PathBuf,
        common: &CommonFlags,
        usage: &'static str,
    ) -> Result<proxy::Options, Error> {
        let text = tape.to_string_lossy();
        let is_folder = text.ends_with('/');
        let numbered = text.contains(NUMBER);
        if numbered && is_folder {
            return Err(Error::usage(
                "FILE: a cassette folder (DIR/) takes no {n}: its tapes are numbered already",
                usage,
            ));
        }
        let in_folder_name = tape
            .parent()
            .is_some_and(|parent| parent.to_string_lossy().contains(NUMBER));
        if in_folder_name {
            return Err(Error::usage(
                "FILE: {n} may only stand in the file name, not in a folder name",
                usage,
            ));
        }
        if self.max_sessions.is_some() && !numbered && !is_folder && !tape.is_dir() {
            return Err(Error::usage(
                "--max-sessions needs a FILE with {n} or a cassette folder: a plain FILE records one session",
                usage,
            ));
        }
        Ok(proxy::Options {
            listen,
            connect,
            tape,
            buffer: self.buffer,
            max_sessions: self.max_sessions,
            idle_timeout: self.idle_timeout,
            grace: common.grace,
            backlog: common.backlog,
            until_idle: false,
        })
    }
}

/// Options of every command that runs: the stop's grace period, the listen
/// backlog, and the files written beside the tapes.
struct CommonFlags {
    grace: Duration,
    backlog: u32,
    outputs: Outputs,
}

impl CommonFlags {
    fn new() -> CommonFlags {
        CommonFlags {
            grace: DEFAULT_GRACE,
            backlog: DEFAULT_BACKLOG,
            outputs: Outputs::default(),
        }
    }

    /// Parses one of these options; false when `name` is not one.
    /// `listens` says whether the command takes the listening ones.
    fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
        listens: bool,
    ) -> Result<bool, Error> {
        match name {
            "--report" => self.outputs.report = Some(path(parser, usage)?),
            "--grace" if listens => {
                let value = text(parser, usage)?;
                self.grace = parse_duration("--grace", &value, usage, false)?.unwrap_or_default();
            }
            "--backlog" if listens => {
                let value = text(parser, usage)?;
                self.backlog = value
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n > 0 && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        Error::usage(
                            format!("--backlog: '{value}' is not a positive whole number"),
                            usage,
                        )
                    })?;
            }
            "--address-file" if listens => self.outputs.address_file = Some(path(parser, usage)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// Options of `server`, also taken by `auto`.
struct ServerFlags {
    replay: ReplayOptions,
    abort: bool,
    once: bool,
    reuse: bool,
    allow_unused: bool,
}

impl ServerFlags {
    fn new() -> ServerFlags {
        ServerFlags {
            replay: ReplayOptions {
                print_reports: true,
                ..ReplayOptions::default()
            },
            abort: false,
            once: false,
            reuse: false,
            allow_unused: false,
        }
    }

    /// Parses one of the server's options; false when `name` is not one.
    fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
    ) -> Result<bool, Error> {
        match name {
            "-a" | "--abort" => self.abort = true,
            "--once" => self.once = true,
            "--reuse" => self.reuse = true,
            "--allow-unused" => self.allow_unused = true,
            _ => return replay_option(parser, name, &mut self.replay, usage),
        }
        Ok(true)
    }

    fn into_options(self, listen: Endpoint, tape: PathBuf, common: &CommonFlags) -> ServerOptions {
        ServerOptions {
            listen,
            tape,
            replay: self.replay,
            abort: self.abort,
            once: self.once,
            reuse: self.reuse,
            allow_unused: self.allow_unused,
            grace: common.grace,
            backlog: common.backlog,
        }
    }
}

/// Parses one command's arguments: `-h`/`--help` (then `None`), the
/// positionals, exactly one per name in `names` and handed back in order,
/// and options, each offered to `option`, which says whether it knew it.
fn parse_command<F>(
    parser: &mut lexopt::Parser,
    usage: &'static str,
    names: &[&str],
    mut option: F,
) -> Result<Option<Vec<OsString>>, Error>
where
    F: FnMut(&mut lexopt::Parser, &str) -> Result<bool, Error>,
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
                    return Err(Error::usage(format!("invalid option '{name}'"), usage));
                }
            }
        }
    }
    if let Some(extra) = values.get(names.len()) {
        let extra = extra.to_string_lossy();
        return Err(Error::usage(
            format!("unexpected argument '{extra}'"),
            usage,
        ));
    }
    if let Some(missing) = names.get(values.len()) {
        return Err(Error::usage(format!("missing argument {missing}"), usage));
    }
    Ok(Some(values))
}

fn parse_proxy(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    let usage = PROXY_USAGE;
    let mut flags = ProxyFlags::new();
    let mut common = CommonFlags::new();
    let names = ["LISTEN", "CONNECT", "FILE"];
    let parsed = parse_command(parser, usage, &names, |p, name| {
        Ok(flags.parse(p, name, usage)? || common.parse(p, name, usage, true)?)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(PROXY_HELP));
    };
    let mut values = values.into_iter();
    let (listen, connect, tape) = (next(&mut values), next(&mut values), next(&mut values));
    let options = flags.into_options(
        endpoint("LISTEN", listen, usage)?,
        endpoint("CONNECT", connect, usage)?,
        PathBuf::from(tape),
        &common,
        usage,
    )?;
    Ok(Command::Run(Spec::Proxy(options), common.outputs))
}

fn parse_server(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    let usage = SERVER_USAGE;
    let mut flags = ServerFlags::new();
    let mut common = CommonFlags::new();
    let names = ["LISTEN", "FILE"];
    let parsed = parse_command(parser, usage, &names, |p, name| {
        Ok(flags.parse(p, name, usage)? || common.parse(p, name, usage, true)?)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(SERVER_HELP));
    };
    let mut values = values.into_iter();
    let (listen, tape) = (next(&mut values), next(&mut values));
    let options = flags.into_options(
        endpoint("LISTEN", listen, usage)?,
        PathBuf::from(tape),
        &common,
    );
    Ok(Command::Run(Spec::Server(options), common.outputs))
}

fn parse_auto(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    let usage = AUTO_USAGE;
    let mut server = ServerFlags::new();
    let mut proxy = ProxyFlags::new();
    let mut common = CommonFlags::new();
    let names = ["LISTEN", "CONNECT", "PATH"];
    let parsed = parse_command(parser, usage, &names, |p, name| {
        Ok(server.parse(p, name, usage)?
            || proxy.parse(p, name, usage)?
            || common.parse(p, name, usage, true)?)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(AUTO_HELP));
    };
    let mut values = values.into_iter();
    let (listen, connect, path) = (next(&mut values), next(&mut values), next(&mut values));
    let listen = endpoint("LISTEN", listen, usage)?;
    let connect = endpoint("CONNECT", connect, usage)?;
    let path = PathBuf::from(path);
    if path.to_string_lossy().contains(NUMBER) {
        return Err(Error::usage(
            "PATH: auto takes a tape or a cassette folder, not a {n} pattern",
            usage,
        ));
    }
    let once = server.once;
    let mut proxy = proxy.into_options(listen.clone(), connect, path.clone(), &common, usage)?;
    proxy.until_idle = once;
    Ok(Command::Auto(AutoArgs {
        server: server.into_options(listen, path, &common),
        proxy,
        outputs: common.outputs,
    }))
}

/// The option's name as written (`-n`, `--speed`): an owned copy, so the
/// parser's borrow of the argument ends before the option's value is read.
fn option_name(arg: &lexopt::Arg<'_>) -> String {
    match arg {
        Short(c) => format!("-{c}"),
        Long(name) => format!("--{name}"),
        Value(value) => value.to_string_lossy().into_owned(),
    }
}

/// Parses an option shared by both replay roles; false when `name` is not one.
fn replay_option(
    parser: &mut lexopt::Parser,
    name: &str,
    options: &mut ReplayOptions,
    usage: &'static str,
) -> Result<bool, Error> {
    match name {
        "-n" | "--no-assert" => options.no_assert = true,
        "-d" | "--delay" => {
            options.speed.get_or_insert(1.0);
        }
        "--speed" => {
            let value = text(parser, usage)?;
            let speed = decimal(&value)
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    Error::usage(
                        format!("--speed: '{value}' is not a positive number"),
                        usage,
                    )
                })?;
            options.speed = Some(speed);
        }
        "--timeout" => {
            options.timeout = parse_duration("--timeout", &text(parser, usage)?, usage, true)?
        }
        "--text-diff" => options.text_diff = true,
        _ => return Ok(false),
    }
    Ok(true)
}

fn parse_client(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    let usage = CLIENT_USAGE;
    let mut replay = ReplayOptions {
        print_reports: true,
        ..ReplayOptions::default()
    };
    let mut common = CommonFlags::new();
    let names = ["CONNECT", "FILE"];
    let parsed = parse_command(parser, usage, &names, |p, name| {
        Ok(replay_option(p, name, &mut replay, usage)? || common.parse(p, name, usage, false)?)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(CLIENT_HELP));
    };
    let mut values = values.into_iter();
    let (connect, tape) = (next(&mut values), next(&mut values));
    let options = ClientOptions {
        connect: endpoint("CONNECT", connect, usage)?,
        tape: PathBuf::from(tape),
        replay,
    };
    Ok(Command::Run(Spec::Client(options), common.outputs))
}

fn parse_describe(parser: &mut lexopt::Parser) -> Result<Command, Error> {
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
) -> Result<Option<(PathBuf, Option<PathBuf>)>, Error> {
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

fn parse_print(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    Ok(match parse_input_output(parser, PRINT_USAGE, "FILE")? {
        Some((tape, output)) => Command::Print(PrintArgs { tape, output }),
        None => Command::Help(PRINT_HELP),
    })
}

fn parse_repair(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    let parsed = parse_command(parser, REPAIR_USAGE, &["FILE"], |_, _| Ok(false))?;
    Ok(match parsed {
        Some(values) => Command::Repair(PathBuf::from(next(&mut values.into_iter()))),
        None => Command::Help(REPAIR_HELP),
    })
}

fn parse_build(parser: &mut lexopt::Parser) -> Result<Command, Error> {
    match parse_input_output(parser, BUILD_USAGE, "TEXT")? {
        Some((text, Some(output))) => Ok(Command::Build(BuildArgs { text, output })),
        Some((_, None)) => Err(Error::usage("missing option -o FILE", BUILD_USAGE)),
        None => Ok(Command::Help(BUILD_HELP)),
    }
}

fn parse_learn(parser: &mut lexopt::Parser) -> Result<Command, Error> {
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
                return Err(Error::usage(format!("invalid option '{name}'"), usage));
            }
        }
    }
    if inputs.len() < 2 {
        return Err(Error::usage(
            format!(
                "learn needs two or more recordings of one scenario, {} given",
                inputs.len()
            ),
            usage,
        ));
    }
    let output = output.ok_or_else(|| Error::usage("missing option -o OUT", usage))?;
    Ok(Command::Learn(LearnArgs { inputs, output }))
}

fn parse_pcap(parser: &mut lexopt::Parser) -> Result<Command, Error> {
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
                        Error::usage(
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
    let output = output.ok_or_else(|| Error::usage("missing option -o OUT.pcap", usage))?;
    Ok(Command::Pcap(PcapArgs {
        input: PathBuf::from(next(&mut values.into_iter())),
        output,
        port,
    }))
}

fn parse_import(parser: &mut lexopt::Parser) -> Result<Command, Error> {
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
                    return Err(Error::usage(
                        format!("--filter: '{value}' is not HOST:PORT"),
                        usage,
                    ));
                }
                Endpoint::parse(&value)
                    .map_err(|reason| Error::usage(format!("--filter: {reason}"), usage))?;
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
    let output = output.ok_or_else(|| Error::usage("missing option -o TAPE|DIR/", usage))?;
    Ok(Command::Import(ImportArgs {
        capture: PathBuf::from(next(&mut values.into_iter())),
        output,
        filter,
        allow_gaps,
    }))
}

/// Takes the next positional; `parse_command` checked the count.
fn next(values: &mut impl Iterator<Item = OsString>) -> OsString {
    values.next().unwrap_or_default()
}

/// The value of the option just parsed, as text.
fn text(parser: &mut lexopt::Parser, usage: &'static str) -> Result<String, Error> {
    let value = parser.value().map_err(lexopt_error(usage))?;
    value
        .into_string()
        .map_err(|v| Error::usage(format!("'{}' is not UTF-8", v.to_string_lossy()), usage))
}

/// Sizes as `65536`, `64K`, `64KiB`, `1M`, `1MiB` (binary units).
fn parse_size(name: &str, value: &str, usage: &'static str) -> Result<usize, Error> {
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
        .filter(|n| (MIN_BUFFER..=MAX_BUFFER).contains(n));
    size.ok_or_else(|| {
        Error::usage(
            format!("{name}: '{value}' is not a size between 1K and 1024M"),
            usage,
        )
    })
}

/// The value of a path option.
fn path(parser: &mut lexopt::Parser, usage: &'static str) -> Result<PathBuf, Error> {
    parser
        .value()
        .map(PathBuf::from)
        .map_err(lexopt_error(usage))
}

/// A plain decimal number: digits with at most one point (`30`, `0.5`),
/// nothing else (no sign, exponent, `inf` or `nan`); more than 38 digits
/// is no number an option takes. Read by hand: std's float parser would
/// add its tables to the binary for this one use.
fn decimal(value: &str) -> Option<f64> {
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
fn parse_seconds(name: &str, value: &str, usage: &'static str) -> Result<Duration, Error> {
    decimal(value)
        .filter(|s| *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            Error::usage(
                format!("{name}: '{value}' is not a positive number of seconds"),
                usage,
            )
        })
}

/// Seconds where 0 means something: `None` (forever) when `zero_forever`,
/// else no time at all.
fn parse_duration(
    name: &str,
    value: &str,
    usage: &'static str,
    zero_forever: bool,
) -> Result<Option<Duration>, Error> {
    if decimal(value) == Some(0.0) {
        return Ok((!zero_forever).then_some(Duration::ZERO));
    }
    parse_seconds(name, value, usage).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EXIT_USAGE;
    use crate::replay::DEFAULT_TIMEOUT;

    fn parse_ok(args: &[&str]) -> Command {
        parse(args.iter().copied()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn parse_err(args: &[&str]) -> String {
        let err = parse(args.iter().copied()).expect_err("should fail");
        assert_eq!(err.exit_code(), EXIT_USAGE);
        err.to_string()
    }

    fn proxy(args: &[&str]) -> (proxy::Options, Outputs) {
        match parse_ok(args) {
            Command::Run(Spec::Proxy(options), outputs) => (options, outputs),
            other => panic!("not proxy: {other:?}"),
        }
    }

    fn server(args: &[&str]) -> (ServerOptions, Outputs) {
        match parse_ok(args) {
            Command::Run(Spec::Server(options), outputs) => (options, outputs),
            other => panic!("not server: {other:?}"),
        }
    }

    fn client(args: &[&str]) -> ClientOptions {
        match parse_ok(args) {
            Command::Run(Spec::Client(options), _) => options,
            other => panic!("not client: {other:?}"),
        }
    }

    #[test]
    fn proxy_with_options_after_positionals() {
        let (options, outputs) = proxy(&[
            "proxy",
            "127.0.0.1:0",
            "localhost:5432",
            "s{n}.tape",
            "--buffer",
            "64K",
            "--max-sessions=3",
            "--idle-timeout",
            "1.5",
            "--grace",
            "0",
            "--backlog",
            "100",
            "--address-file",
            "addr",
            "--report",
            "r.json",
        ]);
        assert_eq!(options.listen.to_string(), "127.0.0.1:0");
        assert_eq!(options.connect.to_string(), "localhost:5432");
        assert_eq!(options.tape, PathBuf::from("s{n}.tape"));
        assert_eq!(options.buffer, 64 * 1024);
        assert_eq!(options.max_sessions, Some(3));
        assert_eq!(options.idle_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(options.grace, Duration::ZERO);
        assert_eq!(options.backlog, 100);
        assert_eq!(outputs.address_file, Some(PathBuf::from("addr")));
        assert_eq!(outputs.report, Some(PathBuf::from("r.json")));
    }

    #[test]
    fn proxy_defaults() {
        let (options, outputs) = proxy(&["proxy", "[::1]:1", "[::1]:2", "t.tape"]);
        assert_eq!(options.buffer, DEFAULT_BUFFER);
        assert_eq!(options.max_sessions, None);
        assert_eq!(options.idle_timeout, None);
        assert_eq!(options.grace, DEFAULT_GRACE);
        assert_eq!(options.backlog, DEFAULT_BACKLOG);
        assert_eq!(outputs, Outputs::default());
    }

    #[test]
    fn server_flags_before_positionals() {
        let (options, _) = server(&[
            "server",
            "-n",
            "-a",
            "--once",
            "--text-diff",
            "--timeout",
            "2",
            "127.0.0.1:0",
            "t.tape",
        ]);
        assert!(options.replay.no_assert && options.abort && options.once);
        assert!(options.replay.text_diff);
        assert_eq!(options.replay.speed, None);
        assert_eq!(options.replay.timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn timeout_defaults_and_zero_waits_forever() {
        let (options, _) = server(&["server", "127.0.0.1:0", "t.tape"]);
        assert_eq!(options.replay.timeout, Some(DEFAULT_TIMEOUT));
        let options = client(&["client", "--timeout", "0", "h:1", "t"]);
        assert_eq!(options.replay.timeout, None);
    }

    #[test]
    fn delay_and_speed() {
        assert_eq!(
            client(&["client", "-d", "h:1", "t"]).replay.speed,
            Some(1.0)
        );
        let options = client(&["client", "--speed", "4", "h:1", "t"]);
        assert_eq!(options.replay.speed, Some(4.0));
        let options = client(&["client", "--speed", "4", "-d", "h:1", "t"]);
        assert_eq!(
            options.replay.speed,
            Some(4.0),
            "-d keeps an explicit speed"
        );
    }

    #[test]
    fn describe_verbose() {
        let Command::Describe(args) = parse_ok(&["describe", "x.tape", "-v"]) else {
            panic!("not describe")
        };
        assert_eq!(
            args,
            DescribeArgs {
                tape: "x.tape".into(),
                verbose: true
            }
        );
    }

    #[test]
    fn print_build_and_repair() {
        let Command::Print(args) = parse_ok(&["print", "t.tape"]) else {
            panic!("not print")
        };
        assert_eq!(
            args,
            PrintArgs {
                tape: "t.tape".into(),
                output: None
            }
        );
        let Command::Build(args) = parse_ok(&["build", "-o", "t.tape", "t.txt"]) else {
            panic!("not build")
        };
        assert_eq!(
            args,
            BuildArgs {
                text: "t.txt".into(),
                output: "t.tape".into()
            }
        );
        let Command::Repair(path) = parse_ok(&["repair", "t.tape"]) else {
            panic!("not repair")
        };
        assert_eq!(path, PathBuf::from("t.tape"));
        assert_eq!(parse_err(&["build", "t.txt"]), "missing option -o FILE");
        assert_eq!(parse_err(&["print"]), "missing argument FILE");
        assert!(matches!(
            parse_ok(&["build", "-h"]),
            Command::Help(BUILD_HELP)
        ));
        assert!(matches!(
            parse_ok(&["repair", "-h"]),
            Command::Help(REPAIR_HELP)
        ));
    }

    #[test]
    fn help_and_version_short_circuit() {
        assert!(matches!(parse_ok(&["--help"]), Command::Help(MAIN_HELP)));
        assert!(matches!(parse_ok(&["-V"]), Command::Version));
        assert!(matches!(
            parse_ok(&["proxy", "bad", "-h"]),
            Command::Help(PROXY_HELP)
        ));
        assert!(matches!(
            parse_ok(&["server", "--help"]),
            Command::Help(SERVER_HELP)
        ));
        assert!(matches!(
            parse_ok(&["client", "-h"]),
            Command::Help(CLIENT_HELP)
        ));
        assert!(matches!(
            parse_ok(&["describe", "-h"]),
            Command::Help(DESCRIBE_HELP)
        ));
        assert!(matches!(
            parse_ok(&["auto", "-h"]),
            Command::Help(AUTO_HELP)
        ));
    }

    #[test]
    fn usage_errors_name_the_argument() {
        assert_eq!(parse_err(&[]), "missing command");
        assert_eq!(parse_err(&["record"]), "unknown command 'record'");
        assert_eq!(parse_err(&["proxy", "a:1", "b:2"]), "missing argument FILE");
        assert_eq!(
            parse_err(&["describe", "a", "b"]),
            "unexpected argument 'b'"
        );
        assert!(parse_err(&["proxy", "nope", "b:2", "f"]).starts_with("LISTEN: 'nope'"));
        assert!(parse_err(&["client", "b:x", "f"]).starts_with("CONNECT: 'b:x'"));
        assert!(parse_err(&["proxy", "a:1", "b:2", "f", "--buffer", "12Q"]).contains("--buffer"));
        assert!(parse_err(&["proxy", "a:1", "b:2", "f", "--buffer", "10"]).contains("1K"));
        assert!(parse_err(&["server", "--speed", "0", "a:1", "f"]).contains("--speed"));
        assert!(parse_err(&["server", "--timeout", "-1", "a:1", "f"]).contains("--timeout"));
        assert!(parse_err(&["server", "--bogus", "a:1", "f"]).contains("--bogus"));
        assert!(parse_err(&["client", "-a", "a:1", "f"]).contains("-a"));
        assert!(parse_err(&["client", "--grace", "1", "a:1", "f"]).contains("--grace"));
        assert!(
            parse_err(&["proxy", "a:1", "b:2", "f{n}", "--max-sessions", "0"])
                .contains("--max-sessions")
        );
        assert!(
            parse_err(&["proxy", "a:1", "b:2", "f.tape", "--max-sessions", "2"])
                .contains("a plain FILE records one session")
        );
        assert!(parse_err(&["proxy", "a:1", "b:2", "s{n}/t.tape"]).contains("folder name"));
        assert!(parse_err(&["proxy", "a:1", "b:2", "f", "--backlog", "+5"]).contains("--backlog"));
        assert!(parse_err(&["describe", "--buffer", "1K", "f"]).contains("--buffer"));
    }

    #[test]
    fn numbers_are_plain_decimals() {
        let too_long = "9".repeat(39);
        for bad in [
            "+1", "1e3", "inf", "nan", "", ".", "1.2.3", "-0", " 1", &too_long,
        ] {
            assert_eq!(decimal(bad), None, "{bad:?}");
        }
        assert_eq!(decimal("0.5"), Some(0.5));
        assert_eq!(decimal("30"), Some(30.0));
        assert_eq!(decimal(".25"), Some(0.25));
        assert_eq!(decimal("5."), Some(5.0));
        assert_eq!(decimal("0.3"), Some(0.3), "rounded as the literal is");
        assert_eq!(decimal(&"9".repeat(38)), Some(1e38));
    }

    #[test]
    fn learn_takes_two_or_more_recordings() {
        let Command::Learn(args) =
            parse_ok(&["learn", "a.tape", "-o", "t.txt", "b.tape", "c.tape"])
        else {
            panic!("not learn")
        };
        let expected = LearnArgs {
            inputs: vec!["a.tape".into(), "b.tape".into(), "c.tape".into()],
            output: "t.txt".into(),
        };
        assert_eq!(args, expected);
        assert_eq!(
            parse_err(&["learn", "a.tape", "-o", "t.txt"]),
            "learn needs two or more recordings of one scenario, 1 given"
        );
        assert_eq!(parse_err(&["learn", "a", "b"]), "missing option -o OUT");
        assert_eq!(
            parse_err(&["learn", "a", "b", "-o"]),
            "missing argument for option '-o'"
        );
        assert_eq!(parse_err(&["learn", "a", "b", "-x"]), "invalid option '-x'");
        assert!(matches!(
            parse_ok(&["learn", "a", "--help"]),
            Command::Help(LEARN_HELP)
        ));
    }

    #[test]
    fn pcap_and_import() {
        let Command::Pcap(args) = parse_ok(&["pcap", "t.tape", "-o", "t.pcap", "--port", "80"])
        else {
            panic!("not pcap")
        };
        let expected = PcapArgs {
            input: "t.tape".into(),
            output: "t.pcap".into(),
            port: 80,
        };
        assert_eq!(args, expected);
        let Command::Pcap(args) = parse_ok(&["pcap", "-o", "t.pcap", "d/"]) else {
            panic!("not pcap")
        };
        assert_eq!(args.port, 7777);
        let import = [
            "import",
            "c.pcapng",
            "-o",
            "d/",
            "--filter",
            "[::1]:5432",
            "--allow-gaps",
        ];
        let Command::Import(args) = parse_ok(&import) else {
            panic!("not import")
        };
        let expected = ImportArgs {
            capture: "c.pcapng".into(),
            output: "d/".into(),
            filter: Some("[::1]:5432".into()),
            allow_gaps: true,
        };
        assert_eq!(args, expected);
        assert_eq!(parse_err(&["pcap", "t.tape"]), "missing option -o OUT.pcap");
        assert_eq!(
            parse_err(&["import", "c.pcap"]),
            "missing option -o TAPE|DIR/"
        );
        assert!(parse_err(&["pcap", "t", "-o", "x", "--port", "0"]).contains("--port: '0'"));
        assert!(parse_err(&["import", "c", "-o", "x", "--filter", "nope"]).contains("--filter"));
        assert!(parse_err(&["import", "c", "-o", "x", "--filter", "unix:/s"]).contains("--filter"));
        assert!(matches!(
            parse_ok(&["pcap", "-h"]),
            Command::Help(PCAP_HELP)
        ));
        assert!(matches!(
            parse_ok(&["import", "--help"]),
            Command::Help(IMPORT_HELP)
        ));
    }

    #[test]
    fn usage_error_carries_the_command_usage_line() {
        let Err(Error::Usage { usage, .. }) = parse(["server", "a:1"]) else {
            panic!("expected usage error")
        };
        assert_eq!(usage, SERVER_USAGE);
    }
}
