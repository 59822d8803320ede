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

/// Whether a schema (or the schema it references) carries an example.
fn schema_has_example(doc: &serde_json::Value, schema: &serde_json::Value) -> bool {
    if schema.get("example").is_some() || schema["examples"].as_array().is_some_and(|e| !e.is_empty()) {
        return true;
    }
    match schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => schema_has_example(doc, &doc["components"]["schemas"][name]),
        None => false,
    }
}

/// Whether a media type object carries an example, itself or through its schema.
fn media_has_example(doc: &serde_json::Value, media: &serde_json::Value) -> bool {
    media.get("example").is_some()
        || media["examples"].as_object().is_some_and(|e| !e.is_empty())
        || schema_has_example(doc, &media["schema"])
}

/// The backticked error codes a response description names.
fn described_codes(description: &str) -> Vec<String> {
    description
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|c| resultd::error::ErrorCode::ALL.iter().any(|k| k.as_str() == *c))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_request_and_response_body_has_an_example() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (media_type, media) in op["requestBody"]["content"].as_object().into_iter().flatten() {
                if !media_has_example(&doc, media) {
                    missing.push(format!("{method} {path} request body {media_type}"));
                }
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                for (media_type, media) in response["content"].as_object().into_iter().flatten() {
                    if !media_has_example(&doc, media) {
                        missing.push(format!("{method} {path} {status} {media_type}"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "bodies without an example:\n{}", missing.join("\n"));
}

#[test]
fn every_problem_response_has_an_example_of_each_code_it_names() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let mut wrong = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let Some(media) = response["content"].get("application/problem+json") else {
                    continue;
                };
                let at = format!("{method} {path} {status}");
                let codes = described_codes(response["description"].as_str().unwrap_or_default());
                if codes.is_empty() {
                    wrong.push(format!("{at}: the description names no error code"));
                }
                let examples = media["examples"].as_object().cloned().unwrap_or_default();
                for code in &codes {
                    let example = examples.values().find(|e| e["value"]["code"] == code.as_str());
                    match example {
                        None => wrong.push(format!("{at}: no example of `{code}`")),
                        Some(e) => {
                            let value = &e["value"];
                            let known = resultd::error::ErrorCode::ALL
                                .iter()
                                .find(|k| k.as_str() == code)
                                .unwrap();
                            if value["status"] != known.status().as_u16() || status != known.status().as_str() {
                                wrong.push(format!("{at}: `{code}` is a {} problem", known.status()));
                            }
                            if value["type"] != format!("urn:resultd:problem:{code}") || value["title"] != known.title()
                            {
                                wrong.push(format!("{at}: the `{code}` example has the wrong type or title"));
                            }
                            if value["detail"].as_str().is_none_or(str::is_empty) {
                                wrong.push(format!("{at}: the `{code}` example has no detail"));
                            }
                        }
                    }
                    seen.insert(code.clone());
                }
                for e in examples.values() {
                    if !codes.iter().any(|c| e["value"]["code"] == c.as_str()) {
                        wrong.push(format!(
                            "{at}: an example of `{}`, which the description does not name",
                            e["value"]["code"]
                        ));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "problem examples:\n{}", wrong.join("\n"));
    assert!(seen.len() >= 15, "only {} codes have examples: {seen:?}", seen.len());
}

#[test]
fn optional_headers_are_documented_as_strings_or_named_types_not_nullable() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let mut headers = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "header" {
                    headers += 1;
                    assert!(
                        p["schema"]["type"].is_string() || p["schema"]["$ref"].is_string(),
                        "{method} {path} header {}: {}",
                        p["name"],
                        p["schema"]
                    );
                }
            }
        }
    }
    assert!(headers > 5);
}

/// Every `$ref` under `value`, with where it was found.
fn refs<'a>(value: &'a serde_json::Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push((at.clone(), r)),
                    _ => refs(v, format!("{at}/{k}"), out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_resolves() {
    let doc: serde_json::Value = serde_json::from_str(COMMITTED).unwrap();
    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 20);
    let dangling: Vec<String> = found
        .into_iter()
        .filter(|(_, r)| r.strip_prefix('#').and_then(|p| doc.pointer(p)).is_none())
        .map(|(at, r)| format!("{at}: {r}"))
        .collect();
    assert!(dangling.is_empty(), "references to nothing:\n{}", dangling.join("\n"));
}
