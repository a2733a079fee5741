#![forbid(unsafe_code)]
//! The hsmkey binary: argument parsing, logging, output and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
