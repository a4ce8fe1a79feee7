//! What `meshd init` is asked to capture: the typed form of its flags, of `Mesh.spec.trafficCapture` and
//! of the `traffic.meshd.io/…` annotations. Values are parsed once (by `meshd_api::values`) before they
//! get here, so everything below is already valid.

use meshd_api::names;
use meshd_api::values::{IncludeCidrs, IpCidr};

/// Which inbound ports are redirected to the proxy's inbound port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundPorts {
    /// Every port except the proxy's own and the excluded ones (istio-iptables `-b '*'`).
    All,
    /// Only these ports.
    Only(Vec<u16>),
}

/// Capture settings; [`Default`] is istio-iptables' injected default with meshd's ports and uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// The proxy's uid and gid: their traffic is never captured (it is the traffic leaving the proxy).
    pub proxy_uid: u32,
    pub proxy_gid: u32,
    /// Where outbound TCP is redirected (Envoy's `virtualOutbound`).
    pub outbound_port: u16,
    /// Where inbound TCP is redirected (Envoy's `virtualInbound`).
    pub inbound_port: u16,
    /// The proxy's own listening ports (stats, health, agent): never captured inbound.
    pub proxy_ports: Vec<u16>,
    pub include_inbound_ports: InboundPorts,
    pub exclude_inbound_ports: Vec<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_cidrs: Vec<IpCidr>,
    pub include_outbound_cidrs: IncludeCidrs,
    /// Outbound TCP to these ports is captured whatever its destination, unless an excluded port or
    /// CIDR (or loopback) returns it first (istio-iptables `-q`).
    pub include_outbound_ports: Vec<u16>,
    /// Also program IPv6 (`ip6tables-restore`, `ip6` rules in nftables).
    pub ipv6: bool,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            proxy_uid: names::PROXY_UID,
            proxy_gid: names::PROXY_GID,
            outbound_port: names::PORT_OUTBOUND_CAPTURE,
            inbound_port: names::PORT_INBOUND_CAPTURE,
            proxy_ports: names::PROXY_OWN_PORTS.to_vec(),
            include_inbound_ports: InboundPorts::All,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            include_outbound_cidrs: IncludeCidrs::All,
            include_outbound_ports: Vec::new(),
            ipv6: true,
        }
    }
}
