//! HTTP routes from a VirtualService, field by field as Istio translates them.

use envoy_types::pb::envoy::config::route::v3::{route, route_action, route_match};

use super::routes::{FAULT_FILTER, RouteContext, http_routes};
use meshd_api::networking::virtual_service::HttpRoute;

fn routes(http: serde_json::Value) -> Vec<envoy_types::pb::envoy::config::route::v3::Route> {
    let http: Vec<HttpRoute> = serde_json::from_value(http).unwrap();
    let ports = |fqdn: &str| (fqdn == "reviews.shop.svc.cluster.local").then(|| vec![9080]);
    let ctx = RouteContext {
        namespace: "shop",
        domain: "cluster.local",
        port: 9080,
        ports_of: &ports,
        hash: None,
        source: super::Source::SHARED,
    };
    http_routes(&http, &ctx)
}

fn action(
    r: &envoy_types::pb::envoy::config::route::v3::Route,
) -> &envoy_types::pb::envoy::config::route::v3::RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("a route action: {other:?}"),
    }
}

#[test]
fn a_header_canary_then_a_weighted_split_in_order_stopping_at_the_catch_all() {
    let r = routes(serde_json::json!([
        {"name": "canary", "match": [{"headers": {"end-user": {"exact": "jason"}}, "uri": {"prefix": "/api"}}],
         "route": [{"destination": {"host": "reviews", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 90},
                   {"destination": {"host": "reviews", "subset": "v2"}, "weight": 10},
                   {"destination": {"host": "reviews", "subset": "v3"}, "weight": 0}],
         "timeout": "1.5s"},
        {"route": [{"destination": {"host": "reviews"}}]},
    ]));
    assert_eq!(r.len(), 2, "nothing after the catch-all");
    assert_eq!(r[0].name, "canary");
    let m = r[0].r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Prefix("/api".into()))
    );
    assert_eq!(m.headers[0].name, "end-user");
    assert_eq!(
        action(&r[0]).cluster_specifier,
        Some(route_action::ClusterSpecifier::Cluster(
            "outbound|9080|v2|reviews.shop.svc.cluster.local".into()
        ))
    );
    let a = action(&r[1]);
    let Some(route_action::ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier else {
        panic!("weighted clusters");
    };
    let split: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(
        split,
        [
            ("outbound|9080|v1|reviews.shop.svc.cluster.local", 90),
            ("outbound|9080|v2|reviews.shop.svc.cluster.local", 10)
        ]
    );
    let t = a.timeout.unwrap();
    assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
    assert_eq!(
        action(&r[0]).timeout.unwrap().seconds,
        0,
        "no timeout unless set"
    );
}

#[test]
fn retries_default_to_istios_policy_and_a_retry_on_with_codes_splits_them() {
    let r = routes(serde_json::json!([
        {"match": [{"uri": {"exact": "/a"}}], "route": [{"destination": {"host": "reviews"}}]},
        {"match": [{"uri": {"exact": "/b"}}], "route": [{"destination": {"host": "reviews"}}],
         "retries": {"attempts": 5, "perTryTimeout": "2s", "retryOn": "5xx,503,gateway-error"}},
        {"match": [{"uri": {"exact": "/c"}}], "route": [{"destination": {"host": "reviews"}}],
         "retries": {"attempts": 0}},
    ]));
    let d = action(&r[0]).retry_policy.as_ref().unwrap();
    assert_eq!(
        d.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(d.num_retries.unwrap().value, 2);
    assert!(
        d.retriable_status_codes.is_empty(),
        "a 503 is not retried by default"
    );
    assert_eq!(
        d.retry_host_predicate[0].name,
        "envoy.retry_host_predicates.previous_hosts"
    );
    assert_eq!(d.host_selection_retry_max_attempts, 5);
    let c = action(&r[1]).retry_policy.as_ref().unwrap();
    assert_eq!(c.retry_on, "5xx,gateway-error,retriable-status-codes");
    assert_eq!(c.retriable_status_codes, [503]);
    assert_eq!(c.num_retries.unwrap().value, 5);
    assert_eq!(c.per_try_timeout.unwrap().seconds, 2);
    assert!(
        action(&r[2]).retry_policy.is_none(),
        "attempts 0: no retries"
    );
}

#[test]
fn fault_headers_rewrite_mirror_and_redirect() {
    let r = routes(serde_json::json!([
        {"match": [{"uri": {"regex": "/r/[0-9]+"}, "ignoreUriCase": true, "method": {"exact": "GET"},
                    "queryParams": {"v": {"exact": "2"}}, "withoutHeaders": {"x-skip": {}}}],
         "route": [{"destination": {"host": "reviews"}}],
         "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 50}}, "delay": {"fixedDelay": "1s"}},
         "headers": {"request": {"set": {"x-a": "1", "host": "h.example"}, "remove": ["x-b"]},
                     "response": {"add": {"x-c": "3"}}},
         "rewrite": {"uri": "/v2/"},
         "mirror": {"host": "reviews", "subset": "v3"}, "mirrorPercentage": {"value": 12.5}},
        {"match": [{"uri": {"exact": "/old"}}], "redirect": {"uri": "/new", "redirectCode": 308}},
    ]));
    let m = r[0].r#match.as_ref().unwrap();
    assert!(
        matches!(&m.path_specifier, Some(route_match::PathSpecifier::SafeRegex(x)) if x.regex == "/r/[0-9]+")
    );
    assert!(!m.case_sensitive.unwrap().value);
    assert_eq!(
        m.headers
            .iter()
            .map(|h| (h.name.as_str(), h.invert_match))
            .collect::<Vec<_>>(),
        [(":method", false), ("x-skip", true)]
    );
    assert_eq!(m.query_parameters[0].name, "v");
    assert!(r[0].typed_per_filter_config.contains_key(FAULT_FILTER));
    assert_eq!(
        r[0].request_headers_to_add.len(),
        1,
        "host is a rewrite, not a header"
    );
    assert_eq!(r[0].request_headers_to_remove, ["x-b"]);
    assert_eq!(
        r[0].response_headers_to_add[0].header.as_ref().unwrap().key,
        "x-c"
    );
    let a = action(&r[0]);
    assert_eq!(a.prefix_rewrite, "/v2/");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "h.example".into()
        ))
    );
    let mirror = &a.request_mirror_policies[0];
    assert_eq!(
        mirror.cluster,
        "outbound|9080|v3|reviews.shop.svc.cluster.local"
    );
    assert_eq!(
        mirror
            .runtime_fraction
            .as_ref()
            .unwrap()
            .default_value
            .unwrap()
            .numerator,
        125_000
    );
    let Some(route::Action::Redirect(rd)) = &r[1].action else {
        panic!("a redirect")
    };
    assert_eq!(rd.response_code, 4, "PERMANENT_REDIRECT");
}

#[test]
fn a_fault_without_percentage_injects_nothing_so_no_config_is_sent() {
    let r = routes(serde_json::json!([
        {"route": [{"destination": {"host": "reviews"}}], "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 0}}}},
    ]));
    assert!(
        r[0].typed_per_filter_config.contains_key(FAULT_FILTER),
        "0% is sent as 0%"
    );
    let r = routes(serde_json::json!([
        {"route": [{"destination": {"host": "reviews"}}], "fault": {"delay": {"percentage": {"value": 10}}}},
    ]));
    assert!(
        !r[0].typed_per_filter_config.contains_key(FAULT_FILTER),
        "a delay without fixedDelay is nothing"
    );
}

#[test]
fn a_cors_policy_is_the_cors_filters_per_route_config() {
    use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    use prost::Message;
    let r = routes(serde_json::json!([
        {"route": [{"destination": {"host": "reviews"}}],
         "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}, {"regex": ".*\\.b\\.example"}],
                        "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a"], "maxAge": "24h",
                        "allowCredentials": true}},
    ]));
    let any = &r[0].typed_per_filter_config[super::routes::CORS_FILTER];
    let c = CorsPolicy::decode(any.value.as_slice()).unwrap();
    assert_eq!(c.allow_origin_string_match.len(), 2);
    assert_eq!(c.allow_methods, "GET,POST");
    assert_eq!(c.max_age, "86400");
    assert!(c.allow_credentials.unwrap().value);
}

mod policy {
    use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
    use meshd_api::networking::destination_rule::TrafficPolicy;

    use crate::traffic::policy::{Policy, apply};

    fn tp(v: serde_json::Value) -> TrafficPolicy {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn connection_pool_outlier_detection_and_load_balancer_on_the_cluster() {
        let rule = tp(serde_json::json!({
            "loadBalancer": {"simple": "RANDOM"},
            "connectionPool": {"http": {"http1MaxPendingRequests": 1}, "tcp": {"connectTimeout": "250ms"}},
            "outlierDetection": {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "30s", "maxEjectionPercent": 100},
            "portLevelSettings": [{"port": {"number": 9080}, "loadBalancer": {"simple": "ROUND_ROBIN"}}],
        }));
        let mut c = Cluster::default();
        apply(&mut c, &Policy::of(Some(&rule), None, 80));
        assert_eq!(c.lb_policy, cluster::LbPolicy::Random as i32);
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_pending_requests.unwrap().value, 1);
        assert_eq!(
            t.max_connections.unwrap().value,
            u32::MAX,
            "Istio's unlimited default"
        );
        assert!(t.track_remaining);
        assert_eq!(c.connect_timeout.unwrap().nanos, 250_000_000);
        let o = c.outlier_detection.as_ref().unwrap();
        assert_eq!(o.consecutive_5xx.unwrap().value, 1);
        assert_eq!(o.enforcing_consecutive_5xx.unwrap().value, 100);
        assert_eq!(o.max_ejection_percent.unwrap().value, 100);
        assert_eq!(
            c.common_lb_config
                .unwrap()
                .healthy_panic_threshold
                .unwrap()
                .value,
            0.0
        );
        // A port-level entry replaces the load balancer for its port only.
        let mut c = Cluster::default();
        apply(&mut c, &Policy::of(Some(&rule), None, 9080));
        assert_eq!(c.lb_policy, cluster::LbPolicy::RoundRobin as i32);
        assert!(c.circuit_breakers.is_some(), "other blocks stay");
    }

    #[test]
    fn a_subsets_consistent_hash_replaces_the_rules_load_balancer() {
        let rule = tp(serde_json::json!({"loadBalancer": {"simple": "ROUND_ROBIN"}}));
        let own =
            tp(serde_json::json!({"loadBalancer": {"consistentHash": {"useSourceIp": true}}}));
        let policy = Policy::of(Some(&rule), Some(&own), 80);
        let mut c = Cluster::default();
        apply(&mut c, &policy);
        assert_eq!(c.lb_policy, cluster::LbPolicy::RingHash as i32);
        let hash = crate::traffic::policy::hash_policy(policy.consistent_hash().unwrap()).unwrap();
        assert!(matches!(
            hash.policy_specifier,
            Some(envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier::ConnectionProperties(p)) if p.source_ip
        ));
    }
}
