//! Small builders for the Envoy messages every part of the translation uses.

use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address, config_source,
    socket_address,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};

/// Packs a message as `Any` with its `type.googleapis.com/...` type URL.
pub fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: type_url::<M>(),
        value: message.encode_to_vec(),
    }
}

/// `type.googleapis.com/<package>.<name>`: prost's `Name::type_url`, in one allocation instead of
/// two `format!`s (every resource and typed config is packed, thousands per translation).
pub(crate) fn type_url<M: Name>() -> String {
    meshd_api::text::concat(&["type.googleapis.com/", M::PACKAGE, ".", M::NAME])
}

pub fn socket(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

pub fn seconds(s: i64) -> Duration {
    Duration {
        seconds: s,
        nanos: 0,
    }
}

/// "Ask ADS for it", the config source of every dynamic resource.
pub fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// A network filter `envoy.filters.network.tcp_proxy` to one cluster.
pub fn tcp_proxy_filter(stat_prefix: &str, cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".to_string(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_are_prosts() {
        use envoy_types::pb::envoy::config::cluster::v3::Cluster;
        use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
        assert_eq!(type_url::<Cluster>(), Cluster::type_url());
        assert_eq!(type_url::<TcpProxy>(), TcpProxy::type_url());
        assert_eq!(
            type_url::<HttpConnectionManager>(),
            HttpConnectionManager::type_url()
        );
    }
}
