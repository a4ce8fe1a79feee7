//! An [`InjectionPlan`] as a minimal RFC 6902 JSON patch, valid against the pod exactly as it was sent:
//! parent maps and arrays are created only when missing, keys are escaped (`meshd.io/status` →
//! `meshd.io~1status`), and the operations are ordered so that indices stay right (probes are replaced
//! before any container is inserted in front of them).

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use serde::Serialize;
use serde_json::Value;

use crate::plan::InjectionPlan;

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn json(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("Kubernetes types and string maps always serialize")
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: pointer(tokens),
        value,
    })
}

impl InjectionPlan {
    /// The patch that turns the pod as sent into the injected pod.
    pub fn to_patch(&self) -> Patch {
        let mut ops = Vec::new();
        for (field, entries, present) in [
            ("labels", &self.labels, self.pod_has.labels),
            ("annotations", &self.annotations, self.pod_has.annotations),
        ] {
            if present {
                for (k, v) in entries {
                    ops.push(add(&["metadata", field, k], Value::String(v.clone())));
                }
            } else if !entries.is_empty() {
                ops.push(add(&["metadata", field], json(entries)));
            }
        }
        for rewrite in &self.probe_rewrites {
            let index = rewrite.container_index.to_string();
            ops.push(PatchOperation::Replace(ReplaceOperation {
                path: pointer(&["spec", "containers", &index, rewrite.kind.field()]),
                value: json(&rewrite.probe),
            }));
        }
        if self.pod_has.volumes {
            for v in &self.volumes {
                ops.push(add(&["spec", "volumes", "-"], json(v)));
            }
        } else {
            ops.push(add(&["spec", "volumes"], json(&self.volumes)));
        }
        // Init containers: meshd-init first (capture is in place before anything else runs), then the
        // native proxy, then the user's init containers in their order.
        let mut front: Vec<Value> = self.init_container.iter().map(json).collect();
        if self.native_sidecar {
            front.push(json(&self.proxy_container));
        }
        if !front.is_empty() {
            if self.pod_has.init_containers {
                for (i, c) in front.into_iter().enumerate() {
                    ops.push(add(&["spec", "initContainers", &i.to_string()], c));
                }
            } else {
                ops.push(add(&["spec", "initContainers"], Value::Array(front)));
            }
        }
        if !self.native_sidecar {
            // Classic: first, so that its postStart hold delays the app containers.
            ops.push(add(
                &["spec", "containers", "0"],
                json(&self.proxy_container),
            ));
        }
        Patch(ops)
    }
}
