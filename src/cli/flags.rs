//! The options of the commands that run a service (`proxy`, `server`,
//! `client`, `auto`), shared where they overlap.

use std::path::PathBuf;
use std::time::Duration;

use super::Usage;
use super::args::{
    Command, Outputs, decimal, endpoint, next, parse_command, parse_duration, parse_seconds,
    parse_size, path, text,
};
use super::help::*;
use super::rules::RuleFlags;
use crate::engine::addr::Endpoint;
use crate::fault::{self, Faults, Role};
use crate::job::Spec;
use crate::proxy::{self, NUMBER};
use crate::replay::{ClientOptions, ReplayOptions, ServerOptions};

/// `auto`: the same LISTEN and PATH, replayed as `server` or recorded as
/// `proxy`, whichever applies.
#[derive(Debug, Clone)]
pub(crate) struct AutoArgs {
    pub server: ServerOptions,
    pub proxy: proxy::Options,
    pub outputs: Outputs,
}

/// Options of `proxy`, also taken by `auto`.
struct ProxyFlags {
    buffer: usize,
    max_sessions: Option<u64>,
    idle_timeout: Option<Duration>,
    redact: RuleFlags,
}

impl ProxyFlags {
    fn new() -> ProxyFlags {
        ProxyFlags {
            buffer: proxy::DEFAULT_BUFFER,
            max_sessions: None,
            idle_timeout: None,
            redact: RuleFlags::default(),
        }
    }

    /// Parses one of the proxy's options; false when `name` is not one.
    fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
    ) -> Result<bool, Usage> {
        match name {
            "--buffer" => self.buffer = parse_size("--buffer", &text(parser, usage)?, usage)?,
            "--max-sessions" => {
                let value = text(parser, usage)?;
                let n = value
                    .parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0 && value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        Usage::new(
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
            _ => return self.redact.parse(parser, name, usage),
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
    ) -> Result<proxy::Options, Usage> {
        let text = tape.to_string_lossy();
        let is_folder = text.ends_with('/');
        let numbered = text.contains(NUMBER);
        if numbered && is_folder {
            return Err(Usage::new(
                "FILE: a cassette folder (DIR/) takes no {n}: its tapes are numbered already",
                usage,
            ));
        }
        let in_folder_name = tape
            .parent()
            .is_some_and(|parent| parent.to_string_lossy().contains(NUMBER));
        if in_folder_name {
            return Err(Usage::new(
                "FILE: {n} may only stand in the file name, not in a folder name",
                usage,
            ));
        }
        if self.max_sessions.is_some() && !numbered && !is_folder && !tape.is_dir() {
            return Err(Usage::new(
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
            faults: common.faults_for(Role::Proxy, usage)?,
            control: None,
            redact: self.redact.into_rules(usage)?,
        })
    }
}

/// Options of every command that runs: the stop's grace period, the listen
/// backlog, the files written beside the tapes, the faults to inject.
struct CommonFlags {
    grace: Duration,
    backlog: u32,
    outputs: Outputs,
    faults: Faults,
}

impl CommonFlags {
    fn new() -> CommonFlags {
        CommonFlags {
            grace: crate::engine::event_loop::DEFAULT_GRACE,
            backlog: crate::engine::net::DEFAULT_BACKLOG,
            outputs: Outputs::default(),
            faults: Faults::default(),
        }
    }

    /// The faults given, refused where `role` cannot inject them.
    fn faults_for(&self, role: Role, usage: &'static str) -> Result<Faults, Usage> {
        let refused = |reason| Usage::new(format!("--fault {reason}"), usage);
        self.faults.check(role).map_err(refused)?;
        Ok(self.faults.clone())
    }

    /// Parses one of these options; false when `name` is not one.
    /// `listens` says whether the command takes the listening ones.
    fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
        listens: bool,
    ) -> Result<bool, Usage> {
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
                        Usage::new(
                            format!("--backlog: '{value}' is not a positive whole number"),
                            usage,
                        )
                    })?;
            }
            "--address-file" if listens => self.outputs.address_file = Some(path(parser, usage)?),
            "--fault" => {
                let refused = |reason| Usage::new(format!("--fault {reason}"), usage);
                let fault = fault::parse(&text(parser, usage)?).map_err(refused)?;
                self.faults.push(fault).map_err(refused)?;
            }
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
    update: bool,
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
            update: false,
        }
    }

    /// Parses one of the server's options; false when `name` is not one.
    fn parse(
        &mut self,
        parser: &mut lexopt::Parser,
        name: &str,
        usage: &'static str,
    ) -> Result<bool, Usage> {
        match name {
            "-a" | "--abort" => self.abort = true,
            "--once" => self.once = true,
            "--reuse" => self.reuse = true,
            "--allow-unused" => self.allow_unused = true,
            "--update" => self.update = true,
            _ => return replay_option(parser, name, &mut self.replay, usage),
        }
        Ok(true)
    }

    /// `upstream` is where `--update` hands a departing client over to.
    fn into_options(
        self,
        (listen, tape): (Endpoint, PathBuf),
        upstream: Option<Endpoint>,
        common: &CommonFlags,
        usage: &'static str,
    ) -> Result<ServerOptions, Usage> {
        if self.update && upstream.is_none() {
            return Err(Usage::new(
                "--update needs --upstream HOST:PORT: the real server a client that departs from the tape is handed over to",
                usage,
            ));
        }
        Ok(ServerOptions {
            listen,
            tape,
            replay: ReplayOptions {
                faults: common.faults_for(Role::Server, usage)?,
                ..self.replay
            },
            abort: self.abort,
            once: self.once,
            reuse: self.reuse,
            allow_unused: self.allow_unused,
            grace: common.grace,
            backlog: common.backlog,
            update: self.update,
            upstream,
        })
    }
}

pub(super) fn parse_proxy(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
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

pub(super) fn parse_server(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = SERVER_USAGE;
    let mut flags = ServerFlags::new();
    let mut common = CommonFlags::new();
    let mut upstream = None;
    let names = ["LISTEN", "FILE"];
    let parsed = parse_command(parser, usage, &names, |p, name| {
        if name == "--upstream" {
            upstream = Some(endpoint("--upstream", text(p, usage)?.into(), usage)?);
            return Ok(true);
        }
        Ok(flags.parse(p, name, usage)? || common.parse(p, name, usage, true)?)
    })?;
    let Some(values) = parsed else {
        return Ok(Command::Help(SERVER_HELP));
    };
    let mut values = values.into_iter();
    let (listen, tape) = (next(&mut values), next(&mut values));
    let listen = endpoint("LISTEN", listen, usage)?;
    let options = flags.into_options((listen, PathBuf::from(tape)), upstream, &common, usage)?;
    Ok(Command::Run(Spec::Server(options), common.outputs))
}

pub(super) fn parse_auto(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
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
        return Err(Usage::new(
            "PATH: auto takes a tape or a cassette folder, not a {n} pattern",
            usage,
        ));
    }
    let once = server.once;
    let upstream = Some(connect.clone());
    let mut proxy = proxy.into_options(listen.clone(), connect, path.clone(), &common, usage)?;
    proxy.until_idle = once;
    Ok(Command::Auto(AutoArgs {
        server: server.into_options((listen, path), upstream, &common, usage)?,
        proxy,
        outputs: common.outputs,
    }))
}

/// Parses an option shared by both replay roles; false when `name` is not one.
fn replay_option(
    parser: &mut lexopt::Parser,
    name: &str,
    options: &mut ReplayOptions,
    usage: &'static str,
) -> Result<bool, Usage> {
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
                    Usage::new(
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

pub(super) fn parse_client(parser: &mut lexopt::Parser) -> Result<Command, Usage> {
    let usage = CLIENT_USAGE;
    let mut replay = ReplayOptions {
        print_reports: true,
        ..ReplayOptions::default()
    };
    let mut common = CommonFlags::new();
    let mut update = false;
    let names = ["CONNECT", "FILE"];
    let parsed = parse_command(parser, usage, &names, |p, name| {
        if name == "--update" {
            update = true;
            return Ok(true);
        }
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
        replay: ReplayOptions {
            faults: common.faults_for(Role::Client, usage)?,
            ..replay
        },
        update,
    };
    Ok(Command::Run(Spec::Client(options), common.outputs))
}
