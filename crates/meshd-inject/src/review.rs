//! One AdmissionReview in, one AdmissionReview out (SPEC.md §4 "Answers"). Always an answer: HTTP 200
//! with the request's uid echoed, or HTTP 400 when there is no uid to answer.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};

use serde_json::Value;

use crate::decision::{SkipReason, describe_skip};
use crate::plan::{InjectionPlan, Verdict, decide};
use crate::settings::{ApiServerVersion, InjectionSettings, RequestFacts};
use crate::{InjectError, fields};

/// How a review ended; `result_label`/`reason_label` are the metric labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewResult {
    Injected,
    Skipped(SkipReason),
    /// `allowed: false` because of the pod's override annotations.
    Refused,
    /// `allowed: false` because a container uses a port the proxy listens on.
    PortConflict,
    /// `allowed: false` (or HTTP 400) because the request itself is unusable; the label says why.
    Invalid(&'static str),
}

impl ReviewResult {
    pub fn result_label(&self) -> &'static str {
        match self {
            Self::Injected => "injected",
            Self::Skipped(_) => "skipped",
            Self::Refused | Self::PortConflict => "refused",
            Self::Invalid(_) => "invalid",
        }
    }

    pub fn reason_label(&self) -> &'static str {
        match self {
            Self::Injected => "",
            Self::Skipped(r) => r.label(),
            Self::Refused => "bad_annotation",
            Self::PortConflict => "port_conflict",
            Self::Invalid(label) => label,
        }
    }
}

/// Which pod a review was about, for Events on its owner.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRef {
    pub namespace: String,
    pub name: Option<String>,
    pub generate_name: Option<String>,
    /// The controlling owner (a ReplicaSet, Job, StatefulSet…), if any.
    pub owner: Option<OwnerReference>,
}

impl PodRef {
    fn of(pod: &Pod, namespace: &str) -> Self {
        let meta = &pod.metadata;
        let owners = meta.owner_references.iter().flatten();
        Self {
            namespace: namespace.to_string(),
            name: meta.name.clone().filter(|n| !n.is_empty()),
            generate_name: meta.generate_name.clone(),
            owner: owners
                .clone()
                .find(|o| o.controller == Some(true))
                .or_else(|| owners.clone().next())
                .cloned(),
        }
    }

    /// `ns/name`, or `ns/generateName*` for a pod not yet named.
    pub fn display_name(&self) -> String {
        match (&self.name, &self.generate_name) {
            (Some(n), _) => format!("{}/{n}", self.namespace),
            (None, Some(g)) => format!("{}/{g}*", self.namespace),
            (None, None) => format!("{}/<unnamed>", self.namespace),
        }
    }
}

/// The answer to one review body.
#[derive(Debug, Clone)]
pub struct ReviewAnswer {
    /// 200, or 400 when the body has no uid to answer.
    pub http_status: u16,
    /// An `admission.k8s.io/v1` AdmissionReview (or, with 400, a one-line message).
    pub body: Vec<u8>,
    pub result: ReviewResult,
    /// Why, in words, for logs (the refusal or parse error; the skip's description).
    pub message: String,
    pub uid: Option<String>,
    pub dry_run: bool,
    /// The pod, when the request was a pod CREATE that could be read.
    pub pod: Option<PodRef>,
}

/// Answers one AdmissionReview body. Never panics: a body that cannot be used gets an answer saying why.
pub fn review(
    body: &[u8],
    settings: &InjectionSettings,
    server_version: Option<ApiServerVersion>,
) -> ReviewAnswer {
    match serde_json::from_slice::<AdmissionReview<Pod>>(body) {
        Ok(review) => match TryInto::<AdmissionRequest<Pod>>::try_into(review) {
            Ok(req) if !req.uid.is_empty() => review_pod_request(&req, settings, server_version),
            _ => bad_request(&InjectError::NoUid),
        },
        // Something does not decode (another kind, a pod that is not one, a broken envelope): find out
        // what, on the slow path, to answer with the uid and the field.
        Err(_) => review_other(body, settings, server_version),
    }
}

fn is_pod_create<T: kube::Resource>(req: &AdmissionRequest<T>) -> bool {
    req.kind.group.is_empty()
        && req.kind.kind == "Pod"
        && req.operation == Operation::Create
        && req.sub_resource.as_deref().is_none_or(str::is_empty)
}

fn review_pod_request(
    req: &AdmissionRequest<Pod>,
    settings: &InjectionSettings,
    server_version: Option<ApiServerVersion>,
) -> ReviewAnswer {
    let response = AdmissionResponse::from(req);
    let uid = Some(req.uid.clone());
    let namespace = req.namespace.clone().unwrap_or_default();
    let answer = |response: AdmissionResponse,
                  result: ReviewResult,
                  message: String,
                  pod: Option<PodRef>| {
        finish(response, result, message, uid.clone(), req.dry_run, pod)
    };
    let pod = match (&req.object, is_pod_create(req)) {
        (_, false) => {
            let reason = SkipReason::NotPodCreate;
            return answer(
                response,
                ReviewResult::Skipped(reason),
                reason.describe().into(),
                None,
            );
        }
        (None, true) => {
            let message = NO_OBJECT.to_string();
            return answer(
                response.deny(&message),
                ReviewResult::Invalid("no_object"),
                message,
                None,
            );
        }
        (Some(pod), true) => pod,
    };
    let pod_ref = PodRef::of(pod, &namespace);
    let facts = RequestFacts {
        namespace,
        dry_run: req.dry_run,
        server_version,
    };
    match decide(pod, settings, &facts) {
        Verdict::Skip(reason) => answer(
            response,
            ReviewResult::Skipped(reason),
            describe_skip(pod, reason),
            Some(pod_ref),
        ),
        Verdict::Refuse(refusal) => {
            let message = refusal.to_string();
            let result = if refusal.bad.is_empty() {
                ReviewResult::PortConflict
            } else {
                ReviewResult::Refused
            };
            answer(response.deny(&message), result, message, Some(pod_ref))
        }
        Verdict::Invalid(why) => {
            let message = format!("the pod cannot be injected: {why}");
            answer(
                response.deny(&message),
                ReviewResult::Invalid("not_a_pod"),
                message,
                Some(pod_ref),
            )
        }
        Verdict::Inject(plan) => match with_patch(response, &plan) {
            Ok(mut response) => {
                if !plan.warnings.is_empty() {
                    response.warnings = Some(plan.warnings.clone());
                }
                answer(
                    response,
                    ReviewResult::Injected,
                    "injected".into(),
                    Some(pod_ref),
                )
            }
            Err(message) => {
                let response = AdmissionResponse::from(req).deny(&message);
                answer(
                    response,
                    ReviewResult::Invalid("serialize"),
                    message,
                    Some(pod_ref),
                )
            }
        },
    }
}

/// The response carrying the plan's patch. `with_patch` of an empty patch sets the private `patchType`;
/// the real bytes, serialized straight from the plan (no `Value` tree), then replace its `[]`.
fn with_patch(
    response: AdmissionResponse,
    plan: &InjectionPlan,
) -> Result<AdmissionResponse, String> {
    let bytes = plan
        .patch_bytes()
        .map_err(|e| format!("cannot serialize the patch: {e}"))?;
    let mut response = response
        .with_patch(json_patch::Patch(Vec::new()))
        .map_err(|e| format!("cannot serialize the patch: {e}"))?;
    response.patch = Some(bytes);
    Ok(response)
}

/// A body that is not an AdmissionReview of a pod: read the envelope without the objects, then the
/// object, each naming the field that does not fit.
fn review_other(
    body: &[u8],
    settings: &InjectionSettings,
    server_version: Option<ApiServerVersion>,
) -> ReviewAnswer {
    let mut value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(source) => return bad_request(&InjectError::NotJson { source }),
    };
    let uid = value
        .get("request")
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .filter(|uid| !uid.is_empty())
        .map(str::to_string);
    let object = match value.get_mut("request").and_then(Value::as_object_mut) {
        Some(request) => {
            request.remove("oldObject");
            request.remove("object")
        }
        None => None,
    };
    let review: AdmissionReview<DynamicObject> =
        match fields::read(value.clone(), "", "the AdmissionReview") {
            Ok(r) => r,
            Err(source) => return malformed(uid, InjectError::Malformed { source }),
        };
    let req = match TryInto::<AdmissionRequest<DynamicObject>>::try_into(review) {
        Ok(req) if !req.uid.is_empty() => req,
        _ => return bad_request(&InjectError::NoUid),
    };
    let response = AdmissionResponse::from(&req);
    let uid = Some(req.uid.clone());
    if !is_pod_create(&req) {
        let reason = SkipReason::NotPodCreate;
        return finish(
            response,
            ReviewResult::Skipped(reason),
            reason.describe().into(),
            uid,
            req.dry_run,
            None,
        );
    }
    let object = object.filter(|o| !o.is_null());
    let deny = |message: String, label: &'static str| {
        finish(
            response.clone().deny(&message),
            ReviewResult::Invalid(label),
            message,
            uid.clone(),
            req.dry_run,
            None,
        )
    };
    let Some(object) = object else {
        return deny(NO_OBJECT.into(), "no_object");
    };
    match fields::read::<Pod>(object.clone(), "", "request.object") {
        Err(source) => {
            let error = InjectError::NotAPod { source };
            deny(error.to_string(), error.label())
        }
        // Only the oldObject did not decode, and a CREATE has none to read: answer without it.
        Ok(_) => {
            let mut value = value;
            if let Some(request) = value.get_mut("request").and_then(Value::as_object_mut) {
                request.insert("object".into(), object);
            }
            match serde_json::from_value::<AdmissionReview<Pod>>(value)
                .map_err(|_| ())
                .and_then(|r| TryInto::<AdmissionRequest<Pod>>::try_into(r).map_err(|_| ()))
            {
                Ok(req) => review_pod_request(&req, settings, server_version),
                Err(()) => deny(
                    "request: cannot be read as a pod CREATE".into(),
                    "malformed",
                ),
            }
        }
    }
}

const NO_OBJECT: &str = "request.object: a pod CREATE without an object";

/// A body that is not a readable AdmissionReview: an AdmissionResponse error when it still names a uid
/// to answer, HTTP 400 otherwise.
fn malformed(uid: Option<String>, error: InjectError) -> ReviewAnswer {
    let Some(uid) = uid else {
        return bad_request(&error);
    };
    let message = error.to_string();
    let mut response = AdmissionResponse::invalid(&message);
    response.uid = uid.clone();
    finish(
        response,
        ReviewResult::Invalid(error.label()),
        message,
        Some(uid),
        false,
        None,
    )
}

fn finish(
    response: AdmissionResponse,
    result: ReviewResult,
    message: String,
    uid: Option<String>,
    dry_run: bool,
    pod: Option<PodRef>,
) -> ReviewAnswer {
    match crate::wire::to_vec(&response) {
        Ok(body) => ReviewAnswer {
            http_status: 200,
            body,
            result,
            message,
            uid,
            dry_run,
            pod,
        },
        Err(source) => bad_request(&InjectError::Serialize { source }),
    }
}

fn bad_request(error: &InjectError) -> ReviewAnswer {
    let message = error.to_string();
    ReviewAnswer {
        http_status: 400,
        body: message.clone().into_bytes(),
        result: ReviewResult::Invalid(error.label()),
        message,
        uid: None,
        dry_run: false,
        pod: None,
    }
}
