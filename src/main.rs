//! The `tcptape` binary: logging, argument parsing, one error-to-exit-code map.

use std::io::Write;
use std::process::ExitCode;

use tcptape::cli::{self, Command};
use tcptape::error::{EXIT_ERROR, Error};

fn main() -> ExitCode {
    init_logging();
    // A bug must still end as one line and a documented exit code, never a
    // backtrace in the middle of a user's test output.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error, please report it: {info}");
        std::process::exit(EXIT_ERROR);
    }));

    let result = cli::parse(std::env::args_os().skip(1)).and_then(|command| match command {
        Command::Help(text) => print_stdout(text),
        Command::Version => print_stdout(&format!("tcptape {}\n", cli::VERSION)),
        command => tcptape::commands::run(command),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match &err {
                Error::Usage { usage, .. } => {
                    eprintln!("error: {err}\n{usage}\nrun 'tcptape --help' for more")
                }
                _ => eprintln!("error: {err}"),
            }
            ExitCode::from(err.exit_code() as u8)
        }
    }
}

fn print_stdout(text: &str) -> Result<(), Error> {
    // A closed pipe (`tcptape --help | head -1`) is not worth an error.
    let _ = std::io::stdout().write_all(text.as_bytes());
    Ok(())
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
