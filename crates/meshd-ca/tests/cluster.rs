//! The in-cluster parts against a mock API server (tower-test behind kube's Client): the CA Secret is
//! created once by the leader and never overwritten, the plug-in Secret wins when present, and tokens
//! are checked with a TokenReview for audience `meshd`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use meshd_ca::auth::{AuthError, Authenticator, ServiceAccount, TokenReviewer};
use meshd_ca::cluster::{self, Origin};
use meshd_ca::{CaError, CaPem, CertificateAuthority};
use serde_json::{Value, json};

const NS: &str = "meshd-system";

#[derive(Clone, Debug)]
struct Recorded {
    method: String,
    path: String,
    body: Value,
}

/// Secrets by name; TokenReviews answered from `tokens` (token → (username, audiences)).
#[derive(Default)]
struct State {
    secrets: BTreeMap<String, Value>,
    tokens: BTreeMap<String, (String, Vec<String>)>,
    /// Answer the next create with 409 after storing this Secret (a replica that won the race).
    race: Option<Value>,
    /// Answer TokenReviews as authenticated whatever the audiences (a misbehaving server).
    ignore_audiences: bool,
    log: Vec<Recorded>,
}

#[derive(Clone, Default)]
struct FakeApi(Arc<Mutex<State>>);

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

fn not_found(name: &str) -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("secrets \"{name}\" not found")}),
    )
}

impl FakeApi {
    fn client(&self) -> kube::Client {
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

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let bytes = request.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let mut state = self.0.lock().unwrap();
        state.log.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            body: body.clone(),
        });
        let secrets = format!("/api/v1/namespaces/{NS}/secrets");
        match (method.as_str(), path.as_str()) {
            ("GET", p) if p.starts_with(&format!("{secrets}/")) => {
                let name = &p[secrets.len() + 1..];
                match state.secrets.get(name) {
                    Some(s) => respond(StatusCode::OK, s.clone()),
                    None => not_found(name),
                }
            }
            ("POST", p) if p == secrets => {
                let name = body["metadata"]["name"].as_str().unwrap().to_string();
                if let Some(winner) = state.race.take() {
                    state.secrets.insert(name.clone(), winner);
                }
                if state.secrets.contains_key(&name) {
                    return respond(
                        StatusCode::CONFLICT,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "already exists"}),
                    );
                }
                state.secrets.insert(name, body.clone());
                respond(StatusCode::CREATED, body)
            }
            ("POST", "/apis/authentication.k8s.io/v1/tokenreviews") => {
                let token = body["spec"]["token"].as_str().unwrap_or_default();
                let asked: Vec<String> =
                    serde_json::from_value(body["spec"]["audiences"].clone()).unwrap_or_default();
                // As kube-apiserver: authenticated only when the token's audiences meet the asked ones.
                let status = match state.tokens.get(token) {
                    Some((user, auds)) if state.ignore_audiences => json!({
                        "authenticated": true, "user": {"username": user}, "audiences": auds,
                    }),
                    Some((user, auds)) if auds.iter().any(|a| asked.contains(a)) => json!({
                        "authenticated": true,
                        "user": {"username": user},
                        "audiences": auds.iter().filter(|a| asked.contains(a)).collect::<Vec<_>>(),
                    }),
                    Some(_) => {
                        json!({"authenticated": false, "error": "[invalid bearer token, token audiences is invalid for the target audiences]"})
                    }
                    None => {
                        json!({"authenticated": false, "error": "[invalid bearer token, square/go-jose: error in cryptographic primitive]"})
                    }
                };
                let mut answer = body.clone();
                answer["status"] = status;
                respond(StatusCode::CREATED, answer)
            }
            _ => respond(StatusCode::NOT_FOUND, json!({"code": 404})),
        }
    }

    fn put_secret(&self, name: &str, pem: &CaPem) {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        self.0.lock().unwrap().secrets.insert(
            name.to_string(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "type": "Opaque", "data": {
                "ca-cert.pem": b64(&pem.ca_cert), "ca-key.pem": b64(&pem.ca_key),
                "cert-chain.pem": b64(&pem.cert_chain), "root-cert.pem": b64(&pem.root_cert),
            }}),
        );
    }

    fn writes(&self) -> Vec<Recorded> {
        let log = self.0.lock().unwrap().log.clone();
        log.into_iter()
            .filter(|r| r.method != "GET" && !r.path.contains("tokenreviews"))
            .collect()
    }
}

fn self_signed() -> CaPem {
    CaPem::self_signed("cluster.local", std::time::SystemTime::now()).unwrap()
}

#[tokio::test]
async fn the_leader_creates_the_ca_secret_once_and_then_reads_it() {
    let api = FakeApi::default();
    let (first, origin) = cluster::load(api.client(), NS, "cluster.local", true)
        .await
        .unwrap();
    assert_eq!(origin, Origin::Created);
    CertificateAuthority::new(&first).unwrap();
    let writes = api.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(writes[0].path, format!("/api/v1/namespaces/{NS}/secrets"));
    assert_eq!(writes[0].body["metadata"]["name"], "meshd-ca");
    let keys: Vec<&String> = writes[0].body["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "ca-cert.pem",
            "ca-key.pem",
            "cert-chain.pem",
            "root-cert.pem"
        ]
    );

    // A restart (or the other replica) reads the same CA and writes nothing.
    for leader in [true, false] {
        let (again, origin) = cluster::load(api.client(), NS, "cluster.local", leader)
            .await
            .unwrap();
        assert_eq!(origin, Origin::Existing);
        assert_eq!(again, first);
    }
    assert_eq!(api.writes().len(), 1);
}

#[tokio::test]
async fn the_plug_in_secret_wins_and_nothing_is_written() {
    let api = FakeApi::default();
    let mine = self_signed();
    let theirs = self_signed();
    api.put_secret("meshd-ca", &mine);
    api.put_secret("meshd-cacerts", &theirs);
    let (pem, origin) = cluster::load(api.client(), NS, "cluster.local", true)
        .await
        .unwrap();
    assert_eq!(origin, Origin::PlugIn);
    assert_eq!(pem, theirs);
    assert!(api.writes().is_empty());
}

#[tokio::test]
async fn an_existing_secret_is_never_overwritten_even_after_losing_a_race() {
    let api = FakeApi::default();
    let winner = self_signed();
    api.put_secret("winner", &winner);
    let stored = api.0.lock().unwrap().secrets.remove("winner").unwrap();
    let mut renamed = stored.clone();
    renamed["metadata"]["name"] = json!("meshd-ca");
    api.0.lock().unwrap().race = Some(renamed);
    let (pem, origin) = cluster::load(api.client(), NS, "cluster.local", true)
        .await
        .unwrap();
    assert_eq!(origin, Origin::Existing);
    assert_eq!(
        pem, winner,
        "the winner's CA, not the one this replica made"
    );
    let writes = api.writes();
    assert_eq!(writes.len(), 1, "one create, no update: {writes:?}");
    assert_eq!(writes[0].method, "POST");
}

#[tokio::test]
async fn a_follower_waits_for_the_leader() {
    let api = FakeApi::default();
    let err = cluster::load(api.client(), NS, "cluster.local", false)
        .await
        .unwrap_err();
    assert!(matches!(err, CaError::NotYetCreated { .. }), "{err}");
    assert!(api.writes().is_empty());
}

#[tokio::test]
async fn a_plug_in_secret_missing_a_key_is_named() {
    let api = FakeApi::default();
    api.put_secret("meshd-cacerts", &self_signed());
    api.0
        .lock()
        .unwrap()
        .secrets
        .get_mut("meshd-cacerts")
        .unwrap()["data"]
        .as_object_mut()
        .unwrap()
        .remove("cert-chain.pem");
    let err = cluster::load(api.client(), NS, "cluster.local", true)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("meshd-system/meshd-cacerts key cert-chain.pem: is missing"),
        "{err}"
    );
    assert!(api.writes().is_empty());
}

#[tokio::test]
async fn token_review_checks_token_and_audience() {
    let api = FakeApi::default();
    {
        let mut s = api.0.lock().unwrap();
        s.tokens.insert(
            "good".into(),
            (
                "system:serviceaccount:shop:web".into(),
                vec!["meshd".into()],
            ),
        );
        s.tokens.insert(
            "api-audience".into(),
            (
                "system:serviceaccount:shop:web".into(),
                vec!["https://kubernetes.default.svc".into()],
            ),
        );
        s.tokens
            .insert("a-user".into(), ("alice".into(), vec!["meshd".into()]));
    }
    let reviewer = TokenReviewer::new(api.client(), meshd_api::names::TOKEN_AUDIENCE);
    assert_eq!(
        reviewer.authenticate("good").await,
        Ok(ServiceAccount {
            namespace: "shop".into(),
            name: "web".into()
        })
    );
    for (token, words) in [
        ("wrong", "invalid bearer token"),
        ("api-audience", "audiences"),
        ("a-user", "not to a service account"),
    ] {
        match reviewer.authenticate(token).await {
            Err(AuthError::Invalid(why)) => assert!(why.contains(words), "{token}: {why}"),
            other => panic!("{token}: {other:?}"),
        }
    }
    let log = api.0.lock().unwrap().log.clone();
    assert_eq!(log.len(), 4);
    for r in &log {
        assert_eq!(r.path, "/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(r.body["spec"]["audiences"], json!(["meshd"]));
    }
}

#[tokio::test]
async fn an_api_server_that_confirms_another_audience_is_not_believed() {
    let api = FakeApi::default();
    {
        let mut s = api.0.lock().unwrap();
        s.ignore_audiences = true;
        s.tokens.insert(
            "t".into(),
            ("system:serviceaccount:shop:web".into(), vec!["api".into()]),
        );
    }
    let reviewer = TokenReviewer::new(api.client(), "meshd");
    match reviewer.authenticate("t").await {
        Err(AuthError::Invalid(why)) => {
            assert!(why.contains("do not include \"meshd\""), "{why}")
        }
        other => panic!("{other:?}"),
    }
}

fn policy() -> Arc<dyn meshd_ca::PolicySource> {
    Arc::new(meshd_ca::IssuancePolicy {
        trust_domain: "cluster.local".into(),
        ttl: std::time::Duration::from_secs(3600),
    })
}

/// What the controller runs: two replicas follow the Secrets; the follower waits until the leader has
/// created `meshd-ca` (once), both end up with the same CA, and a plug-in Secret the user adds later
/// (with two roots: a planned rotation) takes over within the recheck interval.
#[tokio::test(start_paused = true)]
async fn replicas_follow_the_ca_the_leader_creates_and_a_later_plug_in_secret() {
    use meshd_ca::CaSource;
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    let api = FakeApi::default();
    let cancel = CancellationToken::new();
    let (leading_tx, leading) = watch::channel(false);
    let (follower_tx, follower) = watch::channel(None);
    let (leader_tx, leader) = watch::channel(None);
    tokio::spawn(cluster::follow(
        api.client(),
        NS.into(),
        policy(),
        watch::channel(false).1,
        follower_tx,
        cancel.clone(),
    ));
    tokio::spawn(cluster::follow(
        api.client(),
        NS.into(),
        policy(),
        leading,
        leader_tx,
        cancel.clone(),
    ));
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    assert!(follower.borrow().is_none() && leader.borrow().is_none());
    assert!(follower.authority().is_err(), "no CA to sign with yet");
    assert!(api.writes().is_empty(), "no replica leads: nothing created");

    // The election is won: the leader creates the Secret at once, the follower reads it.
    leading_tx.send_replace(true);
    let mut leader_seen = leader.clone();
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        leader_seen.wait_for(Option::is_some),
    )
    .await
    .expect("the leader has the CA at once")
    .unwrap();
    let mut follower_seen = follower.clone();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        follower_seen.wait_for(Option::is_some),
    )
    .await
    .expect("the follower reads it")
    .unwrap();
    let roots = |rx: &watch::Receiver<Option<Arc<CertificateAuthority>>>| {
        rx.borrow().as_ref().unwrap().roots_pem().to_string()
    };
    assert_eq!(roots(&leader), roots(&follower));
    let writes = api.writes();
    assert_eq!(writes.len(), 1, "created once: {writes:?}");

    // Minutes later nothing more was written.
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    assert_eq!(api.writes().len(), 1);

    // The user plugs in their CA, its root-cert.pem holding the old root and theirs.
    let mut theirs = self_signed();
    theirs.root_cert = format!("{}{}", roots(&leader), theirs.root_cert);
    api.put_secret("meshd-cacerts", &theirs);
    tokio::time::sleep(cluster::RECHECK + std::time::Duration::from_secs(1)).await;
    for rx in [&leader, &follower] {
        let ca = rx.borrow().clone().unwrap();
        assert_eq!(ca.root_count(), 2);
        assert_eq!(ca.roots_pem(), theirs.root_cert);
    }
    assert_eq!(api.writes().len(), 1, "a plug-in Secret is never written");
    cancel.cancel();
}
