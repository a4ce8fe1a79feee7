//! The checks every kind shares: hosts, durations, regexes, string matches, ports, percentages, CIDRs,
//! labels, `exportTo`, header names, and the collector they report into.

use std::collections::BTreeMap;

use super::FieldError;
use crate::duration::parse_duration;
use crate::networking::{Destination, HeaderOperations, Headers, Percent, StringMatch};
use crate::values::IpCidr;

/// Collects the problems of one object; `at` builds the paths.
#[derive(Default)]
pub(super) struct Report {
    pub errors: Vec<FieldError>,
}

impl Report {
    /// A problem with a string value.
    pub fn bad(&mut self, path: &str, value: &str, problem: impl Into<String>) {
        self.errors
            .push(FieldError::new(path, problem).with_str(value));
    }

    /// A problem with a number (or other unquoted) value.
    pub fn bad_value(
        &mut self,
        path: &str,
        value: impl std::fmt::Display,
        problem: impl Into<String>,
    ) {
        self.errors
            .push(FieldError::new(path, problem).with_value(value));
    }

    /// A problem with the field as a whole (missing, empty, inconsistent).
    pub fn field(&mut self, path: &str, problem: impl Into<String>) {
        self.errors.push(FieldError::new(path, problem));
    }
}

pub(super) fn at(path: &str, field: &str) -> String {
    format!("{path}.{field}")
}

pub(super) fn idx(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

pub(super) fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

/// A DNS name, optionally with a leading `*.` (the wildcard only as a whole first label), at most 253
/// characters; a trailing dot is allowed. `*` alone is not a host here: callers allow it where Istio does.
pub fn is_host(h: &str) -> bool {
    let name = h.strip_suffix('.').unwrap_or(h);
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty() && h.len() <= 253 && name.split('.').all(is_dns_label_any_case)
}

fn is_dns_label_any_case(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

pub(super) fn is_dns_label(l: &str) -> bool {
    crate::settings::is_dns_label(l)
}

/// An RFC 1123 subdomain: what Kubernetes accepts as an object name.
pub(super) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub(super) const HOST_PROBLEM: &str = "is not a host (a DNS name such as reviews or reviews.shop.svc.cluster.local, optionally with a leading \"*.\")";

pub(super) fn host(r: &mut Report, path: &str, h: &str, allow_any: bool) {
    if h.is_empty() {
        r.field(path, "is required");
    } else if !(is_host(h) || (allow_any && h == "*")) {
        r.bad(path, h, HOST_PROBLEM);
    }
}

/// A duration in Istio's syntax, at least `min` (Istio's rule is 1ms for timeouts and intervals).
pub(super) fn duration(
    r: &mut Report,
    path: &str,
    d: Option<&crate::duration::Duration>,
    min: std::time::Duration,
) {
    let Some(d) = d else { return };
    match parse_duration(d.as_str()) {
        Err(e) => r.bad(path, d.as_str(), e.to_string()),
        Ok(v) if v < min => r.bad(path, d.as_str(), format!("is shorter than {min:?}")),
        Ok(_) => {}
    }
}

pub(super) const MS: std::time::Duration = std::time::Duration::from_millis(1);

/// RE2's limit on counted repetition (`a{1001}` is refused by RE2, accepted by the regex crate).
const RE2_MAX_REPEAT: u32 = 1000;

/// Whether Envoy's RE2 would accept a pattern. The `regex` crate implements RE2's syntax and refuses, as
/// RE2 does, look-around and backreferences; its error messages say why. Known differences: RE2 takes
/// `\C` and `\Q…\E`, which this refuses, and this takes class set operations (`[a&&b]`) that RE2 reads
/// literally; counted repetition above 1000 is refused here as RE2 refuses it.
pub fn check_regex(pattern: &str) -> Result<(), String> {
    if let Err(e) = regex::Regex::new(pattern) {
        let text = e.to_string();
        let reason = text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text.lines().last().unwrap_or("invalid"))
            .to_string();
        return Err(reason);
    }
    if let Some(n) = max_repeat(pattern).filter(|n| *n > RE2_MAX_REPEAT) {
        return Err(format!(
            "counted repetition {{{n}}} exceeds RE2's limit of {RE2_MAX_REPEAT}"
        ));
    }
    Ok(())
}

/// The largest `{n}` / `{n,m}` count in a pattern that already parsed.
fn max_repeat(pattern: &str) -> Option<u32> {
    use regex_syntax::ast::{Ast, RepetitionRange, parse::Parser};
    let ast = Parser::new().parse(pattern).ok()?;
    let mut max = None;
    let mut stack = vec![&ast];
    while let Some(node) = stack.pop() {
        match node {
            Ast::Repetition(rep) => {
                if let regex_syntax::ast::RepetitionKind::Range(range) = &rep.op.kind {
                    let n = match range {
                        RepetitionRange::Exactly(n) | RepetitionRange::AtLeast(n) => *n,
                        RepetitionRange::Bounded(a, b) => (*a).max(*b),
                    };
                    max = Some(max.map_or(n, |m: u32| m.max(n)));
                }
                stack.push(&rep.ast);
            }
            Ast::Group(g) => stack.push(&g.ast),
            Ast::Alternation(a) => stack.extend(a.asts.iter()),
            Ast::Concat(c) => stack.extend(c.asts.iter()),
            _ => {}
        }
    }
    max
}

pub(super) fn regex(r: &mut Report, path: &str, pattern: &str) {
    if let Err(why) = check_regex(pattern) {
        r.bad(path, pattern, format!("is not an RE2 regex: {why}"));
    }
}

/// Exactly one of exact, prefix or regex; a regex that RE2 takes.
pub(super) fn string_match(r: &mut Report, path: &str, m: &StringMatch) {
    let set = [&m.exact, &m.prefix, &m.regex]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 {
        r.field(path, "needs exactly one of exact, prefix or regex");
    }
    if let Some(re) = &m.regex {
        regex(r, &at(path, "regex"), re);
    }
}

pub(super) fn port(r: &mut Report, path: &str, p: u32) {
    if !(1..=65535).contains(&p) {
        r.bad_value(path, p, "is not a port (1-65535)");
    }
}

pub(super) fn percent(r: &mut Report, path: &str, p: Option<&Percent>) {
    if let Some(p) = p
        && !(0.0..=100.0).contains(&p.value)
    {
        r.bad_value(&at(path, "value"), p.value, "is not a percentage (0-100)");
    }
}

pub(super) fn range(r: &mut Report, path: &str, v: Option<i64>, lo: i64, hi: i64) {
    if let Some(v) = v
        && !(lo..=hi).contains(&v)
    {
        r.bad_value(path, v, format!("is out of range ({lo}-{hi})"));
    }
}

pub(super) fn ip_or_cidr(r: &mut Report, path: &str, c: &str) {
    if c.parse::<IpCidr>().is_err() {
        r.bad(path, c, "is not an IP address or CIDR such as 10.0.0.0/8");
    }
}

pub(super) fn ips_or_cidrs(r: &mut Report, path: &str, list: &[String]) {
    for (i, c) in list.iter().enumerate() {
        ip_or_cidr(r, &idx(path, i), c);
    }
}

/// Kubernetes label keys and values, without wildcards (Istio refuses `*` in selectors).
pub(super) fn labels(r: &mut Report, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        if !is_label_key(k) {
            r.bad(&key(path, k), k, "is not a label key (name or prefix/name)");
        } else if !is_label_value(v) {
            r.bad(
                &key(path, k),
                v,
                "is not a label value (63 characters: letters, digits, -_.)",
            );
        }
    }
}

fn is_label_key(k: &str) -> bool {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// `.`, `*`, `~` or namespaces; `*` and `~` only alone (Istio's rule).
pub(super) fn export_to(r: &mut Report, path: &str, list: &[String]) {
    for (i, e) in list.iter().enumerate() {
        let p = idx(path, i);
        if !(e == "." || e == "*" || e == "~" || is_dns_label(e)) {
            r.bad(&p, e, "is not \".\", \"*\", \"~\" or a namespace");
        } else if (e == "*" || e == "~") && list.len() > 1 {
            r.bad(&p, e, "must be the only entry of exportTo");
        }
    }
}

/// An HTTP header name Envoy lets the config set or match: a token, not a pseudo-header, not `host`.
pub(super) fn header_name(r: &mut Report, path: &str, name: &str, for_modification: bool) {
    let token = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let pseudo = name.strip_prefix(':').is_some_and(token);
    if for_modification && (pseudo || name.eq_ignore_ascii_case("host")) {
        r.bad(
            path,
            name,
            "cannot be modified (Envoy refuses pseudo-headers and host; use rewrite.authority)",
        );
    } else if !(token(name) || pseudo) {
        r.bad(path, name, "is not an HTTP header name");
    }
}

pub(super) fn headers(r: &mut Report, path: &str, h: Option<&Headers>) {
    let Some(h) = h else { return };
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        if let Some(ops) = ops {
            header_operations(r, &at(path, side), ops);
        }
    }
}

fn header_operations(r: &mut Report, path: &str, ops: &HeaderOperations) {
    for (field, map) in [("set", &ops.set), ("add", &ops.add)] {
        for name in map.keys() {
            header_name(r, &key(&at(path, field), name), name, true);
        }
    }
    for (i, name) in ops.remove.iter().enumerate() {
        header_name(r, &idx(&at(path, "remove"), i), name, true);
    }
}

pub(super) fn destination(r: &mut Report, path: &str, d: &Destination) {
    host(r, &at(path, "host"), &d.host, false);
    if let Some(s) = &d.subset
        && !is_dns_label(s)
    {
        r.bad(&at(path, "subset"), s, "is not a subset name (a DNS label)");
    }
    if let Some(p) = &d.port {
        port(r, &at(&at(path, "port"), "number"), p.number);
    }
}

/// Istio's wildcard rule for policy values: `*` alone, or only as the first or last character.
pub(super) fn wildcard_value(r: &mut Report, path: &str, v: &str) {
    if v.is_empty() {
        r.field(path, "is empty");
        return;
    }
    let inner = v
        .strip_prefix('*')
        .or_else(|| v.strip_suffix('*'))
        .unwrap_or(v);
    if inner.contains('*') {
        r.bad(path, v, "may use * only as its first or last character");
    }
}

/// `metadata.name` is required and a Kubernetes object name; `metadata.namespace`, when set, a namespace.
pub(super) fn metadata(
    r: &mut Report,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    match meta.name.as_deref() {
        None | Some("") => r.field("metadata.name", "is required"),
        Some(n) if !is_dns_subdomain(n) => r.bad(
            "metadata.name",
            n,
            "is not a Kubernetes object name (lower-case DNS name)",
        ),
        Some(_) => {}
    }
    if let Some(ns) = meta.namespace.as_deref()
        && !is_dns_label(ns)
    {
        r.bad(
            "metadata.namespace",
            ns,
            "is not a namespace name (a DNS label)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for good in [
            "reviews",
            "reviews.shop.svc.cluster.local",
            "*.example.com",
            "a.b.",
            "10.0.0.1",
        ] {
            assert!(is_host(good), "{good}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a*.b",
            "*a.b",
            "a.*.b",
            "a..b",
            "-a.b",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }

    #[test]
    fn regexes_as_re2_sees_them() {
        assert_eq!(check_regex("^/api/v[0-9]+/.*$"), Ok(()));
        assert_eq!(check_regex("(?i)abc|d{2,1000}"), Ok(()));
        for (bad, says) in [
            ("a(?=b)", "look-around"),
            ("(a)\\1", "backreferences"),
            ("a(", "unclosed group"),
            ("[z-a]", "invalid character class range"),
            ("a{1001}", "exceeds RE2's limit of 1000"),
            ("(x{2,2000})", "exceeds RE2's limit"),
        ] {
            let why = check_regex(bad).expect_err(bad);
            assert!(why.contains(says), "{bad}: {why}");
            assert!(!why.contains('\n'), "one line: {why}");
        }
    }

    #[test]
    fn string_match_needs_one_kind() {
        let mut r = Report::default();
        string_match(&mut r, "m", &StringMatch::default());
        string_match(
            &mut r,
            "n",
            &StringMatch {
                exact: Some("a".into()),
                prefix: Some("b".into()),
                regex: None,
            },
        );
        string_match(
            &mut r,
            "o",
            &StringMatch {
                regex: Some("(".into()),
                ..Default::default()
            },
        );
        let shown: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "m: needs exactly one of exact, prefix or regex",
                "n: needs exactly one of exact, prefix or regex",
                "o.regex: \"(\" is not an RE2 regex: unclosed group",
            ]
        );
    }

    #[test]
    fn header_names_envoy_refuses() {
        let mut r = Report::default();
        for (i, n) in ["x-user", ":path", "Host", "bad header", ""]
            .iter()
            .enumerate()
        {
            header_name(&mut r, &format!("h[{i}]"), n, true);
        }
        header_name(&mut r, "m", ":authority", false);
        let paths: Vec<&str> = r.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["h[1]", "h[2]", "h[3]", "h[4]"]);
    }

    #[test]
    fn export_to_and_wildcards() {
        let mut r = Report::default();
        export_to(&mut r, "e", &[".".into(), "*".into()]);
        export_to(&mut r, "f", &["Shop".into()]);
        wildcard_value(&mut r, "w", "a*b");
        wildcard_value(&mut r, "x", "*.shop");
        wildcard_value(&mut r, "y", "/api/*");
        let paths: Vec<&str> = r.errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["e[1]", "f[0]", "w"]);
    }
}
