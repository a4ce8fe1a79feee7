//! A fake Kubernetes API server behind kube's `Client` (tower-test mock service): it keeps objects by
//! path, answers GET/LIST/WATCH/PATCH (apply, dry-run apply and merge)/POST/PUT/DELETE as kube-apiserver
//! would for what meshd does, and records every request (method, path, query, content type, body).
//! Watches stream every change (also those a test makes with `put`/`merge`/`remove`) after the
//! resourceVersion they start from, so kube-runtime reflectors and Controllers run against it unchanged.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::client::Body;
use meshd_api::Mesh;
use meshd_operator::events::{EventSink, MeshEvent};
use serde_json::{Value, json};

type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    /// A request that changes something (a dry-run apply does not).
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "PATCH" | "POST" | "PUT" | "DELETE") && !self.is_dry_run()
    }
    pub fn is_dry_run(&self) -> bool {
        self.param("dryRun").as_deref() == Some("All")
    }
    pub fn is_watch(&self) -> bool {
        self.param("watch").as_deref() == Some("true")
    }
    pub fn param(&self, key: &str) -> Option<String> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(decode))
    }
    pub fn line(&self) -> String {
        let dry = if self.is_dry_run() { " (dry run)" } else { "" };
        format!("{} {}{dry}", self.method, self.path)
    }
}

/// One change, as a watch reports it.
#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    path: String,
    kind: &'static str,
    object: Value,
}

pub struct State {
    /// Object path (no query, no /status) → object.
    pub objects: BTreeMap<String, Value>,
    pub log: Vec<Recorded>,
    /// (method, path fragment): answer 500.
    pub fail: Option<(String, String)>,
    /// (method, exact path, code): answer with this code (403 Forbidden, 404…).
    pub refuse: Vec<(String, String, u16)>,
    next_rv: u64,
    /// What each object's applier last sent: the fields it owns (server-side apply's managedFields).
    applied: BTreeMap<String, Value>,
    changes: Vec<Change>,
    changed: tokio::sync::watch::Sender<u64>,
    /// How far each open watch has read the changes (for `settled`).
    cursors: Vec<std::sync::Weak<AtomicU64>>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            log: Vec::new(),
            fail: None,
            refuse: Vec::new(),
            next_rv: 100,
            applied: BTreeMap::new(),
            changes: Vec::new(),
            changed: tokio::sync::watch::channel(0).0,
            cursors: Vec::new(),
        }
    }
}

impl State {
    /// Stores `obj` at `path` (or removes it) with a new resourceVersion, and tells the watches.
    fn commit(&mut self, path: &str, obj: Option<Value>) -> Option<Value> {
        self.next_rv += 1;
        let rv = self.next_rv;
        let (kind, object) = match obj {
            Some(mut obj) => {
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                let kind = if self.objects.contains_key(path) {
                    "MODIFIED"
                } else {
                    "ADDED"
                };
                self.objects.insert(path.to_string(), obj.clone());
                (kind, obj)
            }
            None => {
                let mut old = self.objects.remove(path)?;
                old["metadata"]["resourceVersion"] = json!(rv.to_string());
                ("DELETED", old)
            }
        };
        self.changes.push(Change {
            rv,
            path: path.to_string(),
            kind,
            object: object.clone(),
        });
        self.changed.send_replace(rv);
        Some(object)
    }
}

#[derive(Clone, Default)]
pub struct FakeApi(pub Arc<Mutex<State>>);

impl FakeApi {
    /// A kube Client talking to this fake; requests are served by a spawned task.
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = me.serve(request).await;
                send.send_response(response);
            }
        });
        kube::Client::new(service, "default")
    }

    /// Stores an object as another client would (watches see it; a new resourceVersion).
    pub fn put(&self, path: &str, obj: Value) {
        let mut state = self.0.lock().unwrap();
        let mut obj = obj;
        if obj["metadata"].get("uid").is_none() {
            let uid = state.objects.get(path).map_or_else(
                || json!(format!("uid-{path}")),
                |o| o["metadata"]["uid"].clone(),
            );
            obj["metadata"]["uid"] = uid;
        }
        state.commit(path, Some(obj));
    }
    /// A JSON merge patch by another client (`kubectl edit`).
    pub fn merge(&self, path: &str, patch: Value) {
        let mut state = self.0.lock().unwrap();
        let mut obj = state
            .objects
            .get(path)
            .cloned()
            .expect("object to merge into");
        merge_patch(&mut obj, &patch);
        state.commit(path, Some(obj));
    }
    /// Waits until every open watch has read every change (so the caches fed by them hold it).
    pub async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let done = {
                let mut state = self.0.lock().unwrap();
                let latest = state.next_rv;
                state.cursors.retain(|c| c.strong_count() > 0);
                state
                    .cursors
                    .iter()
                    .filter_map(std::sync::Weak::upgrade)
                    .all(|c| c.load(Ordering::SeqCst) >= latest)
            };
            if done {
                // Let the consumers finish the poll that read the last lines.
                tokio::task::yield_now().await;
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "watches not settled within 5 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }
    pub fn get(&self, path: &str) -> Option<Value> {
        self.0.lock().unwrap().objects.get(path).cloned()
    }
    pub fn remove(&self, path: &str) {
        self.0.lock().unwrap().commit(path, None);
    }
    pub fn log(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().log.clone()
    }
    /// Requests other than watches (a watch is one long request, not a read per change).
    pub fn requests(&self) -> Vec<Recorded> {
        self.log().into_iter().filter(|r| !r.is_watch()).collect()
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
    /// Answers `code` to `method` on exactly `path` (lists and watches of a collection included).
    pub fn refuse(&self, method: &str, path: &str, code: u16) {
        self.0
            .lock()
            .unwrap()
            .refuse
            .push((method.into(), path.into(), code));
    }
    pub fn allow_all(&self) {
        self.0.lock().unwrap().refuse.clear();
    }

    async fn serve(&self, request: Request<Body>) -> Response<ResponseBody> {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let (content_type, accept) = {
            let headers = request.headers();
            let header = |name: &str| -> String {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            (header("content-type"), header("accept"))
        };
        let metadata_only = accept.contains("as=PartialObjectMetadata");
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
        let recorded = Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        };
        let mut state = self.0.lock().unwrap();
        state.log.push(recorded.clone());
        if let Some((m, frag)) = &state.fail
            && *m == method
            && path.contains(frag.as_str())
        {
            return status(500, "InternalError", "etcdserver: request timed out");
        }
        if let Some((_, _, code)) = state
            .refuse
            .iter()
            .find(|(m, p, _)| *m == method && *p == path)
        {
            let reason = match code {
                403 => "Forbidden",
                404 => "NotFound",
                _ => "Refused",
            };
            return status(
                *code,
                reason,
                &format!("{method} {path} refused by the test"),
            );
        }
        let (object_path, subresource) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (path.clone(), false),
        };
        match method.as_str() {
            "GET" if recorded.is_watch() => {
                let since: u64 = recorded
                    .param("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let filter = Filter::from_query(&recorded);
                drop(state);
                self.watch(path, since, filter, metadata_only)
            }
            "GET" => {
                if let Some(obj) = state.objects.get(&path) {
                    return ok(view(obj, metadata_only));
                }
                if is_collection(&path) {
                    let filter = Filter::from_query(&recorded);
                    let items: Vec<Value> = state
                        .objects
                        .iter()
                        .filter(|(k, v)| in_collection(k, &path) && filter.matches(v))
                        .map(|(_, v)| view(v, metadata_only))
                        .collect();
                    let kind = if metadata_only {
                        "PartialObjectMetadataList"
                    } else {
                        "List"
                    };
                    return ok(json!({
                        "apiVersion": if metadata_only { "meta.k8s.io/v1" } else { "v1" },
                        "kind": kind,
                        "metadata": {"resourceVersion": state.next_rv.to_string()},
                        "items": items,
                    }));
                }
                status(404, "NotFound", "not found")
            }
            "PATCH" if subresource => {
                let Some(mut obj) = state.objects.get(&object_path).cloned() else {
                    return status(404, "NotFound", "not found");
                };
                if content_type == "application/apply-patch+yaml" {
                    // The applier owns the whole status it sends (meshd is the only status writer).
                    obj["status"] = body["status"].clone();
                } else {
                    let mut st = obj.get("status").cloned().unwrap_or(json!({}));
                    merge_patch(&mut st, &body["status"]);
                    obj["status"] = st;
                }
                if recorded.is_dry_run() {
                    return ok(obj);
                }
                ok(state.commit(&object_path, Some(obj)).expect("stored"))
            }
            "PATCH" if content_type == "application/merge-patch+json" => {
                let Some(mut obj) = state.objects.get(&object_path).cloned() else {
                    return status(404, "NotFound", "not found");
                };
                merge_patch(&mut obj, &body);
                ok(state.commit(&object_path, Some(obj)).expect("stored"))
            }
            "PATCH" => {
                assert_eq!(
                    content_type, "application/apply-patch+yaml",
                    "meshd only server-side applies objects"
                );
                let old = state.objects.get(&object_path).cloned();
                let owned = state.applied.get(&object_path).cloned();
                let applied = server_side_apply(old.as_ref(), owned.as_ref(), &body, &recorded);
                if recorded.is_dry_run() {
                    return ok(applied);
                }
                state.applied.insert(object_path.clone(), body);
                // An apply that changes nothing leaves the object (and its resourceVersion) alone.
                if old.as_ref().is_some_and(|o| same_but_version(o, &applied)) {
                    return ok(old.expect("checked"));
                }
                ok(state.commit(&object_path, Some(applied)).expect("stored"))
            }
            "POST" => {
                let name = body["metadata"]["name"].as_str().expect("name").to_string();
                let key = format!("{path}/{name}");
                if state.objects.contains_key(&key) {
                    return status(409, "AlreadyExists", "exists");
                }
                let mut obj = body;
                obj["metadata"]["uid"] = json!(format!("uid-{key}"));
                ok(state.commit(&key, Some(obj)).expect("stored"))
            }
            "PUT" => {
                let current = state
                    .objects
                    .get(&path)
                    .and_then(|o| o["metadata"]["resourceVersion"].as_str().map(String::from));
                let sent = body["metadata"]["resourceVersion"]
                    .as_str()
                    .map(String::from);
                if sent.is_some() && sent != current {
                    return status(409, "Conflict", "the object has been modified");
                }
                ok(state.commit(&path, Some(body)).expect("stored"))
            }
            "DELETE" => match state.commit(&path, None) {
                Some(_) => ok(
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
                ),
                None => status(404, "NotFound", "not found"),
            },
            _ => status(405, "MethodNotAllowed", "unexpected method"),
        }
    }

    /// A watch: every change after `since` in `collection` that passes `filter`, then each new one.
    fn watch(
        &self,
        collection: String,
        since: u64,
        filter: Filter,
        metadata_only: bool,
    ) -> Response<ResponseBody> {
        let cursor = Arc::new(AtomicU64::new(since));
        let changed = {
            let mut state = self.0.lock().unwrap();
            state.cursors.push(Arc::downgrade(&cursor));
            state.changed.subscribe()
        };
        let start = (self.clone(), since, changed, cursor);
        let stream = futures::stream::unfold(start, move |(me, mut seen, mut changed, cursor)| {
            let (collection, filter) = (collection.clone(), filter.clone());
            async move {
                loop {
                    let lines: Vec<u8> = {
                        let state = me.0.lock().unwrap();
                        let mut out = Vec::new();
                        let from = seen;
                        for c in state.changes.iter().filter(|c| c.rv > from) {
                            seen = c.rv;
                            if in_collection(&c.path, &collection) && filter.matches(&c.object) {
                                let event = json!({"type": c.kind, "object": view(&c.object, metadata_only)});
                                out.extend(serde_json::to_vec(&event).expect("json"));
                                out.push(b'\n');
                            }
                        }
                        // The consumer applies these lines in this same poll (before `settled` looks).
                        cursor.store(seen, Ordering::SeqCst);
                        out
                    };
                    if !lines.is_empty() {
                        let frame = Ok::<_, Infallible>(Frame::data(Bytes::from(lines)));
                        return Some((frame, (me, seen, changed, cursor)));
                    }
                    if changed.changed().await.is_err() {
                        return None;
                    }
                }
            }
        });
        Response::builder()
            .status(200)
            .body(StreamBody::new(stream).boxed_unsync())
            .expect("response")
    }
}

/// Server-side apply as kube-apiserver does it for a single applier: the live object, less the fields the
/// applier sent last time and no longer sends, plus what it sends now (lists replaced whole); other
/// writers' fields stay. Then the server's own parts: identity, timestamps, managedFields, generation
/// (bumped when the spec changes), status, and two defaults and one normalisation the real server applies
/// (a Deployment's `strategy`, a Service port's `protocol`, CPU quantities in millicores), so a caller
/// comparing its desired object with the live one by hand would see drift that is not there.
fn server_side_apply(
    old: Option<&Value>,
    owned: Option<&Value>,
    body: &Value,
    recorded: &Recorded,
) -> Value {
    let mut obj = old.cloned().unwrap_or(json!({}));
    if let Some(owned) = owned {
        remove_dropped(&mut obj, owned, body);
    }
    apply_fields(&mut obj, body);
    let meta = |o: Option<&Value>, k: &str| o.and_then(|o| o["metadata"].get(k).cloned());
    obj["metadata"]["uid"] =
        meta(old, "uid").unwrap_or_else(|| json!(format!("uid-{}", recorded.path)));
    obj["metadata"]["creationTimestamp"] =
        meta(old, "creationTimestamp").unwrap_or_else(|| json!("2025-01-01T00:00:00Z"));
    if let Some(rv) = meta(old, "resourceVersion") {
        obj["metadata"]["resourceVersion"] = rv;
    }
    let manager = recorded.param("fieldManager").unwrap_or_default();
    obj["metadata"]["managedFields"] =
        json!([{"manager": manager, "operation": "Apply", "apiVersion": obj["apiVersion"]}]);
    defaults(&mut obj);
    if obj.get("spec").is_some() {
        let old_gen = old
            .and_then(|o| o["metadata"]["generation"].as_i64())
            .unwrap_or(0);
        let same_spec = old.is_some_and(|o| o.get("spec") == obj.get("spec"));
        obj["metadata"]["generation"] = json!(if same_spec {
            old_gen.max(1)
        } else {
            old_gen + 1
        });
    }
    match old.and_then(|o| o.get("status")) {
        Some(st) => obj["status"] = st.clone(),
        None => {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
    }
    obj
}

/// Removes from `obj` each field `before` set and `now` no longer sets.
fn remove_dropped(obj: &mut Value, before: &Value, now: &Value) {
    let (Value::Object(b), Some(o)) = (before, obj.as_object_mut()) else {
        return;
    };
    for (k, bv) in b {
        match now.get(k) {
            None => {
                o.remove(k);
            }
            Some(nv) if bv.is_object() && nv.is_object() => {
                if let Some(child) = o.get_mut(k) {
                    remove_dropped(child, bv, nv);
                }
            }
            Some(_) => {}
        }
    }
}

/// Sets every field of `body` in `obj`: objects merged key by key, anything else (lists too) replaced.
fn apply_fields(obj: &mut Value, body: &Value) {
    match (obj.as_object_mut(), body) {
        (Some(o), Value::Object(b)) => {
            for (k, v) in b {
                match o.get_mut(k) {
                    Some(child) if child.is_object() && v.is_object() => apply_fields(child, v),
                    _ => {
                        o.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *obj = body.clone(),
    }
}

fn defaults(obj: &mut Value) {
    match obj["kind"].as_str() {
        Some("Deployment") => {
            let spec = &mut obj["spec"];
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
            }
            if let Some(containers) = spec["template"]["spec"]["containers"].as_array_mut() {
                for c in containers {
                    for kind in ["limits", "requests"] {
                        if let Some(cpu) = c["resources"][kind].get_mut("cpu") {
                            *cpu = json!(millicores(cpu.as_str().unwrap_or_default()));
                        }
                    }
                }
            }
        }
        Some("Service") => {
            if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
                for p in ports {
                    if p.get("protocol").is_none() {
                        p["protocol"] = json!("TCP");
                    }
                }
            }
        }
        _ => {}
    }
}

/// The API server's canonical CPU quantity: `0.5` → `500m`, `1000m` → `1`.
fn millicores(q: &str) -> String {
    let milli = match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok(),
        None => q.parse::<f64>().ok().map(|c| c * 1000.0),
    };
    match milli {
        Some(m) if m % 1000.0 == 0.0 => format!("{}", m as i64 / 1000),
        Some(m) => format!("{}m", m as i64),
        None => q.to_string(),
    }
}

fn same_but_version(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// `/api/v1/configmaps`, `/api/v1/namespaces/ns/configmaps`, `/api/v1/namespaces`, `/apis/g/v/meshes`.
fn is_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let base = if parts.first() == Some(&"api") { 2 } else { 3 };
    match parts.len().checked_sub(base) {
        Some(1) => true,
        Some(3) => parts[base] == "namespaces",
        _ => false,
    }
}

/// Whether the object at `path` is listed by `collection` (namespaced, cluster-wide or cluster-scoped).
fn in_collection(path: &str, collection: &str) -> bool {
    if path
        .rsplit_once('/')
        .is_some_and(|(parent, _)| parent == collection)
    {
        return true;
    }
    let Some((prefix, plural)) = collection.rsplit_once('/') else {
        return false;
    };
    let Some(rest) = path.strip_prefix(&format!("{prefix}/namespaces/")) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    parts.len() == 3 && parts[1] == plural
}

/// labelSelector (`k=v`, `k!=v`, `k`, `!k`) and fieldSelector (`metadata.name=`, `metadata.namespace=`).
#[derive(Clone, Debug, Default)]
struct Filter {
    labels: Vec<String>,
    fields: Vec<String>,
}

impl Filter {
    fn from_query(r: &Recorded) -> Self {
        let terms = |key| {
            r.param(key)
                .map(|s| {
                    s.split(',')
                        .filter(|t| !t.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            labels: terms("labelSelector"),
            fields: terms("fieldSelector"),
        }
    }

    fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let label_ok = self.labels.iter().all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                labels[k] != json!(v)
            } else if let Some((k, v)) = term.split_once('=') {
                labels[k] == json!(v)
            } else if let Some(k) = term.strip_prefix('!') {
                labels.get(k).is_none()
            } else {
                labels.get(term.as_str()).is_some()
            }
        });
        let field_ok = self.fields.iter().all(|term| match term.split_once('=') {
            Some(("metadata.name", v)) => obj["metadata"]["name"] == json!(v),
            Some(("metadata.namespace", v)) => obj["metadata"]["namespace"] == json!(v),
            _ => panic!("the fake does not know field selector {term}"),
        });
        label_ok && field_ok
    }
}

/// The object, or its PartialObjectMetadata when the client asked for metadata only.
fn view(obj: &Value, metadata_only: bool) -> Value {
    if metadata_only {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
    } else {
        obj.clone()
    }
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ok(v: Value) -> Response<ResponseBody> {
    Response::builder()
        .status(200)
        .body(full(serde_json::to_vec(&v).expect("json")))
        .expect("response")
}

fn full(bytes: Vec<u8>) -> ResponseBody {
    Full::new(Bytes::from(bytes)).boxed_unsync()
}

fn status(code: u16, reason: &str, message: &str) -> Response<ResponseBody> {
    let v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .body(full(serde_json::to_vec(&v).expect("json")))
        .expect("response")
}

/// `examples/mesh.yaml` as the API server would hand it over (uid and generation set).
pub fn example_mesh() -> Mesh {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/mesh.yaml");
    let text = std::fs::read_to_string(path).expect("examples/mesh.yaml");
    let mut mesh = meshd_api::settings::parse_mesh_yaml(&text).expect("example parses");
    mesh.metadata.uid = Some("0b9d6c3e-mesh-default".into());
    mesh.metadata.generation = Some(1);
    assert_eq!(
        mesh.spec.gateways.len(),
        1,
        "the example has one ingress gateway"
    );
    mesh
}

/// Polls `check` every 10 ms for up to `secs` seconds; panics naming `what` when it never holds.
pub async fn eventually(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
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

/// Log lines of the current thread (the tests' runtime is single-threaded, so the Operator's tasks log here).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
