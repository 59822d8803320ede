//! Test helpers: the app under test over either store, and a real redis-server.

pub mod process;
pub mod redis;

pub mod relay;
pub mod topology;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use http_body_util::BodyExt;
use resultd::api::ApiContext;
use resultd::config::Settings;
use resultd::server;
use resultd::store::{MemoryStore, RedisStore, Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub use self::redis::RedisServer;
pub use self::topology::{ClusterSet, SentinelSet};

/// Which store a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Memory,
    /// Redis with the done-result cache on (the default).
    Redis,
    /// Redis with the done-result cache off (`cache.max_bytes = 0`).
    RedisUncached,
    /// A primary, a replica and three sentinels.
    Sentinel,
    /// Three Cluster primaries.
    Cluster,
}

/// The Redis processes behind a Sentinel or Cluster store.
pub enum Topology {
    Sentinel(SentinelSet),
    Cluster(ClusterSet),
}

/// A store of `kind`; a Redis one owns its servers.
pub struct TestStore {
    pub store: Store,
    pub redis: Option<RedisServer>,
    pub topology: Option<Topology>,
}

async fn redis_store(url: &str, cached: bool) -> Store {
    let settings = test_settings();
    let store = RedisStore::connect(url, &settings.redis).await.expect("redis store");
    if cached {
        store.start_cache(settings.cache.max_bytes).await.expect("result cache");
    }
    Store::Redis(store)
}

pub async fn store(kind: Kind) -> TestStore {
    match kind {
        Kind::Memory => {
            let store = MemoryStore::new();
            store.spawn_sweeper(std::time::Duration::from_millis(100));
            TestStore {
                store: Store::Memory(store),
                redis: None,
                topology: None,
            }
        }
        Kind::Redis | Kind::RedisUncached => {
            let server = RedisServer::start();
            TestStore {
                store: redis_store(&server.url(), matches!(kind, Kind::Redis)).await,
                redis: Some(server),
                topology: None,
            }
        }
        Kind::Sentinel => {
            let set = tokio::task::spawn_blocking(SentinelSet::start)
                .await
                .expect("sentinels");
            TestStore {
                store: redis_store(&set.url(), true).await,
                redis: None,
                topology: Some(Topology::Sentinel(set)),
            }
        }
        Kind::Cluster => {
            let set = tokio::task::spawn_blocking(ClusterSet::start).await.expect("cluster");
            TestStore {
                store: redis_store(&set.url(), true).await,
                redis: None,
                topology: Some(Topology::Cluster(set)),
            }
        }
    }
}

/// Defaults with short timeouts, suited to tests.
pub fn test_settings() -> Settings {
    let mut s = Settings::defaults().expect("defaults");
    s.redis.command_timeout_ms = 1000;
    s.redis.connect_timeout_ms = 1000;
    s.redis.reconnect_max_delay_ms = 200;
    s.redis.poll_interval_ms = 50;
    s.default_app = "test".to_owned();
    s
}

/// The app under test, driven in process.
pub struct TestApp {
    pub router: Router,
    pub ctx: ApiContext,
    pub redis: Option<RedisServer>,
    pub topology: Option<Topology>,
}

/// A response, body read.
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The problem `code`, asserting the media type.
    pub fn problem_code(&self) -> String {
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{:?}",
            self.body
        );
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestApp {
    pub async fn new(kind: Kind) -> Self {
        Self::with_settings(kind, test_settings()).await
    }

    pub async fn with_settings(kind: Kind, settings: Settings) -> Self {
        let TestStore { store, redis, topology } = store(kind).await;
        Self::over(settings, store, redis, topology)
    }

    /// The app over an opened store.
    pub fn over(settings: Settings, store: Store, redis: Option<RedisServer>, topology: Option<Topology>) -> Self {
        let ctx = ApiContext::new(settings, store, CancellationToken::new()).expect("context");
        Self {
            router: server::app(ctx.clone()),
            ctx,
            redis,
            topology,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self.router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        TestResponse { status, headers, body }
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<Value>, headers: &[(&str, &str)]) -> TestResponse {
        let mut builder = Request::builder().method(method).uri(uri);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        self.send(builder.body(body).expect("request")).await
    }

    pub async fn get(&self, uri: &str) -> TestResponse {
        self.call(Method::GET, uri, None, &[]).await
    }

    pub async fn put(&self, uri: &str, body: Value) -> TestResponse {
        self.call(Method::PUT, uri, Some(body), &[]).await
    }

    pub async fn patch(&self, uri: &str, body: Value) -> TestResponse {
        self.call(Method::PATCH, uri, Some(body), &[]).await
    }

    pub async fn post(&self, uri: &str, body: Value) -> TestResponse {
        self.call(Method::POST, uri, Some(body), &[]).await
    }

    pub async fn delete(&self, uri: &str) -> TestResponse {
        self.call(Method::DELETE, uri, None, &[]).await
    }

    /// The fixture Redis (panics on the memory store).
    pub fn redis(&self) -> &RedisServer {
        self.redis.as_ref().expect("a Redis-backed app")
    }
}

/// A resultd served on a real loopback socket (for sockets, disconnects and shutdown).
pub struct LiveServer {
    /// `http://127.0.0.1:{port}`.
    pub base: String,
    /// The Redis URL the server uses (empty on the embedded store).
    pub redis_url: String,
    pub ctx: ApiContext,
    task: Option<tokio::task::JoinHandle<()>>,
    pub redis: Option<RedisServer>,
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        self.ctx.shutdown_token().cancel();
    }
}

impl LiveServer {
    pub async fn start(kind: Kind, settings: Settings) -> Self {
        let TestStore { store, redis, .. } = store(kind).await;
        Self::over(store, redis, settings).await
    }

    pub async fn over(store: Store, redis: Option<RedisServer>, settings: Settings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let redis_url = redis.as_ref().map(RedisServer::url).unwrap_or_default();
        let ctx = ApiContext::new(settings, store, CancellationToken::new()).expect("context");
        let task = tokio::spawn(server::serve(listener, ctx.clone()));
        Self {
            base,
            redis_url,
            ctx,
            task: Some(task),
            redis,
        }
    }

    /// A fresh redis-server and resultd over database `db` of it.
    pub async fn on_redis_db(settings: Settings, db: u8) -> Self {
        let redis = RedisServer::start();
        let redis_url = format!("redis://127.0.0.1:{}/{db}", redis.port);
        let store = RedisStore::connect(&redis_url, &settings.redis)
            .await
            .expect("redis store");
        store.start_cache(settings.cache.max_bytes).await.expect("result cache");
        let mut live = Self::over(Store::Redis(store), Some(redis), settings).await;
        live.redis_url = redis_url;
        live
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Cancels the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.ctx.shutdown_token().cancel();
        if let Some(task) = self.task.take() {
            let done = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
            assert!(
                done.is_ok(),
                "the server did not stop within 10 s of its shutdown token"
            );
        }
    }

    /// The socket address served.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("a socket address")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.base.clone()
    }
}

/// A fresh result id.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs each listed `async fn(Kind)` test on both stores (Redis with the cache on and off).
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_stores!(@each memory, Memory; $($name),*);
        $crate::on_both_stores!(@each redis, Redis; $($name),*);
        $crate::on_both_stores!(@each redis_uncached, RedisUncached; $($name),*);
    };
    (@each $module:ident, $kind:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Kind::$kind).await }
            )*
        }
    };
}

/// Runs each listed `async fn(Kind)` test on every store: embedded, Redis, Sentinel, Cluster.
#[macro_export]
macro_rules! on_all_stores {
    ($($name:ident),* $(,)?) => {
        $crate::on_both_stores!($($name),*);
        mod sentinel {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Kind::Sentinel).await }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::Kind::Cluster).await }
            )*
        }
    };
}
