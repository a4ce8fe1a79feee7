//! Parsers for the values users write in annotations, flags and Mesh fields: port lists, CIDRs and
//! resource quantities.
//! One strict parser each, shared by the webhook, `meshd init` and Mesh validation, so that a value
//! accepted in one place is accepted everywhere.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

mod quantity;

pub use quantity::{parse_quantity, parse_resource_quantity};

/// Why a value was refused; `Display` says it in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not a port number (1-65535)")]
    Port(String),
    #[error("{0:?} is not an IPv4 or IPv6 CIDR such as 10.0.0.0/8 or fd00::/8")]
    Cidr(String),
    #[error("{0:?} is not a boolean (true or false)")]
    Bool(String),
    #[error("{0:?} is not a Kubernetes quantity such as 100m, 0.5, 128Mi or 1Gi")]
    Quantity(String),
}

/// One port, 1–65535.
pub fn parse_port(s: &str) -> Result<u16, ValueError> {
    let t = s.trim();
    // u16::from_str accepts "+80"; a port is digits only.
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValueError::Port(s.to_string()));
    }
    match t.parse::<u16>() {
        Ok(0) | Err(_) => Err(ValueError::Port(s.to_string())),
        Ok(p) => Ok(p),
    }
}

/// A comma-separated port list such as `"5432, 6379"`; empty text is an empty list.
pub fn parse_port_list(s: &str) -> Result<Vec<u16>, ValueError> {
    split_list(s).map(parse_port).collect()
}

/// An IPv4 or IPv6 network in CIDR notation. The address is kept as written (not masked) so that
/// rules print what the user wrote; `network()` gives the masked form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpCidr {
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let err = || ValueError::Cidr(s.to_string());
        let t = s.trim();
        // A bare address is accepted as a host route, as iptables and Istio accept it.
        let (addr, prefix) = match t.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (t, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| err())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(err)?
            }
            Some(_) => return Err(err()),
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma-separated CIDR list.
pub fn parse_cidr_list(s: &str) -> Result<Vec<IpCidr>, ValueError> {
    split_list(s).map(str::parse).collect()
}

/// Which outbound destinations are captured: all of them (`*`) or only the listed networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludeCidrs {
    All,
    Only(Vec<IpCidr>),
}

/// An include list: `*` alone (or in the list) means all; otherwise CIDRs. Empty text means none.
pub fn parse_include_cidrs(s: &str) -> Result<IncludeCidrs, ValueError> {
    let items: Vec<&str> = split_list(s).collect();
    if items.contains(&"*") {
        return Ok(IncludeCidrs::All);
    }
    Ok(IncludeCidrs::Only(
        items
            .into_iter()
            .map(str::parse)
            .collect::<Result<_, _>>()?,
    ))
}

/// Which inbound ports are captured: all of them (`*`) or only the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncludePorts {
    All,
    Only(Vec<u16>),
}

/// An include list of ports: `*` alone (or in the list) means all; otherwise ports. Empty text means
/// none, as Istio's `includeInboundPorts: ""`.
pub fn parse_include_ports(s: &str) -> Result<IncludePorts, ValueError> {
    if split_list(s).any(|p| p == "*") {
        return Ok(IncludePorts::All);
    }
    parse_port_list(s).map(IncludePorts::Only)
}

/// `true` or `false`, nothing else.
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ValueError::Bool(s.to_string())),
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port_list("5432, 6379").unwrap(), vec![5432, 6379]);
        assert_eq!(parse_port_list("").unwrap(), Vec::<u16>::new());
        for bad in ["0", "65536", "+80", "-1", "http", "80a", " "] {
            assert!(parse_port(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            parse_port_list("80,abc").unwrap_err(),
            ValueError::Port("abc".into())
        );
    }

    #[test]
    fn cidrs() {
        let c: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(
            "fd00::/8".parse::<IpCidr>().unwrap().to_string(),
            "fd00::/8"
        );
        assert_eq!(
            "1.2.3.4".parse::<IpCidr>().unwrap().to_string(),
            "1.2.3.4/32"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<IpCidr>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
            "*",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse_include_cidrs("*").unwrap(), IncludeCidrs::All);
        assert_eq!(parse_include_ports("*").unwrap(), IncludePorts::All);
        assert_eq!(
            parse_include_ports("80, 8080").unwrap(),
            IncludePorts::Only(vec![80, 8080])
        );
        assert_eq!(
            parse_include_ports("").unwrap(),
            IncludePorts::Only(Vec::new())
        );
        assert!(parse_include_ports("80,all").is_err());
        assert_eq!(
            parse_include_cidrs("10.0.0.0/8").unwrap(),
            IncludeCidrs::Only(vec!["10.0.0.0/8".parse().unwrap()])
        );
    }

    proptest! {
        #[test]
        fn port_list_round_trips(ports in proptest::collection::vec(1u16.., 0..10)) {
            let text = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_port_list(&text).unwrap(), ports);
        }

        #[test]
        fn parsers_never_panic(s in ".{0,40}") {
            let _ = parse_port_list(&s);
            let _ = parse_cidr_list(&s);
            let _ = parse_include_cidrs(&s);
            let _ = parse_include_ports(&s);
            let _ = parse_bool(&s);
        }

        #[test]
        fn cidr_display_parses_back(a in any::<u32>(), p in 0u8..=32) {
            let c = IpCidr { addr: IpAddr::V4(a.into()), prefix: p };
            prop_assert_eq!(c.to_string().parse::<IpCidr>().unwrap(), c);
        }
    }
}
