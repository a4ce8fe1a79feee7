//! Checks that need other resources (SPEC §8): a route destination whose host no Service or ServiceEntry
//! serves, a subset no DestinationRule for the host defines, a port the host lacks, a DestinationRule for
//! a host nobody serves or for ports it does not have. They ask a [`References`], which the control plane
//! implements over what is in force and `meshd validate` over the files it was given; both report the
//! same [`FieldError`]s.

use std::net::IpAddr;

use super::common::{at, idx};
use super::{FieldError, References};
use crate::networking::destination_rule::TrafficPolicy;
use crate::networking::{Destination, DestinationRuleSpec, VirtualServiceSpec};

/// Istio's reading of a host written in a resource of `namespace`: a name without a dot is a short
/// name of that namespace (`reviews` → `reviews.<namespace>.svc.<domain>`); anything else (an FQDN, a
/// wildcard, an IP) is taken as written.
pub fn resolve_host(host: &str, namespace: &str, domain: &str) -> String {
    // Without a dot, only an IPv6 address (which has a colon) is an IP: most hosts are short names.
    if host == "*" || host.contains('.') || (host.contains(':') && host.parse::<IpAddr>().is_ok()) {
        host.to_string()
    } else {
        crate::text::concat(&[host, ".", namespace, ".svc.", domain])
    }
}

/// Whether `pattern` (a host, `*.domain` or `*`) covers `host`, as Istio matches them: a wildcard
/// covers every name ending in its suffix, however many labels deep.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// `spec.host`'s problems and every destination's (routes, mirrors) of a VirtualService in `namespace`.
pub fn virtual_service(
    spec: &VirtualServiceSpec,
    namespace: &str,
    domain: &str,
    refs: &dyn References,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    // Paths are built only for a destination with a problem: most have none.
    let mut check = |path: &dyn Fn() -> String, d: &Destination| {
        destination(&mut errors, path, d, namespace, domain, refs);
    };
    for (i, route) in spec.http.iter().enumerate() {
        let rp = || idx("spec.http", i);
        for (j, d) in route.route.iter().enumerate() {
            check(
                &|| at(&idx(&at(&rp(), "route"), j), "destination"),
                &d.destination,
            );
        }
        if let Some(m) = &route.mirror {
            check(&|| at(&rp(), "mirror"), m);
        }
        for (j, m) in route.mirrors.iter().enumerate() {
            check(
                &|| at(&idx(&at(&rp(), "mirrors"), j), "destination"),
                &m.destination,
            );
        }
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        for (j, d) in route.route.iter().enumerate() {
            let path = || at(&idx(&at(&idx("spec.tcp", i), "route"), j), "destination");
            check(&path, &d.destination);
        }
    }
    for (i, route) in spec.tls.iter().enumerate() {
        for (j, d) in route.route.iter().enumerate() {
            let path = || at(&idx(&at(&idx("spec.tls", i), "route"), j), "destination");
            check(&path, &d.destination);
        }
    }
    errors
}

fn destination(
    errors: &mut Vec<FieldError>,
    path: &dyn Fn() -> String,
    d: &Destination,
    namespace: &str,
    domain: &str,
    refs: &dyn References,
) {
    let fqdn = resolve_host(&d.host, namespace, domain);
    if !refs.has_host(&fqdn) {
        errors.push(unknown_host(&at(&path(), "host"), &d.host, domain, refs));
        return;
    }
    if let Some(subset) = &d.subset
        && !refs.has_subset(&fqdn, subset)
    {
        errors.push(
            FieldError::new(
                at(&path(), "subset"),
                format!("is not a subset of any DestinationRule for {fqdn}"),
            )
            .with_str(subset),
        );
    }
    if let Some(p) = &d.port {
        port(
            errors,
            &at(&at(&path(), "port"), "number"),
            p.number,
            &fqdn,
            refs,
        );
    }
}

/// `host` is nobody's; the message suggests the full name when the short form was meant
/// (`reviews.shop` for `reviews.shop.svc.cluster.local`: Istio reads names with a dot as written).
fn unknown_host(path: &str, host: &str, domain: &str, refs: &dyn References) -> FieldError {
    let meant = [format!("{host}.svc.{domain}"), format!("{host}.{domain}")]
        .into_iter()
        .find(|h| host.contains('.') && refs.has_host(h));
    let problem = match meant {
        Some(full) => format!(
            "is not a host of any Service or ServiceEntry (a name with a dot is read as written: did you mean {full}?)"
        ),
        None => "is not a host of any Service or ServiceEntry".to_string(),
    };
    FieldError::new(path, problem).with_str(host)
}

fn port(errors: &mut Vec<FieldError>, path: &str, number: u32, fqdn: &str, refs: &dyn References) {
    let Some(ports) = refs.host_ports(fqdn) else {
        return;
    };
    if !ports.iter().any(|p| u32::from(*p) == number) {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        errors.push(
            FieldError::new(
                path,
                format!("is not a port of {fqdn} ({})", list.join(", ")),
            )
            .with_value(number),
        );
    }
}

/// A DestinationRule in `namespace`: its host must be served (wildcards are not checked: they may
/// cover hosts yet to come), and its port-level settings name ports of that host.
pub fn destination_rule(
    spec: &DestinationRuleSpec,
    namespace: &str,
    domain: &str,
    refs: &dyn References,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if spec.host.starts_with('*') {
        return errors;
    }
    let fqdn = resolve_host(&spec.host, namespace, domain);
    if !refs.has_host(&fqdn) {
        errors.push(unknown_host("spec.host", &spec.host, domain, refs));
        return errors;
    }
    let mut policy = |path: &str, tp: &TrafficPolicy| {
        for (i, p) in tp.port_level_settings.iter().enumerate() {
            let pp = at(
                &at(&idx(&at(path, "portLevelSettings"), i), "port"),
                "number",
            );
            port(&mut errors, &pp, p.port.number, &fqdn, refs);
        }
    };
    if let Some(tp) = &spec.traffic_policy {
        policy("spec.trafficPolicy", tp);
    }
    for (i, s) in spec.subsets.iter().enumerate() {
        if let Some(tp) = &s.traffic_policy {
            policy(&at(&idx("spec.subsets", i), "trafficPolicy"), tp);
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_in_the_namespace_and_names_with_dots_are_taken_as_written() {
        let d = "cluster.local";
        assert_eq!(
            resolve_host("reviews", "shop", d),
            "reviews.shop.svc.cluster.local"
        );
        assert_eq!(resolve_host("reviews.shop", "x", d), "reviews.shop");
        assert_eq!(resolve_host("*.example.com", "x", d), "*.example.com");
        assert_eq!(resolve_host("10.0.0.1", "x", d), "10.0.0.1");
    }

    #[test]
    fn wildcards_cover_every_deeper_name() {
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(host_matches("*.example.com", "a.b.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(host_matches("*", "anything"));
        assert!(host_matches("Api.Example.com", "api.example.com"));
        assert!(!host_matches("api.example.com", "web.example.com"));
    }
}

/// Who sees a resource (`exportTo`): every namespace (empty or `*`), its own (`.`), named ones, or
/// none (`~`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Export {
    pub public: bool,
    /// `.`: the resource's own namespace.
    pub private: bool,
    /// Namespaces named explicitly.
    pub names: std::collections::BTreeSet<String>,
}

impl Export {
    pub fn of(export_to: &[String]) -> Self {
        let mut e = Self {
            public: export_to.is_empty(),
            ..Self::default()
        };
        for x in export_to {
            match x.as_str() {
                "*" => e.public = true,
                "." => e.private = true,
                "~" => {}
                ns => {
                    e.names.insert(ns.to_string());
                }
            }
        }
        e
    }

    /// Whether proxies in `ns` see a resource of namespace `own` exported so.
    pub fn visible_to(&self, own: &str, ns: &str) -> bool {
        self.rank(own, ns).is_some()
    }

    /// Istio's sidecar precedence of a VirtualService for proxies in `ns`: 0 private to `ns`, 1 exported
    /// to `ns` by name, 2 public; `None`: not visible there.
    pub fn rank(&self, own: &str, ns: &str) -> Option<u8> {
        if self.private && own == ns {
            Some(0)
        } else if self.names.contains(ns) {
            Some(1)
        } else if self.public {
            Some(2)
        } else {
            None
        }
    }

    /// The namespaces this export names specifically (its own for `.`).
    pub fn named<'a>(&'a self, own: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.private
            .then_some(own)
            .into_iter()
            .chain(self.names.iter().map(String::as_str))
    }

    /// Whether some namespace sees both this (of namespace `own`) and `other` (of `other_own`).
    pub fn overlaps(&self, own: &str, other: &Export, other_own: &str) -> bool {
        (self.public && (other.public || other.named(other_own).next().is_some()))
            || (other.public && self.named(own).next().is_some())
            || self
                .named(own)
                .any(|ns| other.named(other_own).any(|o| o == ns))
    }
}

/// Precedence between resources of one kind where Istio takes the oldest: creationTimestamp (unknown
/// counts as newest), then namespace and name.
pub fn age_order<'a>(
    created: Option<i64>,
    namespace: &'a str,
    name: &'a str,
) -> (i64, &'a str, &'a str) {
    (created.unwrap_or(i64::MAX), namespace, name)
}
