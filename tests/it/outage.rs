//! Redis outages under load: bounded 503s, recovery, and no acknowledged write lost.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::relay::{Mode, Relay};
use crate::support::{LiveServer, RedisServer, new_id, test_settings};

#[derive(Default)]
struct Tally {
    requests: usize,
    by_status: std::collections::BTreeMap<u16, usize>,
    longest: Duration,
    longest_503: Duration,
    bad: Vec<String>,
    acked: Vec<String>,
}

const COMMAND_TIMEOUT_MS: u64 = 500;

/// Runs `clients` loops of write / read / complete / wait until `stop` is set.
fn load(
    live: &LiveServer,
    clients: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..clients)
        .map(|_| {
            let (base, stop, tally) = (live.base.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = new_id();
                    let steps = [
                        ("PUT", format!("{base}/results/{id}"), Some(json!({"name": "soak"}))),
                        ("GET", format!("{base}/results/{id}"), None),
                        (
                            "PUTV",
                            format!("{base}/results/{id}/value?state=SUCCESS"),
                            Some(json!([1, 2, 3])),
                        ),
                        ("WAIT", format!("{base}/results/{id}?wait=1"), None),
                    ];
                    for (kind, url, body) in steps {
                        let started = Instant::now();
                        let req = match kind {
                            "PUT" | "PUTV" => http.put(&url).json(&body.unwrap()),
                            _ => http.get(&url),
                        };
                        let outcome = match req.send().await {
                            Err(e) => Err(e.to_string()),
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let retry_after = r.headers().get("retry-after").is_some();
                                let code = if status == 503 {
                                    r.json::<serde_json::Value>()
                                        .await
                                        .map(|b| b["code"].to_string())
                                        .unwrap_or_default()
                                } else {
                                    String::new()
                                };
                                Ok((status, retry_after, code))
                            }
                        };
                        let elapsed = started.elapsed();
                        let mut t = tally.lock().unwrap();
                        t.requests += 1;
                        t.longest = t.longest.max(elapsed);
                        match outcome {
                            Err(e) => {
                                t.bad.push(format!("{kind} transport error {e}"));
                                break;
                            }
                            Ok((status, retry_after, code)) => {
                                *t.by_status.entry(status).or_default() += 1;
                                if status == 503 {
                                    t.longest_503 = t.longest_503.max(elapsed);
                                    if !retry_after {
                                        t.bad.push(format!("{kind} 503 without Retry-After"));
                                    }
                                    if code != "\"store-unavailable\"" {
                                        t.bad.push(format!("{kind} 503 with code {code}"));
                                    }
                                    break;
                                }
                                if kind == "PUT" && status == 201 {
                                    t.acked.push(id.clone());
                                } else if !((200..300).contains(&status) || (kind == "GET" && status == 404)) {
                                    t.bad.push(format!("{kind} answered {status}"));
                                    break;
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

async fn ready_after(live: &LiveServer, since: Instant) -> Duration {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    loop {
        if let Ok(r) = http.get(live.url("/health/ready")).send().await
            && r.status() == 200
        {
            return since.elapsed();
        }
        if since.elapsed() > Duration::from_secs(15) {
            return since.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn settings() -> resultd::config::Settings {
    let mut s = test_settings();
    s.redis.command_timeout_ms = COMMAND_TIMEOUT_MS;
    s.redis.connect_timeout_ms = COMMAND_TIMEOUT_MS;
    s.redis.reconnect_max_delay_ms = 100;
    s
}

fn check(tally: &Tally, redis: &RedisServer, recoveries: &[Duration]) {
    eprintln!(
        "outage: {} requests, statuses {:?}, longest request {:?}, longest 503 {:?}, recovery {:?}, {} acknowledged writes",
        tally.requests,
        tally.by_status,
        tally.longest,
        tally.longest_503,
        recoveries,
        tally.acked.len()
    );
    assert!(tally.bad.is_empty(), "{:?}", tally.bad);
    assert!(
        tally.by_status.get(&503).copied().unwrap_or(0) > 0,
        "the cut produced no 503"
    );
    // Bounded: a command times out after 500 ms, with one retry; a wait lasts 1 s on top.
    assert!(
        tally.longest < Duration::from_secs(4),
        "a request took {:?}",
        tally.longest
    );
    assert!(
        tally.longest_503 < Duration::from_secs(3),
        "a 503 took {:?}",
        tally.longest_503
    );
    for r in recoveries {
        assert!(*r < Duration::from_secs(5), "ready again only after {r:?}");
    }
    let mut lost = Vec::new();
    for id in &tally.acked {
        if redis.cli(&["EXISTS", &format!("test.mognet.result.{id}")]) != "1" {
            lost.push(id.clone());
        }
    }
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_redis_gives_bounded_503s_and_loses_no_acknowledged_write() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let settings = settings();
    let store = resultd::store::RedisStore::connect(&relay.url(), &settings.redis)
        .await
        .unwrap();
    let live = LiveServer::over(resultd::store::Store::Redis(store), None, settings).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients = load(&live, 6, stop.clone(), tally.clone());
    let mut recoveries = Vec::new();
    tokio::time::sleep(Duration::from_millis(800)).await;
    for mode in [Mode::Refuse, Mode::Blackhole] {
        relay.cut(mode);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        relay.restore();
        let restored = Instant::now();
        Relay::settle().await;
        recoveries.push(ready_after(&live, restored).await);
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(15), c)
            .await
            .expect("clients stop")
            .unwrap();
    }
    // Writes succeed after the restore.
    let id = new_id();
    let r = reqwest::Client::new()
        .put(live.url(&format!("/results/{id}")))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    check(&tally.lock().unwrap(), &redis, &recoveries);
    live.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_load_loses_no_acknowledged_write() {
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let settings = settings();
    let store = resultd::store::RedisStore::connect(&redis.url(), &settings.redis)
        .await
        .unwrap();
    let live = LiveServer::over(resultd::store::Store::Redis(store), None, settings).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let clients = load(&live, 6, stop.clone(), tally.clone());
    tokio::time::sleep(Duration::from_millis(800)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    redis.restart();
    let restarted = Instant::now();
    let recovery = ready_after(&live, restarted).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(15), c)
            .await
            .expect("clients stop")
            .unwrap();
    }
    check(&tally.lock().unwrap(), &redis, &[recovery]);
    live.stop().await;
}
