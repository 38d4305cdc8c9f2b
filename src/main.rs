//! slackbotd's entry point: parse the command line, hand over to a mode.

use clap::Parser;

fn main() {
    let cli = match slackbotd::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                slackbotd::exit::ExitCode::USAGE.code()
            } else {
                0
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    std::process::exit(slackbotd::modes::dispatch(cli));
}
