//! The clients generated from `openapi/openapi.json` (`make clients`: openapi-python-client, and
//! openapi-typescript with openapi-fetch) drive a live resultd: `tests/clients/*/program.*` store,
//! wait, complete, read the gzip value, increment and read state, and decode two problems.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};

use crate::support::process::Resultd;

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` under the repository, or a failure that says how to make it.
fn required(path: &str) -> Result<PathBuf, String> {
    let full = repo_root().join(path);
    if full.exists() {
        Ok(full)
    } else {
        Err(format!(
            "{} is missing: run make clients (it installs nodejs and npm when missing, builds .venv-clients and generates target/clients/)",
            full.display()
        ))
    }
}

/// Runs `program args…` against a fresh server on the embedded store; its stdout lines.
async fn run(program: PathBuf, args: Vec<PathBuf>, env: Vec<(&'static str, PathBuf)>) -> Vec<String> {
    let mut server = Resultd::start("store = \"memory://\"\n", &[]);
    let out = tokio::process::Command::new(&program)
        .args(&args)
        .arg(&server.base)
        .envs(env)
        .current_dir(repo_root())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = server.stop();
    assert!(
        out.status.success(),
        "{} {args:?} exited {:?}\nstdout:\n{stdout}\nstderr:\n{}\nserver log:\n{log}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The lines every program prints, the same in each language but for how it renders a state object.
fn expected(state_line: &str) -> Vec<String> {
    [
        "stored 201 RUNNING",
        "completed 200 SUCCESS",
        "waited 200 SUCCESS done=True",
        "value identity builtins:int 42",
        "value gzip builtins:list 500",
        "incremented 2 5",
        state_line,
        "problem 404 result-not-found",
        "problem 409 illegal-transition current_state=SUCCESS",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_python_client_drives_a_live_server() {
    let python = required(".venv-clients/bin/python").unwrap_or_else(|e| panic!("{e}"));
    let client = required("target/clients/python/resultd_client").unwrap_or_else(|e| panic!("{e}"));
    let program = required("tests/clients/python/program.py").unwrap();
    let pythonpath = client.parent().unwrap().to_owned();
    let lines = run(python, vec![program], vec![("PYTHONPATH", pythonpath)]).await;
    assert_eq!(lines, expected("state {'hits': 5}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generated_typescript_client_drives_a_live_server() {
    let tsx = required("tests/clients/ts/node_modules/.bin/tsx").unwrap_or_else(|e| panic!("{e}"));
    required("target/clients/ts/schema.d.ts").unwrap_or_else(|e| panic!("{e}"));
    let program = required("tests/clients/ts/program.ts").unwrap();
    let mut lines = run(tsx, vec![program], vec![]).await;
    // JavaScript prints booleans in lower case.
    if let Some(line) = lines.get_mut(2) {
        *line = line.replace("done=true", "done=True");
    }
    assert_eq!(lines, expected("state {\"hits\":5}"));
}

#[test]
fn a_missing_generated_client_fails_with_a_hint() {
    let err = required("target/clients/nonexistent").unwrap_err();
    assert!(err.contains("run make clients"), "{err}");
}
