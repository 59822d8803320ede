//! The real `resultd` binary on a free loopback port, its stderr captured to a file.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::topology::free_port;

/// A running `resultd serve`, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Resultd {
    child: Option<Child>,
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Resultd {
    /// Starts the binary with a config file holding `listen` plus `config_toml`, and `env`;
    /// retries on another port when it does not come up (a port collision).
    pub fn start(config_toml: &str, env: &[(&str, &str)]) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::start_once(config_toml, env) {
                Ok(server) => return server,
                Err(log) => last = log,
            }
        }
        panic!("resultd did not start:\n{last}");
    }

    fn start_once(config_toml: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let port = free_port();
        let config = dir.path().join("resultd.toml");
        std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\n{config_toml}")).expect("config");
        let log = dir.path().join("resultd.log");
        let child = Command::new(env!("CARGO_BIN_EXE_resultd"))
            .arg("serve")
            .env("RESULTD_CONFIG", &config)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")))
            .spawn()
            .expect("resultd binary");
        let mut server = Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        if server.wait_live(Duration::from_secs(10)) {
            Ok(server)
        } else {
            Err(server.stop())
        }
    }

    fn wait_live(&mut self, limit: Duration) -> bool {
        let addr = self.base.trim_start_matches("http://").to_owned();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(c) = self.child.as_mut()
                && !matches!(c.try_wait(), Ok(None))
            {
                return false;
            }
            if std::net::TcpStream::connect(&addr).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        false
    }

    /// The path of the captured stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Stops the server (SIGTERM, waiting for it to exit) and answers everything it logged.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Resultd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
