//! The `tcptape` binary: logging, a panic hook, and the command line.

use std::io::Write;
use std::process::ExitCode;

/// Exit code of any failure that is not a usage error or a verdict.
const EXIT_ERROR: i32 = 1;

fn main() -> ExitCode {
    init_logging();
    // A bug must still end as one line and a documented exit code, never a
    // backtrace in the middle of a user's test output.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error, please report it: {info}");
        std::process::exit(EXIT_ERROR);
    }));
    ExitCode::from(tcptape::cli_main() as u8)
}

fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    env_logger::Builder::from_env(env)
        .format(|buf, record| {
            let level = record.level().as_str().to_ascii_lowercase();
            writeln!(buf, "tcptape: {level}: {}", record.args())
        })
        .init();
}
