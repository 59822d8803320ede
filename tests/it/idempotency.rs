//! `Idempotency-Key` on state increments: a retry of a request whose answer was lost (a 503
//! after a timeout, a dropped connection) is answered, not applied again.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::on_both_stores;
use crate::support::{Kind, TestApp, TestResponse};

fn new_key() -> String {
    format!("idem:{}", uuid::Uuid::new_v4())
}

async fn increment(app: &TestApp, uri: &str, by: i64, key: Option<&str>) -> TestResponse {
    let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
    app.call(Method::POST, uri, Some(json!({"by": by})), &headers).await
}

async fn increment_with_the_same_idempotency_key_is_applied_once_and_answered_the_same(kind: Kind) {
    let app = TestApp::new(kind).await;
    let state = format!("/state/test/{}", new_key());
    let uri = format!("{state}/count/increment");
    let first = increment(&app, &uri, 5, Some("retry-me-1")).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json(), json!({"value": 5}));
    assert_eq!(first.header("idempotent-replayed"), None);
    for _ in 0..3 {
        let again = increment(&app, &uri, 5, Some("retry-me-1")).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json(), json!({"value": 5}), "the first answer");
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.header("x-ttl"), first.header("x-ttl"));
    }
    assert_eq!(app.get(&state).await.json(), json!({"count": 5}), "applied once");
    // Another key is another request; so is a request without a key.
    assert_eq!(
        increment(&app, &uri, 5, Some("retry-me-2")).await.json(),
        json!({"value": 10})
    );
    assert_eq!(increment(&app, &uri, 5, None).await.json(), json!({"value": 15}));
    assert_eq!(increment(&app, &uri, 5, None).await.json(), json!({"value": 20}));
    // The same key on another state is that state's own.
    let other = format!("/state/test/{}/count/increment", new_key());
    assert_eq!(
        increment(&app, &other, 5, Some("retry-me-1")).await.json(),
        json!({"value": 5})
    );
}

async fn increment_with_a_reused_idempotency_key_for_another_request_answers_422(kind: Kind) {
    let app = TestApp::new(kind).await;
    let state = format!("/state/test/{}", new_key());
    let uri = format!("{state}/count/increment");
    assert_eq!(increment(&app, &uri, 2, Some("k")).await.json(), json!({"value": 2}));
    for (uri, by) in [(uri.clone(), 3), (format!("{state}/other/increment"), 2)] {
        let r = increment(&app, &uri, by, Some("k")).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri} by {by}");
        assert_eq!(r.problem_code(), "idempotency-key-reused");
    }
    assert_eq!(
        app.get(&state).await.json(),
        json!({"count": 2}),
        "nothing else was added"
    );
}

async fn increment_that_was_refused_is_not_remembered_under_its_idempotency_key(kind: Kind) {
    let app = TestApp::new(kind).await;
    let state = format!("/state/test/{}", new_key());
    assert_eq!(
        app.put(&state, json!({"count": "ten"})).await.status,
        StatusCode::CREATED
    );
    let uri = format!("{state}/count/increment");
    let r = increment(&app, &uri, 1, Some("after-fix")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.problem_code(), "state-not-integer");
    assert_eq!(
        app.put(&format!("{state}/count"), json!(10)).await.status,
        StatusCode::OK
    );
    let r = increment(&app, &uri, 1, Some("after-fix")).await;
    assert_eq!(r.json(), json!({"value": 11}), "applied: the refusal changed nothing");
    assert_eq!(r.header("idempotent-replayed"), None);
}

async fn increment_with_a_malformed_idempotency_key_answers_400(kind: Kind) {
    let app = TestApp::new(kind).await;
    let uri = format!("/state/test/{}/count/increment", new_key());
    let long = "x".repeat(256);
    for key in ["", "has space", long.as_str()] {
        let r = increment(&app, &uri, 1, Some(key)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(r.problem_code(), "invalid-header");
    }
    assert_eq!(
        increment(&app, &uri, 1, Some(&"x".repeat(255))).await.status,
        StatusCode::OK
    );
}

async fn put_value(app: &TestApp, uri: &str, value: serde_json::Value, headers: &[(&str, &str)]) -> TestResponse {
    app.call(Method::PUT, uri, Some(value), headers).await
}

async fn value_write_with_the_same_idempotency_key_is_written_once(kind: Kind) {
    let app = TestApp::new(kind).await;
    let id = crate::support::new_id();
    let created = app.put(&format!("/results/{id}"), json!({"name": "x"})).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let etag = created.header("etag").unwrap().to_owned();
    let uri = format!("/results/{id}/value?state=SUCCESS");
    let key = [("idempotency-key", "value-1"), ("if-match", etag.as_str())];
    let first = put_value(&app, &uri, json!({"total": 1}), &key).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The retry's If-Match is stale now (the first write changed the record): still a replay.
    let again = put_value(&app, &uri, json!({"total": 1}), &key).await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&again.body)
    );
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.json(), first.json(), "the same answer");
    assert_eq!(again.header("etag"), first.header("etag"));
    assert_eq!(
        app.get(&format!("/results/{id}")).await.json()["number_of_stops"],
        json!(1)
    );
    // Another value or state under the same key is refused, and changes nothing.
    for (uri, value) in [
        (uri.clone(), json!({"total": 2})),
        (format!("/results/{id}/value"), json!({"total": 1})),
    ] {
        let r = put_value(&app, &uri, value, &[("idempotency-key", "value-1")]).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        assert_eq!(r.problem_code(), "idempotency-key-reused");
    }
    let r = app.get(&format!("/results/{id}/value")).await;
    assert_eq!(r.json()["raw_value"], json!({"total": 1}));
    // Without a key the stale If-Match is a 412, as before.
    let r = put_value(&app, &uri, json!({"total": 1}), &[("if-match", etag.as_str())]).await;
    assert_eq!(r.status, StatusCode::PRECONDITION_FAILED);
}

on_both_stores!(
    value_write_with_the_same_idempotency_key_is_written_once,
    increment_with_the_same_idempotency_key_is_applied_once_and_answered_the_same,
    increment_with_a_reused_idempotency_key_for_another_request_answers_422,
    increment_that_was_refused_is_not_remembered_under_its_idempotency_key,
    increment_with_a_malformed_idempotency_key_answers_400,
);

#[tokio::test]
async fn idempotency_record_lives_in_the_state_slot_under_the_app_for_the_state_ttl() {
    use sha2::Digest;
    let app = TestApp::new(Kind::Redis).await;
    let key = new_key();
    let uri = format!("/state/test/{key}/count/increment?ttl=600");
    assert_eq!(increment(&app, &uri, 7, Some("slot")).await.json(), json!({"value": 7}));
    let state_key = format!("test.mognet.state.{key}");
    let hash = hex::encode(sha2::Sha256::digest(b"slot"));
    let record = format!("test.resultd.idem.{{{state_key}}}.{hash}");
    let redis = app.redis();
    assert_eq!(redis.cli(&["HGET", &record, "value"]), "7");
    let pttl: i64 = redis.cli(&["PTTL", &record]).parse().unwrap();
    assert!((590_000..=600_000).contains(&pttl), "record PTTL {pttl}");
    // A Cluster keeps the increment and its record in one script: same slot.
    assert_eq!(
        fred::util::redis_keyslot(record.as_bytes()),
        fred::util::redis_keyslot(state_key.as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_write_with_an_idempotency_key_is_written_once_on_a_cluster() {
    value_write_with_the_same_idempotency_key_is_written_once(Kind::Cluster).await;
    increment_with_the_same_idempotency_key_is_applied_once_and_answered_the_same(Kind::Cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increment_whose_answer_was_lost_is_not_applied_again_when_retried_with_its_key() {
    use crate::support::relay::{Mode, Relay};
    use crate::support::{RedisServer, test_settings};
    let redis = RedisServer::start();
    let relay = Relay::start(redis.port).await;
    let mut settings = test_settings();
    settings.redis.command_timeout_ms = 500;
    let store = resultd::store::RedisStore::connect(&relay.url(), &settings.redis)
        .await
        .unwrap();
    let app = TestApp::over(settings, resultd::store::Store::Redis(store), None, None);
    let key = new_key();
    let uri = format!("/state/test/{key}/count/increment");
    assert_eq!(
        increment(&app, &uri, 1, Some("warm-up")).await.json(),
        json!({"value": 1})
    );

    // Redis runs the increment, but its reply never comes back: resultd answers 503.
    relay.cut(Mode::HoldReplies);
    let lost = increment(&app, &uri, 1, Some("lost-answer")).await;
    assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(lost.problem_code(), "store-unavailable");
    let field = || redis.cli(&["HGET", &format!("test.mognet.state.{key}"), "count"]);
    assert_eq!(field(), "2", "the 503'd increment was applied");
    relay.restore();
    Relay::settle().await;

    // The client retries as told: the same key answers the first value and adds nothing.
    let mut retry = increment(&app, &uri, 1, Some("lost-answer")).await;
    let start = std::time::Instant::now();
    while retry.status == StatusCode::SERVICE_UNAVAILABLE && start.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        retry = increment(&app, &uri, 1, Some("lost-answer")).await;
    }
    assert_eq!(
        retry.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&retry.body)
    );
    assert_eq!(retry.json(), json!({"value": 2}));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(field(), "2", "counted once");
}
