//! The store conformance suite: every case runs on the embedded store, a standalone Redis, a
//! Sentinel-managed Redis and a 3-primary Redis Cluster (`on_all_stores!`).

use std::time::Duration;

use bytes::Bytes;
use resultd::store::{
    Guard, HashWrite, IncrementOutcome, Once, OnceOutcome, ResultStore, StoreError, SwapOutcome, WriteOutcome,
};

use crate::on_all_stores;
use crate::support::{Kind, store};

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, Bytes)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Bytes::from(v.to_string())))
        .collect()
}

fn sorted(mut f: Vec<(String, Bytes)>) -> Vec<(String, Bytes)> {
    f.sort();
    f
}

async fn written_hashes_read_back_with_their_ttl(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    assert_eq!(s.read_hash("c.k1", None).await.unwrap(), None);
    let w = HashWrite::set(
        "c.k1".into(),
        fields(&[("a", "1"), ("b", "\"x\"")]),
        Some(Duration::from_secs(100)),
    );
    assert_eq!(s.write_hashes(&[w]).await.unwrap(), WriteOutcome::Written);
    let snap = s.read_hash("c.k1", None).await.unwrap().unwrap();
    assert_eq!(sorted(snap.fields.clone()), fields(&[("a", "1"), ("b", "\"x\"")]));
    let ttl = snap.ttl_seconds().unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
}

async fn guards_decide_whether_a_batch_is_written(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let first = HashWrite::set("c.g".into(), fields(&[("a", "1")]), None).guarded(Guard::Absent);
    assert_eq!(
        s.write_hashes(std::slice::from_ref(&first)).await.unwrap(),
        WriteOutcome::Written
    );
    assert_eq!(s.write_hashes(&[first]).await.unwrap(), WriteOutcome::GuardFailed(0));
    // A stale expectation fails, and nothing of the batch lands.
    let other = HashWrite::set("c.other".into(), fields(&[("z", "1")]), None);
    let stale =
        HashWrite::set("c.g".into(), fields(&[("a", "2")]), None).guarded(Guard::Unchanged(fields(&[("a", "0")])));
    assert_eq!(
        s.write_hashes(&[other.clone(), stale]).await.unwrap(),
        WriteOutcome::GuardFailed(1)
    );
    assert_eq!(s.read_hash("c.other", None).await.unwrap(), None);
    let fresh =
        HashWrite::set("c.g".into(), fields(&[("a", "2")]), None).guarded(Guard::Unchanged(fields(&[("a", "1")])));
    assert_eq!(s.write_hashes(&[other, fresh]).await.unwrap(), WriteOutcome::Written);
    assert_eq!(s.read_hash("c.g", None).await.unwrap().unwrap().get("a").unwrap(), "2");
    let exists = HashWrite::set("c.missing".into(), fields(&[("a", "1")]), None).guarded(Guard::Exists);
    assert_eq!(s.write_hashes(&[exists]).await.unwrap(), WriteOutcome::GuardFailed(0));
}

async fn upserts_tell_what_was_there(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let ttl = Some(Duration::from_secs(100));
    assert_eq!(s.upsert_hash("c.u", &fields(&[("a", "1")]), ttl).await.unwrap(), None);
    let w = HashWrite::set("c.u".into(), fields(&[("extra", "x")]), None);
    assert_eq!(s.write_hashes(&[w]).await.unwrap(), WriteOutcome::Written);
    // The second upsert overwrites "a" and reports only what it left alone, with the TTL after.
    let before = s
        .upsert_hash("c.u", &fields(&[("a", "2"), ("b", "3")]), Some(Duration::from_secs(50)))
        .await
        .unwrap()
        .expect("the hash existed");
    assert_eq!(before.fields, fields(&[("extra", "x")]));
    assert!((49..=50).contains(&before.ttl_seconds().unwrap()), "{before:?}");
    let snap = s.read_hash("c.u", None).await.unwrap().unwrap();
    assert_eq!(sorted(snap.fields), fields(&[("a", "2"), ("b", "3"), ("extra", "x")]));
    // Without a TTL the key keeps the one it has; an existing hash with nothing else is Some(empty).
    let again = s
        .upsert_hash("c.u", &fields(&[("a", "4"), ("b", "5"), ("extra", "y")]), None)
        .await
        .unwrap();
    let again = again.expect("the hash existed");
    assert!(again.fields.is_empty(), "{again:?}");
    assert!((49..=50).contains(&again.ttl_seconds().unwrap()), "{again:?}");
    // Not a hash: an error, and the set is untouched.
    s.add_to_set("c.uset", &[Bytes::from_static(b"m")], None).await.unwrap();
    assert!(s.upsert_hash("c.uset", &fields(&[("a", "1")]), None).await.is_err());
    assert_eq!(s.read_set("c.uset").await.unwrap(), vec![Bytes::from_static(b"m")]);
}

async fn several_hashes_read_in_one_call(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let w = HashWrite::set("c.r1".into(), fields(&[("a", "1")]), Some(Duration::from_secs(100)));
    assert_eq!(s.write_hashes(&[w]).await.unwrap(), WriteOutcome::Written);
    let keys = ["c.r1".to_owned(), "c.r2".to_owned()];
    let read = s.read_fields(&keys).await.unwrap();
    assert_eq!(read, vec![Some(fields(&[("a", "1")])), None]);
    let snaps = s.read_hashes(&keys).await.unwrap();
    assert_eq!(snaps[0].as_ref().map(|h| h.fields.clone()), Some(fields(&[("a", "1")])));
    assert!((99..=100).contains(&snaps[0].as_ref().and_then(|h| h.ttl_seconds()).unwrap()));
    assert_eq!(snaps[1], None);
}

async fn replace_and_remove_reshape_a_hash(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    s.write_hashes(&[HashWrite::set("c.r".into(), fields(&[("a", "1"), ("b", "2")]), None)])
        .await
        .unwrap();
    let w = HashWrite {
        replace: true,
        ..HashWrite::set("c.r".into(), fields(&[("c", "3")]), None)
    };
    s.write_hashes(&[w]).await.unwrap();
    assert_eq!(
        s.read_hash("c.r", None).await.unwrap().unwrap().fields,
        fields(&[("c", "3")])
    );
    let w = HashWrite {
        remove: vec!["c".into()],
        ..HashWrite::set("c.r".into(), vec![], None)
    };
    s.write_hashes(&[w]).await.unwrap();
    assert_eq!(s.read_hash("c.r", None).await.unwrap(), None, "an emptied hash is gone");
}

async fn increments_are_integers_and_refuse_overflow(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    assert_eq!(
        s.increment("c.i", "n", 5, None).await.unwrap(),
        IncrementOutcome::Value(5)
    );
    assert_eq!(
        s.increment("c.i", "n", -7, None).await.unwrap(),
        IncrementOutcome::Value(-2)
    );
    s.write_hashes(&[HashWrite::set(
        "c.i".into(),
        fields(&[("s", "\"x\""), ("big", &i64::MAX.to_string())]),
        None,
    )])
    .await
    .unwrap();
    assert_eq!(
        s.increment("c.i", "s", 1, None).await.unwrap(),
        IncrementOutcome::NotInteger(Bytes::from("\"x\""))
    );
    assert_eq!(
        s.increment("c.i", "big", 1, None).await.unwrap(),
        IncrementOutcome::Overflow
    );
    // Past 2^53 (where Lua's doubles stop being exact) the answer is still exact.
    assert_eq!(
        s.increment("c.i", "big", -1, None).await.unwrap(),
        IncrementOutcome::Value(i64::MAX - 1)
    );
    assert_eq!(
        s.increment("c.i", "near", (1 << 53) + 1, None).await.unwrap(),
        IncrementOutcome::Value((1 << 53) + 1)
    );
}

async fn concurrent_increments_lose_nothing(kind: Kind) {
    let t = store(kind).await;
    let s = t.store.clone();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                s.increment("c.ci", "n", 1, Some(Duration::from_secs(60)))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(
        s.read_hash("c.ci", None).await.unwrap().unwrap().get("n").unwrap(),
        "1000"
    );
}

async fn pop_returns_and_removes_a_field(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    s.write_hashes(&[HashWrite::set("c.p".into(), fields(&[("a", "1"), ("b", "2")]), None)])
        .await
        .unwrap();
    assert_eq!(s.pop_field("c.p", "a", None).await.unwrap(), Some(Bytes::from("1")));
    assert_eq!(s.pop_field("c.p", "a", None).await.unwrap(), None);
    assert_eq!(
        s.read_hash("c.p", None).await.unwrap().unwrap().fields,
        fields(&[("b", "2")])
    );
}

async fn sets_hold_binary_members(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let a = Bytes::from_static(&[0, 1, 2, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    s.add_to_set("c.s", &[a.clone(), a.clone()], Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(s.read_set("c.s").await.unwrap(), vec![a]);
    assert!(s.read_set("c.none").await.unwrap().is_empty());
}

async fn delete_counts_existing_keys(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    s.write_hashes(&[HashWrite::set("c.d".into(), fields(&[("a", "1")]), None)])
        .await
        .unwrap();
    assert_eq!(s.delete(&["c.d".into(), "c.nothing".into()]).await.unwrap(), 1);
    assert_eq!(s.read_hash("c.d", None).await.unwrap(), None);
}

async fn expired_keys_are_gone(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    s.write_hashes(&[HashWrite::set(
        "c.e".into(),
        fields(&[("a", "1")]),
        Some(Duration::from_millis(150)),
    )])
    .await
    .unwrap();
    assert!(s.read_hash("c.e", None).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.read_hash("c.e", None).await.unwrap(), None);
}

async fn reading_with_refresh_resets_the_ttl(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    s.write_hashes(&[HashWrite::set(
        "c.t".into(),
        fields(&[("a", "1")]),
        Some(Duration::from_secs(10)),
    )])
    .await
    .unwrap();
    let snap = s
        .read_hash("c.t", Some(Duration::from_secs(7200)))
        .await
        .unwrap()
        .unwrap();
    assert!(snap.ttl_seconds().unwrap() > 7000);
}

async fn scan_pages_through_matching_keys(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    for i in 0..25 {
        s.write_hashes(&[HashWrite::set(
            format!("scan.mognet.result.{i:02}"),
            fields(&[("a", "1")]),
            None,
        )])
        .await
        .unwrap();
    }
    s.write_hashes(&[HashWrite::set(
        "other.mognet.result.x".into(),
        fields(&[("a", "1")]),
        None,
    )])
    .await
    .unwrap();
    let mut cursor = "0".to_owned();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let (next, keys) = s.scan("scan.mognet.result.*", &cursor, 7).await.unwrap();
        seen.extend(keys);
        cursor = next;
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(seen.len(), 25);
    assert!(seen.iter().all(|k| k.starts_with("scan.")));
}

async fn writes_wake_the_waiters_of_their_key(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let mut watch = s.changes().watch("c.mognet.result.w");
    s.write_hashes(&[HashWrite::set("c.mognet.result.w".into(), fields(&[("a", "1")]), None)])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(3), watch.changed())
        .await
        .expect("woken");
}

async fn increments_under_an_idempotency_key_apply_once(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    // The record's key carries the state's key as a hash tag: same Cluster slot.
    let once = |fingerprint: &str| Once {
        key: "c.resultd.idem.{c.o}.k1".to_owned(),
        fingerprint: fingerprint.to_owned(),
        ttl: Duration::from_secs(100),
    };
    let ttl = Some(Duration::from_secs(100));
    assert_eq!(
        s.increment_once("c.o", "n", 4, ttl, &once("n+4")).await.unwrap(),
        OnceOutcome::Ran(IncrementOutcome::Value(4))
    );
    assert_eq!(
        s.increment("c.o", "n", 1, ttl).await.unwrap(),
        IncrementOutcome::Value(5)
    );
    assert_eq!(
        s.increment_once("c.o", "n", 4, ttl, &once("n+4")).await.unwrap(),
        OnceOutcome::Replayed(4)
    );
    assert_eq!(
        s.increment_once("c.o", "n", 3, ttl, &once("n+3")).await.unwrap(),
        OnceOutcome::Reused
    );
    let snap = s.read_hash("c.o", None).await.unwrap().unwrap();
    assert_eq!(snap.fields, fields(&[("n", "5")]));
    // A refused increment is not remembered.
    s.write_hashes(&[HashWrite::set("c.o".into(), fields(&[("s", "\"x\"")]), None)])
        .await
        .unwrap();
    let other = Once {
        key: "c.resultd.idem.{c.o}.k2".to_owned(),
        ..once("s+1")
    };
    assert_eq!(
        s.increment_once("c.o", "s", 1, ttl, &other).await.unwrap(),
        OnceOutcome::Ran(IncrementOutcome::NotInteger(Bytes::from("\"x\"")))
    );
    assert_eq!(s.read_hash(&other.key, None).await.unwrap(), None);
}

async fn strings_are_swapped_only_over_what_was_read(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let (a, b) = (
        Bytes::from_static(b"{\"status\": \"STARTED\"}"),
        Bytes::from_static(b"second"),
    );
    assert_eq!(s.read_string("c.s").await.unwrap(), None);
    assert_eq!(
        s.swap_string("c.s", None, &a, Some(Duration::from_secs(100)), true)
            .await
            .unwrap(),
        SwapOutcome::Swapped
    );
    let snap = s.read_string("c.s").await.unwrap().unwrap();
    assert_eq!(snap.value, a);
    assert!((99..=100).contains(&snap.ttl_seconds().unwrap()));
    // Absent expected, but present: refused, with what is there.
    assert_eq!(
        s.swap_string("c.s", None, &b, None, true).await.unwrap(),
        SwapOutcome::Changed(Some(a.clone()))
    );
    assert_eq!(
        s.swap_string("c.s", Some(&b), &b, None, true).await.unwrap(),
        SwapOutcome::Changed(Some(a.clone()))
    );
    // No TTL is a plain SET, which also clears the old one.
    assert_eq!(
        s.swap_string("c.s", Some(&a), &b, None, true).await.unwrap(),
        SwapOutcome::Swapped
    );
    let snap = s.read_string("c.s").await.unwrap().unwrap();
    assert_eq!((snap.value, snap.ttl_ms), (b.clone(), None));
    assert_eq!(
        s.read_strings(&["c.s".to_owned(), "c.none".to_owned()]).await.unwrap(),
        vec![Some(b), None]
    );
    assert_eq!(
        s.swap_string("c.gone", Some(&a), &a, None, true).await.unwrap(),
        SwapOutcome::Changed(None)
    );
    // Unpublished swaps are the same compare-and-set.
    assert_eq!(
        s.swap_string("c.q", None, &a, None, false).await.unwrap(),
        SwapOutcome::Swapped
    );
    assert_eq!(
        s.swap_string("c.q", None, &a, None, false).await.unwrap(),
        SwapOutcome::Changed(Some(a.clone()))
    );
}

async fn a_key_of_another_type_is_no_string(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let w = HashWrite::set("c.h".into(), fields(&[("a", "1")]), None);
    s.write_hashes(&[w]).await.unwrap();
    assert!(matches!(s.read_string("c.h").await, Err(StoreError::Corrupt { .. })));
    // As MGET: a key of another type reads as absent.
    assert_eq!(s.read_strings(&["c.h".to_owned()]).await.unwrap(), vec![None]);
}

async fn swaps_wake_the_waiters_of_their_channel(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    let keys = ["c.ch1".to_owned(), "c.ch2".to_owned()];
    let mut watch = s.channel_changes().watch(&keys[0]);
    let first = s.hold_channels(&keys).await.unwrap();
    let second = s.hold_channels(&keys[..1]).await.unwrap();
    if matches!(kind, Kind::Memory) {
        assert_eq!(s.subscribed_channels(), 0);
    } else {
        assert_eq!(s.subscribed_channels(), 2);
    }
    s.swap_string(&keys[0], None, &Bytes::from_static(b"v"), None, true)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the publish wakes the channel's waiter");
    drop(first);
    // The second hold keeps its channel; the other goes with the first.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let expect_one = usize::from(!matches!(kind, Kind::Memory));
    while s.subscribed_channels() != expect_one && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.subscribed_channels(), expect_one);
    drop(second);
    while s.subscribed_channels() != 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.subscribed_channels(),
        0,
        "every channel is released with its last holder"
    );
}

async fn sorted_sets_read_by_rank(kind: Kind) {
    let t = store(kind).await;
    let s = &t.store;
    assert!(s.read_sorted("c.z", 0, 10).await.unwrap().is_empty());
    for (score, member) in [(3.0, "c"), (1.0, "a"), (2.0, "b"), (2.0, "ab")] {
        s.add_sorted("c.z", score, &Bytes::from(member)).await.unwrap();
    }
    let all = s.read_sorted("c.z", 0, 10).await.unwrap();
    assert_eq!(all, ["a", "ab", "b", "c"].map(Bytes::from));
    assert_eq!(s.read_sorted("c.z", 1, 2).await.unwrap(), ["ab", "b"].map(Bytes::from));
    assert!(s.read_sorted("c.z", 4, 2).await.unwrap().is_empty());
    // Moving a member re-ranks it.
    s.add_sorted("c.z", 0.5, &Bytes::from_static(b"c")).await.unwrap();
    assert_eq!(s.read_sorted("c.z", 0, 1).await.unwrap(), [Bytes::from_static(b"c")]);
}

on_all_stores!(
    sorted_sets_read_by_rank,
    strings_are_swapped_only_over_what_was_read,
    a_key_of_another_type_is_no_string,
    swaps_wake_the_waiters_of_their_channel,
    several_hashes_read_in_one_call,
    upserts_tell_what_was_there,
    written_hashes_read_back_with_their_ttl,
    guards_decide_whether_a_batch_is_written,
    replace_and_remove_reshape_a_hash,
    increments_are_integers_and_refuse_overflow,
    increments_under_an_idempotency_key_apply_once,
    concurrent_increments_lose_nothing,
    pop_returns_and_removes_a_field,
    sets_hold_binary_members,
    delete_counts_existing_keys,
    expired_keys_are_gone,
    reading_with_refresh_resets_the_ttl,
    scan_pages_through_matching_keys,
    writes_wake_the_waiters_of_their_key,
);
