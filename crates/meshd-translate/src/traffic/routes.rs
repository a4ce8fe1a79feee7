//! A VirtualService's `http[]` as the Envoy routes of one service port, Istio's way (`core/route`):
//! one route per match in order, stopping after a catch-all; one destination → `cluster`, several →
//! `weighted_clusters` (weight 0 dropped); `timeout` or 0 (Envoy's 15 s never applies); `retries` or
//! the default policy (2 retries on connect-failure,refused-stream,unavailable,cancelled,
//! retriable-status-codes with no codes, `previous_hosts`, 5 host selection attempts); headers; rewrite;
//! redirect; mirrors; fault as per-route config of `envoy.filters.http.fault`.

use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent, header_value_option,
};
use envoy_types::pb::envoy::config::route::v3::{
    RedirectAction, RetryPolicy, Route, RouteAction, WeightedCluster, redirect_action,
    retry_policy, route, route_action, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use meshd_api::networking::destination_rule::ConsistentHashLb;
use meshd_api::networking::virtual_service::{
    CorsPolicy, HttpFaultInjection, HttpRedirect, HttpRoute,
};
use meshd_api::networking::{Destination, HeaderOperations, Headers, Percent};
use meshd_api::validate::references::resolve_host;

use super::matches::{is_catch_all, route_match};
use crate::envoy::{pack, seconds};

/// The fault filter's name: routes carry its per-route config, every HTTP connection manager has it.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The CORS filter's name, likewise.
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";

/// `corsPolicy` as the CORS filter's per-route config (Istio's: origins as string matchers, the
/// deprecated exact `allowOrigin` too; lists joined with commas; `maxAge` in seconds).
fn cors(c: &CorsPolicy) -> envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy {
    use envoy_types::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher};
    let exact = c.allow_origin.iter().map(|o| StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(o.clone())),
        ignore_case: false,
    });
    envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy {
        allow_origin_string_match: exact
            .chain(
                c.allow_origins
                    .iter()
                    .filter_map(super::matches::string_matcher),
            )
            .collect(),
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .as_ref()
            .and_then(|d| d.get().ok())
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c
            .allow_credentials
            .map(|value| envoy_types::pb::google::protobuf::BoolValue { value }),
        ..Default::default()
    }
}

/// What routes of one service port need to know beyond the VirtualService.
pub(crate) struct RouteContext<'a> {
    /// The VirtualService's namespace (short destination names resolve there).
    pub namespace: &'a str,
    pub domain: &'a str,
    /// The service port the routes are for.
    pub port: u16,
    /// The ports of a host, when it is known (for a destination without `port`).
    pub ports_of: &'a dyn Fn(&str) -> Option<Vec<u16>>,
    /// Where each destination's DestinationRule is found for its consistent hash (Istio's hash
    /// policy per destination, its subset's replacing the host's; for sidecars the rules their
    /// namespace sees); `None`: no hash policies.
    pub hash: Option<&'a dyn super::DestinationPolicies>,
    /// The proxy the routes are for: a match with `sourceLabels`/`sourceNamespace` it does not
    /// meet is left out.
    pub source: super::Source<'a>,
}

impl RouteContext<'_> {
    /// `outbound|<port>|<subset>|<fqdn>`: the port is `destination.port`, else the host's only
    /// port, else the port being routed (Istio's `GetDestinationCluster`).
    pub(crate) fn cluster(&self, d: &Destination) -> String {
        cluster_at(d, &self.target(d))
    }

    /// A destination's host and port, as its cluster names them.
    fn target(&self, d: &Destination) -> (String, u16) {
        let fqdn = resolve_host(&d.host, self.namespace, self.domain);
        let port = match d.port {
            Some(p) => u16::try_from(p.number).unwrap_or(self.port),
            None => match (self.ports_of)(&fqdn).as_deref() {
                Some([only]) => *only,
                _ => self.port,
            },
        };
        (fqdn, port)
    }

    /// The hash policy of a destination's DestinationRule (the subset's consistent hash, else its
    /// port's, else the rule's), as Istio's `hashForHTTPDestination`.
    fn hash_policy(
        &self,
        d: &Destination,
        (fqdn, port): &(String, u16),
    ) -> Option<route_action::HashPolicy> {
        let rules = self.hash?;
        rules
            .policy(fqdn, *port, d.subset.as_deref())
            .consistent_hash()
            .and_then(super::policy::hash_policy)
    }

    /// The TCP idle timeout of a destination's DestinationRule (its host's and port's), for the
    /// `tcp_proxy` a gateway's L4 route makes: Istio takes the first destination's rule there.
    pub(crate) fn idle_timeout(&self, d: &Destination) -> Option<Duration> {
        let rules = self.hash?;
        let (fqdn, port) = self.target(d);
        rules.policy(&fqdn, port, None).tcp_idle_timeout()
    }
}

/// The cluster of a destination at its host and port.
fn cluster_at(d: &Destination, (fqdn, port): &(String, u16)) -> String {
    format!(
        "outbound|{port}|{}|{fqdn}",
        d.subset.as_deref().unwrap_or_default()
    )
}

/// Istio's default retry policy (SPEC §8).
pub(crate) fn default_retry_policy(consistent_hash: bool) -> RetryPolicy {
    let mut policy = RetryPolicy {
        retry_on: "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
            .into(),
        num_retries: Some(UInt32Value { value: 2 }),
        ..Default::default()
    };
    if !consistent_hash {
        other_hosts(&mut policy);
    }
    policy
}

/// A retry goes to another pod: `previous_hosts`, 5 attempts to pick one.
fn other_hosts(policy: &mut RetryPolicy) {
    policy.retry_host_predicate = vec![retry_policy::RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".into(),
        config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
            pack(&PreviousHostsPredicate::default()),
        )),
    }];
    policy.host_selection_retry_max_attempts = 5;
}

fn duration(d: &meshd_api::duration::Duration) -> Option<Duration> {
    let d = d.get().ok()?;
    Some(Duration {
        seconds: i64::try_from(d.as_secs()).ok()?,
        nanos: i32::try_from(d.subsec_nanos()).ok()?,
    })
}

/// `consistent_hash`: the route's one destination hashes (Istio keeps `previous_hosts` for a
/// weighted route even then).
fn retry_policy(route: &HttpRoute, consistent_hash: bool) -> Option<RetryPolicy> {
    let Some(r) = &route.retries else {
        return Some(default_retry_policy(consistent_hash));
    };
    let attempts = r.attempts.unwrap_or(2);
    if attempts <= 0 {
        return None;
    }
    let mut policy = default_retry_policy(consistent_hash);
    policy.num_retries = Some(UInt32Value {
        value: u32::try_from(attempts).unwrap_or(2),
    });
    if let Some(on) = &r.retry_on {
        // Numbers are status codes; `retriable-status-codes` makes Envoy use them.
        let (codes, events): (Vec<&str>, Vec<&str>) = on
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .partition(|t| t.parse::<u32>().is_ok());
        let mut events: Vec<String> = events.into_iter().map(str::to_string).collect();
        if !events.iter().any(|e| e == "retriable-status-codes") {
            events.push("retriable-status-codes".into());
        }
        policy.retry_on = events.join(",");
        policy.retriable_status_codes = codes.iter().filter_map(|c| c.parse().ok()).collect();
    }
    policy.per_try_timeout = r.per_try_timeout.as_ref().and_then(duration);
    if r.retry_remote_localities == Some(true) {
        // Istio's translation: retries skip the priorities already tried (every endpoint is at one
        // priority today, so it changes nothing yet).
        policy.retry_priority = Some(retry_policy::RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".into(),
            config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(pack(
                &PreviousPrioritiesConfig {
                    update_frequency: 2,
                },
            ))),
        });
    }
    if r.retry_ignore_previous_hosts == Some(false) {
        policy.retry_host_predicate.clear();
        policy.host_selection_retry_max_attempts = 0;
    }
    Some(policy)
}

fn header_options(ops: &HeaderOperations) -> Vec<HeaderValueOption> {
    let option = |k: &String, v: &String, action| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    let set = ops.set.iter().filter(|(k, _)| !is_host(k)).map(|(k, v)| {
        option(
            k,
            v,
            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd,
        )
    });
    let add = ops
        .add
        .iter()
        .filter(|(k, _)| !k.starts_with(':'))
        .map(|(k, v)| {
            option(
                k,
                v,
                header_value_option::HeaderAppendAction::AppendIfExistsOrAdd,
            )
        });
    set.chain(add).collect()
}

fn is_host(name: &str) -> bool {
    name.eq_ignore_ascii_case("host") || name == ":authority"
}

/// Setting `host`/`:authority` is a host rewrite in Envoy, not a header.
fn host_set(headers: Option<&Headers>) -> Option<String> {
    let set = &headers?.request.as_ref()?.set;
    set.iter().find(|(k, _)| is_host(k)).map(|(_, v)| v.clone())
}

fn apply_headers(r: &mut Route, headers: Option<&Headers>) {
    let Some(h) = headers else { return };
    if let Some(req) = &h.request {
        r.request_headers_to_add = header_options(req);
        r.request_headers_to_remove = req.remove.clone();
    }
    if let Some(resp) = &h.response {
        r.response_headers_to_add = header_options(resp);
        r.response_headers_to_remove = resp.remove.clone();
    }
}

fn million(p: Option<&Percent>) -> FractionalPercent {
    let value = p.map_or(0.0, |p| p.value);
    FractionalPercent {
        // value is 0–100 (validated): the product fits.
        numerator: (value * 10_000.0).round() as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

/// The route's fault config, when it injects anything (a fault without `percentage` injects nothing).
fn fault(f: &HttpFaultInjection) -> Option<HttpFault> {
    let hundred = |p: Option<i32>| FractionalPercent {
        numerator: p.and_then(|p| u32::try_from(p).ok()).unwrap_or(0),
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    };
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay.as_ref().and_then(duration)?;
        Some(FaultDelay {
            percentage: Some(match &d.percentage {
                Some(p) => million(Some(p)),
                None => hundred(d.percent),
            }),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(fixed)),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let error_type = match (a.http_status, &a.grpc_status) {
            (Some(code), _) => fault_abort::ErrorType::HttpStatus(u32::try_from(code).ok()?),
            (None, Some(status)) => fault_abort::ErrorType::GrpcStatus(grpc_code(status)?),
            (None, None) => return None,
        };
        Some(FaultAbort {
            percentage: Some(match &a.percentage {
                Some(p) => million(Some(p)),
                None => hundred(a.percent),
            }),
            error_type: Some(error_type),
            ..Default::default()
        })
    });
    (delay.is_some() || abort.is_some()).then(|| HttpFault {
        delay,
        abort,
        ..Default::default()
    })
}

/// A gRPC status by name (`UNAVAILABLE`) or number.
fn grpc_code(s: &str) -> Option<u32> {
    s.parse().ok().or_else(|| {
        meshd_api::networking::virtual_service::GRPC_STATUS_NAMES
            .iter()
            .position(|n| *n == s)
            .and_then(|i| u32::try_from(i).ok())
    })
}

fn redirect(r: &HttpRedirect) -> Option<RedirectAction> {
    use redirect_action::RedirectResponseCode as Code;
    let code = match r.redirect_code.unwrap_or(301) {
        0 | 301 => Code::MovedPermanently,
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => return None,
    };
    Some(RedirectAction {
        host_redirect: r.authority.clone().unwrap_or_default(),
        port_redirect: r.port.unwrap_or(0),
        scheme_rewrite_specifier: r
            .scheme
            .clone()
            .map(redirect_action::SchemeRewriteSpecifier::SchemeRedirect),
        path_rewrite_specifier: r
            .uri
            .clone()
            .map(redirect_action::PathRewriteSpecifier::PathRedirect),
        response_code: code as i32,
        ..Default::default()
    })
}

fn action(route: &HttpRoute, ctx: &RouteContext<'_>) -> RouteAction {
    let live: Vec<_> = route
        .route
        .iter()
        .filter(|d| route.route.len() == 1 || d.weight.unwrap_or(0) > 0)
        .collect();
    // Resolved once for the cluster names and the hash policies.
    let targets: Vec<(String, u16)> = live.iter().map(|d| ctx.target(&d.destination)).collect();
    // Each destination's own hash policy, in order (Istio appends one per destination).
    let hash_policy: Vec<route_action::HashPolicy> = live
        .iter()
        .zip(&targets)
        .filter_map(|(d, at)| ctx.hash_policy(&d.destination, at))
        .collect();
    let cluster_specifier = match (live.as_slice(), targets.as_slice()) {
        ([one], [at]) if one.headers.is_none() => {
            route_action::ClusterSpecifier::Cluster(cluster_at(&one.destination, at))
        }
        _ => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: live
                .iter()
                .zip(&targets)
                .map(|(d, at)| {
                    let mut c = weighted_cluster::ClusterWeight {
                        name: cluster_at(&d.destination, at),
                        weight: Some(UInt32Value {
                            value: d.weight.and_then(|w| u32::try_from(w).ok()).unwrap_or(100),
                        }),
                        ..Default::default()
                    };
                    if let Some(h) = &d.headers {
                        if let Some(req) = &h.request {
                            c.request_headers_to_add = header_options(req);
                            c.request_headers_to_remove = req.remove.clone();
                        }
                        if let Some(resp) = &h.response {
                            c.response_headers_to_add = header_options(resp);
                            c.response_headers_to_remove = resp.remove.clone();
                        }
                    }
                    c
                })
                .collect(),
            ..Default::default()
        }),
    };
    let mut a = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        timeout: Some(
            route
                .timeout
                .as_ref()
                .and_then(duration)
                .unwrap_or_else(|| seconds(0)),
        ),
        retry_policy: retry_policy(route, route.route.len() == 1 && !hash_policy.is_empty()),
        hash_policy,
        ..Default::default()
    };
    if let Some(rw) = &route.rewrite {
        a.prefix_rewrite = rw.uri.clone().unwrap_or_default();
        if let Some(authority) = &rw.authority {
            a.host_rewrite_specifier = Some(
                route_action::HostRewriteSpecifier::HostRewriteLiteral(authority.clone()),
            );
        }
    }
    if let Some(host) = host_set(route.headers.as_ref()) {
        a.host_rewrite_specifier =
            Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(host));
    }
    let mirrors = route
        .mirror
        .iter()
        .map(|m| (m, route.mirror_percentage.as_ref()))
        .chain(
            route
                .mirrors
                .iter()
                .map(|m| (&m.destination, m.percentage.as_ref())),
        );
    a.request_mirror_policies = mirrors
        .map(|(d, p)| route_action::RequestMirrorPolicy {
            cluster: ctx.cluster(d),
            runtime_fraction: Some(RuntimeFractionalPercent {
                default_value: Some(million(Some(p.unwrap_or(&Percent { value: 100.0 })))),
                ..Default::default()
            }),
            trace_sampled: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
            ..Default::default()
        })
        .collect();
    a
}

/// A service's route without a VirtualService: everything to its cluster, the default retry policy,
/// no timeout; with its DestinationRule's consistent hash when it has one.
pub(crate) fn default_route(cluster: &str, hash: Option<&ConsistentHashLb>) -> Route {
    let action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.to_string())),
        timeout: Some(seconds(0)),
        retry_policy: Some(default_retry_policy(hash.is_some())),
        hash_policy: hash
            .and_then(super::policy::hash_policy)
            .into_iter()
            .collect(),
        ..Default::default()
    };
    Route {
        name: "default".into(),
        r#match: Some(route_match(None)),
        action: Some(route::Action::Route(action)),
        ..Default::default()
    }
}

/// The routes of one VirtualService for a service port, in order; an unmatched request gets 404.
pub(crate) fn http_routes(routes: &[HttpRoute], ctx: &RouteContext<'_>) -> Vec<Route> {
    let mut out = Vec::new();
    for (i, route) in routes.iter().enumerate() {
        // A match on another port, or for other proxies, is not this port's route (Istio's
        // config-time predicates).
        let matches: Vec<_> = if route.matches.is_empty() {
            vec![None]
        } else {
            route
                .matches
                .iter()
                .filter(|m| {
                    m.port.is_none_or(|p| p == u32::from(ctx.port))
                        && ctx
                            .source
                            .selected_by(&m.source_labels, m.source_namespace.as_deref())
                })
                .map(Some)
                .collect()
        };
        if matches.is_empty() {
            continue;
        }
        // One action for all of the route's matches (its destinations' hash policies are looked up
        // once).
        let action = match &route.redirect {
            Some(rd) => match redirect(rd) {
                Some(rd) => route::Action::Redirect(rd),
                None => continue,
            },
            None => route::Action::Route(action(route, ctx)),
        };
        for (j, m) in matches.into_iter().enumerate() {
            let r#match = route_match(m);
            let catch_all = is_catch_all(&r#match);
            let name = match (&route.name, m.and_then(|m| m.name.as_ref())) {
                (Some(r), Some(m)) => format!("{r}.{m}"),
                (Some(r), None) => r.clone(),
                _ => format!("{i}.{j}"),
            };
            let mut r = Route {
                name,
                r#match: Some(r#match),
                action: Some(action.clone()),
                ..Default::default()
            };
            apply_headers(&mut r, route.headers.as_ref());
            if let Some(f) = route.fault.as_ref().and_then(fault) {
                r.typed_per_filter_config
                    .insert(FAULT_FILTER.to_string(), pack(&f));
            }
            if let Some(c) = &route.cors_policy {
                r.typed_per_filter_config
                    .insert(CORS_FILTER.to_string(), pack(&cors(c)));
            }
            out.push(r);
            if catch_all {
                return out;
            }
        }
    }
    out
}
