//! Test support: a real DNS server (dnsmasq from Debian) on a loopback port.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// dnsmasq serving the given records on 127.0.0.1, killed on drop.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
}

impl Dnsmasq {
    pub fn start(records: &[impl AsRef<std::ffi::OsStr>]) -> Self {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("dnsmasq")
            .args([
                "--no-daemon",
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
        let server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        server.wait_answering();
        server
    }

    /// Polls until dnsmasq answers a query for its own zone.
    fn wait_answering(&self) {
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
            socket.send_to(&query, self.addr).unwrap();
            if socket.recv_from(&mut buf).is_ok() {
                return;
            }
        }
        panic!("dnsmasq did not answer on {}", self.addr);
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
