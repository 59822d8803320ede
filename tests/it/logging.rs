//! Logs: one JSON line per request with `log.format = "json"`, and no secret in any line.
#![allow(clippy::disallowed_methods)]

use sha2::Digest;

use crate::support::RedisServer;
use crate::support::process::Resultd;

const REDIS_PASSWORD: &str = "Pw-very-secret-91c3";
const TOKEN: &str = "tok-also-secret-77ab";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_password_or_token_hash_appears_in_logs_or_config_output() {
    let redis = RedisServer::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        &format!(">{REDIS_PASSWORD}"),
        "~*",
        "&*",
        "+@all",
    ]);
    let hash = hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()));
    let store = format!("redis://app:{REDIS_PASSWORD}@127.0.0.1:{}/0", redis.port);
    let config = format!(
        "store = \"{store}\"\ndefault_app = \"logs\"\n[log]\nformat = \"json\"\nfilter = \"debug\"\n[auth]\ntokens = [{{ sha256 = \"{hash}\", apps = [\"*\"], scope = \"write\" }}]\n"
    );
    let mut server = Resultd::start(&config, &[]);
    let http = reqwest::Client::new();
    let id = uuid::Uuid::new_v4();
    let auth = format!("Bearer {TOKEN}");
    let r = http
        .put(format!("{}/results/{id}", server.base))
        .header("authorization", &auth)
        .json(&serde_json::json!({"name": "t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .get(format!("{}/results/{id}", server.base))
        .header("authorization", &auth)
        .header("x-request-id", "trace-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/results/{id}", server.base))
        .header("authorization", format!("Bearer {hash}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the hash itself is not a token");
    assert_eq!(
        http.get(format!("{}/health/ready", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{}/metrics", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let logs = server.stop();

    for secret in [REDIS_PASSWORD, TOKEN, hash.as_str()] {
        assert!(!logs.contains(secret), "a secret leaked into the log:\n{logs}");
    }
    // JSON lines only, and one request line per request with its fields.
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let requests: Vec<&serde_json::Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(requests.len(), 5, "{logs}");
    let traced = requests
        .iter()
        .find(|l| l["request_id"] == "trace-me-1")
        .expect("the client's request id is logged");
    assert_eq!(traced["level"], "DEBUG", "the access log is at debug level");
    assert_eq!(traced["method"], "GET");
    assert_eq!(traced["route"], "/results/{id}");
    assert_eq!(traced["status"], 200);
    assert!(traced["duration_ms"].as_f64().is_some());
    assert!(requests.iter().any(|l| l["status"] == 401));
    let startup = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("resultd listening"))
        })
        .expect("a startup line");
    assert!(
        startup["message"].as_str().unwrap().contains("redis://app:***@"),
        "{startup}"
    );

    // `resultd config` redacts the same secrets.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, &config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_resultd"))
        .arg("config")
        .env("RESULTD_CONFIG", &path)
        .env(
            "RESULTD_STORE",
            format!(
                "redis-sentinel://app:{REDIS_PASSWORD}@127.0.0.1:1/0?sentinelServiceName=m&sentinelPassword={TOKEN}"
            ),
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    for secret in [REDIS_PASSWORD, TOKEN, hash.as_str()] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("sentinelPassword=***"), "{printed}");
    assert!(printed.contains("sha256 = \"***\""), "{printed}");
}

/// Every log line of a request carries its id (the `request` span), the warning of a failed
/// request included, and so does the `error` event of an event stream, which is written after
/// the request's frame has returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_on_every_log_line_and_every_problem() {
    let redis = RedisServer::start();
    let config = format!(
        "store = \"{}\"\ndefault_app = \"ids\"\n[log]\nformat = \"json\"\nfilter = \"info\"\n",
        redis.url()
    );
    let mut server = Resultd::start(&config, &[]);
    let http = reqwest::Client::new();

    // A record another client broke: GET is a 500 (a warning), a listing skips it (a warning).
    let broken = uuid::Uuid::new_v4();
    redis.cli(&["HSET", &format!("ids.mognet.result.{broken}"), "state", "\"BOGUS\""]);
    let r = http
        .get(format!("{}/results/{broken}", server.base))
        .header("x-request-id", "trace-fail-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["request_id"], "trace-fail-1");
    let r = http
        .get(format!("{}/results", server.base))
        .header("x-request-id", "trace-list-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // An event stream whose record breaks while it is followed.
    let id = uuid::Uuid::new_v4();
    let uri = format!("{}/results/{id}", server.base);
    http.put(&uri).json(&serde_json::json!({})).send().await.unwrap();
    let mut stream = http
        .get(format!("{uri}/events"))
        .header("x-request-id", "trace-sse-3")
        .send()
        .await
        .unwrap();
    let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("event: result"));
    redis.cli(&["HSET", &format!("ids.mognet.result.{id}"), "state", "\"BOGUS\""]);
    let text = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut text = String::new();
        while let Some(chunk) = stream.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
    .await
    .expect("the stream ends with the error event");
    let data = text
        .split("event: error")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("data: ")))
        .unwrap_or_else(|| panic!("no error event: {text}"));
    let event: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["code"], "corrupt-data");
    assert_eq!(event["request_id"], "trace-sse-3", "{event}");

    let logs = server.stop();
    let lines: Vec<serde_json::Value> = logs.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let of_request =
        |id: &str| -> Vec<&serde_json::Value> { lines.iter().filter(|l| l["span"]["request_id"] == id).collect() };
    let failed = of_request("trace-fail-1");
    let warning = failed
        .iter()
        .find(|l| l["message"] == "request failed")
        .unwrap_or_else(|| panic!("no failed-request warning in the request's span:\n{logs}"));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["code"], "corrupt-data");
    assert_eq!(warning["route"], "/results/{id}");
    let listing = of_request("trace-list-2");
    assert!(
        listing
            .iter()
            .any(|l| l["message"] == "listing skips a result it cannot read"),
        "a line logged deep in the handler carries the id:\n{logs}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["message"] != "request failed" || l["span"]["request_id"].is_string()),
        "no failed-request warning without an id:\n{logs}"
    );
}
