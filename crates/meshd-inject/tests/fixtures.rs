//! Every admission fixture (kube-apiserver 1.28 bodies, byte for byte) gets the answer its README asks
//! for. Each injected answer's patch is applied to `request.object` and the resulting pod is checked.

mod common;

use common::*;
use meshd_inject::{InjectionSettings, ReviewResult, SkipReason};
use serde_json::Value;

fn settings() -> InjectionSettings {
    InjectionSettings::default()
}

/// What every injected pod must satisfy, whatever the fixture (SPEC §4).
fn assert_injected(before: &Value, after: &Value, native: bool) {
    let (bs, s) = (&before["spec"], &after["spec"]);
    // meshd-init first; the native proxy right after it; the user's init containers after, unchanged.
    let init = names(&s["initContainers"]);
    let user_init = names(&bs["initContainers"]);
    let mut expected = vec!["meshd-init".to_string()];
    if native {
        expected.push("meshd-proxy".into());
    }
    expected.extend(user_init.iter().cloned());
    assert_eq!(init, expected);
    for (i, c) in bs["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        assert_eq!(
            &s["initContainers"][i + expected.len() - user_init.len()],
            c,
            "user init container changed"
        );
    }
    let meshd_init = find(&s["initContainers"], "meshd-init");
    assert_eq!(meshd_init["command"], serde_json::json!(["meshd", "init"]));
    let sc = &meshd_init["securityContext"];
    assert_eq!(sc["runAsUser"], 0);
    assert_eq!(sc["runAsNonRoot"], false);
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "NET_RAW"])
    );
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));

    let proxy = if native {
        let p = find(&s["initContainers"], "meshd-proxy");
        assert_eq!(p["restartPolicy"], "Always");
        assert_eq!(p["startupProbe"]["httpGet"]["port"], 15021);
        assert_eq!(p["startupProbe"]["httpGet"]["path"], "/healthz/ready");
        assert!(!names(&s["containers"]).contains(&"meshd-proxy".to_string()));
        p
    } else {
        assert_eq!(
            s["containers"][0]["name"], "meshd-proxy",
            "classic proxy goes first"
        );
        &s["containers"][0]
    };
    let sc = &proxy["securityContext"];
    assert_eq!(sc["runAsUser"], 1337);
    assert_eq!(sc["runAsGroup"], 1337);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"].get("add").is_none());
    assert_eq!(proxy["args"], serde_json::json!(["agent"]));
    for (var, path) in [
        ("MESHD_POD_NAME", "metadata.name"),
        ("MESHD_POD_NAMESPACE", "metadata.namespace"),
        ("MESHD_POD_IP", "status.podIP"),
        ("MESHD_SERVICE_ACCOUNT", "spec.serviceAccountName"),
        ("MESHD_NODE_NAME", "spec.nodeName"),
    ] {
        let e = env(proxy, var).unwrap_or_else(|| panic!("{var} missing"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    assert_eq!(
        env(proxy, "MESHD_MESH").expect("MESHD_MESH")["value"],
        "default"
    );

    // Only meshd-init runs as root.
    for c in s["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(s["containers"].as_array().into_iter().flatten())
    {
        if c["name"] != "meshd-init" {
            assert_ne!(
                c["securityContext"]["runAsUser"], 0,
                "{} runs as root",
                c["name"]
            );
        }
    }

    // App containers: as they were, apart from rewritten probes.
    let app: Vec<&Value> = s["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter(|c| c["name"] != "meshd-proxy")
        .collect();
    let before_app = bs["containers"].as_array().expect("containers");
    assert_eq!(app.len(), before_app.len());
    for (a, b) in app.iter().zip(before_app) {
        let strip = |c: &Value| {
            let mut c = c.clone();
            for p in ["livenessProbe", "readinessProbe", "startupProbe"] {
                c.as_object_mut().expect("container").remove(p);
            }
            c
        };
        assert_eq!(strip(a), strip(b), "app container {} changed", b["name"]);
    }

    // Volumes: the pod's, in order, then meshd's.
    let vols = names(&s["volumes"]);
    let before_vols = names(&bs["volumes"]);
    assert_eq!(vols[..before_vols.len()], before_vols[..]);
    assert_eq!(
        vols[before_vols.len()..],
        ["meshd-envoy", "meshd-sds", "meshd-token", "meshd-ca-root"]
    );
    let token = find(&s["volumes"], "meshd-token");
    assert_eq!(
        token["projected"]["sources"][0]["serviceAccountToken"]["audience"],
        "meshd"
    );
    assert_eq!(
        find(&s["volumes"], "meshd-ca-root")["configMap"]["name"],
        "meshd-ca-root"
    );
    let mounts = names(&proxy["volumeMounts"]);
    assert_eq!(
        mounts,
        ["meshd-envoy", "meshd-sds", "meshd-token", "meshd-ca-root"]
    );

    // Metadata: the pod's labels and annotations kept; meshd's added.
    let (bm, m) = (&before["metadata"], &after["metadata"]);
    for field in ["labels", "annotations"] {
        for (k, v) in bm[field].as_object().into_iter().flatten() {
            assert_eq!(&m[field][k], v, "{field} {k} changed");
        }
    }
    assert_eq!(m["labels"]["meshd.io/mesh"], "default");
    let status: Value = serde_json::from_str(
        m["annotations"]["meshd.io/status"]
            .as_str()
            .expect("status annotation"),
    )
    .expect("status is JSON");
    assert_eq!(status["mesh"], "default");
    assert_eq!(status["proxyImage"], proxy["image"]);
    let status_init: Vec<&str> = if native {
        vec!["meshd-init", "meshd-proxy"]
    } else {
        vec!["meshd-init"]
    };
    assert_eq!(status["initContainers"], serde_json::json!(status_init));
    assert_eq!(
        status["volumes"],
        serde_json::json!(["meshd-envoy", "meshd-sds", "meshd-token", "meshd-ca-root"])
    );
    assert_eq!(
        m["annotations"]["kubectl.kubernetes.io/default-container"],
        bs["containers"][0]["name"]
    );
    // Everything else about the pod is as it was.
    for key in after["spec"].as_object().expect("spec").keys() {
        if !["initContainers", "containers", "volumes"].contains(&key.as_str()) {
            assert_eq!(
                after["spec"][key], before["spec"][key],
                "spec.{key} changed"
            );
        }
    }
}

fn injected(name: &str) -> (Value, Value, Value) {
    let a = run(&fixture(name), &settings());
    assert_eq!(
        a.answer.result,
        ReviewResult::Injected,
        "{name}: {}",
        a.answer.message
    );
    assert_eq!(a.response["allowed"], true);
    let after = a.after.expect("an injected answer carries a patch");
    // Fixtures carry no server version: the standalone webhook's `auto` is native.
    assert_injected(&a.before, &after, true);
    let proxy = find(&after["spec"]["initContainers"], "meshd-proxy").clone();
    (a.before, after, proxy)
}

fn app_probes(proxy: &Value) -> Value {
    serde_json::from_str(
        env(proxy, "MESHD_APP_PROBES").expect("MESHD_APP_PROBES")["value"]
            .as_str()
            .expect("string"),
    )
    .expect("MESHD_APP_PROBES is JSON")
}

#[test]
fn pod_web_rewrites_both_http_probes() {
    let (_, after, proxy) = injected("pod-web.json");
    let web = find(&after["spec"]["containers"], "web");
    for (probe, kind) in [("readinessProbe", "readyz"), ("livenessProbe", "livez")] {
        let h = &web[probe]["httpGet"];
        assert_eq!(h["port"], 15020);
        assert_eq!(h["scheme"], "HTTP");
        assert_eq!(h["path"], format!("/app-health/web/{kind}"));
        assert!(h.get("httpHeaders").is_none());
    }
    assert_eq!(web["readinessProbe"]["periodSeconds"], 5, "timings kept");
    let originals = app_probes(&proxy);
    // The named port `http` resolved to its number; the header kept.
    assert_eq!(originals["web/readyz"]["httpGet"]["port"], 8080);
    assert_eq!(originals["web/readyz"]["httpGet"]["path"], "/ready");
    assert_eq!(
        originals["web/livez"]["httpGet"]["httpHeaders"][0]["name"],
        "X-Probe"
    );
}

#[test]
fn multi_container_probes_and_init_order() {
    let (_, after, proxy) = injected("pod-multi-container-probes.json");
    let api = find(&after["spec"]["containers"], "api");
    for (probe, kind) in [
        ("livenessProbe", "livez"),
        ("readinessProbe", "readyz"),
        ("startupProbe", "startupz"),
    ] {
        assert_eq!(
            api[probe]["httpGet"]["path"],
            format!("/app-health/api/{kind}")
        );
        assert_eq!(api[probe]["httpGet"]["port"], 15020);
        assert!(api[probe].get("tcpSocket").is_none() && api[probe].get("grpc").is_none());
    }
    assert_eq!(api["startupProbe"]["failureThreshold"], 30);
    let shipper = find(&after["spec"]["containers"], "log-shipper");
    assert_eq!(
        shipper["livenessProbe"]["exec"]["command"],
        serde_json::json!(["/bin/true"]),
        "exec untouched"
    );
    let originals = app_probes(&proxy);
    assert_eq!(originals["api/livez"]["tcpSocket"]["port"], 9080);
    assert_eq!(originals["api/readyz"]["grpc"]["port"], 9090);
    assert_eq!(originals["api/startupz"]["httpGet"]["path"], "/started");
    assert!(originals.get("log-shipper/livez").is_none());
}

#[test]
fn deployment_pod_takes_override_annotations() {
    let (_, after, proxy) = injected("deployment-reviews-pod.json");
    assert_eq!(proxy["resources"]["requests"]["cpu"], "200m");
    assert_eq!(proxy["resources"]["requests"]["memory"], "96Mi");
    assert_eq!(
        proxy["resources"]["limits"]["cpu"], "2",
        "the mesh's limit stays"
    );
    let init = find(&after["spec"]["initContainers"], "meshd-init");
    let args: Vec<&str> = init["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--exclude-outbound-ports")
        .expect("--exclude-outbound-ports");
    assert_eq!(args[at + 1], "5432,6379");
}

#[test]
fn statefulset_daemonset_pods_are_injected() {
    let (_, after, _) = injected("statefulset-db-pod.json");
    assert_eq!(
        find(&after["spec"]["volumes"], "data")["persistentVolumeClaim"]["claimName"],
        "data-db-0"
    );
    injected("daemonset-node-agent-pod.json");
}

#[test]
fn job_pods_get_a_native_sidecar() {
    for name in ["job-migrate-pod.json", "cronjob-nightly-pod.json"] {
        let (_, after, _) = injected(name);
        assert!(
            names(&after["spec"]["containers"])
                .iter()
                .all(|c| c != "meshd-proxy"),
            "{name}"
        );
    }
}

#[test]
fn user_native_sidecar_keeps_its_place_after_meshd() {
    let (_, after, _) = injected("pod-user-native-sidecar.json");
    assert_eq!(
        names(&after["spec"]["initContainers"]),
        ["meshd-init", "meshd-proxy", "log-forwarder"]
    );
    assert_eq!(
        after["spec"]["initContainers"][2]["restartPolicy"],
        "Always"
    );
}

#[test]
fn dry_run_gets_the_same_patch_and_is_marked() {
    let body = fixture("pod-generatename-dryrun.json");
    let dry = run(&body, &settings());
    assert!(dry.answer.dry_run);
    assert_eq!(dry.answer.result, ReviewResult::Injected);
    let mut real: Value = serde_json::from_slice(&body).expect("json");
    real["request"]["dryRun"] = false.into();
    let real = run(&serde_json::to_vec(&real).expect("json"), &settings());
    assert!(!real.answer.dry_run);
    assert_eq!(dry.response["patch"], real.response["patch"]);
    let after = dry.after.expect("patch");
    assert_injected(&dry.before, &after, true);
    assert_eq!(after["spec"]["automountServiceAccountToken"], false);
}

#[test]
fn skips_are_allowed_without_a_patch() {
    for (name, reason) in [
        ("pod-hostnetwork.json", SkipReason::HostNetwork),
        ("pod-optout-label.json", SkipReason::OptedOut),
        ("pod-already-injected.json", SkipReason::AlreadyInjected),
    ] {
        let a = run(&fixture(name), &settings());
        assert_eq!(a.answer.result, ReviewResult::Skipped(reason), "{name}");
        assert_eq!(a.response["allowed"], true, "{name}");
        assert!(a.after.is_none(), "{name} got a patch");
    }
}

#[test]
fn bad_annotations_are_refused_naming_each() {
    let a = run(&fixture("pod-bad-annotations.json"), &settings());
    assert_eq!(a.answer.result, ReviewResult::Refused);
    assert_eq!(a.response["allowed"], false);
    assert!(a.after.is_none());
    let message = a.response["status"]["message"].as_str().expect("message");
    for needle in [
        "sidecar.meshd.io/proxyCPU",
        "\"lots\"",
        "traffic.meshd.io/excludeOutboundPorts",
        "\"5432,not-a-port\"",
    ] {
        assert!(message.contains(needle), "{needle} missing from {message}");
    }
}

#[test]
fn every_fixture_is_answered() {
    let names = fixture_names();
    assert_eq!(names.len(), 13, "{names:?}");
    for name in names {
        let a = run(&fixture(&name), &settings());
        assert!(
            !matches!(a.answer.result, ReviewResult::Invalid(_)),
            "{name}: {}",
            a.answer.message
        );
    }
}
