//! A fake Kubernetes API server behind kube's `Client` (tower-test mock service): it keeps objects by
//! path, answers GET/LIST/PATCH (apply and merge)/POST/PUT/DELETE as kube-apiserver would for what the
//! operator does, and records every request (method, path, query, content type, body) for assertions.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::client::Body;
use meshd_operator::events::{EventSink, MeshEvent};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PATCH" | "POST" | "PUT" | "DELETE")
    }
    pub fn param(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(String::from))
    }
}

#[derive(Default)]
pub struct State {
    /// Object path (no query, no /status) → object.
    pub objects: BTreeMap<String, Value>,
    pub log: Vec<Recorded>,
    /// (method, path fragment): answer 500.
    pub fail: Option<(String, String)>,
    next_rv: u64,
}

#[derive(Clone, Default)]
pub struct FakeApi(pub Arc<Mutex<State>>);

impl FakeApi {
    /// A kube Client talking to this fake; requests are served by a spawned task.
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = me.serve(request).await;
                send.send_response(response);
            }
        });
        kube::Client::new(service, "default")
    }

    pub fn put(&self, path: &str, obj: Value) {
        self.0.lock().unwrap().objects.insert(path.to_string(), obj);
    }
    pub fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }
    pub fn remove(&self, path: &str) {
        self.0.lock().unwrap().objects.remove(path);
    }
    pub fn log(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().log.clone()
    }
    pub fn writes(&self) -> Vec<Recorded> {
        self.log().into_iter().filter(Recorded::is_write).collect()
    }
    pub fn clear_log(&self) {
        self.0.lock().unwrap().log.clear();
    }
    pub fn fail_on(&self, method: &str, fragment: &str) {
        self.0.lock().unwrap().fail = Some((method.into(), fragment.into()));
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = request
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        let mut state = self.0.lock().unwrap();
        state.log.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        if let Some((m, frag)) = &state.fail
            && *m == method
            && path.contains(frag.as_str())
        {
            return status(500, "InternalError", "etcdserver: request timed out");
        }
        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (path.clone(), false),
        };
        match method.as_str() {
            "GET" => {
                if let Some(obj) = state.objects.get(&path) {
                    return ok(obj.clone());
                }
                if let Some(list) = list(&state.objects, &path, &query) {
                    return ok(list);
                }
                status(404, "NotFound", "not found")
            }
            "PATCH" if subresource => {
                let Some(obj) = state.objects.get_mut(&object_path) else {
                    return status(404, "NotFound", "not found");
                };
                obj["status"] = body["status"].clone();
                ok(obj.clone())
            }
            "PATCH" => {
                assert_eq!(
                    content_type, "application/apply-patch+yaml",
                    "the operator only server-side applies"
                );
                state.next_rv += 1;
                let rv = state.next_rv;
                let mut obj = body;
                let old = state.objects.get(&object_path).cloned();
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                obj["metadata"]["uid"] = old
                    .as_ref()
                    .map_or(json!(format!("uid-{rv}")), |o| o["metadata"]["uid"].clone());
                if let Some(st) = old.as_ref().and_then(|o| o.get("status")) {
                    obj["status"] = st.clone();
                }
                state.objects.insert(object_path, obj.clone());
                ok(obj)
            }
            "POST" => {
                let name = body["metadata"]["name"].as_str().expect("name").to_string();
                let key = format!("{path}/{name}");
                if state.objects.contains_key(&key) {
                    return status(409, "AlreadyExists", "exists");
                }
                state.objects.insert(key, body.clone());
                ok(body)
            }
            "PUT" => {
                state.objects.insert(path, body.clone());
                ok(body)
            }
            "DELETE" => match state.objects.remove(&path) {
                Some(_) => ok(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
                ),
                None => status(404, "NotFound", "not found"),
            },
            _ => status(405, "MethodNotAllowed", "unexpected method"),
        }
    }
}

/// A cluster-wide list (`/apis/apps/v1/deployments`) of objects at `/apis/apps/v1/namespaces/*/deployments/*`,
/// filtered by a `labelSelector` of `k=v` and `k` terms; as PartialObjectMetadataList when asked.
fn list(objects: &BTreeMap<String, Value>, path: &str, query: &str) -> Option<Value> {
    let (prefix, plural) = path.rsplit_once('/')?;
    let selector = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("labelSelector="))
        .map(|s| {
            s.replace("%3D", "=")
                .replace("%2C", ",")
                .replace("%2F", "/")
        })
        .unwrap_or_default();
    let items: Vec<Value> = objects
        .iter()
        .filter(|(k, _)| {
            let Some(rest) = k.strip_prefix(&format!("{prefix}/namespaces/")) else { return false };
            let parts: Vec<&str> = rest.split('/').collect();
            parts.len() == 3 && parts[1] == plural
        })
        .filter(|(_, v)| {
            selector.split(',').filter(|t| !t.is_empty()).all(|term| {
                let labels = &v["metadata"]["labels"];
                match term.split_once('=') {
                    Some((k, val)) => labels[k] == json!(val),
                    None => labels.get(term).is_some(),
                }
            })
        })
        .map(|(_, v)| json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": v["metadata"]}))
        .collect();
    query.contains("labelSelector=").then(|| {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": {"resourceVersion": "1"}, "items": items})
    })
}

fn ok(v: Value) -> Response<Body> {
    Response::builder()
        .status(200)
        .body(Body::from(serde_json::to_vec(&v).expect("json")))
        .expect("response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&v).expect("json")))
        .expect("response")
}

/// Records Events instead of sending them.
#[derive(Default)]
pub struct RecordedEvents(pub Mutex<Vec<MeshEvent>>);

impl EventSink for RecordedEvents {
    fn publish<'a>(&'a self, _mesh: &'a ObjectReference, event: MeshEvent) -> BoxFuture<'a, ()> {
        self.0.lock().unwrap().push(event);
        Box::pin(async {})
    }
}

impl RecordedEvents {
    pub fn reasons(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().iter().map(|e| e.reason).collect()
    }
}
