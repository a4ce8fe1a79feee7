//! A VirtualService `match` as an Envoy `RouteMatch`, as Istio translates it (`TranslateRouteMatch`):
//! `uri` exact → `path`, prefix → `prefix`, regex → `safe_regex`; `ignoreUriCase` → `case_sensitive:
//! false`; `headers` (sorted by name), `method` (`:method`), `authority` (`:authority`) and `scheme`
//! (`:scheme`) → header matchers; `withoutHeaders` → inverted ones; `queryParams` → query matchers.

use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher,
    route_match,
};
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use envoy_types::pb::google::protobuf::BoolValue;
use meshd_api::networking::virtual_service::HttpMatchRequest;
use meshd_api::networking::{MatchKind, StringMatch};

fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_string(),
        ..Default::default()
    }
}

pub(crate) fn string_matcher(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = match m.kind()? {
        MatchKind::Exact(e) => string_matcher::MatchPattern::Exact(e.to_string()),
        MatchKind::Prefix(p) => string_matcher::MatchPattern::Prefix(p.to_string()),
        MatchKind::Regex(r) => string_matcher::MatchPattern::SafeRegex(regex(r)),
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case: false,
    })
}

fn header(name: &str, m: &StringMatch, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        // An empty match (`{}`) asks only that the header be present, as in Istio.
        header_match_specifier: Some(match string_matcher(m) {
            Some(sm) => header_matcher::HeaderMatchSpecifier::StringMatch(sm),
            None => header_matcher::HeaderMatchSpecifier::PresentMatch(true),
        }),
        invert_match: invert,
        ..Default::default()
    }
}

/// The Envoy match of one VirtualService match (or of none: everything).
pub(crate) fn route_match(m: Option<&HttpMatchRequest>) -> RouteMatch {
    let Some(m) = m else {
        return RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        };
    };
    let path = match m.uri.as_ref().and_then(StringMatch::kind) {
        Some(MatchKind::Exact(e)) => route_match::PathSpecifier::Path(e.to_string()),
        Some(MatchKind::Prefix(p)) => route_match::PathSpecifier::Prefix(p.to_string()),
        Some(MatchKind::Regex(r)) => route_match::PathSpecifier::SafeRegex(regex(r)),
        None => route_match::PathSpecifier::Prefix("/".into()),
    };
    let mut headers: Vec<HeaderMatcher> = m
        .headers
        .iter()
        .map(|(name, v)| header(&name.to_ascii_lowercase(), v, false))
        .collect();
    for (name, v) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(v) = v {
            headers.push(header(name, v, false));
        }
    }
    headers.extend(
        m.without_headers
            .iter()
            .map(|(name, v)| header(&name.to_ascii_lowercase(), v, true)),
    );
    let query_parameters = m
        .query_params
        .iter()
        .map(|(name, v)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match string_matcher(v) {
                Some(sm) => query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(sm),
                None => query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        case_sensitive: m
            .ignore_uri_case
            .filter(|i| *i)
            .map(|_| BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

/// Istio's catch-all (`IsCatchAllRoute`): prefix `/` or regex `.*` and nothing else; later rules are
/// never reached, so they are not sent.
pub(crate) fn is_catch_all(m: &RouteMatch) -> bool {
    let path = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => p == "/",
        Some(route_match::PathSpecifier::SafeRegex(r)) => r.regex == ".*",
        _ => false,
    };
    path && m.headers.is_empty() && m.query_parameters.is_empty()
}
