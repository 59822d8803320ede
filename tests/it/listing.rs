//! `GET /results`: pages through an app's results with SCAN.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::json;

use crate::on_both_stores;
use crate::support::{Kind, TestApp, new_id};

/// Follows `next_cursor` to the end; every id seen, and the number of pages.
pub async fn list_all(app: &TestApp, query: &str, limit: usize) -> (BTreeSet<String>, usize) {
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for page in 1..=1000 {
        let mut uri = format!("/results?{query}&limit={limit}");
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={c}"));
        }
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let body = r.json();
        let results = body["results"].as_array().unwrap();
        assert!(results.len() <= limit, "{} > {limit}", results.len());
        for rec in results {
            seen.insert(rec["id"].as_str().unwrap().to_owned());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (seen, page),
        }
    }
    panic!("the listing never ended");
}

async fn listing_pages_through_every_result_of_the_app(kind: Kind) {
    let app = TestApp::new(kind).await;
    let mut ids = BTreeSet::new();
    for _ in 0..57 {
        let id = new_id();
        app.put(&format!("/results/{id}?app=listed"), json!({"name": "t"}))
            .await;
        app.put(&format!("/results/{id}/value?app=listed&state=SUCCESS"), json!(1))
            .await;
        ids.insert(id);
    }
    app.put(&format!("/results/{}?app=other", new_id()), json!({})).await;
    let (seen, pages) = list_all(&app, "app=listed", 10).await;
    assert_eq!(seen, ids);
    assert!(pages >= 6, "{pages}");
    let r = app.get("/results?app=listed").await;
    let body = r.json();
    assert_eq!(
        body["results"].as_array().unwrap().len(),
        57,
        "the default limit is 100"
    );
    assert_eq!(body["results"][0]["app"], "listed");
    assert_eq!(body["results"][0]["done"], true);
}

async fn listing_refuses_malformed_cursors_and_limits(kind: Kind) {
    let app = TestApp::new(kind).await;
    for cursor in ["!!!", "bm90IGpzb24", "eyJzIjoiYWJjIn0"] {
        let r = app.get(&format!("/results?cursor={cursor}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{cursor}");
        assert_eq!(r.problem_code(), "invalid-cursor");
    }
    for limit in ["0", "1001", "18446744073709551615", "-1", "ten"] {
        let r = app.get(&format!("/results?limit={limit}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "limit={limit}");
        assert_eq!(r.problem_code(), "invalid-query", "limit={limit}");
    }
    let r = app.get("/results?limit=1000").await;
    assert_eq!(r.status, StatusCode::OK, "the largest limit in the schema");
    let r = app.get("/results?app=empty").await;
    assert_eq!(r.json(), json!({"results": [], "next_cursor": null}));
}

on_both_stores!(
    listing_pages_through_every_result_of_the_app,
    listing_refuses_malformed_cursors_and_limits
);
