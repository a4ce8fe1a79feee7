//! Envoy object names meshd generates (SPEC §6). Tests, `meshd proxy-status` and people reading
//! `/config_dump` rely on them.

use meshd_api::text::{Digits, concat};

/// The outbound capture listener on 15001.
pub const VIRTUAL_OUTBOUND: &str = "virtualOutbound";
/// The inbound capture listener on 15006.
pub const VIRTUAL_INBOUND: &str = "virtualInbound";
/// Unknown outbound destinations under ALLOW_ANY: connect to the original destination.
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Unknown outbound destinations under REGISTRY_ONLY: no endpoints, the connection is closed.
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Inbound ports no Service names: to the app on its original destination.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// Source address of Envoy's connections to the local app. The capture rules return traffic from
/// 127.0.0.6 on `lo` (as Istio's do), so Envoy's own inbound hop is never captured again.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";

/// `outbound|<port>||<svc>.<ns>.svc.<domain>` (a subset's: `traffic::subsets::subset_cluster_name`).
pub fn outbound_cluster_name(port: u16, fqdn: &str) -> String {
    concat(&["outbound|", Digits::new(port).as_str(), "||", fqdn])
}

/// `inbound|<port>||`: the app's port on this pod.
pub fn inbound_cluster_name(port: u16) -> String {
    format!("inbound|{port}||")
}

/// `<svc>.<ns>.svc.<domain>`.
pub fn service_fqdn(name: &str, namespace: &str, domain: &str) -> String {
    concat(&[name, ".", namespace, ".svc.", domain])
}

/// A Service host's name and namespace: [`service_fqdn`] read back (`None` for another host).
pub fn service_of_fqdn<'f>(fqdn: &'f str, domain: &str) -> Option<(&'f str, &'f str)> {
    fqdn.strip_suffix(domain)?
        .strip_suffix(".svc.")?
        .split_once('.')
}

/// The RDS name of one service port: `<fqdn>:<port>`.
pub fn route_name(fqdn: &str, port: u16) -> String {
    concat(&[fqdn, ":", Digits::new(port).as_str()])
}
