//! The `/debug/syncz` contract: sync-state transitions as the control plane records them, the wire JSON,
//! and the merge of several replicas' answers.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use meshd_api::syncz::{
    ControlPlane, ProxySync, SyncReport, SyncState, TypeSync, XdsApi, XdsType, format_age, merge,
    split_node_id,
};
use pretty_assertions::assert_eq;
use serde_json::json;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_750_000_000 + secs).expect("in range")
}

#[test]
fn nothing_sent_is_not_sent() {
    assert_eq!(TypeSync::default().state(t(0)), SyncState::NotSent);
}

#[test]
fn sent_without_an_answer_is_stale_with_its_age() {
    let mut ty = TypeSync::default();
    ty.record_sent("v1", "1", t(0));
    assert_eq!(ty.state(t(12)), SyncState::Stale { age_millis: 12_000 });
    assert_eq!(ty.state(t(12)).label(), "STALE (12s)");
    // A replica clock behind the send time is age 0, never a negative or a panic.
    assert_eq!(ty.state(t(-5)), SyncState::Stale { age_millis: 0 });
}

#[test]
fn send_then_ack_is_synced() {
    let mut ty = TypeSync::default();
    ty.record_sent("v1", "1", t(0));
    ty.record_ack("v1", "1", t(1));
    assert_eq!(ty.state(t(100)), SyncState::Synced);
    assert_eq!(ty.state(t(100)).label(), "SYNCED");
}

#[test]
fn a_nack_of_the_last_response_is_nacked_with_envoys_detail() {
    let mut ty = TypeSync::default();
    ty.record_sent("v1", "1", t(0));
    ty.record_ack("v1", "1", t(1));
    ty.record_sent("v2", "2", t(10));
    ty.record_nack(
        "v2",
        "2",
        "Error adding/updating listener(s) virtualInbound: duplicate filter chain match",
        t(11),
    );
    let state = ty.state(t(100));
    assert_eq!(
        state,
        SyncState::Nacked {
            detail:
                "Error adding/updating listener(s) virtualInbound: duplicate filter chain match"
                    .into()
        }
    );
    assert_eq!(state.label(), "NACKED");
    assert_eq!(ty.nack_count, 1);
}

#[test]
fn a_later_ack_clears_a_nack_but_keeps_it_on_record() {
    let mut ty = TypeSync::default();
    ty.record_sent("v2", "2", t(10));
    ty.record_nack("v2", "2", "bad cluster", t(11));
    ty.record_sent("v3", "3", t(20));
    // The fix was sent but not answered yet: no longer NACKED, awaiting.
    assert_eq!(ty.state(t(25)), SyncState::Stale { age_millis: 5_000 });
    ty.record_ack("v3", "3", t(21));
    assert_eq!(ty.state(t(25)), SyncState::Synced);
    assert_eq!(
        ty.last_nack.as_ref().map(|n| n.detail.as_str()),
        Some("bad cluster")
    );
    assert_eq!(ty.nack_count, 1);
}

#[test]
fn an_answer_to_an_older_nonce_says_nothing_about_the_newest() {
    let mut ty = TypeSync::default();
    ty.record_sent("v1", "1", t(0));
    ty.record_sent("v2", "2", t(5));
    ty.record_ack("v1", "1", t(6));
    assert_eq!(ty.state(t(9)), SyncState::Stale { age_millis: 4_000 });
    ty.record_nack("v1", "1", "old", t(7));
    assert!(matches!(ty.state(t(9)), SyncState::Stale { .. }));
}

#[test]
fn an_ack_and_a_nack_of_one_nonce_the_later_wins() {
    let mut ty = TypeSync::default();
    ty.record_sent("v1", "1", t(0));
    ty.record_ack("v1", "1", t(1));
    ty.record_nack("v1", "1", "later rejection", t(2));
    assert!(matches!(ty.state(t(3)), SyncState::Nacked { .. }));
    ty.record_ack("v1", "1", t(4));
    assert_eq!(ty.state(t(5)), SyncState::Synced);
}

#[test]
fn out_of_sync_is_nacked_or_stale_beyond_the_bound() {
    let bound = Duration::from_secs(30);
    assert!(!SyncState::Synced.is_out_of_sync(bound));
    assert!(!SyncState::NotSent.is_out_of_sync(bound));
    assert!(!SyncState::Stale { age_millis: 30_000 }.is_out_of_sync(bound));
    assert!(SyncState::Stale { age_millis: 30_001 }.is_out_of_sync(bound));
    assert!(SyncState::Nacked { detail: "x".into() }.is_out_of_sync(bound));
}

#[test]
fn ages_are_short() {
    let cases = [
        (0, "0s"),
        (12, "12s"),
        (119, "119s"),
        (120, "2m"),
        (7_199, "119m"),
        (7_200, "2h"),
        (172_800, "2d"),
    ];
    for (secs, want) in cases {
        assert_eq!(format_age(Duration::from_secs(secs)), want, "{secs}s");
    }
    assert_eq!(SyncState::NotSent.label(), "NOT SENT");
}

#[test]
fn node_ids_split_at_the_last_dot() {
    assert_eq!(split_node_id("web-1.shop"), Some(("web-1", "shop")));
    assert_eq!(split_node_id("a.b.shop"), Some(("a.b", "shop")));
    assert_eq!(split_node_id("nodot"), None);
    assert_eq!(split_node_id(".shop"), None);
    assert_eq!(split_node_id("web."), None);
}

#[test]
fn the_wire_json_is_camel_case_with_type_keys() {
    let text = json!({
        "controlPlane": {"name": "meshd-7d9f-abcde", "version": "0.1.0"},
        "generatedAt": "2025-06-15T15:06:40Z",
        "proxies": [{
            "nodeId": "web-1.shop",
            "pod": "web-1",
            "namespace": "shop",
            "mesh": "default",
            "podFound": true,
            "api": "delta",
            "connectedAt": "2025-06-15T15:00:00.250Z",
            "types": {
                "CDS": {
                    "lastSent": {"version": "c0ffee12", "nonce": "7", "at": "2025-06-15T15:06:00Z"},
                    "lastAck": {"version": "c0ffee12", "nonce": "7", "at": "2025-06-15T15:06:00.1Z"},
                    "nackCount": 0
                },
                "LDS": {
                    "lastSent": {"version": "d00d", "nonce": "8", "at": "2025-06-15T15:06:00Z"},
                    "lastNack": {"version": "d00d", "nonce": "8", "detail": "bad", "at": "2025-06-15T15:06:01Z"},
                    "nackCount": 2
                },
                "EDS": {"lastSent": {"version": "e1", "nonce": "9", "at": "2025-06-15T15:06:28Z"}}
            }
        }]
    });
    let report: SyncReport = serde_json::from_value(text.clone()).expect("the contract reads");
    let p = &report.proxies[0];
    assert_eq!(p.api, XdsApi::Delta);
    assert_eq!(p.type_sync(XdsType::Lds).nack_count, 2);
    let now = report.generated_at;
    assert_eq!(p.type_sync(XdsType::Cds).state(now), SyncState::Synced);
    assert_eq!(
        p.type_sync(XdsType::Lds).state(now),
        SyncState::Nacked {
            detail: "bad".into()
        }
    );
    assert_eq!(
        p.type_sync(XdsType::Eds).state(now),
        SyncState::Stale { age_millis: 12_000 }
    );
    assert_eq!(p.type_sync(XdsType::Rds).state(now), SyncState::NotSent);
    // Written back, it reads the same.
    let again: SyncReport =
        serde_json::from_value(serde_json::to_value(&report).expect("serializes")).expect("reads");
    assert_eq!(again, report);
    // States in JSON: tagged objects.
    assert_eq!(
        serde_json::to_value(SyncState::Stale { age_millis: 5 }).expect("json"),
        json!({"state": "STALE", "ageMillis": 5})
    );
    assert_eq!(
        serde_json::to_value(SyncState::NotSent).expect("json"),
        json!({"state": "NOT_SENT"})
    );
    assert_eq!(
        XdsType::from_type_url(XdsType::Sds.type_url()),
        Some(XdsType::Sds)
    );
}

fn proxy(node: &str, connected: i64, sent_version: &str) -> ProxySync {
    let (pod, ns) = split_node_id(node).expect("node id");
    let mut cds = TypeSync::default();
    cds.record_sent(sent_version, "1", t(connected + 1));
    cds.record_ack(sent_version, "1", t(connected + 2));
    ProxySync {
        node_id: node.into(),
        pod: pod.into(),
        namespace: ns.into(),
        mesh: Some("default".into()),
        pod_found: true,
        api: XdsApi::Delta,
        connected_at: t(connected),
        types: [(XdsType::Cds, cds)].into(),
    }
}

fn report(name: &str, at: i64, proxies: Vec<ProxySync>) -> SyncReport {
    SyncReport {
        control_plane: ControlPlane {
            name: name.into(),
            version: "0.1.0".into(),
        },
        generated_at: t(at),
        proxies,
    }
}

#[test]
fn two_replicas_merge_into_one_list_sorted_by_name() {
    let a = report("meshd-a", 100, vec![proxy("web-1.shop", 0, "v1")]);
    let b = report(
        "meshd-b",
        101,
        vec![proxy("api-1.shop", 0, "v1"), proxy("db-0.data", 0, "v1")],
    );
    let merged = merge(&[a, b]);
    let names: Vec<(&str, &str)> = merged
        .iter()
        .map(|m| (m.name(), m.control_plane.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("api-1.shop", "meshd-b"),
            ("db-0.data", "meshd-b"),
            ("web-1.shop", "meshd-a")
        ]
    );
    assert!(merged.iter().all(|m| m.superseded.is_empty()));
    assert_eq!(merged[0].state(XdsType::Cds), SyncState::Synced);
    assert_eq!(merged[0].state(XdsType::Lds), SyncState::NotSent);
    assert_eq!(merged[0].version.as_deref(), Some("v1"));
}

#[test]
fn the_same_proxy_on_two_replicas_the_newest_connection_wins_and_says_so() {
    // The proxy reconnected to meshd-b at t=50; meshd-a still holds its old stream from t=0.
    let a = report("meshd-a", 100, vec![proxy("web-1.shop", 0, "old")]);
    let b = report("meshd-b", 100, vec![proxy("web-1.shop", 50, "new")]);
    for reports in [[a.clone(), b.clone()], [b, a]] {
        let merged = merge(&reports);
        assert_eq!(merged.len(), 1, "one row per proxy");
        let m = &merged[0];
        assert_eq!(m.control_plane, "meshd-b");
        assert_eq!(m.version.as_deref(), Some("new"));
        assert_eq!(m.superseded.len(), 1);
        assert_eq!(m.superseded[0].control_plane, "meshd-a");
        assert_eq!(m.superseded[0].connected_at, t(0));
    }
}

#[test]
fn the_version_is_the_most_recently_sent_of_any_type() {
    let mut p = proxy("web-1.shop", 0, "cds-v");
    let mut eds = TypeSync::default();
    eds.record_sent("eds-v", "2", t(40));
    p.types.insert(XdsType::Eds, eds);
    let merged = merge(&[report("meshd-a", 45, vec![p])]);
    assert_eq!(merged[0].version.as_deref(), Some("eds-v"));
    assert_eq!(
        merged[0].state(XdsType::Eds),
        SyncState::Stale { age_millis: 5_000 }
    );
    // The merged row is what `proxy-status -o json` prints: the proxy's fields, flattened, and states.
    let row = serde_json::to_value(&merged[0]).expect("json");
    assert_eq!(row["nodeId"], "web-1.shop");
    assert_eq!(row["controlPlane"], "meshd-a");
    assert_eq!(
        row["states"]["EDS"],
        json!({"state": "STALE", "ageMillis": 5000})
    );
    assert_eq!(row["types"]["CDS"]["lastSent"]["version"], "cds-v");
    assert!(row.get("superseded").is_none(), "empty lists left out");
}
