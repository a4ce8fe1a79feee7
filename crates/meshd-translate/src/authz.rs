//! AuthorizationPolicy → Envoy RBAC filters on a workload's inbound chains (SPEC §9), as Istio builds
//! them: one filter per action that has policies, AUDIT (Envoy's `LOG`), then DENY, then ALLOW. So any
//! matching DENY denies; with no ALLOW policy nothing more is asked; with ALLOW policies a request must
//! match one of their rules, and an ALLOW policy without rules matches nothing (it denies everything).
//! HTTP denials are Envoy's 403 `RBAC: access denied`; a TCP connection is closed.
//!
//! What a transport cannot know (HTTP fields on a TCP chain; the Istio fields meshd does not act on,
//! such as `requestPrincipals`) makes an ALLOW rule match nothing and is left out of a DENY or AUDIT
//! rule, which then matches more: Istio's "smaller allow, wider deny". Principals and namespaces come
//! from the peer certificate, so they never match a plaintext connection.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    PathMatcher, RegexMatcher, StringMatcher, path_matcher, string_matcher,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use meshd_api::names::SYSTEM_NAMESPACE;
use meshd_api::security::authorization_policy::{Action, Condition, Operation, Rule, Source};
use prost::{Message, Name};

use crate::facts::{AuthorizationPolicy, ObjectKey};

/// Every AuthorizationPolicy by namespace/name.
pub(crate) type AuthzPolicies = imbl::OrdMap<ObjectKey, Arc<AuthorizationPolicy>>;

/// One workload's RBAC filters: for its HTTP chains and for its TCP chains.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WorkloadRbac {
    pub http: Vec<HttpFilter>,
    pub tcp: Vec<Filter>,
}

/// The policies that apply to a workload (Istio's scopes): those of its namespace without selector or
/// with a matching one, and those of meshd-system without selector (the whole mesh) or with a matching
/// selector (matching workloads in every namespace).
fn applying<'a>(
    policies: &'a AuthzPolicies,
    namespace: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = (&'a ObjectKey, &'a AuthorizationPolicy)> {
    let of = move |ns: &'a str| {
        policies
            .range(ObjectKey::new(ns, String::new())..)
            .take_while(move |(k, _)| k.namespace == ns)
    };
    let root = (namespace != SYSTEM_NAMESPACE).then(|| of(SYSTEM_NAMESPACE));
    of(namespace)
        .chain(root.into_iter().flatten())
        .filter(|(_, p)| p.selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .map(|(k, p)| (k, &**p))
}

/// The RBAC filters of a workload; none when no policy applies.
pub(crate) fn workload_rbac(
    policies: &AuthzPolicies,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> WorkloadRbac {
    let mut out = WorkloadRbac::default();
    if policies.is_empty() {
        return out;
    }
    let mut applying: Vec<(&ObjectKey, &AuthorizationPolicy)> =
        applying(policies, namespace, labels).collect();
    applying.sort_by(|a, b| a.0.cmp(b.0));
    for action in [Action::Audit, Action::Deny, Action::Allow] {
        let of_action: Vec<_> = applying
            .iter()
            .filter(|(_, p)| p.action == action)
            .collect();
        if of_action.is_empty() {
            continue;
        }
        for tcp in [false, true] {
            let mut rules = BTreeMap::new();
            for (key, policy) in &of_action {
                for (i, rule) in policy.rules.iter().enumerate() {
                    if let Some(p) = rule_policy(rule, action, tcp) {
                        let name = format!("ns[{}]-policy[{}]-rule[{i}]", key.namespace, key.name);
                        rules.insert(name, p);
                    }
                }
            }
            // ALLOW with nothing to allow still denies; AUDIT or DENY with nothing to match does nothing.
            if rules.is_empty() && action != Action::Allow {
                continue;
            }
            let rbac_action = match action {
                Action::Deny => rbac::Action::Deny,
                Action::Audit => rbac::Action::Log,
                _ => rbac::Action::Allow,
            };
            if tcp {
                out.tcp.push(network_filter(rbac_action, &rules));
            } else {
                out.http.push(http_filter(rbac_action, &rules));
            }
        }
    }
    out
}

/// Envoy's RBAC policy map is a protobuf map (a `HashMap` here, encoded in no fixed order). Same facts
/// must give the same bytes, so the filter is encoded as several messages, one entry each in name
/// order: protobuf merges repeated occurrences of a message field, map entries included.
fn ordered_rules<M: Message>(
    action: rbac::Action,
    rules: &BTreeMap<String, Policy>,
    wrap: impl Fn(Rbac) -> M,
) -> Vec<u8> {
    let mut bytes = wrap(Rbac {
        action: action as i32,
        ..Default::default()
    })
    .encode_to_vec();
    for (name, policy) in rules {
        let one = Rbac {
            policies: [(name.clone(), policy.clone())].into(),
            ..Default::default()
        };
        bytes.extend(wrap(one).encode_to_vec());
    }
    bytes
}

fn http_filter(action: rbac::Action, rules: &BTreeMap<String, Policy>) -> HttpFilter {
    let value = ordered_rules(action, rules, |r| HttpRbac {
        rules: Some(r),
        ..Default::default()
    });
    HttpFilter {
        name: "envoy.filters.http.rbac".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(Any {
            type_url: HttpRbac::type_url(),
            value,
        })),
        ..Default::default()
    }
}

fn network_filter(action: rbac::Action, rules: &BTreeMap<String, Policy>) -> Filter {
    let mut value = NetworkRbac {
        stat_prefix: "tcp.".into(),
        ..Default::default()
    }
    .encode_to_vec();
    value.extend(ordered_rules(action, rules, |r| NetworkRbac {
        rules: Some(r),
        ..Default::default()
    }));
    Filter {
        name: "envoy.filters.network.rbac".into(),
        config_type: Some(filter::ConfigType::TypedConfig(Any {
            type_url: NetworkRbac::type_url(),
            value,
        })),
    }
}

/// What one rule becomes on one transport, and whether it needed something the transport lacks.
struct Build {
    tcp: bool,
    lacking: bool,
}

impl Build {
    /// A field only HTTP knows: on TCP it is left out (and the rule marked).
    fn http_only(&mut self) -> bool {
        if self.tcp {
            self.lacking = true;
        }
        !self.tcp
    }
}

/// `from`, `to` and `when` ANDed; `None` when an ALLOW rule cannot be expressed (it then matches
/// nothing, which leaving it out achieves).
fn rule_policy(rule: &Rule, action: Action, tcp: bool) -> Option<Policy> {
    let mut b = Build {
        tcp,
        lacking: false,
    };
    let mut permissions = Vec::new();
    let mut principals = Vec::new();
    if !rule.to.is_empty() {
        let ops = rule.to.iter().map(|t| match &t.operation {
            Some(op) => operation(&mut b, op),
            None => any_permission(),
        });
        permissions.push(or_permissions(ops.collect()));
    }
    if !rule.from.is_empty() {
        let sources = rule.from.iter().map(|f| match &f.source {
            Some(s) => source(&mut b, s),
            None => any_principal(),
        });
        principals.push(or_principals(sources.collect()));
    }
    for c in &rule.when {
        condition(&mut b, c, &mut permissions, &mut principals);
    }
    if b.lacking && action == Action::Allow {
        return None;
    }
    Some(Policy {
        permissions: vec![and_permissions(permissions)],
        principals: vec![and_principals(principals)],
        ..Default::default()
    })
}

/// How one value of an operation field becomes a permission.
type ToPermission = fn(&str) -> Permission;

fn operation(b: &mut Build, op: &Operation) -> Permission {
    let mut parts = Vec::new();
    let http_fields: [(&[String], bool, ToPermission); 6] = [
        (&op.hosts, false, host),
        (&op.not_hosts, true, host),
        (&op.methods, false, method),
        (&op.not_methods, true, method),
        (&op.paths, false, path),
        (&op.not_paths, true, path),
    ];
    for (values, negate, f) in http_fields {
        if !values.is_empty() && b.http_only() {
            permission_field(&mut parts, values, negate, f);
        }
    }
    permission_field(&mut parts, &op.ports, false, port_permission);
    permission_field(&mut parts, &op.not_ports, true, port_permission);
    and_permissions(parts)
}

/// One field of an operation: any of its values (none of them, negated).
fn permission_field(
    parts: &mut Vec<Permission>,
    values: &[String],
    negate: bool,
    f: impl Fn(&str) -> Permission,
) {
    if values.is_empty() {
        return;
    }
    let any = or_permissions(values.iter().map(|v| f(v)).collect());
    parts.push(if negate { not_permission(any) } else { any });
}

/// One field of a source: any of its values (none of them, negated).
fn principal_field(
    parts: &mut Vec<Principal>,
    values: &[String],
    negate: bool,
    f: impl Fn(&str) -> Principal,
) {
    if values.is_empty() {
        return;
    }
    let any = or_principals(values.iter().map(|v| f(v)).collect());
    parts.push(if negate { not_principal(any) } else { any });
}

fn source(b: &mut Build, s: &Source) -> Principal {
    let mut parts = Vec::new();
    principal_field(&mut parts, &s.principals, false, peer_principal);
    principal_field(&mut parts, &s.not_principals, true, peer_principal);
    principal_field(&mut parts, &s.namespaces, false, peer_namespace);
    principal_field(&mut parts, &s.not_namespaces, true, peer_namespace);
    principal_field(&mut parts, &s.ip_blocks, false, source_ip);
    principal_field(&mut parts, &s.not_ip_blocks, true, source_ip);
    let unsupported = [
        &s.request_principals,
        &s.not_request_principals,
        &s.service_accounts,
        &s.not_service_accounts,
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        &s.trust_domains,
        &s.not_trust_domains,
    ];
    if unsupported.iter().any(|l| !l.is_empty()) {
        b.lacking = true;
    }
    and_principals(parts)
}

/// `when`: source attributes are principals, the others permissions.
fn condition(
    b: &mut Build,
    c: &Condition,
    permissions: &mut Vec<Permission>,
    principals: &mut Vec<Principal>,
) {
    let header = c
        .key
        .strip_prefix("request.headers[")
        .and_then(|k| k.strip_suffix(']'));
    let principal: Option<fn(&str) -> Principal> = match c.key.as_str() {
        "source.ip" => Some(source_ip),
        "source.namespace" => Some(peer_namespace),
        "source.principal" => Some(peer_principal),
        _ => None,
    };
    if let Some(f) = principal {
        let mut parts = Vec::new();
        principal_field(&mut parts, &c.values, false, f);
        principal_field(&mut parts, &c.not_values, true, f);
        principals.push(and_principals(parts));
        return;
    }
    let mut parts = Vec::new();
    match (c.key.as_str(), header) {
        ("destination.port", _) => {
            permission_field(&mut parts, &c.values, false, port_permission);
            permission_field(&mut parts, &c.not_values, true, port_permission);
        }
        (_, Some(name)) if b.http_only() => {
            let name = name.to_ascii_lowercase();
            let f = |v: &str| header_permission(&name, v);
            permission_field(&mut parts, &c.values, false, f);
            permission_field(&mut parts, &c.not_values, true, f);
        }
        // An HTTP header on TCP, or a key meshd does not act on.
        _ => {
            b.lacking = true;
            return;
        }
    }
    permissions.push(and_permissions(parts));
}

// Values: exact, `prefix*`, `*suffix`, or `*` (present).

fn string_match(value: &str, ignore_case: bool) -> StringMatcher {
    use string_matcher::MatchPattern;
    let pattern = if value == "*" {
        MatchPattern::SafeRegex(RegexMatcher {
            regex: ".+".into(),
            ..Default::default()
        })
    } else if let Some(prefix) = value.strip_suffix('*') {
        MatchPattern::Prefix(prefix.into())
    } else if let Some(suffix) = value.strip_prefix('*') {
        MatchPattern::Suffix(suffix.into())
    } else {
        MatchPattern::Exact(value.into())
    };
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

fn header(name: &str, matcher: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(matcher)),
        ..Default::default()
    }
}

fn header_permission(name: &str, value: &str) -> Permission {
    permission_of(permission::Rule::Header(header(
        name,
        string_match(value, false),
    )))
}

/// The Host (`:authority`), any case; an exact host also with a port.
fn host(value: &str) -> Permission {
    let bare = permission_of(permission::Rule::Header(header(
        ":authority",
        string_match(value, true),
    )));
    if value.starts_with('*') || value.ends_with('*') {
        return bare;
    }
    let with_port = permission_of(permission::Rule::Header(header(
        ":authority",
        string_match(&format!("{value}:*"), true),
    )));
    or_permissions(vec![bare, with_port])
}

fn method(value: &str) -> Permission {
    permission_of(permission::Rule::Header(header(
        ":method",
        string_match(value, false),
    )))
}

/// The path without its query string.
fn path(value: &str) -> Permission {
    permission_of(permission::Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(string_match(value, false))),
    }))
}

fn port_permission(value: &str) -> Permission {
    // Validation refuses ports that do not parse; one that slips through matches nothing.
    let port = value.parse::<u16>().map(u32::from).unwrap_or(0);
    permission_of(permission::Rule::DestinationPort(port))
}

/// A peer identity `<trustDomain>/ns/<ns>/sa/<sa>` (Istio's form, without `spiffe://`).
fn peer_principal(value: &str) -> Principal {
    let matcher = if value == "*" {
        None
    } else if let Some(suffix) = value.strip_prefix('*') {
        Some(string_match(&format!("*{suffix}"), false))
    } else {
        Some(string_match(&format!("spiffe://{value}"), false))
    };
    principal_of(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: matcher,
        },
    ))
}

/// The namespace of the peer identity.
fn peer_namespace(value: &str) -> Principal {
    let pattern = if value == "*" {
        "[^/]+".to_string()
    } else if let Some(prefix) = value.strip_suffix('*') {
        format!("{}[^/]*", regex_escape(prefix))
    } else if let Some(suffix) = value.strip_prefix('*') {
        format!("[^/]*{}", regex_escape(suffix))
    } else {
        regex_escape(value)
    };
    principal_of(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::SafeRegex(RegexMatcher {
                    regex: format!("spiffe://[^/]+/ns/{pattern}/sa/[^/]+"),
                    ..Default::default()
                })),
                ignore_case: false,
            }),
        },
    ))
}

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The peer's address (the downstream connection's, not `x-forwarded-for`).
fn source_ip(value: &str) -> Principal {
    let (ip, len) = match value.split_once('/') {
        Some((ip, len)) => (ip, len.parse().unwrap_or(0)),
        None => (value, if value.contains(':') { 128 } else { 32 }),
    };
    principal_of(principal::Identifier::DirectRemoteIp(CidrRange {
        address_prefix: ip.into(),
        prefix_len: Some(UInt32Value { value: len }),
    }))
}

fn permission_of(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn principal_of(id: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(id),
    }
}

fn any_permission() -> Permission {
    permission_of(permission::Rule::Any(true))
}

fn any_principal() -> Principal {
    principal_of(principal::Identifier::Any(true))
}

fn or_permissions(mut list: Vec<Permission>) -> Permission {
    match list.len() {
        0 => any_permission(),
        1 => list.remove(0),
        _ => permission_of(permission::Rule::OrRules(permission::Set { rules: list })),
    }
}

fn and_permissions(mut list: Vec<Permission>) -> Permission {
    match list.len() {
        0 => any_permission(),
        1 => list.remove(0),
        _ => permission_of(permission::Rule::AndRules(permission::Set { rules: list })),
    }
}

fn not_permission(p: Permission) -> Permission {
    permission_of(permission::Rule::NotRule(Box::new(p)))
}

fn or_principals(mut list: Vec<Principal>) -> Principal {
    match list.len() {
        0 => any_principal(),
        1 => list.remove(0),
        _ => principal_of(principal::Identifier::OrIds(principal::Set { ids: list })),
    }
}

fn and_principals(mut list: Vec<Principal>) -> Principal {
    match list.len() {
        0 => any_principal(),
        1 => list.remove(0),
        _ => principal_of(principal::Identifier::AndIds(principal::Set { ids: list })),
    }
}

fn not_principal(p: Principal) -> Principal {
    principal_of(principal::Identifier::NotId(Box::new(p)))
}
