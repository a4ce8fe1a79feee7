//! An [`InjectionPlan`] as a minimal RFC 6902 JSON patch, valid against the pod exactly as it was sent:
//! parent maps and arrays (`/metadata` itself included) are created only when missing, keys are escaped (`meshd.io/status` →
//! `meshd.io~1status`), and the operations are ordered so that indices stay right (probes are replaced
//! before any container is inserted in front of them).
//!
//! One list of operations feeds both forms: [`InjectionPlan::to_patch`] (`json_patch` types, for
//! `meshd inject` and tests) and [`InjectionPlan::patch_bytes`] (serialized straight from the plan's
//! typed values, without building a `serde_json::Value` tree: the webhook's hot path).

use std::collections::BTreeMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe, Volume};
use serde::Serialize;

use crate::plan::InjectionPlan;

/// The value of one operation, borrowed from the plan.
#[derive(Serialize)]
#[serde(untagged)]
enum OpValue<'a> {
    Text(&'a str),
    Map(&'a BTreeMap<String, String>),
    Metadata(Metadata<'a>),
    Probe(&'a Probe),
    Hook(&'a LifecycleHandler),
    Volume(&'a Volume),
    Volumes(&'a [Volume]),
    Container(&'a Container),
    Containers(Vec<&'a Container>),
}

/// The whole of `/metadata`, for a pod sent without one.
#[derive(Serialize)]
struct Metadata<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Op<'a> {
    op: &'static str,
    path: PointerBuf,
    value: OpValue<'a>,
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().copied())
}

fn add<'a>(tokens: &[&str], value: OpValue<'a>) -> Op<'a> {
    Op {
        op: "add",
        path: pointer(tokens),
        value,
    }
}

impl InjectionPlan {
    fn ops(&self) -> Vec<Op<'_>> {
        let mut ops = Vec::new();
        if self.pod_has.metadata {
            for (field, entries, present) in [
                ("labels", &self.labels, self.pod_has.labels),
                ("annotations", &self.annotations, self.pod_has.annotations),
            ] {
                if present {
                    for (k, v) in entries {
                        ops.push(add(&["metadata", field, k], OpValue::Text(v)));
                    }
                } else if !entries.is_empty() {
                    ops.push(add(&["metadata", field], OpValue::Map(entries)));
                }
            }
        } else {
            ops.push(add(
                &["metadata"],
                OpValue::Metadata(Metadata {
                    labels: &self.labels,
                    annotations: &self.annotations,
                }),
            ));
        }
        for rewrite in &self.probe_rewrites {
            let index = rewrite.container_index.to_string();
            ops.push(Op {
                op: "replace",
                path: pointer(&["spec", "containers", &index, rewrite.kind.field()]),
                value: OpValue::Probe(&rewrite.probe),
            });
        }
        for rewrite in &self.hook_rewrites {
            let index = rewrite.container_index.to_string();
            ops.push(Op {
                op: "replace",
                path: pointer(&[
                    "spec",
                    "containers",
                    &index,
                    "lifecycle",
                    rewrite.kind.field(),
                ]),
                value: OpValue::Hook(&rewrite.handler),
            });
        }
        if self.pod_has.volumes {
            for v in &self.volumes {
                ops.push(add(&["spec", "volumes", "-"], OpValue::Volume(v)));
            }
        } else {
            ops.push(add(&["spec", "volumes"], OpValue::Volumes(&self.volumes)));
        }
        // Init containers: meshd-init first (capture is in place before anything else runs), then the
        // native proxy, then the user's init containers in their order.
        let mut front: Vec<&Container> = self.init_container.iter().collect();
        if self.native_sidecar {
            front.push(&self.proxy_container);
        }
        if !front.is_empty() {
            if self.pod_has.init_containers {
                for (i, c) in front.into_iter().enumerate() {
                    ops.push(add(
                        &["spec", "initContainers", &i.to_string()],
                        OpValue::Container(c),
                    ));
                }
            } else {
                ops.push(add(&["spec", "initContainers"], OpValue::Containers(front)));
            }
        }
        if !self.native_sidecar {
            // Classic: first, so that its postStart hold delays the app containers.
            ops.push(add(
                &["spec", "containers", "0"],
                OpValue::Container(&self.proxy_container),
            ));
        }
        ops
    }

    /// The patch that turns the pod as sent into the injected pod.
    pub fn to_patch(&self) -> Patch {
        let ops = self.ops().into_iter().map(|op| {
            let value = serde_json::to_value(&op.value)
                .expect("Kubernetes types and string maps always serialize");
            match op.op {
                "replace" => PatchOperation::Replace(ReplaceOperation {
                    path: op.path,
                    value,
                }),
                _ => PatchOperation::Add(AddOperation {
                    path: op.path,
                    value,
                }),
            }
        });
        Patch(ops.collect())
    }

    /// The same patch, serialized: byte for byte `serde_json::to_vec(&self.to_patch())`.
    pub fn patch_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&self.ops())
    }
}
