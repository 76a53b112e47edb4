//! The usage line and the help text of every command.

pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(super) const MAIN_USAGE: &str = "usage: tcptape <proxy|server|client|auto|review|describe|print|build|learn|repair|redact|scan|pcap|import> [OPTIONS] [ARGS]";
pub(super) const PROXY_USAGE: &str = "usage: tcptape proxy [OPTIONS] LISTEN CONNECT FILE";
pub(super) const SERVER_USAGE: &str = "usage: tcptape server [OPTIONS] LISTEN FILE";
pub(super) const CLIENT_USAGE: &str = "usage: tcptape client [OPTIONS] CONNECT FILE";
pub(super) const DESCRIBE_USAGE: &str = "usage: tcptape describe [-v] FILE";
pub(super) const AUTO_USAGE: &str = "usage: tcptape auto [OPTIONS] LISTEN CONNECT PATH";
pub(super) const PRINT_USAGE: &str = "usage: tcptape print FILE [-o OUT]";
pub(super) const BUILD_USAGE: &str = "usage: tcptape build TEXT -o FILE";
pub(super) const LEARN_USAGE: &str = "usage: tcptape learn A B [C ...] -o OUT";
pub(super) const REPAIR_USAGE: &str = "usage: tcptape repair FILE|DIR/";
pub(super) const REVIEW_USAGE: &str =
    "usage: tcptape review [--accept|--reject|--check|--diff] [PATH ...]";
pub(super) const REDACT_USAGE: &str = "usage: tcptape redact RULES... TAPE|DIR/ [...]";
pub(super) const SCAN_USAGE: &str = "usage: tcptape scan [--allow FILE] TAPE|DIR/ [...]";
pub(super) const PCAP_USAGE: &str = "usage: tcptape pcap TAPE|DIR/ -o OUT.pcap [--port N]";
pub(super) const IMPORT_USAGE: &str =
    "usage: tcptape import CAPTURE -o TAPE|DIR/ [--filter HOST:PORT] [--allow-gaps]";

pub(super) const MAIN_HELP: &str = "\
tcptape: record TCP sessions into tapes, replay either side byte for byte

usage: tcptape <COMMAND> [OPTIONS] [ARGS]

commands:
  proxy     record sessions between clients and a server into tapes
  server    play the recorded server to clients, checking what they send
  client    play the recorded client against a server, checking its answers
  auto      replay PATH if it exists, else record it (TCPTAPE_MODE overrides)
  review    show the tapes --update wrote, and accept or reject each
  describe  list the frames of a tape
  print     write a tape as text, for review and editing
  build     turn a text tape back into a binary tape
  learn     mark what differs between recordings of one scenario as spans
  repair    keep the complete frames of a tape whose recording was interrupted
  redact    keep secrets off tapes already recorded: rules as for proxy
  scan      list what looks like a secret in tapes (exit 1 if anything)
  pcap      export tapes as a pcap capture, for Wireshark and tshark
  import    turn the TCP connections of a pcap or pcapng capture into tapes

options:
  -h, --help     print help (also after a command: tcptape proxy --help)
  -V, --version  print the version

exit codes: 0 success, 1 error, 2 usage error, 3 replay mismatch,
  4 tapes pending review (--update)
logging: RUST_LOG=debug|info|warn|error (default info), on stderr
proxy, server and auto print one line `listening on ADDR` on stdout once
listening; SIGINT/SIGTERM stop them cleanly (a second signal at once).
";

pub(super) const PROXY_HELP: &str = "\
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
  --redact-env NAME     keep the value of the variable NAME off the tape,
                        either direction: a secret span named NAME holds a
                        placeholder (replay takes $NAME's value if set)
  --redact TEXT         keep TEXT off the tape (escapes \\\\ \\r \\n \\t \\xHH)
  --redact-hex HEX      keep these bytes off the tape
  --redact-after PREFIX[..END]
                        keep the bytes after PREFIX off the tape, up to the
                        line's end or up to END
  --redact-file FILE    the rules of FILE, one a line: env NAME, text TEXT,
                        hex HEX, after PREFIX[..END]; # comments
                        (every --redact option may be given many times)
  --grace SECS          after SIGINT/SIGTERM, let sessions finish for SECS
                        (default 5), then cut the rest
  --backlog N           listen queue length (default 4096)
  --address-file PATH   once listening, write the address to PATH
  --report FILE         when done, write a JSON report to FILE
  --fault SPEC          inject a fault between client and server (repeatable);
                        the tapes record what each side received. SPEC is
                        KIND[,OPTION...]: KIND latency=MS, bandwidth=RATE
                        (K, M), slice=BYTES, slow_close=MS, reset, close,
                        stall, truncate; OPTION jitter=MS, gap=MS, vary=BYTES,
                        dir=up|down|both, at=byte:N|ms:MS, conn=N[..M],
                        p=0..1, seed=S (README: Faults)
  -h, --help            print this help
";

pub(super) const SERVER_HELP: &str = "\
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
      --update          with --upstream: where a client departs from its
                        tape, hand its connection over to the upstream and
                        write the session as TAPE.new beside the tape (a
                        cassette: DIR/NNNN.tape.new), for `tcptape review`;
                        exit 4 when any was written (TCPTAPE_UPDATE=1 does
                        the same, except under CI=true)
      --upstream HOST:PORT  the real server --update hands clients over to
      --timeout SECS    fail a session that waits longer than SECS for its
                        peer, and --once when no client comes for SECS
                        (default 30; 0 waits forever)
      --text-diff       add a line diff to mismatch reports when both are text
      --grace SECS      after SIGINT/SIGTERM, let sessions finish for SECS
                        (default 5)
      --backlog N       listen queue length (default 4096)
      --address-file PATH  once listening, write the address to PATH
      --report FILE     when done, write a JSON report to FILE
      --fault SPEC      inject a fault into what the server sends, or at a
                        place in what clients send (repeatable); a session
                        a fault ends passes as `faulted`. SPEC is
                        KIND[,OPTION...]: KIND latency=MS, bandwidth=RATE
                        (K, M), slice=BYTES, slow_close=MS, reset, close,
                        stall, truncate; OPTION jitter=MS, gap=MS, vary=BYTES,
                        dir=up|down|both, at=byte:N|frame:K|ms:MS,
                        conn=N[..M], p=0..1, seed=S (README: Faults)
  -h, --help            print this help
";

pub(super) const CLIENT_HELP: &str = "\
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
      --update        where the server departs, go on, and write what it
                      really sent as TAPE.new beside the tape (a cassette:
                      DIR/NNNN.tape.new), for `tcptape review`; exit 4 when
                      any was written (TCPTAPE_UPDATE=1 does the same,
                      except under CI=true)
      --report FILE   when done, write a JSON report to FILE
      --fault SPEC    inject a fault into what the client sends, or at a
                      place in what the server sends (repeatable); a
                      session a fault ends passes as `faulted`. SPEC is
                      KIND[,OPTION...]: KIND latency=MS, bandwidth=RATE
                      (K, M), slice=BYTES, slow_close=MS, reset, close,
                      stall, truncate; OPTION jitter=MS, gap=MS, vary=BYTES,
                      dir=up|down|both, at=byte:N|frame:K|ms:MS,
                      conn=N[..M], p=0..1, seed=S (README: Faults)
  -h, --help          print this help
";

pub(super) const REVIEW_HELP: &str = "\
Review the pending tapes `--update` wrote beside the tapes they
would replace (TAPE.new; in a cassette, DIR/NNNN.tape.new): for each, the
changed lines of the two tapes in text form, with a little context; then
accept it (the pending tape replaces the old one), reject it (it is
removed) or skip it. On a terminal, one key each: a, r or s (q quits).
PATHs are pending tapes or folders searched for them (default: the current
folder).

usage: tcptape review [--accept|--reject|--check|--diff] [PATH ...]

options:
      --accept   accept every pending tape without asking
      --reject   reject every pending tape without asking
      --check    list the pending tapes; exit 1 if there are any (for CI)
      --diff     show the diffs, change nothing
  -h, --help     print this help
";

pub(super) const REDACT_HELP: &str = "\
Rewrite tapes already recorded so that what the rules name is a secret span
over a placeholder, as `proxy` with the same rules would have recorded it.
Each tape is replaced atomically; a text tape stays text, its lines kept as
written but for those of frames that held a secret. A cassette (DIR/) has
each of its tapes redacted.

usage: tcptape redact RULES... TAPE|DIR/ [...]

rules (each as often as wanted, at least one):
  --redact-env NAME     the value of the variable NAME (the span is named NAME)
  --redact TEXT         TEXT (escapes \\\\ \\r \\n \\t \\xHH)
  --redact-hex HEX      these bytes
  --redact-after PREFIX[..END]
                        the bytes after PREFIX, up to the line's end or END
  --redact-file FILE    the rules of FILE, one a line: env NAME, text TEXT,
                        hex HEX, after PREFIX[..END]; # comments
  -h, --help            print this help
";

pub(super) const SCAN_HELP: &str = "\
List what looks like a secret left in clear in tapes: Authorization
headers, password= and \"password\": values, AWS access keys, private keys
(PEM), JWTs, Redis AUTH, NATS \"pass\", long high-entropy tokens. Bytes of a
secret span (a placeholder) are no finding. One line a finding, with the
file, frame and line (or tape offset), and only the value's first bytes.
Exit 1 when anything is found, 0 when nothing: a gate for CI.

usage: tcptape scan [--allow FILE] TAPE|DIR/ [...]

options:
  --allow FILE   strings that are no secret, one a line (# comments): a
                 finding whose value holds one is left out
  -h, --help     print this help
";

pub(super) const AUTO_HELP: &str = "\
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
With --update, a replay hands a client that departs from its tape over to
CONNECT and writes the session as TAPE.new, for `tcptape review`.

options: those of `server` when replaying, those of `proxy` when recording
  -n, -d, --speed F, -a, --once, --reuse, --allow-unused, --update,
  --timeout SECS, --text-diff
  --buffer SIZE, --max-sessions N, --idle-timeout SECS, --redact-env NAME,
  --redact TEXT, --redact-hex HEX, --redact-after PREFIX[..END],
  --redact-file FILE
  --grace SECS, --backlog N, --address-file PATH, --report FILE,
  --fault SPEC (in either mode; at=frame:K, replay only, is refused)
  -h, --help   print this help
";

pub(super) const PRINT_HELP: &str = "\
Write a tape as text: one frame per line, data as escaped strings or hex.
`tcptape build` turns the text back into the same binary tape, byte for byte.
server, client and describe read text tapes too.

usage: tcptape print FILE [-o OUT]

options:
  -o, --output OUT  write to OUT instead of stdout
  -h, --help        print this help
";

pub(super) const BUILD_HELP: &str = "\
Turn a text tape (see `tcptape print`) into a binary tape.

usage: tcptape build TEXT -o FILE

options:
  -o, --output FILE  the binary tape to write (required)
  -h, --help         print this help
";

pub(super) const LEARN_HELP: &str = "\
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

pub(super) const REPAIR_HELP: &str = "\
Keep the complete frames of a tape whose recording was interrupted (kill -9,
power loss, a full disk): a last frame cut short is removed and the tape is
marked as cut, so describe, print and replay take it. A cassette (DIR/):
every tape, and the index gets a line for each tape it lacks.

usage: tcptape repair FILE|DIR/

options:
  -h, --help   print this help
";

pub(super) const DESCRIBE_HELP: &str = "\
List the frames of a tape (binary or text), or one line per tape of a
cassette folder (DIR/).

usage: tcptape describe [-v] FILE

options:
  -v, --verbose  show each data frame's payload as a hexdump
  -h, --help     print this help
";

pub(super) const PCAP_HELP: &str = "\
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

pub(super) const IMPORT_HELP: &str = "\
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
