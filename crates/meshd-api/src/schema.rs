//! Pieces of the CRD schemas the six traffic and security kinds share: patterns for hosts and names,
//! list and string bounds, and CEL rules for Istio's one-ofs. CEL rules sit only under bounded lists
//! and maps (`maxItems`/`maxProperties`) so the API server's cost estimate stays within its budget.

use serde_json::{Value, json};

/// A DNS name with an optional leading `*.` (`reviews`, `reviews.shop.svc.cluster.local`,
/// `*.example.com`), as Istio's `ValidateWildcardDomain` takes them but with the wildcard only as a whole
/// first label. A trailing dot is allowed.
pub const HOST_PATTERN: &str = r"^(\*\.)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*\.?$";

/// [`HOST_PATTERN`] or `*` alone (any host), where Istio allows it.
pub const HOST_OR_ANY_PATTERN: &str = r"^(\*|(\*\.)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*\.?)$";

/// A Gateway server's host: `[ns/]host`, where ns is a namespace, `.` (the Gateway's) or `*` (any), and
/// host is [`HOST_OR_ANY_PATTERN`].
pub const GATEWAY_HOST_PATTERN: &str = r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?|\.|\*)/)?(\*|(\*\.)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*\.?)$";

/// A VirtualService's `gateways` entry: `mesh`, `name` or `namespace/name`.
pub const GATEWAY_REF_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";

/// An `exportTo` entry: `.` (this namespace), `*` (all), `~` (none) or a namespace.
pub const EXPORT_TO_PATTERN: &str = r"^(\.|\*|~|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$";

/// An RFC 1123 label: a subset, port or namespace name.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Longest host: 253 for the name, plus a `namespace/` prefix where one is allowed.
pub const HOST_MAX_LENGTH: u32 = 253;
pub const GATEWAY_HOST_MAX_LENGTH: u32 = 317;
/// Longest IPv6 CIDR text (`ffff:…:ffff/128`).
pub const CIDR_MAX_LENGTH: u32 = 43;

/// CEL: exactly one of `fields` is set (Istio's proto one-ofs that need a value).
pub fn exactly_one(fields: &[&str]) -> Value {
    json!({
        "rule": format!("{} == 1", count_set(fields)),
        "message": format!("exactly one of {} must be set", list(fields)),
    })
}

/// CEL: at most one of `fields` is set.
pub fn at_most_one(fields: &[&str]) -> Value {
    json!({
        "rule": format!("{} <= 1", count_set(fields)),
        "message": format!("at most one of {} may be set", list(fields)),
    })
}

/// CEL on a list of strings: each is an IPv4/IPv6 address or CIDR (the Kubernetes 1.31 IP and CIDR
/// libraries; the Mesh CRD needs 1.31 too).
pub fn ips_or_cidrs(field: &str) -> Value {
    json!({
        "rule": "self.all(c, isIP(c) || isCIDR(c))",
        "messageExpression": format!(
            "'{field}: ' + self.filter(c, !(isIP(c) || isCIDR(c))).map(c, '\"' + c + '\"').join(', ') + ' is not an IP address or CIDR such as 10.0.0.0/8'"
        ),
    })
}

/// Schema of a label map (`matchLabels`, `sourceLabels`, subset `labels`): bounded, Kubernetes label values.
pub fn label_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 64,
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
        },
    })
}

/// Schema of an Istio message meshd accepts but does not act on: any object.
pub fn opaque_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema of a list of such messages.
pub fn opaque_list(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 16,
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    })
}

fn count_set(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("(has(self.{f}) ? 1 : 0)"))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn list(fields: &[&str]) -> String {
    match fields {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_rules_read_well() {
        let r = exactly_one(&["exact", "prefix", "regex"]);
        assert_eq!(
            r["rule"],
            "(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + (has(self.regex) ? 1 : 0) == 1"
        );
        assert_eq!(
            r["message"],
            "exactly one of exact, prefix or regex must be set"
        );
        assert_eq!(
            at_most_one(&["port", "derivePort"])["message"],
            "at most one of port or derivePort may be set"
        );
    }

    #[test]
    fn host_patterns() {
        let host = regex::Regex::new(HOST_PATTERN).unwrap();
        let any = regex::Regex::new(HOST_OR_ANY_PATTERN).unwrap();
        let gw = regex::Regex::new(GATEWAY_HOST_PATTERN).unwrap();
        for good in [
            "reviews",
            "reviews.shop.svc.cluster.local",
            "*.example.com",
            "example.com.",
            "10.0.0.1",
        ] {
            assert!(host.is_match(good), "{good}");
            assert!(any.is_match(good), "{good}");
            assert!(gw.is_match(good), "{good}");
        }
        for bad in [
            "*",
            "a*.example.com",
            "*example.com",
            "ex ample",
            "-a",
            "a..b",
            "",
        ] {
            assert!(!host.is_match(bad), "{bad}");
        }
        assert!(any.is_match("*"));
        for good in ["*", "shop/*", "./bookinfo.com", "*/*.example.com"] {
            assert!(gw.is_match(good), "{good}");
        }
        assert!(!gw.is_match("a/b/c"));
    }
}
