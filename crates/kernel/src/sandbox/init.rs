//! The helper that runs first inside an allowlisted sandbox (`lumenflow __sandbox-init`).
//!
//! Arguments: `--relay <inside addr>:<port>=<unix socket path>` for each destination, `--`, then
//! the tool's command line (the `--` may be missing: whatever follows the relays is the command). It binds every listener (before the tool starts, so the tool never
//! races it), forwards each accepted TCP connection to its Unix socket (where the parent's relay
//! connects to the real destination), spawns the tool with the inherited stdio and environment,
//! waits for it and exits with its status (`128 + signal` if it was killed). It never writes to
//! stdout. Its own failures exit 125 (127 when the tool is not found, 126 when it cannot be
//! executed) with a `lumenflow __sandbox-init: …` line on stderr.

use std::ffi::OsString;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::thread;

use super::HELPER_SUBCOMMAND;

/// One `--relay` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySpec {
    pub listen: SocketAddr,
    pub socket: PathBuf,
}

/// Parsed arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    pub relays: Vec<RelaySpec>,
    pub command: Vec<OsString>,
}

/// Parse the helper's arguments (everything after the subcommand name).
pub fn parse(args: Vec<OsString>) -> Result<InitArgs, String> {
    let mut relays = Vec::new();
    let mut it = args.into_iter().peekable();
    loop {
        match it.peek() {
            None => return Err("no command to run".into()),
            Some(a) if a == "--" => {
                it.next();
                break;
            }
            Some(a) if a == "--relay" => {
                it.next();
            }
            // The command itself (clap may have consumed a leading `--`).
            Some(_) => break,
        }
        let value = it
            .next()
            .ok_or_else(|| "`--relay` needs `<addr>:<port>=<socket>`".to_string())?;
        let value = value
            .into_string()
            .map_err(|v| format!("`{}` is not UTF-8", v.to_string_lossy()))?;
        let (addr, socket) = value
            .split_once('=')
            .ok_or_else(|| format!("`{value}` is not `<addr>:<port>=<socket>`"))?;
        let listen = addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("`{addr}` is not an address with a port: {e}"))?;
        relays.push(RelaySpec {
            listen,
            socket: PathBuf::from(socket),
        });
    }
    let command: Vec<OsString> = it.collect();
    if command.is_empty() {
        return Err("no command after `--`".into());
    }
    Ok(InitArgs { relays, command })
}

fn fail(code: u8, message: String) -> u8 {
    eprintln!("lumenflow {HELPER_SUBCOMMAND}: {message}");
    code
}

/// Run the helper; returns the process exit code.
pub fn run(args: Vec<OsString>) -> u8 {
    let parsed = match parse(args) {
        Ok(p) => p,
        Err(e) => return fail(125, e),
    };
    for relay in &parsed.relays {
        let listener = match TcpListener::bind(relay.listen) {
            Ok(l) => l,
            Err(e) => return fail(125, format!("cannot listen on {}: {e}", relay.listen)),
        };
        let socket = relay.socket.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(tcp) = conn else { continue };
                let socket = socket.clone();
                thread::spawn(move || forward(tcp, &socket));
            }
        });
    }
    let (program, rest) = match parsed.command.split_first() {
        Some(split) => split,
        None => return fail(125, "no command".into()),
    };
    let status = match Command::new(program).args(rest).status() {
        Ok(s) => s,
        Err(e) => {
            let code = match e.kind() {
                io::ErrorKind::NotFound => 127,
                io::ErrorKind::PermissionDenied => 126,
                _ => 125,
            };
            return fail(
                code,
                format!("cannot run `{}`: {e}", program.to_string_lossy()),
            );
        }
    };
    match status.code() {
        Some(c) => u8::try_from(c & 0xff).unwrap_or(125),
        None => {
            let sig = status.signal().unwrap_or(0);
            u8::try_from((128 + sig) & 0xff).unwrap_or(125)
        }
    }
}

/// Copy one accepted connection to and from its relay socket.
fn forward(tcp: TcpStream, socket: &std::path::Path) {
    let Ok(unix) = UnixStream::connect(socket) else {
        let _ = tcp.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut tcp_r), Ok(mut unix_w)) = (tcp.try_clone(), unix.try_clone()) else {
        return;
    };
    let up = thread::spawn(move || {
        let _ = io::copy(&mut tcp_r, &mut unix_w);
        let _ = unix_w.shutdown(Shutdown::Write);
    });
    let (mut unix_r, mut tcp_w) = (unix, tcp);
    let _ = io::copy(&mut unix_r, &mut tcp_w);
    let _ = tcp_w.shutdown(Shutdown::Write);
    let _ = up.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_relays_and_command() {
        let got = parse(os(&[
            "--relay",
            "127.100.0.1:443=/run/x/0.sock",
            "--relay",
            "[::1]:80=/run/x/1.sock",
            "--",
            "python3",
            "--",
            "--relay",
        ]))
        .expect("valid");
        assert_eq!(got.relays.len(), 2);
        assert_eq!(got.relays[1].listen.to_string(), "[::1]:80");
        assert_eq!(got.command, os(&["python3", "--", "--relay"]));
        let got = parse(os(&["/bin/true", "--relay"])).expect("valid");
        assert_eq!(got.command, os(&["/bin/true", "--relay"]));
    }

    #[test]
    fn refuses_malformed_arguments() {
        for args in [
            vec![],
            vec!["--"],
            vec!["--relay"],
            vec!["--relay", "nope", "--", "x"],
            vec!["--relay", "example.com:80=/s", "--", "x"],
        ] {
            assert!(parse(os(&args)).is_err(), "{args:?}");
        }
    }
}
