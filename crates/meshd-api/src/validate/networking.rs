//! Per-object checks of VirtualService, DestinationRule, ServiceEntry and Gateway (SPEC §8, §10),
//! following Istio's own validation where SPEC is silent.

use std::collections::BTreeMap;

use super::FieldError;
use super::common::*;
use crate::networking::virtual_service::{
    GRPC_STATUS_NAMES, HttpFaultInjection, HttpMatchRequest, HttpRetry, HttpRoute,
    HttpRouteDestination, RouteDestination, VirtualServiceSpec,
};
use crate::networking::{DestinationRule, Gateway, ServiceEntry, VirtualService};

/// Envoy's retry conditions (`x-envoy-retry-on` and `x-envoy-retry-grpc-on`), as Istio accepts them.
const RETRY_ON: [&str; 16] = [
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

pub(super) fn virtual_service(vs: &VirtualService) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &vs.metadata);
    let spec = &vs.spec;
    vs_hosts(&mut r, spec);
    for (i, g) in spec.gateways.iter().enumerate() {
        gateway_ref(&mut r, &idx("spec.gateways", i), g);
    }
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        r.field("spec", "needs at least one http, tcp or tls route");
    }
    for (i, route) in spec.http.iter().enumerate() {
        http_route(&mut r, &idx("spec.http", i), route);
    }
    for (i, route) in spec.tls.iter().enumerate() {
        let path = idx("spec.tls", i);
        if route.matches.is_empty() {
            r.field(
                &at(&path, "match"),
                "is required (TLS routes match on sniHosts)",
            );
        }
        for (j, m) in route.matches.iter().enumerate() {
            let mp = idx(&at(&path, "match"), j);
            if m.sni_hosts.is_empty() {
                r.field(&at(&mp, "sniHosts"), "is required");
            }
            for (k, h) in m.sni_hosts.iter().enumerate() {
                host(&mut r, &idx(&at(&mp, "sniHosts"), k), h, true);
            }
            ips_or_cidrs(
                &mut r,
                &at(&mp, "destinationSubnets"),
                &m.destination_subnets,
            );
            if let Some(p) = m.port {
                port(&mut r, &at(&mp, "port"), p);
            }
            labels(&mut r, &at(&mp, "sourceLabels"), &m.source_labels);
        }
        l4_route(&mut r, &at(&path, "route"), &route.route);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let path = idx("spec.tcp", i);
        for (j, m) in route.matches.iter().enumerate() {
            let mp = idx(&at(&path, "match"), j);
            ips_or_cidrs(
                &mut r,
                &at(&mp, "destinationSubnets"),
                &m.destination_subnets,
            );
            if let Some(s) = &m.source_subnet {
                ip_or_cidr(&mut r, &at(&mp, "sourceSubnet"), s);
            }
            if let Some(p) = m.port {
                port(&mut r, &at(&mp, "port"), p);
            }
            labels(&mut r, &at(&mp, "sourceLabels"), &m.source_labels);
        }
        l4_route(&mut r, &at(&path, "route"), &route.route);
    }
    export_to(&mut r, "spec.exportTo", &spec.export_to);
    r.errors
}

/// `*` is a host only for VirtualServices bound to gateways and not to `mesh` (SPEC §10).
fn vs_hosts(r: &mut Report, spec: &VirtualServiceSpec) {
    if spec.hosts.is_empty() {
        r.field(
            "spec.hosts",
            "is required (delegate VirtualServices are not supported)",
        );
    }
    let mesh_bound = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
    for (i, h) in spec.hosts.iter().enumerate() {
        let path = idx("spec.hosts", i);
        if h == "*" && mesh_bound {
            r.bad(
                &path,
                h,
                "is valid only on a VirtualService bound to gateways (not mesh)",
            );
        } else {
            host(r, &path, h, true);
        }
    }
}

fn gateway_ref(r: &mut Report, path: &str, g: &str) {
    let name = match g.split_once('/') {
        Some((ns, name)) if is_dns_label(ns) => name,
        Some(_) => "",
        None => g,
    };
    if !is_dns_subdomain(name) {
        r.bad(path, g, "is not mesh, a Gateway name or namespace/name");
    }
}

fn http_route(r: &mut Report, path: &str, route: &HttpRoute) {
    for (j, m) in route.matches.iter().enumerate() {
        http_match(r, &idx(&at(path, "match"), j), m);
    }
    let actions = [
        !route.route.is_empty(),
        route.redirect.is_some(),
        route.direct_response.is_some(),
    ];
    match actions.iter().filter(|a| **a).count() {
        0 if route.delegate.is_none() => {
            r.field(path, "needs one of route, redirect or directResponse")
        }
        0 | 1 => {}
        _ => r.field(
            path,
            "may have only one of route, redirect or directResponse",
        ),
    }
    http_destinations(r, &at(path, "route"), &route.route);
    if let Some(redirect) = &route.redirect {
        let rp = at(path, "redirect");
        if route.rewrite.is_some() {
            r.field(&at(path, "rewrite"), "cannot be combined with redirect");
        }
        if let Some(p) = redirect.port {
            port(r, &at(&rp, "port"), p);
        }
        if redirect.port.is_some() && redirect.derive_port.is_some() {
            r.field(&rp, "may have only one of port or derivePort");
        }
        if let Some(code) = redirect.redirect_code
            && ![301, 302, 303, 307, 308].contains(&code)
        {
            r.bad_value(
                &at(&rp, "redirectCode"),
                code,
                "is not a redirect code Envoy sends (301, 302, 303, 307, 308)",
            );
        }
        if let Some(s) = &redirect.scheme
            && s != "http"
            && s != "https"
        {
            r.bad(&at(&rp, "scheme"), s, "is not http or https");
        }
    }
    if let Some(d) = &route.direct_response {
        range(
            r,
            &at(&at(path, "directResponse"), "status"),
            Some(i64::from(d.status)),
            200,
            599,
        );
    }
    if let Some(rw) = &route.rewrite {
        let rp = at(path, "rewrite");
        if rw.uri.is_none() && rw.authority.is_none() && rw.uri_regex_rewrite.is_none() {
            r.field(&rp, "needs uri, authority or uriRegexRewrite");
        }
        if rw.uri.is_some() && rw.uri_regex_rewrite.is_some() {
            r.field(&rp, "may have only one of uri or uriRegexRewrite");
        }
        if let Some(re) = &rw.uri_regex_rewrite {
            regex(r, &at(&at(&rp, "uriRegexRewrite"), "match"), &re.pattern);
        }
    }
    duration(r, &at(path, "timeout"), route.timeout.as_ref(), MS);
    if let Some(retries) = &route.retries {
        http_retry(r, &at(path, "retries"), retries);
    }
    if let Some(fault) = &route.fault {
        http_fault(r, &at(path, "fault"), fault);
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        r.field(path, "may have only one of mirror or mirrors");
    }
    if let Some(m) = &route.mirror {
        destination(r, &at(path, "mirror"), m);
    }
    for (j, m) in route.mirrors.iter().enumerate() {
        let mp = idx(&at(path, "mirrors"), j);
        destination(r, &at(&mp, "destination"), &m.destination);
        percent(r, &at(&mp, "percentage"), m.percentage.as_ref());
    }
    percent(
        r,
        &at(path, "mirrorPercentage"),
        route.mirror_percentage.as_ref(),
    );
    range(
        r,
        &at(path, "mirrorPercent"),
        route.mirror_percent.map(i64::from),
        0,
        100,
    );
    if let Some(cors) = &route.cors_policy {
        let cp = at(path, "corsPolicy");
        for (j, o) in cors.allow_origins.iter().enumerate() {
            string_match(r, &idx(&at(&cp, "allowOrigins"), j), o);
        }
        for (field, list) in [
            ("allowHeaders", &cors.allow_headers),
            ("exposeHeaders", &cors.expose_headers),
        ] {
            for (j, h) in list.iter().enumerate() {
                header_name(r, &idx(&at(&cp, field), j), h, false);
            }
        }
        duration(r, &at(&cp, "maxAge"), cors.max_age.as_ref(), MS);
    }
    headers(r, &at(path, "headers"), route.headers.as_ref());
}

fn http_match(r: &mut Report, path: &str, m: &HttpMatchRequest) {
    for (field, sm) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(sm) = sm {
            string_match(r, &at(path, field), sm);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, sm) in map {
            let hp = key(&at(path, field), name);
            header_name(r, &hp, name, false);
            string_match(r, &hp, sm);
        }
    }
    for (name, sm) in &m.query_params {
        let qp = key(&at(path, "queryParams"), name);
        if name.is_empty() {
            r.field(&qp, "needs a parameter name");
        }
        string_match(r, &qp, sm);
    }
    if let Some(p) = m.port {
        port(r, &at(path, "port"), p);
    }
    labels(r, &at(path, "sourceLabels"), &m.source_labels);
    if let Some(ns) = &m.source_namespace
        && !is_dns_label(ns)
    {
        r.bad(&at(path, "sourceNamespace"), ns, "is not a namespace name");
    }
}

fn http_destinations(r: &mut Report, path: &str, route: &[HttpRouteDestination]) {
    for (i, d) in route.iter().enumerate() {
        let dp = idx(path, i);
        destination(r, &at(&dp, "destination"), &d.destination);
        range(r, &at(&dp, "weight"), d.weight.map(i64::from), 0, 100);
        headers(r, &at(&dp, "headers"), d.headers.as_ref());
    }
    weights(r, path, route.iter().map(|d| d.weight));
}

fn l4_route(r: &mut Report, path: &str, route: &[RouteDestination]) {
    if route.is_empty() {
        r.field(path, "needs at least one destination");
    }
    for (i, d) in route.iter().enumerate() {
        let dp = idx(path, i);
        destination(r, &at(&dp, "destination"), &d.destination);
        range(r, &at(&dp, "weight"), d.weight.map(i64::from), 0, 100);
    }
    weights(r, path, route.iter().map(|d| d.weight));
}

/// With several destinations, some weight must be positive (one destination takes everything).
fn weights(r: &mut Report, path: &str, weights: impl Iterator<Item = Option<i32>>) {
    let w: Vec<i32> = weights.map(|w| w.unwrap_or(0)).collect();
    if w.len() > 1 && w.iter().all(|w| *w <= 0) {
        r.field(
            path,
            "has weights that are all 0, so no destination would get traffic",
        );
    }
}

fn http_retry(r: &mut Report, path: &str, retry: &HttpRetry) {
    range(
        r,
        &at(path, "attempts"),
        retry.attempts.map(i64::from),
        0,
        1000,
    );
    duration(
        r,
        &at(path, "perTryTimeout"),
        retry.per_try_timeout.as_ref(),
        MS,
    );
    duration(r, &at(path, "backoff"), retry.backoff.as_ref(), MS);
    if let Some(on) = &retry.retry_on {
        for item in on.split(',').map(str::trim) {
            let status = item.parse::<u16>().is_ok_and(|c| (100..=599).contains(&c));
            if !(RETRY_ON.contains(&item) || status) {
                r.bad(
                    &at(path, "retryOn"),
                    item,
                    "is not an Envoy retry condition (5xx, gateway-error, connect-failure, refused-stream, reset, retriable-4xx, unavailable, cancelled, … or an HTTP status code)",
                );
            }
        }
    }
}

fn http_fault(r: &mut Report, path: &str, fault: &HttpFaultInjection) {
    if fault.delay.is_none() && fault.abort.is_none() {
        r.field(path, "needs delay or abort");
    }
    if let Some(d) = &fault.delay {
        let dp = at(path, "delay");
        if d.fixed_delay.is_some() == d.exponential_delay.is_some() {
            r.field(&dp, "needs exactly one of fixedDelay or exponentialDelay");
        }
        duration(r, &at(&dp, "fixedDelay"), d.fixed_delay.as_ref(), MS);
        duration(
            r,
            &at(&dp, "exponentialDelay"),
            d.exponential_delay.as_ref(),
            MS,
        );
        percent(r, &at(&dp, "percentage"), d.percentage.as_ref());
        range(r, &at(&dp, "percent"), d.percent.map(i64::from), 0, 100);
    }
    if let Some(a) = &fault.abort {
        let ap = at(path, "abort");
        let set = [
            a.http_status.is_some(),
            a.grpc_status.is_some(),
            a.http2_error.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            r.field(
                &ap,
                "needs exactly one of httpStatus, grpcStatus or http2Error",
            );
        }
        range(
            r,
            &at(&ap, "httpStatus"),
            a.http_status.map(i64::from),
            200,
            599,
        );
        if let Some(g) = &a.grpc_status
            && !GRPC_STATUS_NAMES.contains(&g.as_str())
        {
            r.bad(
                &at(&ap, "grpcStatus"),
                g,
                "is not a gRPC status name such as UNAVAILABLE",
            );
        }
        percent(r, &at(&ap, "percentage"), a.percentage.as_ref());
        range(r, &at(&ap, "percent"), a.percent.map(i64::from), 0, 100);
    }
}

pub(super) fn destination_rule(dr: &DestinationRule) -> Vec<FieldError> {
    let mut r = Report::default();
    metadata(&mut r, &dr.metadata);
    let spec = &dr.spec;
    host(&mut r, "spec.host", &spec.host, false);
    if let Some(tp) = &spec.traffic_policy {
        traffic::policy(&mut r, "spec.trafficPolicy", tp);
    }
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in spec.subsets.iter().enumerate() {
        let sp = idx("spec.subsets", i);
        if s.name.is_empty() {
            r.field(&at(&sp, "name"), "is required");
        } else if !is_dns_label(&s.name) {
            r.bad(
                &at(&sp, "name"),
                &s.name,
                "is not a subset name (a DNS label)",
            );
        } else if let Some(first) = seen.insert(&s.name, i) {
            r.bad(
                &at(&sp, "name"),
                &s.name,
                format!("is also the name of spec.subsets[{first}]"),
            );
        }
        labels(&mut r, &at(&sp, "labels"), &s.labels);
        if let Some(tp) = &s.traffic_policy {
            traffic::policy(&mut r, &at(&sp, "trafficPolicy"), tp);
        }
    }
    export_to(&mut r, "spec.exportTo", &spec.export_to);
    r.errors
}

mod traffic {
    //! DestinationRule traffic policies (top level, per subset, per port).

    use super::*;
    use crate::networking::destination_rule::{
        ClientTlsMode, ClientTlsSettings, ConnectionPoolSettings, LoadBalancerSettings,
        OutlierDetection, TrafficPolicy,
    };

    pub(super) fn policy(r: &mut Report, path: &str, tp: &TrafficPolicy) {
        parts(
            r,
            path,
            tp.load_balancer.as_ref(),
            tp.connection_pool.as_ref(),
            tp.outlier_detection.as_ref(),
            tp.tls.as_ref(),
        );
        let mut seen = BTreeMap::new();
        for (i, p) in tp.port_level_settings.iter().enumerate() {
            let pp = idx(&at(path, "portLevelSettings"), i);
            port(r, &at(&at(&pp, "port"), "number"), p.port.number);
            if let Some(first) = seen.insert(p.port.number, i) {
                r.bad_value(
                    &at(&at(&pp, "port"), "number"),
                    p.port.number,
                    format!("also has portLevelSettings[{first}]"),
                );
            }
            parts(
                r,
                &pp,
                p.load_balancer.as_ref(),
                p.connection_pool.as_ref(),
                p.outlier_detection.as_ref(),
                p.tls.as_ref(),
            );
        }
    }

    fn parts(
        r: &mut Report,
        path: &str,
        lb: Option<&LoadBalancerSettings>,
        pool: Option<&ConnectionPoolSettings>,
        outlier: Option<&OutlierDetection>,
        tls_settings: Option<&ClientTlsSettings>,
    ) {
        if let Some(lb) = lb {
            load_balancer(r, &at(path, "loadBalancer"), lb);
        }
        if let Some(pool) = pool {
            connection_pool(r, &at(path, "connectionPool"), pool);
        }
        if let Some(o) = outlier {
            let op = at(path, "outlierDetection");
            duration(r, &at(&op, "interval"), o.interval.as_ref(), MS);
            duration(
                r,
                &at(&op, "baseEjectionTime"),
                o.base_ejection_time.as_ref(),
                MS,
            );
            range(
                r,
                &at(&op, "maxEjectionPercent"),
                o.max_ejection_percent.map(i64::from),
                0,
                100,
            );
            range(
                r,
                &at(&op, "minHealthPercent"),
                o.min_health_percent.map(i64::from),
                0,
                100,
            );
            range(
                r,
                &at(&op, "consecutiveErrors"),
                o.consecutive_errors.map(i64::from),
                0,
                i64::from(i32::MAX),
            );
            for (i, c) in o.outlier_detection_http_error_codes.iter().enumerate() {
                range(
                    r,
                    &idx(&at(&op, "outlierDetectionHttpErrorCodes"), i),
                    Some(i64::from(*c)),
                    100,
                    599,
                );
            }
        }
        if let Some(t) = tls_settings {
            tls(r, &at(path, "tls"), t);
        }
    }

    fn load_balancer(r: &mut Report, path: &str, lb: &LoadBalancerSettings) {
        if lb.simple.is_some() && lb.consistent_hash.is_some() {
            r.field(path, "may have only one of simple or consistentHash");
        }
        duration(
            r,
            &at(path, "warmupDurationSecs"),
            lb.warmup_duration_secs.as_ref(),
            MS,
        );
        let Some(ch) = &lb.consistent_hash else {
            return;
        };
        let cp = at(path, "consistentHash");
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip.is_some(),
            ch.http_query_parameter_name.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            r.field(&cp, "needs exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName");
        }
        if ch.use_source_ip == Some(false) {
            r.bad_value(
                &at(&cp, "useSourceIp"),
                false,
                "hashes on nothing (set true or use another key)",
            );
        }
        if ch.ring_hash.is_some() && ch.maglev.is_some() {
            r.field(&cp, "may have only one of ringHash or maglev");
        }
        if let Some(h) = &ch.http_header_name {
            header_name(r, &at(&cp, "httpHeaderName"), h, false);
        }
        if ch.http_query_parameter_name.as_deref() == Some("") {
            r.field(&at(&cp, "httpQueryParameterName"), "is empty");
        }
        if let Some(cookie) = &ch.http_cookie {
            let kp = at(&cp, "httpCookie");
            if cookie.name.is_empty() {
                r.field(&at(&kp, "name"), "is required");
            }
            duration(
                r,
                &at(&kp, "ttl"),
                cookie.ttl.as_ref(),
                std::time::Duration::ZERO,
            );
        }
    }

    fn connection_pool(r: &mut Report, path: &str, pool: &ConnectionPoolSettings) {
        let max = i64::from(i32::MAX);
        if let Some(tcp) = &pool.tcp {
            let tp = at(path, "tcp");
            range(
                r,
                &at(&tp, "maxConnections"),
                tcp.max_connections.map(i64::from),
                0,
                max,
            );
            duration(
                r,
                &at(&tp, "connectTimeout"),
                tcp.connect_timeout.as_ref(),
                MS,
            );
            duration(r, &at(&tp, "idleTimeout"), tcp.idle_timeout.as_ref(), MS);
            duration(
                r,
                &at(&tp, "maxConnectionDuration"),
                tcp.max_connection_duration.as_ref(),
                MS,
            );
        }
        if let Some(http) = &pool.http {
            let hp = at(path, "http");
            for (field, v) in [
                ("http1MaxPendingRequests", http.http1_max_pending_requests),
                ("http2MaxRequests", http.http2_max_requests),
                ("maxRequestsPerConnection", http.max_requests_per_connection),
                ("maxRetries", http.max_retries),
                ("maxConcurrentStreams", http.max_concurrent_streams),
            ] {
                range(r, &at(&hp, field), v.map(i64::from), 0, max);
            }
            duration(r, &at(&hp, "idleTimeout"), http.idle_timeout.as_ref(), MS);
        }
    }

    fn tls(r: &mut Report, path: &str, t: &ClientTlsSettings) {
        let files = t.client_certificate.is_some()
            || t.private_key.is_some()
            || t.ca_certificates.is_some();
        if t.credential_name.is_some() && files {
            r.field(path, "may have credentialName or file paths (clientCertificate, privateKey, caCertificates), not both");
        }
        if let Some(name) = &t.credential_name
            && !is_dns_subdomain(name)
        {
            r.bad(&at(path, "credentialName"), name, "is not a Secret name");
        }
        if t.mode == Some(ClientTlsMode::Mutual)
            && t.credential_name.is_none()
            && (t.client_certificate.is_none() || t.private_key.is_none())
        {
            r.field(
                path,
                "MUTUAL needs credentialName (or clientCertificate and privateKey)",
            );
        }
        if let Some(sni) = &t.sni
            && !is_host(sni)
        {
            r.bad(&at(path, "sni"), sni, HOST_PROBLEM);
        }
    }
}

pub(super) fn service_entry(se: &ServiceEntry) -> Vec<FieldError> {
    use crate::networking::service_entry::Resolution;
    let mut r = Report::default();
    metadata(&mut r, &se.metadata);
    let spec = &se.spec;
    let resolution = spec.resolution.unwrap_or_default();
    if spec.hosts.is_empty() {
        r.field("spec.hosts", "is required");
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        let hp = idx("spec.hosts", i);
        host(&mut r, &hp, h, false);
        if h.starts_with("*.")
            && matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin)
            && spec.endpoints.is_empty()
        {
            r.bad(&hp, h, "is a wildcard, which DNS resolution cannot resolve (add endpoints or use resolution NONE)");
        }
    }
    ips_or_cidrs(&mut r, "spec.addresses", &spec.addresses);
    let mut numbers = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        port(&mut r, &at(&pp, "number"), p.number);
        if let Some(first) = numbers.insert(p.number, i) {
            r.bad_value(
                &at(&pp, "number"),
                p.number,
                format!("is also the number of spec.ports[{first}]"),
            );
        }
        if p.name.is_empty() {
            r.field(&at(&pp, "name"), "is required");
        } else if let Some(first) = names.insert(p.name.as_str(), i) {
            r.bad(
                &at(&pp, "name"),
                &p.name,
                format!("is also the name of spec.ports[{first}]"),
            );
        }
        if let Some(t) = p.target_port {
            port(&mut r, &at(&pp, "targetPort"), t);
        }
    }
    if spec.workload_selector.is_some() && !spec.endpoints.is_empty() {
        r.field("spec", "may have only one of workloadSelector or endpoints");
    }
    match resolution {
        Resolution::None if !spec.endpoints.is_empty() => r.field(
            "spec.endpoints",
            "must be empty with resolution NONE (use STATIC or DNS)",
        ),
        Resolution::DnsRoundRobin if spec.endpoints.len() > 1 => r.field(
            "spec.endpoints",
            "may have at most one endpoint with resolution DNS_ROUND_ROBIN",
        ),
        _ => {}
    }
    for (i, e) in spec.endpoints.iter().enumerate() {
        let ep = idx("spec.endpoints", i);
        let is_ip = e.address.parse::<std::net::IpAddr>().is_ok();
        if e.address.is_empty() {
            r.field(&at(&ep, "address"), "is required");
        } else if resolution == Resolution::Static && !is_ip && !e.address.starts_with("unix://") {
            r.bad(
                &at(&ep, "address"),
                &e.address,
                "is not an IP address (resolution STATIC)",
            );
        } else if !is_ip && !e.address.starts_with("unix://") && !is_host(&e.address) {
            r.bad(
                &at(&ep, "address"),
                &e.address,
                "is not an IP address or DNS name",
            );
        }
        for (name, number) in &e.ports {
            let pp = key(&at(&ep, "ports"), name);
            if !names.contains_key(name.as_str()) {
                r.bad(&pp, name, "is not the name of one of spec.ports");
            }
            port(&mut r, &pp, *number);
        }
        labels(&mut r, &at(&ep, "labels"), &e.labels);
    }
    export_to(&mut r, "spec.exportTo", &spec.export_to);
    r.errors
}

pub(super) fn gateway(gw: &Gateway) -> Vec<FieldError> {
    use crate::networking::Protocol;
    use crate::networking::TlsProtocol;
    use crate::networking::gateway::ServerTlsMode;
    let mut r = Report::default();
    metadata(&mut r, &gw.metadata);
    let spec = &gw.spec;
    if spec.servers.is_empty() {
        r.field("spec.servers", "needs at least one server");
    }
    labels(&mut r, "spec.selector", &spec.selector);
    let mut protocols: BTreeMap<u32, (usize, Protocol)> = BTreeMap::new();
    let mut names = BTreeMap::new();
    for (i, s) in spec.servers.iter().enumerate() {
        let sp = idx("spec.servers", i);
        let pp = at(&sp, "port");
        port(&mut r, &at(&pp, "number"), s.port.number);
        if s.port.name.is_empty() {
            r.field(&at(&pp, "name"), "is required");
        } else if let Some(first) = names.insert(s.port.name.as_str(), i) {
            r.bad(
                &at(&pp, "name"),
                &s.port.name,
                format!("is also the port name of spec.servers[{first}]"),
            );
        }
        match s.port.protocol {
            None => r.field(&at(&pp, "protocol"), "is required"),
            Some(p) => match protocols.get(&s.port.number) {
                Some((first, q)) if *q != p => r.bad(
                    &at(&pp, "protocol"),
                    p.as_str(),
                    format!(
                        "differs from spec.servers[{first}] ({}) on the same port {}",
                        q.as_str(),
                        s.port.number
                    ),
                ),
                Some(_) => {}
                None => {
                    protocols.insert(s.port.number, (i, p));
                }
            },
        }
        if s.hosts.is_empty() {
            r.field(&at(&sp, "hosts"), "is required");
        }
        for (j, h) in s.hosts.iter().enumerate() {
            server_host(&mut r, &idx(&at(&sp, "hosts"), j), h);
        }
        let needs_tls = matches!(s.port.protocol, Some(Protocol::Https | Protocol::Tls));
        let Some(tls) = &s.tls else {
            if needs_tls {
                r.field(&at(&sp, "tls"), "is required for HTTPS and TLS servers");
            }
            continue;
        };
        let tp = at(&sp, "tls");
        if needs_tls
            && matches!(
                tls.mode,
                Some(ServerTlsMode::Simple | ServerTlsMode::Mutual)
            )
            && tls.credential_name.is_none()
        {
            r.field(
                &at(&tp, "credentialName"),
                "is required for SIMPLE and MUTUAL (meshd serves certificates from Secrets, not files)",
            );
        }
        if let Some(name) = &tls.credential_name
            && !is_dns_subdomain(name)
        {
            r.bad(&at(&tp, "credentialName"), name, "is not a Secret name");
        }
        for (field, v) in [
            ("minProtocolVersion", tls.min_protocol_version),
            ("maxProtocolVersion", tls.max_protocol_version),
        ] {
            if let Some(v @ (TlsProtocol::Tlsv1_0 | TlsProtocol::Tlsv1_1)) = v {
                r.bad(
                    &at(&tp, field),
                    v.as_str(),
                    "is older than TLS 1.2; meshd serves TLS 1.2 and newer only",
                );
            }
        }
        if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version)
            && min != TlsProtocol::TlsAuto
            && max != TlsProtocol::TlsAuto
            && min > max
        {
            r.bad(
                &at(&tp, "minProtocolVersion"),
                min.as_str(),
                format!("is newer than maxProtocolVersion {}", max.as_str()),
            );
        }
    }
    r.errors
}

/// `[namespace/]host`: namespace a DNS label, `.` or `*`; host as for VirtualServices, `*` allowed.
fn server_host(r: &mut Report, path: &str, h: &str) {
    let (ns, name) = h.split_once('/').unwrap_or(("*", h));
    if !(ns == "." || ns == "*" || is_dns_label(ns)) {
        r.bad(
            path,
            h,
            "has a namespace part that is not \".\", \"*\" or a namespace",
        );
    } else if !(name == "*" || is_host(name)) {
        r.bad(path, h, HOST_PROBLEM);
    }
}
