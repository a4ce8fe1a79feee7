//! Checks of a VirtualService's HTTP routes: matches, destinations and weights, redirect, rewrite,
//! retries, faults, mirrors, CORS and header operations.

use super::common::*;
use crate::networking::virtual_service::{
    GRPC_STATUS_NAMES, HttpFaultInjection, HttpMatchRequest, HttpRetry, HttpRoute,
    HttpRouteDestination,
};

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

pub(super) fn http_route(r: &mut Report, path: &str, route: &HttpRoute) {
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

/// With several destinations, some weight must be positive (one destination takes everything).
pub(super) fn weights(r: &mut Report, path: &str, weights: impl Iterator<Item = Option<i32>>) {
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
