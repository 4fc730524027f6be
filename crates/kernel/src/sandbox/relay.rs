//! The parent half of the allowlist relay: one Unix socket per allowlisted destination, each
//! accepted connection forwarded to the real `host:port`.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::plan::RelayDest;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections one run may have open through the relay at once.
const MAX_CONNECTIONS: usize = 256;

/// A stream to shut down when the run ends.
enum Open {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Open {
    fn shutdown(&self) {
        let _ = match self {
            Open::Unix(s) => s.shutdown(Shutdown::Both),
            Open::Tcp(s) => s.shutdown(Shutdown::Both),
        };
    }
}

/// The open connections, by a sequence number: their streams to shut down.
#[derive(Default)]
struct Conns {
    next: u64,
    open: HashMap<u64, Vec<Open>>,
}

pub(crate) struct Relay {
    stop: Arc<AtomicBool>,
    sockets: Vec<PathBuf>,
    accepters: Vec<JoinHandle<()>>,
    open: Arc<Mutex<Conns>>,
}

impl Relay {
    /// Listen on `<dir>/<n>.sock` for each destination.
    pub fn start(dir: &Path, dests: &[RelayDest]) -> io::Result<Relay> {
        let stop = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Conns>> = Arc::new(Mutex::new(Conns::default()));
        let mut relay = Relay {
            stop: Arc::clone(&stop),
            sockets: Vec::new(),
            accepters: Vec::new(),
            open: Arc::clone(&open),
        };
        for (i, dest) in dests.iter().enumerate() {
            let path = dir.join(format!("{i}.sock"));
            let listener = match UnixListener::bind(&path) {
                Ok(l) => l,
                Err(e) => {
                    relay.stop();
                    return Err(e);
                }
            };
            relay.sockets.push(path);
            let target = (dest.host.clone(), dest.port);
            let stop = Arc::clone(&stop);
            let open = Arc::clone(&open);
            relay.accepters.push(thread::spawn(move || {
                accept_loop(listener, target, stop, open)
            }));
        }
        Ok(relay)
    }

    /// Stop accepting and cut every open connection.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for path in &self.sockets {
            // Wake the accept loop so it sees the flag.
            let _ = UnixStream::connect(path);
        }
        for handle in self.accepters {
            let _ = handle.join();
        }
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for s in open.open.values().flatten() {
            s.shutdown();
        }
    }
}

fn accept_loop(
    listener: UnixListener,
    target: (String, u16),
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Conns>>,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(inside) = conn else { continue };
        let id = {
            let mut conns = open.lock().unwrap_or_else(|e| e.into_inner());
            if conns.open.len() >= MAX_CONNECTIONS {
                let _ = inside.shutdown(Shutdown::Both);
                continue;
            }
            let id = conns.next;
            conns.next += 1;
            let streams = inside.try_clone().map(Open::Unix).into_iter().collect();
            conns.open.insert(id, streams);
            id
        };
        let target = target.clone();
        let open = Arc::clone(&open);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let forget = || {
                open.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .open
                    .remove(&id);
            };
            let Some(outside) = connect(&target) else {
                let _ = inside.shutdown(Shutdown::Both);
                forget();
                return;
            };
            if let Ok(c) = outside.try_clone() {
                let mut conns = open.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(streams) = conns.open.get_mut(&id) {
                    streams.push(Open::Tcp(c));
                }
            }
            if stop.load(Ordering::SeqCst) {
                let _ = outside.shutdown(Shutdown::Both);
                let _ = inside.shutdown(Shutdown::Both);
            } else {
                pump(inside, outside);
            }
            forget();
        });
    }
}

fn connect((host, port): &(String, u16)) -> Option<TcpStream> {
    let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs().ok()?.collect();
    addrs
        .iter()
        .find_map(|a| TcpStream::connect_timeout(a, CONNECT_TIMEOUT).ok())
}

/// Copy both ways until both sides are done.
fn pump(inside: UnixStream, outside: TcpStream) {
    let (Ok(mut inside_r), Ok(mut outside_w)) = (inside.try_clone(), outside.try_clone()) else {
        let _ = inside.shutdown(Shutdown::Both);
        let _ = outside.shutdown(Shutdown::Both);
        return;
    };
    let up = thread::spawn(move || {
        let _ = io::copy(&mut inside_r, &mut outside_w);
        let _ = outside_w.shutdown(Shutdown::Write);
    });
    let (mut outside_r, mut inside_w) = (outside, inside);
    if io::copy(&mut outside_r, &mut inside_w).is_err() {
        let _ = outside_r.shutdown(Shutdown::Both);
    }
    let _ = inside_w.shutdown(Shutdown::Write);
    let _ = up.join();
    let _ = outside_r.shutdown(Shutdown::Both);
    let _ = inside_w.shutdown(Shutdown::Both);
}
