#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
//! The hsmkey binary: argument parsing, logging, output and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
