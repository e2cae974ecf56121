//! The `sectorcrypt` command line.

#![deny(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` puts the whole context chain on one line.
            eprintln!("sectorcrypt: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
