//! A DestinationRule's `trafficPolicy` on a cluster, Istio's way (`cluster_traffic_policy.go`): the
//! rule's policy, with a matching `portLevelSettings` entry and then the subset's own policy each
//! replacing whole blocks. `loadBalancer.simple` (LEAST_REQUEST default) and `consistentHash` (RING_HASH,
//! minimum ring 1024), `connectionPool` as circuit breakers starting at max uint32 with
//! `track_remaining`, `connectTimeout`, HTTP idle timeout and requests per connection (the TCP idle
//! timeout goes on the `tcp_proxy`s: [`Policy::tcp_idle_timeout`]), and `outlierDetection`; `tls` is
//! layered the same way and applied with the cluster's endpoints ([`super::tls`]). PASSTHROUGH makes
//! the cluster ORIGINAL_DST: the address the client dialled.

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, circuit_breakers, cluster,
};
use envoy_types::pb::envoy::config::core::v3::HttpProtocolOptions as CommonHttp;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};
use envoy_types::pb::envoy::r#type::v3::Percent as EnvoyPercent;
use envoy_types::pb::google::protobuf::{Duration, UInt32Value, UInt64Value};
use meshd_api::networking::destination_rule::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, LoadBalancerSettings,
    OutlierDetection, SimpleLb, TrafficPolicy,
};
use prost::Message;

use crate::envoy::pack;

/// The blocks of policy in force for one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Policy<'a> {
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    pub outlier_detection: Option<&'a OutlierDetection>,
    pub tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Policy<'a> {
    /// `policy` for `port`: its blocks, replaced by those of a matching `portLevelSettings` entry.
    fn layer(mut self, policy: Option<&'a TrafficPolicy>, port: u16) -> Self {
        let Some(p) = policy else { return self };
        let replace = |this: &mut Self,
                       lb: Option<&'a LoadBalancerSettings>,
                       pool: Option<&'a ConnectionPoolSettings>,
                       outlier: Option<&'a OutlierDetection>| {
            if lb.is_some() {
                this.load_balancer = lb;
            }
            if pool.is_some() {
                this.connection_pool = pool;
            }
            if outlier.is_some() {
                this.outlier_detection = outlier;
            }
        };
        replace(
            &mut self,
            p.load_balancer.as_ref(),
            p.connection_pool.as_ref(),
            p.outlier_detection.as_ref(),
        );
        let pl = p
            .port_level_settings
            .iter()
            .find(|pl| pl.port.number == u32::from(port));
        // Istio: a port's tls replaces the rule's, as the other blocks do.
        if let Some(tls) = pl.and_then(|pl| pl.tls.as_ref()).or(p.tls.as_ref()) {
            self.tls = Some(tls);
        }
        if let Some(pl) = pl {
            replace(
                &mut self,
                pl.load_balancer.as_ref(),
                pl.connection_pool.as_ref(),
                pl.outlier_detection.as_ref(),
            );
        }
        self
    }

    /// The rule's policy for `port`, then the subset's.
    pub(crate) fn of(
        rule: Option<&'a TrafficPolicy>,
        subset: Option<&'a TrafficPolicy>,
        port: u16,
    ) -> Self {
        Self::default().layer(rule, port).layer(subset, port)
    }

    /// `connectionPool.tcp.idleTimeout`: the `tcp_proxy`'s idle timeout (Istio), if set.
    pub(crate) fn tcp_idle_timeout(&self) -> Option<Duration> {
        self.connection_pool?
            .tcp
            .as_ref()?
            .idle_timeout
            .as_ref()
            .and_then(duration)
    }

    /// The consistent hash the routes to this cluster must carry, if any.
    pub(crate) fn consistent_hash(&self) -> Option<&'a ConsistentHashLb> {
        self.load_balancer?.consistent_hash.as_ref()
    }
}

fn duration(d: &meshd_api::duration::Duration) -> Option<Duration> {
    let d = d.get().ok()?;
    Some(Duration {
        seconds: i64::try_from(d.as_secs()).ok()?,
        nanos: i32::try_from(d.subsec_nanos()).ok()?,
    })
}

/// A positive count, else `None` (Istio treats 0 as unset).
fn count(v: Option<i32>) -> Option<u32> {
    v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0)
}

/// Applies `policy` to `cluster`.
pub(crate) fn apply(cluster: &mut Cluster, policy: &Policy<'_>) {
    if let Some(lb) = policy.load_balancer {
        cluster.lb_policy = match (&lb.consistent_hash, lb.simple) {
            (Some(_), _) => {
                cluster.lb_config = Some(cluster::LbConfig::RingHashLbConfig(
                    cluster::RingHashLbConfig {
                        minimum_ring_size: Some(UInt64Value {
                            value: lb
                                .consistent_hash
                                .as_ref()
                                .and_then(|c| c.minimum_ring_size)
                                .unwrap_or(1024),
                        }),
                        ..Default::default()
                    },
                ));
                cluster::LbPolicy::RingHash
            }
            (None, Some(SimpleLb::Passthrough)) => {
                // Istio: to the address the caller dialled, endpoints unused.
                cluster.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                    cluster::DiscoveryType::OriginalDst as i32,
                ));
                cluster.eds_cluster_config = None;
                cluster.load_assignment = None;
                cluster::LbPolicy::ClusterProvided
            }
            (None, Some(SimpleLb::RoundRobin)) => cluster::LbPolicy::RoundRobin,
            (None, Some(SimpleLb::Random)) => cluster::LbPolicy::Random,
            _ => cluster::LbPolicy::LeastRequest,
        } as i32;
    }
    if let Some(pool) = policy.connection_pool {
        let tcp = pool.tcp.as_ref();
        let http = pool.http.as_ref();
        let max = |v: Option<u32>| {
            Some(UInt32Value {
                value: v.unwrap_or(u32::MAX),
            })
        };
        cluster.circuit_breakers = Some(CircuitBreakers {
            thresholds: vec![circuit_breakers::Thresholds {
                max_connections: max(count(tcp.and_then(|t| t.max_connections))),
                max_pending_requests: max(count(http.and_then(|h| h.http1_max_pending_requests))),
                max_requests: max(count(http.and_then(|h| h.http2_max_requests))),
                max_retries: max(count(http.and_then(|h| h.max_retries))),
                track_remaining: true,
                ..Default::default()
            }],
            ..Default::default()
        });
        if let Some(t) = tcp
            .and_then(|t| t.connect_timeout.as_ref())
            .and_then(duration)
        {
            cluster.connect_timeout = Some(t);
        }
        let idle = http
            .and_then(|h| h.idle_timeout.as_ref())
            .and_then(duration);
        let per_connection = count(http.and_then(|h| h.max_requests_per_connection));
        if idle.is_some() || per_connection.is_some() {
            set_common_http(cluster, idle, per_connection);
        }
    }
    if let Some(o) = policy.outlier_detection {
        let enforcing = |v: Option<u32>| {
            v.map(|v| UInt32Value {
                value: if v == 0 { 0 } else { 100 },
            })
        };
        cluster.outlier_detection = Some(EnvoyOutlier {
            consecutive_5xx: o.consecutive_5xx_errors.map(|value| UInt32Value { value }),
            enforcing_consecutive_5xx: enforcing(o.consecutive_5xx_errors),
            consecutive_gateway_failure: o
                .consecutive_gateway_errors
                .map(|value| UInt32Value { value }),
            enforcing_consecutive_gateway_failure: enforcing(o.consecutive_gateway_errors),
            interval: o.interval.as_ref().and_then(duration),
            base_ejection_time: o.base_ejection_time.as_ref().and_then(duration),
            max_ejection_percent: o
                .max_ejection_percent
                .and_then(|v| u32::try_from(v).ok())
                .map(|value| UInt32Value { value }),
            enforcing_success_rate: Some(UInt32Value { value: 0 }),
            ..Default::default()
        });
        cluster
            .common_lb_config
            .get_or_insert_with(Default::default)
            .healthy_panic_threshold = Some(EnvoyPercent {
            value: f64::from(o.min_health_percent.unwrap_or(0)),
        });
    }
}

const HTTP_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// Idle timeout and requests per connection into the cluster's upstream HTTP options (kept with an
/// HTTP/2 setting already there).
fn set_common_http(cluster: &mut Cluster, idle: Option<Duration>, per_connection: Option<u32>) {
    let mut options = cluster
        .typed_extension_protocol_options
        .get(HTTP_OPTIONS)
        .and_then(|any| HttpProtocolOptions::decode(any.value.as_slice()).ok())
        .unwrap_or_else(|| HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::HttpProtocolOptions(Default::default())),
                },
            )),
            ..Default::default()
        });
    options.common_http_protocol_options = Some(CommonHttp {
        idle_timeout: idle,
        max_requests_per_connection: per_connection.map(|value| UInt32Value { value }),
        ..Default::default()
    });
    cluster
        .typed_extension_protocol_options
        .insert(HTTP_OPTIONS.to_string(), pack(&options));
}

/// The route's hash policy for a consistent hash (Istio's `ConsistentHashToHashPolicy`).
pub(crate) fn hash_policy(
    hash: &ConsistentHashLb,
) -> Option<envoy_types::pb::envoy::config::route::v3::route_action::HashPolicy> {
    use envoy_types::pb::envoy::config::route::v3::route_action::{HashPolicy, hash_policy};
    let specifier = if let Some(h) = &hash.http_header_name {
        hash_policy::PolicySpecifier::Header(hash_policy::Header {
            header_name: h.clone(),
            ..Default::default()
        })
    } else if let Some(c) = &hash.http_cookie {
        hash_policy::PolicySpecifier::Cookie(hash_policy::Cookie {
            name: c.name.clone(),
            ttl: c.ttl.as_ref().and_then(duration),
            path: c.path.clone().unwrap_or_default(),
            ..Default::default()
        })
    } else if hash.use_source_ip == Some(true) {
        hash_policy::PolicySpecifier::ConnectionProperties(hash_policy::ConnectionProperties {
            source_ip: true,
        })
    } else if let Some(q) = &hash.http_query_parameter_name {
        hash_policy::PolicySpecifier::QueryParameter(hash_policy::QueryParameter {
            name: q.clone(),
        })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(specifier),
        terminal: false,
    })
}
