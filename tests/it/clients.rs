//! `docs/clients.md`: every `sh` block runs against a live resultd and prints what the `text`
//! block after it says.
#![allow(clippy::disallowed_methods)]

use crate::support::process::Resultd;

const DOC: &str = include_str!("../../docs/clients.md");

/// The fenced blocks of a Markdown document: (language, body).
fn fenced_blocks(doc: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in doc.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => current = Some((lang.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_curl_examples_of_the_client_guide_run_as_documented() {
    let blocks = fenced_blocks(DOC);
    let mut examples = Vec::new();
    for (i, (lang, body)) in blocks.iter().enumerate() {
        if lang == "sh" {
            let expected = blocks
                .get(i + 1)
                .filter(|(l, _)| l == "text")
                .map(|(_, b)| b.clone())
                .unwrap_or_else(|| panic!("the sh block {body:?} has no text block with its output"));
            examples.push((body.clone(), expected));
        }
    }
    assert!(examples.len() >= 4, "store, complete and wait, read, errors");
    assert!(
        blocks.iter().any(|(l, _)| l == "python")
            && blocks.iter().any(|(l, _)| l == "js")
            && blocks.iter().any(|(l, _)| l == "go"),
        "the guide shows Python, Node and Go too"
    );
    if std::process::Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED the_curl_examples_of_the_client_guide_run_as_documented: curl is not installed");
        return;
    }
    let mut server = Resultd::start("store = \"memory://\"\n[celery]\nenabled = true\n", &[]);
    let cwd = tempfile::tempdir().unwrap();
    for (script, expected) in examples {
        let script = script.replace("http://localhost:8080", &server.base);
        let out = tokio::task::spawn_blocking({
            let cwd = cwd.path().to_owned();
            move || {
                std::process::Command::new("sh")
                    .args(["-c", &script])
                    .current_dir(cwd)
                    .output()
                    .expect("sh")
            }
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "exit {:?}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.trim(),
            expected.trim(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The Python and Node examples too, where their interpreters are installed.
    for (lang, program, file) in [("python", "python3", "client.py"), ("js", "node", "client.mjs")] {
        if std::process::Command::new(program).arg("--version").output().is_err() {
            eprintln!("not running the {lang} example: {program} is not installed");
            continue;
        }
        let (_, body) = blocks.iter().find(|(l, _)| l == lang).unwrap();
        let path = cwd.path().join(file);
        std::fs::write(&path, body.replace("http://localhost:8080", &server.base)).unwrap();
        let out = tokio::task::spawn_blocking(move || std::process::Command::new(program).arg(path).output())
            .await
            .unwrap()
            .expect("interpreter");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{lang}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("builtins:int") && stdout.contains("42"),
            "{lang}: {stdout}"
        );
    }
    server.stop();
}
