//! The OpenAPI document: committed = generated = served, and every route is in it.

use axum::http::StatusCode;

use crate::support::{Kind, TestApp};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn committed_spec_is_up_to_date() {
    assert!(
        COMMITTED == resultd::api::openapi::spec(),
        "openapi/openapi.json is stale: run `make openapi` and commit the result"
    );
}

#[tokio::test]
async fn served_spec_matches_committed() {
    let app = TestApp::new(Kind::Memory).await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let served: serde_json::Value = r.json();
    let committed: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(served, committed);
}

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::new(Kind::Memory).await;
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let uri = path
                .replace("{id}", "00000000-0000-4000-8000-000000000001")
                .replace("{app}", "a")
                .replace("{key}", "k")
                .replace("{field}", "f");
            let m: axum::http::Method = method.to_uppercase().parse().unwrap();
            let r = app.call(m, &uri, None, &[]).await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if r.status == StatusCode::NOT_FOUND {
                assert_ne!(
                    r.problem_code(),
                    "not-found",
                    "{method} {path} is documented but not routed"
                );
            }
        }
    }
}

#[test]
fn every_error_status_is_documented_as_a_problem() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is not a problem+json response"
                    );
                }
            }
        }
    }
}
