//! Real Redis topologies for tests: TLS, Sentinel (1 primary, 1 replica, 3 sentinels) and a
//! 3-primary Cluster, from Debian's `redis-server`, `redis-sentinel` and `redis-cli`. Every
//! process listens on a free loopback port, lives in its own temp dir and is killed on drop.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::raw_command;

/// A free loopback port (bound and released; callers retry on a collision).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One Redis process, killed on drop.
pub struct Proc {
    child: Option<Child>,
    /// The port it serves on.
    pub port: u16,
}

impl Proc {
    fn spawn(program: &str, args: &[String], dir: &Path, port: u16) -> Self {
        let log = std::fs::File::create(dir.join(format!("{port}.log"))).expect("a log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e} (scripts/ensure-redis.sh installs it)"));
        Self {
            child: Some(child),
            port,
        }
    }

    /// Whether the process has not exited.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until a plain PING is answered.
    fn wait_ping(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if !self.alive() {
                return false;
            }
            if raw_command(self.port, "PING").is_some_and(|r| r.contains("PONG") || r.contains("NOAUTH")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn base_args(port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Runs `redis-cli` with `args` against `port`; its stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

/// Polls `check` until it holds or `limit` passes.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts a redis-server with `extra` arguments on a fresh port in `dir`, retrying on a port
/// collision.
pub fn start_server(dir: &Path, extra: &[String]) -> Proc {
    for _ in 0..10 {
        let port = free_port();
        let mut args = base_args(port);
        args.extend(extra.iter().cloned());
        let mut proc = Proc::spawn("redis-server", &args, dir, port);
        if proc.wait_ping(Duration::from_secs(5)) {
            return proc;
        }
    }
    panic!("redis-server did not start");
}

// ---------------------------------------------------------------- TLS

/// A TLS-only redis-server with a CA and a server certificate made at test time.
pub struct TlsRedis {
    pub server: Proc,
    /// PEM of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

/// Whether the `openssl` command is available.
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TlsRedis {
    /// Makes a CA and a server certificate for 127.0.0.1/localhost, then starts the server on
    /// a TLS port only.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let d = dir.path();
        openssl(d, &["genrsa", "-out", "ca.key", "2048"]);
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-sha256",
                "-days",
                "2",
                "-subj",
                "/CN=resultd test CA",
                "-out",
                "ca.crt",
            ],
        );
        openssl(d, &["genrsa", "-out", "server.key", "2048"]);
        openssl(
            d,
            &[
                "req",
                "-new",
                "-key",
                "server.key",
                "-subj",
                "/CN=127.0.0.1",
                "-out",
                "server.csr",
            ],
        );
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext file");
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-sha256",
                "-extfile",
                "ext.cnf",
                "-out",
                "server.crt",
            ],
        );
        for _ in 0..10 {
            let port = free_port();
            let args: Vec<String> = [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.crt",
                "--tls-auth-clients",
                "no",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let mut server = Proc::spawn("redis-server", &args, d, port);
            let ready = eventually(Duration::from_secs(5), || {
                server.alive() && tls_cli(d, port, &["PING"]).contains("PONG")
            });
            if ready {
                return Self {
                    server,
                    ca_file: d.join("ca.crt"),
                    _dir: dir,
                };
            }
        }
        panic!("redis-server with TLS did not start");
    }

    /// `rediss://127.0.0.1:{port}/0`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}/0", self.server.port)
    }

    /// `redis-cli --tls` against the server.
    pub fn cli(&self, args: &[&str]) -> String {
        tls_cli(self._dir.path(), self.server.port, args)
    }
}

fn tls_cli(dir: &Path, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(dir.join("ca.crt"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

// ---------------------------------------------------------------- Sentinel

/// The service name the sentinels monitor.
pub const SENTINEL_SERVICE: &str = "resultd";

/// One primary, one replica and three sentinels (quorum 2).
pub struct SentinelSet {
    pub primary: Proc,
    pub replica: Proc,
    pub sentinels: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the set and waits until every sentinel knows the primary, the replica and the
    /// other two sentinels (so a failover can be elected).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let primary = start_server(dir.path(), &[]);
        let replica = start_server(
            dir.path(),
            &["--replicaof".to_owned(), format!("127.0.0.1 {}", primary.port)],
        );
        let mut sentinels = Vec::new();
        for i in 0..3 {
            sentinels.push(start_sentinel(dir.path(), i, primary.port));
        }
        let ready = eventually(Duration::from_secs(20), || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
                && sentinels.iter().all(|s| {
                    let replicas = cli(s.port, &["SENTINEL", "replicas", SENTINEL_SERVICE]);
                    let peers = cli(s.port, &["SENTINEL", "sentinels", SENTINEL_SERVICE]);
                    replicas.contains(&replica.port.to_string()) && peers.matches("runid").count() == 2
                })
        });
        assert!(
            ready,
            "the sentinels did not discover each other and the replica in time"
        );
        Self {
            primary,
            replica,
            sentinels,
            _dir: dir,
        }
    }

    /// `redis-sentinel://…/0?sentinelServiceName=…&node=…&node=…`.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinels[0].port
        );
        for s in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", s.port));
        }
        url
    }

    /// The port of the primary the sentinels name now.
    pub fn current_primary_port(&self) -> Option<u16> {
        let reply = cli(
            self.sentinels[0].port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_SERVICE],
        );
        reply.lines().nth(1).and_then(|p| p.trim().parse().ok())
    }
}

fn start_sentinel(dir: &Path, index: usize, primary: u16) -> Proc {
    for _ in 0..10 {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{index}-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} 2\nsentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\nsentinel failover-timeout {SENTINEL_SERVICE} 10000\nsentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                dir = dir.display()
            ),
        )
        .expect("sentinel config");
        let mut proc = Proc::spawn("redis-sentinel", &[conf.display().to_string()], dir, port);
        if proc.wait_ping(Duration::from_secs(5)) {
            return proc;
        }
    }
    panic!("redis-sentinel did not start");
}

// ---------------------------------------------------------------- Cluster

/// Three primaries, no replicas, every slot assigned.
pub struct ClusterSet {
    pub nodes: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl ClusterSet {
    /// Starts three cluster-enabled servers and joins them with `redis-cli --cluster create`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut nodes = Vec::new();
        for i in 0..3 {
            let bus = free_port();
            nodes.push(start_server(
                dir.path(),
                &[
                    "--cluster-enabled".to_owned(),
                    "yes".to_owned(),
                    "--cluster-config-file".to_owned(),
                    format!("nodes-{i}-{bus}.conf"),
                    "--cluster-port".to_owned(),
                    bus.to_string(),
                    "--cluster-node-timeout".to_owned(),
                    "2000".to_owned(),
                ],
            ));
        }
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let ready = eventually(Duration::from_secs(20), || {
            nodes.iter().all(|n| {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            })
        });
        assert!(ready, "the Cluster did not become ready in time");
        Self { nodes, _dir: dir }
    }

    /// `redis-cluster://first?node=second&node=third`.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, n) in self.nodes[1..].iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", n.port));
        }
        url
    }

    /// The port of the node that holds `key`.
    pub fn node_of(&self, key: &str) -> u16 {
        let slot: u16 = cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("a slot");
        let nodes = cli(self.nodes[0].port, &["CLUSTER", "NODES"]);
        nodes
            .lines()
            .find(|l| l.split_whitespace().skip(8).any(|range| slot_in(range, slot)))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|addr| addr.split('@').next())
            .and_then(|hp| hp.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .expect("a node owns every slot")
    }
}

fn slot_in(range: &str, slot: u16) -> bool {
    match range.split_once('-') {
        Some((a, b)) => a.parse::<u16>().is_ok_and(|a| a <= slot) && b.parse::<u16>().is_ok_and(|b| slot <= b),
        None => range.parse::<u16>().is_ok_and(|s| s == slot),
    }
}
