//! Test support: a real DNS server (dnsmasq from Debian) on a loopback port.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// dnsmasq serving the given records on 127.0.0.1, killed on drop.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Dnsmasq {
    /// Starts dnsmasq on a port free for both UDP and TCP (it binds both) and waits until it
    /// answers; retries on another port if another process took the port first.
    pub fn start(records: &[impl AsRef<std::ffi::OsStr>]) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_udp_and_tcp_port();
            // In the foreground, not in debug mode (`--no-daemon`): there dnsmasq answers TCP
            // itself, one connection at a time, and a resolver that keeps its connection open
            // (Hickory does, for answers too long for UDP) leaves every other client waiting.
            let mut child = Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    &format!("--port={port}"),
                    "--listen-address=127.0.0.1",
                    "--bind-interfaces",
                    "--no-resolv",
                    "--no-hosts",
                    "--conf-file=/dev/null",
                    "--local=/shoal.test/",
                    "--user=root",
                    "--pid-file=",
                ])
                .args(records)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dnsmasq (apt-get install dnsmasq-base; scripts/test installs it)");
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_answering(&mut child, addr) {
                Ok(()) => return Self { child, addr },
                Err(e) => {
                    let _ = child.kill();
                    let output = child.wait_with_output().ok();
                    let stderr = output
                        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        .unwrap_or_default();
                    last_error = format!("{e}: {}", stderr.trim());
                }
            }
        }
        panic!("dnsmasq did not start: {last_error}");
    }
}

fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls until dnsmasq answers a query for its own zone, or exits, or 10 s pass.
fn wait_answering(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // A minimal DNS query for "x.shoal.test" type A.
    let mut query = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["x", "shoal", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("dnsmasq exited ({status}) on port {}", addr.port()));
        }
        socket.send_to(&query, addr).unwrap();
        if socket.recv_from(&mut buf).is_ok() {
            return Ok(());
        }
    }
    Err(format!("dnsmasq did not answer on {addr}"))
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
