//! Address ranges of `virtualOutbound` chains against a route's `destinationSubnets`: CIDRs either
//! nest or are disjoint, so a chain's range is inside a subnet, holds it, or is apart from it.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::google::protobuf::UInt32Value;

/// An address or CIDR (`10.1.0.0/16`, `10.1.2.3`) as a prefix range; `None` for one that is neither.
pub(crate) fn prefix(address: &str) -> Option<CidrRange> {
    let (ip, len) = match address.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u32>().ok()?)),
        None => (address, None),
    };
    let parsed: IpAddr = ip.parse().ok()?;
    let max = if parsed.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then(|| CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: len }),
    })
}

fn parts(r: &CidrRange) -> Option<(u128, u32, u32)> {
    let ip: IpAddr = r.address_prefix.parse().ok()?;
    let len = r.prefix_len.as_ref().map_or(0, |l| l.value);
    Some(match ip {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), len.min(32), 32),
        IpAddr::V6(v6) => (u128::from(v6), len.min(128), 128),
    })
}

/// Whether `inner` lies inside `outer` (equal ranges do).
pub(crate) fn contains(outer: &CidrRange, inner: &CidrRange) -> bool {
    let (Some((o, olen, obits)), Some((i, ilen, ibits))) = (parts(outer), parts(inner)) else {
        return false;
    };
    if obits != ibits || olen > ilen {
        return false;
    }
    let shift = obits - olen;
    shift >= 128 || (o >> shift) == (i >> shift)
}

/// Whether every range of `addresses` (at least one) lies inside one of `subnets`.
pub(crate) fn within_any(addresses: &[CidrRange], subnets: &[String]) -> bool {
    let subnets: Vec<CidrRange> = subnets.iter().filter_map(|s| prefix(s)).collect();
    !addresses.is_empty()
        && addresses
            .iter()
            .all(|a| subnets.iter().any(|s| contains(s, a)))
}

/// The parts of `addresses` that `subnets` cover: a subnet inside an address range, or the range
/// itself when a subnet holds it.
pub(crate) fn intersect(addresses: &[CidrRange], subnets: &[String]) -> Vec<CidrRange> {
    let mut out: Vec<CidrRange> = Vec::new();
    for s in subnets.iter().filter_map(|s| prefix(s)) {
        for a in addresses {
            let part = if contains(&s, a) {
                a.clone()
            } else if contains(a, &s) {
                s.clone()
            } else {
                continue;
            };
            if !out.contains(&part) {
                out.push(part);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_nest_or_are_apart() {
        let r = |s: &str| prefix(s).unwrap();
        assert!(contains(&r("10.0.0.0/8"), &r("10.1.2.0/24")));
        assert!(contains(&r("10.1.2.3"), &r("10.1.2.3/32")));
        assert!(!contains(&r("10.1.2.0/24"), &r("10.0.0.0/8")));
        assert!(!contains(&r("10.1.2.0/24"), &r("10.1.3.0/24")));
        assert!(contains(&r("0.0.0.0/0"), &r("192.168.0.1")));
        assert!(contains(&r("::/0"), &r("fd00::1")));
        assert!(!contains(&r("::/0"), &r("10.0.0.1")), "families differ");
        assert!(prefix("10.0.0.0/33").is_none() && prefix("nope").is_none());
        assert!(within_any(&[r("10.96.0.40")], &["10.96.0.0/16".into()]));
        assert!(!within_any(&[], &["10.96.0.0/16".into()]));
        let addresses = [r("10.1.0.0/16"), r("192.168.1.0/24")];
        assert_eq!(
            intersect(
                &addresses,
                &[
                    "10.1.2.0/24".into(),
                    "192.168.0.0/16".into(),
                    "172.16.0.0/12".into()
                ]
            ),
            [r("10.1.2.0/24"), r("192.168.1.0/24")]
        );
    }
}
