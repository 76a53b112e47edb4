//! The command line parsed from argument lists, never the process's own.

mod parsing {
    use std::path::PathBuf;
    use std::time::Duration;

    use crate::cli::args::*;
    use crate::cli::help::*;
    use crate::engine::event_loop::DEFAULT_GRACE;
    use crate::engine::net::DEFAULT_BACKLOG;
    use crate::job::Spec;
    use crate::proxy;
    use crate::proxy::DEFAULT_BUFFER;
    use crate::replay::DEFAULT_TIMEOUT;
    use crate::replay::{ClientOptions, ServerOptions};

    fn parse_ok(args: &[&str]) -> Command {
        parse(args.iter().copied()).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn parse_err(args: &[&str]) -> String {
        let err = parse(args.iter().copied()).expect_err("should fail");
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
        let expected = crate::learn::Options {
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
        let expected = crate::pcap::Export {
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
        let expected = crate::pcap::Import {
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
        let Err(err) = parse(["server", "a:1"]) else {
            panic!("expected usage error")
        };
        assert_eq!(err.usage, SERVER_USAGE);
    }
    #[test]
    fn faults_are_repeatable_on_every_command_that_runs() {
        let (options, _) = server(&[
            "server",
            "--fault",
            "reset,at=byte:3,conn=1",
            "--fault=latency=200,jitter=50",
            "127.0.0.1:0",
            "t.tape",
        ]);
        assert_eq!(options.replay.faults.len(), 2);
        let options = client(&["client", "--fault", "stall,dir=up", "h:1", "t.tape"]);
        assert_eq!(options.replay.faults.len(), 1);
        let (options, _) = proxy(&[
            "proxy",
            "--fault",
            "slice=1",
            "127.0.0.1:0",
            "h:1",
            "t.tape",
        ]);
        assert_eq!(options.faults.len(), 1);
        match parse_ok(&[
            "auto",
            "--fault",
            "bandwidth=1M",
            "127.0.0.1:0",
            "h:1",
            "t.tape",
        ]) {
            Command::Auto(args) => {
                assert_eq!(args.server.replay.faults.len(), 1);
                assert_eq!(args.proxy.faults.len(), 1);
            }
            other => panic!("not auto: {other:?}"),
        }
    }

    #[test]
    fn a_bad_fault_is_a_usage_error_naming_it() {
        let err = parse_err(&["server", "--fault", "latency=soon", "127.0.0.1:0", "t.tape"]);
        assert_eq!(
            err,
            "--fault 'latency=soon': latency=soon: not a whole number of milliseconds up to a day (86400000)"
        );
        let err = parse_err(&["client", "--fault", "truncate,dir=down", "h:1", "t.tape"]);
        assert!(
            err.starts_with("--fault 'truncate,dir=down': a mock client sends up only"),
            "{err}"
        );
        let err = parse_err(&[
            "proxy",
            "--fault",
            "stall,at=frame:2",
            "127.0.0.1:0",
            "h:1",
            "t.tape",
        ]);
        assert!(err.contains("at=frame:K is for replay"), "{err}");
        let err = parse_err(&[
            "auto",
            "--fault",
            "stall,at=frame:2",
            "127.0.0.1:0",
            "h:1",
            "t.tape",
        ]);
        assert!(err.contains("at=frame:K is for replay"), "{err}");
        let mut args = vec!["server"];
        args.extend(std::iter::repeat_n(["--fault", "stall"], 33).flatten());
        args.extend(["127.0.0.1:0", "t.tape"]);
        assert_eq!(
            parse_err(&args),
            "--fault 'stall': more than 32 faults at once"
        );
    }
}
