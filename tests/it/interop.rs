//! Interop with real mognet 2.0.0: Python workers and clients share one Redis with resultd.
//!
//! Each test starts a redis-server and resultd on a real loopback socket over it, then runs a
//! script from `interop/` with the interop venv's Python (`RESULTD_INTEROP_PYTHON`, default
//! `.venv-interop/bin/python`, built by `make interop-venv`). The scripts drive mognet's own
//! backends and a real `Worker`, check what they see against resultd's HTTP answers, and print a
//! JSON report; the test asserts on its counts and names the failing checks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use resultd::config::Settings;
use serde::Deserialize;

use crate::support::{LiveServer, test_settings};

/// The Redis database the tests use, so the DB number in the URL is honoured on both sides.
const DB: u8 = 3;
/// Longest time one script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

#[derive(Debug, Deserialize)]
struct Failure {
    name: String,
    detail: String,
}

#[derive(Debug, Deserialize)]
struct Skip {
    name: String,
    reason: String,
}

/// The report an interop script prints as its last line.
#[derive(Debug, Deserialize)]
struct Report {
    script: String,
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<Failure>,
    skips: Vec<Skip>,
    measurements: serde_json::Value,
    /// The end of the script's stderr (tracebacks, stacks of a hung script), shown on failure.
    #[serde(skip)]
    stderr_tail: String,
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The interop Python: `var` (from `RESULTD_INTEROP_PYTHON`) or the venv's, if it exists.
fn interop_python_from(var: Option<OsString>) -> Result<PathBuf, String> {
    let python = var.map_or_else(|| repo_root().join(".venv-interop/bin/python"), PathBuf::from);
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "the interop Python {} is missing: run make interop-venv (or point RESULTD_INTEROP_PYTHON at a Python with interop/requirements.txt installed)",
            python.display()
        ))
    }
}

fn interop_python() -> PathBuf {
    interop_python_from(std::env::var_os("RESULTD_INTEROP_PYTHON")).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `interop/{script}` against `server` for mognet app `app` and returns its report.
async fn run_script(server: &LiveServer, script: &str, app: &str, extra: &[&str]) -> Report {
    let python = interop_python();
    let path = repo_root().join("interop").join(script);
    let child = tokio::process::Command::new(&python)
        .arg(&path)
        .args(["--redis", &server.redis_url, "--resultd", &server.base, "--app", app])
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let tail: String = stderr
        .chars()
        .rev()
        .take(4000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let mut report: Report = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{script} printed no report ({e}); exit {:?}\nstdout:\n{stdout}\nstderr (end):\n{tail}",
            output.status.code()
        )
    });
    report.stderr_tail = tail;
    report
}

/// Asserts no check failed, at least `min_passed` passed, and only state checks were skipped.
fn assert_report(report: &Report, min_passed: usize) {
    println!(
        "{}: {} passed, {} failed, {} skipped; measurements {}",
        report.script, report.passed, report.failed, report.skipped, report.measurements
    );
    let failing: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("- {}: {}", f.name, f.detail))
        .collect();
    assert_eq!(
        report.failed,
        0,
        "{} of {} checks failed:\n{}\nstderr (end):\n{}",
        report.failed,
        report.passed + report.failed,
        failing.join("\n"),
        report.stderr_tail
    );
    assert!(
        report.passed >= min_passed,
        "{}: only {} checks passed, expected at least {min_passed}",
        report.script,
        report.passed
    );
    for skip in &report.skips {
        // Only the state checks may be skipped, and only while resultd has no /state routes.
        assert!(
            skip.name.contains("state") && skip.reason.contains("/state"),
            "unexpected skip {:?}: {}",
            skip.name,
            skip.reason
        );
    }
}

fn settings() -> Settings {
    let mut s = test_settings();
    s.wait.max_seconds = 60;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mognet_written_results_read_back_identically_over_http() {
    let server = LiveServer::on_redis_db(settings(), DB).await;
    let report = run_script(&server, "mognet_writes.py", "interop.mognet-writes", &[]).await;
    server.stop().await;
    assert_report(&report, 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mognet_written_results_read_back_identically_with_the_cache_off() {
    let mut s = settings();
    s.cache.max_bytes = 0;
    let server = LiveServer::on_redis_db(s, DB).await;
    let report = run_script(&server, "mognet_writes.py", "interop.mognet-writes-uncached", &[]).await;
    server.stop().await;
    assert_report(&report, 700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_written_over_http_read_back_in_mognet_with_gzip_values() {
    let mut s = settings();
    s.compression.enabled = true;
    s.compression.min_bytes = 64;
    let server = LiveServer::on_redis_db(s, DB).await;
    let report = run_script(
        &server,
        "resultd_writes.py",
        "interop.http-writes",
        &["--compression", "gzip", "--min-bytes", "64"],
    )
    .await;
    server.stop().await;
    assert_report(&report, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_written_over_http_read_back_in_mognet_with_plain_values() {
    let mut s = settings();
    s.compression.enabled = false;
    // The other way round from the gzip test: the cache off.
    s.cache.max_bytes = 0;
    let server = LiveServer::on_redis_db(s, DB).await;
    let report = run_script(
        &server,
        "resultd_writes.py",
        "interop.http-writes",
        &["--compression", "off"],
    )
    .await;
    server.stop().await;
    assert_report(&report, 150);
}

/// Runs the worker script and checks how its waits were woken.
async fn worker_long_polls(settings: Settings, wake_mode: &str) {
    let server = LiveServer::on_redis_db(settings, DB).await;
    let report = run_script(&server, "worker_wait.py", "interop.worker", &[]).await;
    server.stop().await;
    assert_report(&report, 40);
    assert_eq!(report.measurements["wake_mode"], wake_mode, "{}", report.measurements);
    assert_eq!(
        report.measurements["http_wait_latency_ms"]["runs"].as_u64(),
        Some(5),
        "{}",
        report.measurements
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_answered_when_a_real_mognet_worker_finishes() {
    worker_long_polls(settings(), "keyspace-notifications").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_is_answered_for_a_real_worker_by_polling_without_notifications() {
    let mut s = settings();
    s.redis.configure_notifications = false;
    s.redis.poll_interval_ms = 100;
    worker_long_polls(s, "polling").await;
}

#[test]
fn a_missing_interop_venv_fails_with_a_hint() {
    let err = interop_python_from(Some("/nonexistent/.venv-interop/bin/python".into())).unwrap_err();
    assert!(err.contains("run make interop-venv"), "{err}");
}
