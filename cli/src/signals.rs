//! SIGINT, SIGTERM and SIGHUP end the program without leaving a named temporary file of plaintext
//! behind (where the file system gave no unnamed one): a thread waits for them, removes what
//! `sectorcrypt::files` still holds, and exits with the usual 128 + signal number.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub(crate) fn remove_unfinished_outputs_on_signal() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            sectorcrypt::files::remove_unfinished();
            std::process::exit(128 + signal);
        }
    });
}
