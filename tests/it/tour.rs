//! The README's tour, run as written: every ```` ```sh tour ```` block, in order, with `sh -e`
//! against a live resultd (embedded store, default settings, a free loopback port in place of
//! `localhost:8080`). Each block must exit 0 and print what the ```` ```text output ```` block
//! after it shows, where `…` stands for text that changes between runs.
//!
//! A block marked ```` ```sh tour background ```` is what a person runs in a second terminal:
//! it is started as a background job, the next block runs once the server holds its wait, and
//! its output is checked at the end. A new step of the tour is a new pair of blocks in the
//! README; nothing here needs to change.

use std::process::Stdio;
use std::time::{Duration, Instant};

use resultd::config::Settings;
use tokio::process::{Child, Command};

use crate::support::LiveServer;

const README: &str = include_str!("../../README.md");

/// The longest one block may run.
const BLOCK_LIMIT: Duration = Duration::from_secs(30);

/// One command block of the tour and the output the README shows for it.
#[derive(Debug)]
struct Step {
    /// 1-based line of the block in README.md.
    line: usize,
    script: String,
    background: bool,
    expected: String,
}

/// The fenced blocks of a Markdown text: (line, info string, body).
fn fenced_blocks(markdown: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((i + 1, info.trim().to_owned(), String::new())),
            (Some(_), Some(rest)) if rest.trim().is_empty() => blocks.extend(open.take()),
            (Some((_, _, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "README.md has an unclosed code block");
    blocks
}

/// The tour's steps, in README order.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut awaiting_output = false;
    for (line, info, body) in fenced_blocks(markdown) {
        let words: Vec<&str> = info.split_whitespace().collect();
        match words.as_slice() {
            ["sh", "tour", rest @ ..] => {
                assert!(
                    !awaiting_output,
                    "README.md:{line}: the tour block before this one shows no ```text output block"
                );
                assert!(
                    rest.is_empty() || rest == ["background"],
                    "README.md:{line}: unknown tour marker {info:?}"
                );
                steps.push(Step {
                    line,
                    script: body,
                    background: rest == ["background"],
                    expected: String::new(),
                });
                awaiting_output = true;
            }
            ["text", "output"] => {
                assert!(
                    awaiting_output,
                    "README.md:{line}: an output block that follows no tour block"
                );
                if let Some(step) = steps.last_mut() {
                    step.expected = body;
                }
                awaiting_output = false;
            }
            _ => {}
        }
    }
    assert!(!awaiting_output, "the last tour block of README.md shows no output");
    steps
}

/// Whether `actual` holds every `…`-separated fragment of `expected`, in order.
fn check_output(expected: &str, actual: &str) -> Result<(), String> {
    let actual = actual.replace('\r', "");
    let mut rest = actual.as_str();
    for fragment in expected.split('…').map(str::trim).filter(|f| !f.is_empty()) {
        match rest.find(fragment) {
            Some(at) => rest = &rest[at + fragment.len()..],
            None => return Err(format!("missing (in order): {fragment:?}")),
        }
    }
    Ok(())
}

fn shell(script: &str) -> Child {
    Command::new("sh")
        .arg("-e")
        .arg("-c")
        .arg(script)
        .env("no_proxy", "127.0.0.1,localhost")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sh")
}

/// Waits for a block to finish; its exit status and stdout+stderr.
async fn finish(step: &Step, child: Child) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(BLOCK_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("README.md:{}: the block ran longer than {BLOCK_LIMIT:?}", step.line))
        .expect("sh output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn assert_step(step: &Step, status: std::process::ExitStatus, output: &str) {
    assert!(
        status.success(),
        "README.md:{}: the block exited with {status}:\n{}\n--- it printed:\n{output}",
        step.line,
        step.script
    );
    if let Err(e) = check_output(&step.expected, output) {
        panic!(
            "README.md:{}: the block does not print what the README shows: {e}\n--- README shows:\n{}--- it printed:\n{output}",
            step.line, step.expected
        );
    }
}

#[test]
fn output_check_needs_every_fragment_in_order() {
    assert!(check_output("a…c", "abc").is_ok());
    assert!(check_output("HTTP/1.1 200 OK\n…\nx: y\n", "HTTP/1.1 200 OK\r\nq: 1\r\nx: y\r\n").is_ok());
    assert!(check_output("c…a", "abc").is_err());
    assert!(check_output("abd", "abc").is_err());
}

#[test]
fn readme_tour_has_steps_each_with_an_output() {
    let steps = steps(README);
    assert!(steps.len() >= 6, "the tour has only {} steps", steps.len());
    assert!(
        steps.iter().any(|s| s.background),
        "the tour waits from no second terminal"
    );
    for step in &steps {
        assert!(
            step.script.contains("localhost:8080"),
            "README.md:{}: talks to no resultd",
            step.line
        );
        assert!(
            !step.expected.trim().is_empty(),
            "README.md:{}: shows no output",
            step.line
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_runs_as_written_against_a_live_server() {
    assert!(
        std::process::Command::new("curl").arg("--version").output().is_ok(),
        "the tour needs curl"
    );
    // `make run`'s settings: the defaults, embedded store.
    let server = LiveServer::start(crate::support::Kind::Memory, Settings::defaults().expect("defaults")).await;
    let address = server.addr().to_string();
    let mut background: Vec<(Step, Child)> = Vec::new();
    for mut step in steps(README) {
        step.script = step.script.replace("localhost:8080", &address);
        step.expected = step.expected.replace("localhost:8080", &address);
        println!(
            "README.md:{}{}",
            step.line,
            if step.background { " (background)" } else { "" }
        );
        let child = shell(&step.script);
        if step.background {
            // What the second terminal does is under way before the next step: the server holds
            // one more wait.
            let held = server.ctx.wait_limiter().held();
            let started = Instant::now();
            while server.ctx.wait_limiter().held() <= held {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "README.md:{}: the background block never started waiting",
                    step.line
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            background.push((step, child));
            continue;
        }
        let (status, output) = finish(&step, child).await;
        assert_step(&step, status, &output);
    }
    assert!(!background.is_empty());
    for (step, child) in background {
        let (status, output) = finish(&step, child).await;
        assert_step(&step, status, &output);
    }
    server.stop().await;
}
