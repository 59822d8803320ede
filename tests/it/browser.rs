//! The docs page as a person meets it: Debian's Chromium, headless, opens `/docs/` of a resultd
//! served on a loopback socket, and is driven over the DevTools protocol. It checks that every
//! operation rendered, that the page fetched nothing from anywhere but 127.0.0.1, and that
//! "Try it out" on `PUT` then `GET /results/{id}` shows the live 201 and 200 answers.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{LiveServer, test_settings};

/// The longest any one step (a command, a wait for the page) may take.
const STEP: Duration = Duration::from_secs(15);
/// The longest the whole test may take.
const WHOLE: Duration = Duration::from_secs(55);

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

/// A result id that no other test uses.
const ID: &str = "6a4f1c2e-0b7d-4e59-8c3a-2d9e5f7b1a04";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The headless browser process; killed by PID when dropped.
struct Chromium {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Chromium {
    fn start() -> Self {
        let installed = Command::new("chromium")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "chromium is not installed: run `make test` (it calls scripts/ensure-chromium.sh) \
             or scripts/ensure-chromium.sh once"
        );
        let profile = tempfile::Builder::new()
            .prefix("resultd-chromium-")
            .tempdir()
            .expect("profile dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                "--window-size=1280,1400",
            ])
            .arg(format!("--remote-debugging-port={port}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that its helpers die with it.
            .process_group(0)
            .spawn()
            .expect("spawn chromium");
        Self {
            child,
            port,
            _profile: profile,
        }
    }

    /// The websocket URL of a new page, once the DevTools endpoint answers.
    async fn new_page(&mut self) -> String {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{}", self.port);
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/json/version")).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited before its DevTools endpoint answered: {status}");
            }
            assert!(
                started.elapsed() < STEP,
                "chromium's DevTools endpoint did not answer within {STEP:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let target: Value = http
            .put(format!("{base}/json/new?about:blank"))
            .send()
            .await
            .expect("/json/new")
            .json()
            .await
            .expect("/json/new JSON");
        target["webSocketDebuggerUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("no webSocketDebuggerUrl in {target}"))
            .to_owned()
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // The group that `process_group(0)` made has the browser's PID as its id.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A DevTools protocol connection to one page: commands by id, events recorded.
struct Cdp {
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    events: Arc<Mutex<Vec<Value>>>,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Cdp {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(url))
            .await
            .expect("DevTools websocket: timed out")
            .expect("DevTools websocket");
        let (sink, mut stream) = ws.split();
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let reader = tokio::spawn({
            let pending = pending.clone();
            let events = events.clone();
            async move {
                while let Some(Ok(message)) = stream.next().await {
                    let Message::Text(text) = message else { continue };
                    let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = value["id"].as_u64() {
                        if let Some(reply) = pending.lock().unwrap().remove(&id) {
                            let _ = reply.send(value);
                        }
                    } else if value["method"].is_string() {
                        events.lock().unwrap().push(value);
                    }
                }
            }
        });
        Self {
            sink: tokio::sync::Mutex::new(sink),
            pending,
            events,
            next_id: AtomicU64::new(1),
            reader,
        }
    }

    /// Sends a command and returns its `result`; panics on a protocol error or after `STEP`.
    async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.sink
            .lock()
            .await
            .send(Message::Text(message.into()))
            .await
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let reply = tokio::time::timeout(STEP, rx)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer within {STEP:?}"))
            .unwrap_or_else(|_| panic!("{method}: the DevTools connection closed"));
        assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
        reply["result"].clone()
    }

    /// Evaluates JavaScript in the page and returns its value (promises awaited).
    async fn eval(&self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r["exceptionDetails"].is_null(),
            "script failed: {expression}\n{}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` until it yields something other than null/false/0/"".
    async fn wait_for(&self, what: &str, expression: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.eval(expression).await;
            let empty = v.is_null() || v == json!(false) || v == json!(0) || v == json!("");
            if !empty {
                return v;
            }
            if started.elapsed() > STEP {
                let body = self
                    .eval("document.body ? document.body.innerText.slice(0, 2000) : '(no body)'")
                    .await;
                panic!("{what}: not there after {STEP:?}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The recorded events named `method`.
    fn events(&self, method: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["method"] == method)
            .cloned()
            .collect()
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// JavaScript shared by the steps: find within an operation, click, type like a person.
const HELPERS: &str = r#"
window.__op = (opId) => document.getElementById(opId);
window.__within = (opId, selector) => { const op = __op(opId); return op ? op.querySelector(selector) : null; };
window.__click = (opId, selector) => { const e = __within(opId, selector); if (!e) return false; e.click(); return true; };
window.__type = (opId, selector, text) => {
  const e = __within(opId, selector);
  if (!e) return false;
  const proto = e instanceof HTMLTextAreaElement ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
  Object.getOwnPropertyDescriptor(proto, 'value').set.call(e, text);
  e.dispatchEvent(new Event('input', { bubbles: true }));
  e.dispatchEvent(new Event('change', { bubbles: true }));
  return true;
};
window.__live = (opId) => {
  const status = __within(opId, '.live-responses-table tbody .response-col_status');
  const body = __within(opId, '.live-responses-table tbody .response-col_description pre');
  return status ? { status: status.innerText.trim(), body: body ? body.innerText : '' } : null;
};
true
"#;

/// Opens an operation, presses "Try it out", types the id, executes; the live response.
async fn try_it_out(cdp: &Cdp, op_id: &str, id: &str) -> (String, String) {
    let op = serde_json::to_string(op_id).unwrap();
    cdp.wait_for(&format!("{op_id} is on the page"), &format!("!!__op({op})"))
        .await;
    // The summary bar toggles the operation open.
    cdp.eval(&format!(
        "__click({op}, '.opblock-summary-control') || __click({op}, '.opblock-summary')"
    ))
    .await;
    cdp.wait_for(
        &format!("the Try it out button of {op_id}"),
        &format!("__click({op}, 'button.try-out__btn')"),
    )
    .await;
    cdp.wait_for(
        &format!("the id field of {op_id}"),
        &format!(
            "__type({op}, 'tr[data-param-name=\"id\"][data-param-in=\"path\"] input', {})",
            serde_json::to_string(id).unwrap()
        ),
    )
    .await;
    // The field notifies Swagger after a short debounce (or on blur): execute until the
    // request goes out instead of the "Required field is not provided" hint.
    cdp.eval(&format!(
        "(() => {{ const e = __within({op}, 'tr[data-param-name=\"id\"] input'); e.dispatchEvent(new FocusEvent('focusout', {{bubbles: true}})); return true; }})()"
    ))
    .await;
    let started = Instant::now();
    let live = loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let clicked = cdp.eval(&format!("__click({op}, 'button.execute')")).await;
        assert_eq!(clicked, json!(true), "no Execute button in {op_id}");
        let answered = Instant::now();
        let live = loop {
            let live = cdp.eval(&format!("__live({op})")).await;
            if !live.is_null() || answered.elapsed() > Duration::from_secs(3) {
                break live;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if !live.is_null() {
            break live;
        }
        assert!(
            started.elapsed() < STEP,
            "{op_id}: Execute sent nothing within {STEP:?}; the operation shows:\n{}",
            cdp.eval(&format!("__op({op}).innerText")).await
        );
    };
    (
        live["status"].as_str().unwrap_or_default().to_owned(),
        live["body"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Opens an operation and presses "Try it out"; the request body Swagger fills in.
async fn example_body(cdp: &Cdp, op_id: &str) -> String {
    let op = serde_json::to_string(op_id).unwrap();
    cdp.eval(&format!(
        "__click({op}, '.opblock-summary-control') || __click({op}, '.opblock-summary')"
    ))
    .await;
    cdp.wait_for(
        &format!("the Try it out button of {op_id}"),
        &format!("__click({op}, 'button.try-out__btn')"),
    )
    .await;
    let body = cdp
        .wait_for(
            &format!("the request body of {op_id}"),
            &format!(
                "(() => {{ const t = __within({op}, 'textarea.body-param__text'); return t ? t.value : null; }})()"
            ),
        )
        .await;
    body.as_str().unwrap_or_default().to_owned()
}

/// The Swagger element id, the documented example and whether it is JSON, of every operation
/// with a body.
fn request_body_examples() -> Vec<(String, Value, bool)> {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    let schema_example = |schema: &Value| -> Value {
        let schema = match schema["$ref"].as_str() {
            Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        schema
            .get("example")
            .cloned()
            .unwrap_or_else(|| schema["examples"][0].clone())
    };
    let mut found = Vec::new();
    for ops in doc["paths"].as_object().unwrap().values() {
        for op in ops.as_object().unwrap().values() {
            // Swagger fills in the first media type's example (the document lists them sorted).
            let Some((media_type, media)) = op["requestBody"]["content"].as_object().and_then(|c| c.iter().next())
            else {
                continue;
            };
            if !media_type.contains("json") {
                // A binary body (BSON): Swagger shows its documented example as text.
                let example = media["example"].clone();
                assert!(example.is_string(), "{}: no {media_type} example", op["operationId"]);
                let id = format!(
                    "operations-{}-{}",
                    op["tags"][0].as_str().unwrap(),
                    op["operationId"].as_str().unwrap()
                );
                found.push((id, example, false));
                continue;
            }
            let example = media
                .get("example")
                .cloned()
                .unwrap_or_else(|| schema_example(&media["schema"]));
            assert!(!example.is_null(), "{}: no example", op["operationId"]);
            let id = format!(
                "operations-{}-{}",
                op["tags"][0].as_str().unwrap(),
                op["operationId"].as_str().unwrap()
            );
            found.push((id, example, true));
        }
    }
    assert!(found.len() >= 4, "{found:?}");
    found
}

/// Every (method, path) pair of the committed document.
fn operation_count() -> usize {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum()
}

/// Where the screenshot goes: the system temp dir, never the repository.
fn screenshot_path() -> PathBuf {
    let dir = std::env::temp_dir().join("resultd-browser-test");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir.join("docs.png")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_page_renders_every_operation_and_tries_put_then_get_in_chromium() {
    let server = LiveServer::start(crate::support::Kind::Memory, test_settings()).await;
    let mut browser = Chromium::start();
    let base = server.base_url();
    let outcome = tokio::time::timeout(WHOLE, async {
        let ws = browser.new_page().await;
        let cdp = Cdp::connect(&ws).await;
        cdp.call("Network.enable", json!({})).await;
        cdp.call("Page.enable", json!({})).await;
        cdp.call("Runtime.enable", json!({})).await;
        cdp.call("Page.navigate", json!({"url": format!("{base}/docs/")})).await;

        // Every operation of the spec, rendered: not a blank page.
        let expected = operation_count();
        assert!(expected >= 10, "the document has only {expected} operations");
        let rendered = cdp
            .wait_for(
                "the operations of the spec",
                &format!(
                    "(() => {{ const n = document.querySelectorAll('.opblock').length; return n >= {expected} ? n : 0; }})()"
                ),
            )
            .await;
        assert_eq!(rendered, json!(expected), "operations rendered on /docs/");
        let title = cdp.eval("document.querySelector('.info .title')?.innerText ?? ''").await;
        assert!(
            title.as_str().unwrap_or_default().contains("resultd"),
            "title: {title}"
        );
        cdp.eval(HELPERS).await;

        let (status, body) = try_it_out(&cdp, "operations-results-put_result", ID).await;
        assert_eq!(status, "201", "PUT /results/{{id}} from Swagger answered {status}: {body}");
        assert!(body.contains(ID) && body.contains("invoices.render"), "PUT body: {body}");

        let (status, body) = try_it_out(&cdp, "operations-results-get_result", ID).await;
        assert_eq!(status, "200", "GET /results/{{id}} from Swagger answered {status}: {body}");
        let record: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert_eq!(record["id"], ID);
        assert_eq!(record["name"], "invoices.render");
        assert_eq!(record["app"], "test");
        // The documented problems show their real codes.
        let shown = cdp
            .eval("__op('operations-results-get_result').innerText")
            .await;
        assert!(
            shown.as_str().unwrap_or_default().contains("\"code\": \"result-not-found\""),
            "the 404 of GET /results/{{id}} shows no result-not-found example"
        );

        // Every other request body starts from its documented example, as Swagger fills it in.
        for (op_id, example, is_json) in request_body_examples() {
            if op_id == "operations-results-put_result" {
                continue;
            }
            let body = example_body(&cdp, &op_id).await;
            if !is_json {
                assert_eq!(Some(body.as_str()), example.as_str(), "{op_id}: the binary body Swagger fills in");
                continue;
            }
            let parsed: Value = serde_json::from_str(&body)
                .unwrap_or_else(|e| panic!("{op_id}: Swagger fills the body with {body:?}: {e}"));
            assert_eq!(parsed, example, "{op_id}: the body Swagger fills in");
        }

        // Nothing the page did went anywhere but the server under test.
        let urls: Vec<String> = cdp
            .events("Network.requestWillBeSent")
            .iter()
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_owned))
            .collect();
        assert!(
            urls.iter().any(|u| u.ends_with("/openapi.json")),
            "the page never fetched /openapi.json: {urls:?}"
        );
        let foreign: Vec<&String> = urls
            .iter()
            .filter(|u| !u.starts_with(&format!("{base}/")) && !u.starts_with("data:"))
            .collect();
        assert!(foreign.is_empty(), "the page reached beyond 127.0.0.1: {foreign:?}");
        let failed = cdp.events("Network.loadingFailed");
        assert!(failed.is_empty(), "requests of the page failed: {failed:?}");
        let exceptions = cdp.events("Runtime.exceptionThrown");
        assert!(exceptions.is_empty(), "the page threw: {exceptions:?}");

        // A picture of the answer, for a person to look at.
        cdp.eval(
            "document.getElementById('operations-results-get_result').scrollIntoView({block: 'start'}); true",
        )
        .await;
        let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .expect("screenshot base64");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = screenshot_path();
        std::fs::write(&path, &png).expect("write screenshot");
        println!("screenshot of /docs/ after Try it out: {} ({} bytes)", path.display(), png.len());
        println!("requests of the page: {}", urls.len());
        urls.len()
    })
    .await;
    drop(browser);
    server.stop().await;
    let requests = outcome.unwrap_or_else(|_| panic!("the browser test took longer than {WHOLE:?}"));
    assert!(requests > 3);
}

#[tokio::test]
async fn docs_page_turns_the_online_validator_badge_off() {
    // The badge would load an image from a public validator with the document's address.
    let app = crate::support::TestApp::new(crate::support::Kind::Memory).await;
    let r = app.get("/docs/swagger-initializer.js").await;
    assert_eq!(r.status, axum::http::StatusCode::OK);
    let script = String::from_utf8_lossy(&r.body);
    assert!(script.contains(r#""validatorUrl": "none""#), "{script}");
    assert!(script.contains("/openapi.json"), "{script}");
}
