//! Per-object checks of DestinationRule (SPEC §8): host, subsets and traffic policies (top level, per
//! subset, per port).

use std::collections::BTreeMap;

use super::FieldError;
use super::common::*;
use crate::networking::DestinationRule;

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
        match t.mode {
            // With credentialName the certificate and key are the Secret's.
            Some(ClientTlsMode::Mutual) if t.credential_name.is_none() => {
                for (field, v) in [
                    ("clientCertificate", &t.client_certificate),
                    ("privateKey", &t.private_key),
                ] {
                    if v.is_none() {
                        r.field(&at(path, field), "is required with mode MUTUAL");
                    }
                }
            }
            Some(m) if m.is_mesh_mutual() => {
                for (field, v) in [
                    ("clientCertificate", &t.client_certificate),
                    ("privateKey", &t.private_key),
                    ("caCertificates", &t.ca_certificates),
                    ("credentialName", &t.credential_name),
                ] {
                    if let Some(v) = v {
                        r.bad(
                            &at(path, field),
                            v,
                            "cannot be set with the mesh's own certificates (mode MESH_MUTUAL/ISTIO_MUTUAL)",
                        );
                    }
                }
            }
            _ => {}
        }
        for (i, name) in t.subject_alt_names.iter().enumerate() {
            if name.is_empty() {
                r.field(&idx(&at(path, "subjectAltNames"), i), "is empty");
            }
        }
        if let Some(sni) = &t.sni
            && !is_host(sni)
        {
            r.bad(&at(path, "sni"), sni, HOST_PROBLEM);
        }
    }
}
