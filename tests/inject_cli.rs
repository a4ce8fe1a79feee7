//! `meshd inject -f FILE`: the fixtures' source manifests (Pod, Deployment, StatefulSet, DaemonSet, Job,
//! CronJob, a Namespace) in one multi-document stream; workloads injected, the rest unchanged.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");
const SOURCES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/admission/source"
);

fn sources(skip: &[&str]) -> String {
    let mut names: Vec<_> = std::fs::read_dir(SOURCES)
        .expect("sources")
        .map(|e| e.expect("entry").path())
        .filter(|p| !skip.iter().any(|s| p.to_string_lossy().contains(s)))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn inject(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(MESHD)
        .arg("inject")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("meshd runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn template(doc: &Value) -> &Value {
    match doc["kind"].as_str().expect("kind") {
        "Pod" => doc,
        "CronJob" => &doc["spec"]["jobTemplate"]["spec"]["template"],
        _ => &doc["spec"]["template"],
    }
}

fn container_names(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[test]
fn every_workload_kind_is_injected_and_other_kinds_pass_through() {
    // The bad-annotation pod is refused (its own test below).
    let input = sources(&["09-pod-badannotation"]);
    let (code, stdout, stderr) = inject(&["-f", "-"], &input);
    assert_eq!(code, 0, "{stderr}");
    let (before, after) = (documents(&input), documents(&stdout));
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        let kind = b["kind"].as_str().expect("kind");
        let name = b["metadata"]["name"].as_str().unwrap_or("");
        let workload = [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
        ]
        .contains(&kind);
        let left_alone = !workload || ["hostnet", "optout", "already"].contains(&name);
        if left_alone {
            assert_eq!(a, b, "{kind} {name} changed");
            continue;
        }
        let t = template(a);
        assert_eq!(
            container_names(&t["spec"]["initContainers"])[..2],
            ["meshd-init", "meshd-proxy"],
            "{kind} {name}"
        );
        assert_eq!(
            t["metadata"]["labels"]["meshd.io/mesh"], "default",
            "{kind} {name}"
        );
        assert!(
            t["metadata"]["annotations"]["meshd.io/status"].is_string(),
            "{kind} {name}"
        );
        // Outside the pod template, nothing changed.
        let mut a2 = a.clone();
        let mut b2 = b.clone();
        for v in [&mut a2, &mut b2] {
            match kind {
                "Pod" => *v = Value::Null,
                "CronJob" => v["spec"]["jobTemplate"]["spec"]["template"] = Value::Null,
                _ => v["spec"]["template"] = Value::Null,
            }
        }
        assert_eq!(a2, b2, "{kind} {name}: outside the template changed");
    }
    let kinds: Vec<&str> = after.iter().filter_map(|d| d["kind"].as_str()).collect();
    for k in [
        "Namespace",
        "ServiceAccount",
        "Service",
        "Pod",
        "Deployment",
        "StatefulSet",
        "Job",
        "CronJob",
        "DaemonSet",
    ] {
        assert!(kinds.contains(&k), "{k} missing from the output");
    }
    assert!(
        stderr.contains("hostnet") && stderr.contains("hostNetwork"),
        "skips are reported: {stderr}"
    );

    // Injecting the output again changes nothing.
    let (code, again, stderr) = inject(&["-f", "-"], &stdout);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(documents(&again), after);
}

#[test]
fn a_file_a_mesh_and_a_kubernetes_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("deploy.yaml");
    std::fs::write(
        &manifest,
        std::fs::read_to_string(format!("{SOURCES}/03-deploy-reviews.yaml")).expect("read"),
    )
    .expect("write");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: blue}\nspec:\n  trafficCapture: {mode: nftables}\n  proxy: {image: example/proxy:1}\n").expect("write");
    let (code, stdout, stderr) = inject(
        &[
            "-f",
            manifest.to_str().expect("path"),
            "--mesh",
            mesh.to_str().expect("path"),
            "--kubernetes-version",
            "1.28",
        ],
        "",
    );
    assert_eq!(code, 0, "{stderr}");
    let doc = &documents(&stdout)[0];
    let spec = &doc["spec"]["template"]["spec"];
    // 1.28 with nativeSidecar auto: classic sidecar, first container.
    assert_eq!(
        container_names(&spec["containers"]),
        ["meshd-proxy", "reviews"]
    );
    assert_eq!(container_names(&spec["initContainers"]), ["meshd-init"]);
    assert_eq!(spec["containers"][0]["image"], "example/proxy:1");
    let args = spec["initContainers"][0]["args"].as_array().expect("args");
    assert!(
        args.windows(2)
            .any(|w| w[0] == "--mode" && w[1] == "nftables"),
        "{args:?}"
    );
    assert_eq!(
        doc["spec"]["template"]["metadata"]["labels"]["meshd.io/mesh"],
        "blue"
    );
}

#[test]
fn bad_annotations_fail_naming_them_and_bad_flags_exit_64() {
    let input =
        std::fs::read_to_string(format!("{SOURCES}/09-pod-badannotation.yaml")).expect("read");
    let (code, stdout, stderr) = inject(&["-f", "-"], &input);
    assert_eq!(code, 1);
    assert!(stdout.is_empty(), "printed half a result: {stdout}");
    for needle in [
        "sidecar.meshd.io/proxyCPU",
        "traffic.meshd.io/excludeOutboundPorts",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from {stderr}");
    }
    let (code, _, stderr) = inject(&["-f", "-", "--kubernetes-version", "soon"], "");
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("soon"), "{stderr}");
    let (code, _, stderr) = inject(&["-f", "/nonexistent/file.yaml"], "");
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/file.yaml"), "{stderr}");
}

/// The contract between the injector and `meshd init`: the init container's command line, as injected,
/// is accepted by `meshd init` (run with `--dry-run`, which needs no privileges and changes nothing).
#[test]
fn injected_init_args_are_accepted_by_meshd_init() {
    let input = std::fs::read_to_string(format!("{SOURCES}/03-deploy-reviews.yaml")).expect("read");
    let (code, stdout, stderr) = inject(&["-f", "-"], &input);
    assert_eq!(code, 0, "{stderr}");
    let doc = &documents(&stdout)[0];
    let init = &doc["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["command"], serde_json::json!(["meshd", "init"]));
    let args: Vec<&str> = init["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let out = Command::new(MESHD)
        .arg("init")
        .args(&args)
        .arg("--dry-run")
        .output()
        .expect("meshd init runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "meshd init {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The annotation's excluded ports reach the rules.
    assert!(text.contains("5432") && text.contains("6379"), "{text}");
}

/// A refusal is printed once (not once by the command and again by `main`), and log lines written to a
/// pipe carry no ANSI colour codes.
#[test]
fn a_refusal_is_printed_once_and_piped_logs_are_plain_text() {
    let input =
        std::fs::read_to_string(format!("{SOURCES}/09-pod-badannotation.yaml")).expect("read");
    let (code, _, stderr) = inject(&["-f", "-"], &input);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr.matches("sidecar.meshd.io/proxyCPU").count(),
        1,
        "printed more than once: {stderr}"
    );
    let input = std::fs::read_to_string(format!("{SOURCES}/03-deploy-reviews.yaml")).expect("read");
    let (code, _, stderr) = inject(&["--log-level", "debug", "-f", "-"], &input);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("injected"), "no debug log line: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI codes in piped logs: {stderr:?}"
    );
}

fn init_args(doc: &Value) -> Vec<String> {
    let spec = &template(doc)["spec"];
    let init = spec["initContainers"]
        .as_array()
        .expect("init containers")
        .iter()
        .find(|c| c["name"] == "meshd-init")
        .expect("meshd-init");
    init["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect()
}

fn init_dry_run(args: &[String]) -> String {
    let out = Command::new(MESHD)
        .arg("init")
        .args(args)
        .arg("--dry-run")
        .output()
        .expect("meshd init runs");
    assert!(
        out.status.success(),
        "meshd init {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `traffic.meshd.io/includeOutboundCIDRs: ""` means "capture no outbound traffic", as Istio's `-i ""`:
/// the injected command line makes `meshd init` program inbound capture and no outbound redirect.
#[test]
fn an_empty_outbound_include_list_captures_no_outbound_traffic() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    traffic.meshd.io/includeOutboundCIDRs: \"\"\nspec:\n  containers: [{name: app, image: app:1}]\n";
    let (code, stdout, stderr) = inject(&["-f", "-"], pod);
    assert_eq!(code, 0, "{stderr}");
    let rules = init_dry_run(&init_args(&documents(&stdout)[0]));
    assert!(
        rules.contains("15006"),
        "inbound capture is programmed: {rules}"
    );
    assert!(
        !rules.contains("capture-outbound") && !rules.contains("capture-cidr"),
        "outbound traffic is captured: {rules}"
    );
    // Without the annotation, outbound is captured.
    let plain = pod.replace("traffic.meshd.io/includeOutboundCIDRs", "team");
    let (code, stdout, stderr) = inject(&["-f", "-"], &plain);
    assert_eq!(code, 0, "{stderr}");
    assert!(init_dry_run(&init_args(&documents(&stdout)[0])).contains("capture-outbound"));
}

/// YAML's unquoted `true` is a boolean, and annotation values are strings: the failure names the field
/// as kubectl would, and says to quote it.
#[test]
fn an_unquoted_annotation_value_fails_naming_the_field() {
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    metadata:\n      annotations:\n        sidecar.meshd.io/nativeSidecar: true\n    spec:\n      containers: [{name: app, image: app:1}]\n";
    let (code, stdout, stderr) = inject(&["-f", "-"], deploy);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(r#"Deployment web"#)
            && stderr.contains(
                r#"spec.template.metadata.annotations["sidecar.meshd.io/nativeSidecar"]: invalid type: boolean `true`, expected a string"#
            )
            && stderr.contains("quote the value"),
        "{stderr}"
    );
}

/// `traffic.meshd.io/includeInboundPorts` reaches `meshd init --include-inbound-ports`: a list captures
/// only those ports, `""` captures no inbound port.
#[test]
fn include_inbound_ports_reach_the_rules() {
    let pod = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    traffic.meshd.io/includeInboundPorts: \"{value}\"\nspec:\n  containers: [{{name: app, image: app:1}}]\n"
        )
    };
    let rules = |value: &str| {
        let (code, stdout, stderr) = inject(&["-f", "-"], &pod(value));
        assert_eq!(code, 0, "{stderr}");
        init_dry_run(&init_args(&documents(&stdout)[0]))
    };
    let only = rules("8080");
    assert!(only.contains("capture-inbound-port-8080"), "{only}");
    assert!(!only.contains("capture-inbound\""), "{only}");
    let none = rules("");
    assert!(!none.contains("capture-inbound"), "{none}");
    let all = rules("*");
    assert!(all.contains("capture-inbound"), "{all}");
}

/// A ReplicationController is injected; a kind with a pod template that meshd does not know is printed
/// unchanged and named on stderr; a pod of another mesh is left alone naming its container.
#[test]
fn replication_controllers_unknown_templates_and_other_meshes() {
    let template = "  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: web:1}]\n";
    let input = format!(
        "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: legacy}}\nspec:\n  replicas: 1\n{template}---\n\
         apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {{name: web}}\nspec:\n{template}---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: istio-pod}}\nspec:\n  containers: [{{name: app}}, {{name: istio-proxy}}]\n"
    );
    let (code, stdout, stderr) = inject(&["-f", "-"], &input);
    assert_eq!(code, 0, "{stderr}");
    let (before, after) = (documents(&input), documents(&stdout));
    assert_eq!(
        container_names(&after[0]["spec"]["template"]["spec"]["initContainers"]),
        ["meshd-init", "meshd-proxy"]
    );
    assert_eq!(after[1], before[1], "the Rollout is left as it was");
    assert_eq!(
        after[2], before[2],
        "the other mesh's pod is left as it was"
    );
    assert!(
        stderr.contains("Rollout web left as it is") && stderr.contains(".spec.template"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Pod istio-pod left as it is") && stderr.contains("\"istio-proxy\""),
        "{stderr}"
    );
}
