//! Interop with real Celery 5.7.0: a real worker and Celery clients share one Redis with resultd.
//!
//! Each test starts a redis-server and resultd (Celery routes on) over one database of it, a real
//! Celery worker (`--pool=solo`, Redis as broker and result backend) where the script needs one,
//! then runs a script from `interop/celery/` with the Celery venv's Python
//! (`RESULTD_CELERY_PYTHON`, default `.venv-celery/bin/python`, built by `make celery-venv`). The
//! scripts print a JSON report; the test asserts on its counts and names the failing checks.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use resultd::config::Settings;
use serde::Deserialize;

use crate::support::{Kind, LiveServer, TestApp, test_settings};

/// The Redis database of broker, result backend and resultd (honoured on every side).
const DB: u8 = 4;
/// Longest time one script may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Deserialize)]
struct Failure {
    name: String,
    detail: String,
}

/// The report a Celery interop script prints as its last line.
#[derive(Debug, Deserialize)]
struct Report {
    script: String,
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<Failure>,
    measurements: serde_json::Value,
    #[serde(skip)]
    stderr_tail: String,
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn scripts_dir() -> PathBuf {
    repo_root().join("interop/celery")
}

/// The Celery Python: `var` (from `RESULTD_CELERY_PYTHON`) or the venv's, if it exists.
fn celery_python_from(var: Option<OsString>) -> Result<PathBuf, String> {
    let python = var.map_or_else(|| repo_root().join(".venv-celery/bin/python"), PathBuf::from);
    if python.exists() {
        Ok(python)
    } else {
        Err(format!(
            "the Celery Python {} is missing: run make celery-venv (or point RESULTD_CELERY_PYTHON at a Python with interop/celery/requirements.txt installed)",
            python.display()
        ))
    }
}

fn celery_python() -> PathBuf {
    celery_python_from(std::env::var_os("RESULTD_CELERY_PYTHON")).unwrap_or_else(|e| panic!("{e}"))
}

/// How the Celery side is configured; resultd's `celery.key_prefix` is the final prefix.
#[derive(Clone, Copy)]
struct CeleryConf {
    /// Celery's `global_keyprefix` as written in its settings.
    global_keyprefix: &'static str,
    /// The prefix Celery 5.7 puts in front of its keys for it.
    key_prefix: &'static str,
    /// Celery's `result_compression` (empty: none).
    compression: &'static str,
}

const PLAIN: CeleryConf = CeleryConf {
    global_keyprefix: "",
    key_prefix: "",
    compression: "",
};

const PREFIXED_GZIP: CeleryConf = CeleryConf {
    global_keyprefix: "myapp",
    key_prefix: "myapp_",
    compression: "gzip",
};

fn env_of(redis_url: &str, conf: CeleryConf) -> [(&'static str, String); 5] {
    [
        ("CELERY_BROKER_URL", redis_url.to_owned()),
        ("CELERY_RESULT_BACKEND", redis_url.to_owned()),
        ("CELERY_GLOBAL_KEYPREFIX", conf.global_keyprefix.to_owned()),
        ("CELERY_RESULT_COMPRESSION", conf.compression.to_owned()),
        ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
    ]
}

/// A real Celery worker, killed on drop.
struct Worker {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Worker {
    fn start(redis_url: &str, conf: CeleryConf) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("worker.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(celery_python())
            .args(["-m", "celery", "-A", "tasks", "worker", "--pool=solo", "-c", "1"])
            .args([
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "warning",
            ])
            .current_dir(scripts_dir())
            .envs(env_of(redis_url, conf))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("the Celery worker");
        Self {
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// Stops the worker (SIGTERM, then SIGKILL after 10 s) and answers the end of its log.
    async fn stop(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) && matches!(child.try_wait(), Ok(None)) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let skip = log.chars().count().saturating_sub(3000);
        log.chars().skip(skip).collect()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// resultd with the Celery routes on for `conf`'s prefix, over database [`DB`] of a fresh Redis.
async fn server(conf: CeleryConf) -> LiveServer {
    let mut s: Settings = test_settings();
    s.wait.max_seconds = 120;
    s.celery.enabled = true;
    s.celery.key_prefix = conf.key_prefix.to_owned();
    LiveServer::on_redis_db(s, DB).await
}

/// Runs `interop/celery/{script}` against `server` and returns its report.
async fn run_script(server: &LiveServer, conf: CeleryConf, script: &str, extra: &[&str]) -> Report {
    let python = celery_python();
    let child = tokio::process::Command::new(&python)
        .arg(scripts_dir().join(script))
        .args(["--redis", &server.redis_url, "--resultd", &server.base])
        .args([
            "--global-keyprefix",
            conf.global_keyprefix,
            "--compression",
            conf.compression,
        ])
        .args(extra)
        .current_dir(scripts_dir())
        .envs(env_of(&server.redis_url, conf))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child)
        .await
        .unwrap_or_else(|_| panic!("{script} ran longer than {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    let skip = stderr.chars().count().saturating_sub(4000);
    let tail: String = stderr.chars().skip(skip).collect();
    let mut report: Report = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "{script} printed no report ({e}); exit {:?}\nstdout:\n{stdout}\nstderr (end):\n{tail}",
            output.status.code()
        )
    });
    report.stderr_tail = tail;
    report
}

/// Asserts no check failed and at least `min_passed` passed; `worker_log` is shown on failure.
fn assert_report(report: &Report, min_passed: usize, worker_log: &str) {
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
        "{} of {} checks failed:\n{}\nstderr (end):\n{}\nworker log (end):\n{worker_log}",
        report.failed,
        report.passed + report.failed,
        failing.join("\n"),
        report.stderr_tail
    );
    assert_eq!(report.skipped, 0, "no check may be skipped");
    assert!(
        report.passed >= min_passed,
        "{}: only {} checks passed, expected at least {min_passed}",
        report.script,
        report.passed
    );
}

/// Runs `script` with a worker of `conf` next to resultd and asserts its report.
async fn with_worker(conf: CeleryConf, script: &str, extra: &[&str], min_passed: usize) -> Report {
    let server = server(conf).await;
    let worker = Worker::start(&server.redis_url, conf);
    let report = run_script(&server, conf, script, extra).await;
    let log = worker.stop().await;
    server.stop().await;
    assert_report(&report, min_passed, &log);
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_worker_results_in_every_state_read_back_over_http() {
    let report = with_worker(PLAIN, "celery_writes.py", &[], 500).await;
    assert_eq!(report.measurements["channels_after"], 0, "{}", report.measurements);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_worker_results_with_gzip_and_a_global_keyprefix_read_back_over_http() {
    let report = with_worker(PREFIXED_GZIP, "celery_writes.py", &[], 500).await;
    assert_eq!(report.measurements["channels_after"], 0, "{}", report.measurements);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_written_over_http_read_back_by_celery_async_result_and_group_result() {
    let server = server(PREFIXED_GZIP).await;
    let report = run_script(&server, PREFIXED_GZIP, "resultd_writes.py", &[]).await;
    server.stop().await;
    assert_report(&report, 170, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_long_polls_and_celery_gets_are_all_woken_by_a_real_worker() {
    let report = with_worker(PLAIN, "wake_latency.py", &["30"], 6).await;
    assert_eq!(report.measurements["tasks"], 30, "{}", report.measurements);
    assert_eq!(
        report.measurements["http_long_poll"]["n"], 30,
        "{}",
        report.measurements
    );
    assert_eq!(report.measurements["celery_get"]["n"], 30, "{}", report.measurements);
    assert_eq!(report.measurements["channels_after"], 0, "{}", report.measurements);
}

/// A float as Python's `repr` writes it (a task's `time.time()`), one the default fast float
/// parsing of JSON would round to a neighbouring double.
const PY_FLOAT: &str = "1796351833.0598319";

#[tokio::test]
async fn a_python_float_reads_and_writes_back_bit_identical() {
    let mut s = test_settings();
    s.celery.enabled = true;
    let app = TestApp::with_settings(Kind::Redis, s).await;
    let want: f64 = PY_FLOAT.parse().unwrap();
    let stored = format!(
        r#"{{"status": "SUCCESS", "result": {PY_FLOAT}, "traceback": null, "children": [], "date_done": "2026-12-04T02:00:00.000001+00:00", "task_id": "py-float"}}"#
    );
    app.redis()
        .cli(&["-n", "0", "SET", "celery-task-meta-py-float", &stored]);
    let got = app.get("/celery/results/py-float").await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let body = String::from_utf8_lossy(&got.body).into_owned();
    assert!(body.contains(&format!(r#""result":{PY_FLOAT}"#)), "{body}");
    assert_eq!(got.json()["result"].as_f64(), Some(want));

    let put = app
        .put(
            "/celery/results/py-float-put",
            serde_json::json!({"status": "SUCCESS", "result": want}),
        )
        .await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let raw = app.redis().cli(&["-n", "0", "GET", "celery-task-meta-py-float-put"]);
    assert!(raw.contains(&format!(r#""result": {PY_FLOAT}"#)), "{raw}");
}

#[test]
fn a_missing_celery_venv_fails_with_a_hint() {
    let err = celery_python_from(Some("/nonexistent/.venv-celery/bin/python".into())).unwrap_err();
    assert!(err.contains("run make celery-venv"), "{err}");
}
