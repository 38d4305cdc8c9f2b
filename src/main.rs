//! slackbotd's entry point: everything happens in the library.

fn main() {
    std::process::exit(slackbotd::main());
}
