//! Several replicas' answers as one list. A proxy holds one ADS stream, so it appears on one replica;
//! while it reconnects the old stream may still be open (on the same or another replica): the newest
//! connection wins, and the others are named in `superseded` so that the list says so.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::state::SyncState;
use super::{ProxySync, SyncReport, XdsType};

/// One proxy in the merged view; also a row of `meshd proxy-status -o json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MergedProxy {
    #[serde(flatten)]
    pub proxy: ProxySync,
    /// The replica holding the newest stream.
    pub control_plane: String,
    /// That replica's clock when it answered: the "now" of `states`.
    pub answered_at: Timestamp,
    /// Every type of [`XdsType::ALL`], computed from `types`.
    pub states: BTreeMap<XdsType, SyncState>,
    /// The version of the most recent response sent, of any type.
    pub version: Option<String>,
    /// Older streams of the same node id, newest first; not counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<Superseded>,
}

/// A stream that a newer connection of the same proxy replaced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Superseded {
    pub control_plane: String,
    pub connected_at: Timestamp,
}

impl MergedProxy {
    pub fn new(control_plane: &str, answered_at: Timestamp, proxy: ProxySync) -> Self {
        let states = XdsType::ALL
            .into_iter()
            .map(|ty| (ty, proxy.type_sync(ty).state(answered_at)))
            .collect();
        let version = proxy
            .types
            .values()
            .filter_map(|t| t.last_sent.as_ref())
            .max_by_key(|s| s.at)
            .map(|s| s.version.clone());
        Self {
            proxy,
            control_plane: control_plane.to_string(),
            answered_at,
            states,
            version,
            superseded: Vec::new(),
        }
    }

    /// The state of one type (NOT SENT for a type the map lacks).
    pub fn state(&self, ty: XdsType) -> SyncState {
        self.states.get(&ty).cloned().unwrap_or(SyncState::NotSent)
    }

    /// `<pod>.<namespace>`: the node id, which is also the table's NAME.
    pub fn name(&self) -> &str {
        &self.proxy.node_id
    }
}

/// All replicas' proxies, one per node id (the newest connection; on a tie the first answer given),
/// sorted by node id.
pub fn merge(reports: &[SyncReport]) -> Vec<MergedProxy> {
    let mut by_node: BTreeMap<String, MergedProxy> = BTreeMap::new();
    for report in reports {
        for proxy in &report.proxies {
            let candidate = MergedProxy::new(
                &report.control_plane.name,
                report.generated_at,
                proxy.clone(),
            );
            match by_node.remove(&proxy.node_id) {
                None => {
                    by_node.insert(proxy.node_id.clone(), candidate);
                }
                Some(held) => {
                    let (mut newer, older) =
                        if candidate.proxy.connected_at > held.proxy.connected_at {
                            (candidate, held)
                        } else {
                            (held, candidate)
                        };
                    newer.superseded.push(Superseded {
                        control_plane: older.control_plane,
                        connected_at: older.proxy.connected_at,
                    });
                    newer.superseded.extend(older.superseded);
                    newer
                        .superseded
                        .sort_by_key(|s| std::cmp::Reverse(s.connected_at));
                    by_node.insert(proxy.node_id.clone(), newer);
                }
            }
        }
    }
    by_node.into_values().collect()
}
