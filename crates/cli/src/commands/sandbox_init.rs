//! `lumenflow __sandbox-init` (hidden): the helper bubblewrap runs first inside a sandbox whose
//! network is an allowlist. It listens for the allowlisted destinations on the sandbox's
//! loopback, relays them to the parent over Unix sockets, then runs the tool; all of it lives in
//! [`lumenflow_kernel::sandbox::init`].

use std::ffi::OsString;
use std::process::ExitCode;

/// Run the helper with everything after the subcommand name; its exit code is the tool's.
pub fn run(args: Vec<OsString>) -> ExitCode {
    ExitCode::from(lumenflow_kernel::sandbox::init::run(args))
}
