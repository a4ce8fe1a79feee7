//! The table (as `istioctl proxy-status`), the one-proxy view, and the JSON listing.

use std::fmt::Write;

use k8s_openapi::jiff::Timestamp;
use meshd_api::syncz::{self, MergedProxy, SyncState, XdsType, format_age};
use serde::Serialize;

use super::source::Answer;
use crate::cmd::table::columns;

/// Versions are 16 hex digits; the table shows the first 8, as git shows commits.
const SHORT_VERSION: usize = 8;

/// NAME, MESH, the five types, VERSION, and CONTROL PLANE when several replicas were asked.
pub fn table(proxies: &[MergedProxy], several: bool) -> String {
    let mut head = vec!["NAME", "MESH"];
    head.extend(XdsType::ALL.map(XdsType::as_str));
    head.push("VERSION");
    if several {
        head.push("CONTROL PLANE");
    }
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for p in proxies {
        let mut row = vec![p.name().to_string(), mesh(p)];
        row.extend(XdsType::ALL.map(|ty| p.state(ty).label()));
        row.push(
            p.version
                .as_deref()
                .map(|v| v.chars().take(SHORT_VERSION).collect())
                .unwrap_or_else(|| "-".into()),
        );
        if several {
            row.push(p.control_plane.clone());
        }
        rows.push(row);
    }
    columns(&rows)
}

fn mesh(p: &MergedProxy) -> String {
    p.proxy.mesh.clone().unwrap_or_else(|| "-".into())
}

/// Everything known about one proxy: per-type versions and nonces, and each NACK's detail.
pub fn one(p: &MergedProxy) -> String {
    let mut out = String::new();
    let age = |at: Timestamp| format_age(syncz::age(at, p.answered_at));
    let pod = if p.proxy.pod_found {
        "found".to_string()
    } else {
        format!(
            "not found: the control plane knows no Pod {} in namespace {} (the proxy gets no inbound config)",
            p.proxy.pod, p.proxy.namespace
        )
    };
    let fields = [
        ("NAME", p.name().to_string()),
        ("MESH", mesh(p)),
        ("POD", pod),
        (
            "CONTROL PLANE",
            format!("{} (answered {})", p.control_plane, p.answered_at),
        ),
        ("API", p.proxy.api.as_str().to_string()),
        (
            "CONNECTED",
            format!(
                "{} ({} ago)",
                p.proxy.connected_at,
                age(p.proxy.connected_at)
            ),
        ),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "{:<15}{value}", format!("{name}:"));
    }
    for s in &p.superseded {
        let _ = writeln!(
            out,
            "{:<15}an older stream on {} (connected {}) is left out; this is the newest",
            "RECONNECTED:", s.control_plane, s.connected_at
        );
    }
    out.push('\n');
    let mut rows = vec![
        [
            "TYPE",
            "STATE",
            "SENT VERSION",
            "SENT NONCE",
            "SENT",
            "ACKED VERSION",
            "NACKS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let dash = || "-".to_string();
    for ty in XdsType::ALL {
        let sync = p.proxy.type_sync(ty);
        let sent = sync.last_sent.as_ref();
        rows.push(vec![
            ty.as_str().into(),
            p.state(ty).label(),
            sent.map_or_else(dash, |s| s.version.clone()),
            sent.map_or_else(dash, |s| s.nonce.clone()),
            sent.map_or_else(dash, |s| format!("{} ago", age(s.at))),
            sync.last_ack
                .as_ref()
                .map_or_else(dash, |a| a.version.clone()),
            sync.nack_count.to_string(),
        ]);
    }
    out.push_str(&columns(&rows));
    for ty in XdsType::ALL {
        let sync = p.proxy.type_sync(ty);
        if let Some(nack) = &sync.last_nack {
            let now = match p.state(ty) {
                SyncState::Nacked { .. } => "the last config sent".to_string(),
                SyncState::Synced => format!(
                    "since replaced by version {}, which the proxy accepted",
                    sync.last_sent.as_ref().map_or("-", |s| s.version.as_str())
                ),
                _ => "a newer config awaits an answer".to_string(),
            };
            let _ = write!(
                out,
                "\n{} NACK of version {} (nonce {}), {} ago, {now}:\n  {}\n",
                ty.as_str(),
                nack.version,
                nack.nonce,
                age(nack.at),
                nack.detail
            );
        }
    }
    out
}

/// `-o json`: who answered, and the merged proxies.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing<'a> {
    control_planes: Vec<Replica<'a>>,
    proxies: &'a [MergedProxy],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Replica<'a> {
    name: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxies: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

pub fn json<'a>(answers: &'a [Answer], proxies: &'a [MergedProxy]) -> Listing<'a> {
    let control_planes = answers
        .iter()
        .map(|a| match &a.report {
            Ok(r) => Replica {
                name: a.name(),
                source: &a.source,
                version: Some(&r.control_plane.version),
                answered_at: Some(r.generated_at),
                proxies: Some(r.proxies.len()),
                error: None,
            },
            Err(e) => Replica {
                name: a.name(),
                source: &a.source,
                version: None,
                answered_at: None,
                proxies: None,
                error: Some(e),
            },
        })
        .collect();
    Listing {
        control_planes,
        proxies,
    }
}
