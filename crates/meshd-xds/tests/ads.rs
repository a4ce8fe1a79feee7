//! The ADS server in-process over real gRPC (tonic client on loopback TCP): ACK, NACK, reconnect,
//! delta add/remove, a slow client, unknown nodes, debounce and shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use meshd_api::syncz::{ProxySync, SyncState, Timestamp, XdsType};
use meshd_index::{Index, SharedIndex};
use meshd_translate::facts::FactKind;
use meshd_translate::synthetic::{SyntheticMesh, endpoint, synthetic_mesh};
use meshd_translate::{ResourceType, TranslateSettings};
use meshd_xds::{XdsOptions, XdsServer};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;
use tonic::transport::Channel;

const NODE: &str = "svc-0-0.ns-0";
const WAIT: Duration = Duration::from_secs(5);

struct Harness {
    index: SharedIndex,
    mesh: std::sync::Mutex<SyntheticMesh>,
    server: XdsServer,
    addr: SocketAddr,
    cancel: CancellationToken,
    registry: Registry,
}

/// Every fact of `mesh` in the index, and nothing else.
fn publish(index: &SharedIndex, mesh: &SyntheticMesh) {
    let changes = mesh.changes();
    index.update(|i| {
        for kind in [
            FactKind::Service,
            FactKind::EndpointSlice,
            FactKind::Workload,
        ] {
            let listed = changes
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| (c.key.clone(), c.fact.clone()))
                .collect();
            i.replace_kind(kind, listed);
        }
    });
}

async fn start(mesh: SyntheticMesh) -> Harness {
    let index = SharedIndex::new(Index::new([]));
    publish(&index, &mesh);
    let cancel = CancellationToken::new();
    let mut registry = Registry::default();
    let options = XdsOptions {
        debounce: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    let server = XdsServer::start(
        index.clone(),
        TranslateSettings::default(),
        options,
        &mut registry,
        cancel.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve_tcp(listener).await.unwrap() });
    Harness {
        index,
        mesh: std::sync::Mutex::new(mesh),
        server,
        addr,
        cancel,
        registry,
    }
}

impl Harness {
    async fn client(&self) -> AggregatedDiscoveryServiceClient<Channel> {
        AggregatedDiscoveryServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    fn change(&self, f: impl FnOnce(&mut SyntheticMesh)) {
        let mut mesh = self.mesh.lock().unwrap();
        f(&mut mesh);
        publish(&self.index, &mesh);
    }

    fn metrics(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text
    }
}

/// Every type sent on the stream was ACKed.
fn in_sync(p: &ProxySync) -> bool {
    let now = Timestamp::now();
    p.types.values().all(|t| t.state(now) == SyncState::Synced)
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        ..Default::default()
    })
}

fn cluster_names(r: &DiscoveryResponse) -> Vec<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;
    r.resources
        .iter()
        .map(|a| Cluster::decode(a.value.as_slice()).unwrap().name)
        .collect()
}

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("stream open")
}

async fn nothing_within<T: std::fmt::Debug>(stream: &mut Streaming<T>, d: Duration) {
    if let Ok(m) = tokio::time::timeout(d, stream.message()).await {
        panic!("expected no response, got {m:?}");
    }
}

struct Sotw {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

async fn sotw(h: &Harness, id: &str, ty: ResourceType, names: &[&str]) -> Sotw {
    let (tx, req) = mpsc::channel(16);
    tx.send(DiscoveryRequest {
        node: node(id),
        type_url: ty.type_url(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let rx = h
        .client()
        .await
        .stream_aggregated_resources(ReceiverStream::new(req))
        .await
        .unwrap()
        .into_inner();
    Sotw { tx, rx }
}

fn ack(ty: ResourceType, r: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: ty.type_url(),
        version_info: r.version_info.clone(),
        response_nonce: r.nonce.clone(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

struct Delta {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

async fn delta(h: &Harness, first: DeltaDiscoveryRequest) -> Delta {
    let (tx, req) = mpsc::channel(16);
    tx.send(first).await.unwrap();
    let rx = h
        .client()
        .await
        .delta_aggregated_resources(ReceiverStream::new(req))
        .await
        .unwrap()
        .into_inner();
    Delta { tx, rx }
}

fn delta_ack(ty: ResourceType, r: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url(),
        response_nonce: r.nonce.clone(),
        ..Default::default()
    }
}

fn names(r: &DeltaDiscoveryResponse) -> Vec<&str> {
    r.resources.iter().map(|r| r.name.as_str()).collect()
}

fn add_endpoint(s: &mut SyntheticMesh, slice: usize, ip: &str) {
    s.slices[slice].1.endpoints.push(endpoint(ip));
}

const CDS: ResourceType = ResourceType::Cluster;
const EDS: ResourceType = ResourceType::Endpoint;

#[tokio::test]
async fn sotw_ack_marks_the_proxy_in_sync_and_changes_are_pushed() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut s = sotw(&h, NODE, CDS, &[]).await;
    let first = next(&mut s.rx).await;
    let before = cluster_names(&first);
    assert!(
        before.contains(&"outbound|80||svc-0.ns-0.svc.cluster.local".to_string()),
        "{before:?}"
    );
    assert!(
        before.contains(&"inbound|80||".to_string()),
        "the pod's own inbound cluster: {before:?}"
    );
    s.tx.send(ack(CDS, &first, &[])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let proxies = h.server.proxies().list();
    assert_eq!(proxies.len(), 1);
    assert_eq!(proxies[0].node_id, NODE);
    assert!(
        proxies[0].pod_found && in_sync(&proxies[0]),
        "{:?}",
        proxies[0]
    );

    h.change(|s| {
        s.services.remove(2);
    });
    let second = next(&mut s.rx).await;
    assert_ne!(second.version_info, first.version_info);
    assert_ne!(second.nonce, first.nonce);
    assert!(
        !cluster_names(&second).iter().any(|n| n.contains("svc-2")),
        "{:?}",
        cluster_names(&second)
    );
    assert!(
        !in_sync(&h.server.proxies().list()[0]),
        "sent but not yet ACKed"
    );
    let metrics = h.metrics();
    assert!(metrics.contains("meshd_proxies_connected 1"), "{metrics}");
    assert!(
        metrics.contains(r#"meshd_xds_pushes_total{type="cds"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("meshd_xds_push_seconds_count 1"),
        "one push caused by a change: {metrics}"
    );
}

#[tokio::test]
async fn a_nack_is_recorded_counted_and_not_resent() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut s = sotw(&h, NODE, CDS, &[]).await;
    let first = next(&mut s.rx).await;
    let mut nack = ack(CDS, &first, &[]);
    nack.version_info = String::new();
    nack.error_detail = Some(RpcStatus {
        code: 3,
        message: "cluster outbound|80: bad thing".into(),
        details: vec![],
    });
    s.tx.send(nack).await.unwrap();
    nothing_within(&mut s.rx, Duration::from_millis(500)).await;
    let status = &h.server.proxies().list()[0];
    let cds = &status.types[&XdsType::Cds];
    assert_eq!(
        cds.last_nack.as_ref().map(|n| n.detail.as_str()),
        Some("cluster outbound|80: bad thing")
    );
    assert_eq!(cds.nack_count, 1);
    assert!(!in_sync(status));
    assert!(
        h.metrics()
            .contains(r#"meshd_xds_nacks_total{type="cds"} 1"#),
        "{}",
        h.metrics()
    );

    // Only a real change produces a new response; its ACK clears the NACK.
    h.change(|s| {
        s.services.remove(1);
    });
    let second = next(&mut s.rx).await;
    s.tx.send(ack(CDS, &second, &[])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(in_sync(&h.server.proxies().list()[0]));
}

#[tokio::test]
async fn sotw_eds_answers_the_names_asked_for() {
    let h = start(synthetic_mesh(3, 2)).await;
    let web = "outbound|80||svc-0.ns-0.svc.cluster.local";
    let mut s = sotw(&h, NODE, EDS, &[web]).await;
    let r = next(&mut s.rx).await;
    assert_eq!(r.resources.len(), 1);
    s.tx.send(ack(EDS, &r, &[web])).await.unwrap();
    // Another service's endpoints change: nothing for this subscription.
    h.change(|s| add_endpoint(s, 1, "10.200.0.1"));
    nothing_within(&mut s.rx, Duration::from_millis(400)).await;
    h.change(|s| add_endpoint(s, 0, "10.200.0.2"));
    let r2 = next(&mut s.rx).await;
    assert_ne!(r2.version_info, r.version_info);
}

#[tokio::test]
async fn delta_sends_only_changes_and_removals() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut d = delta(
        &h,
        DeltaDiscoveryRequest {
            node: node(NODE),
            type_url: CDS.type_url(),
            ..Default::default()
        },
    )
    .await;
    let all = next(&mut d.rx).await;
    assert_eq!(
        all.resources.len(),
        3 + 3 + 1,
        "3 services, 3 special clusters, 1 inbound: {:?}",
        names(&all)
    );
    d.tx.send(delta_ack(CDS, &all)).await.unwrap();
    let web = "outbound|80||svc-0.ns-0.svc.cluster.local";
    d.tx.send(DeltaDiscoveryRequest {
        type_url: EDS.type_url(),
        resource_names_subscribe: vec![web.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let eds = next(&mut d.rx).await;
    assert_eq!(names(&eds), [web]);
    d.tx.send(delta_ack(EDS, &eds)).await.unwrap();

    h.change(|s| add_endpoint(s, 0, "10.200.0.3"));
    let changed = next(&mut d.rx).await;
    assert_eq!(changed.type_url, EDS.type_url());
    assert_eq!(names(&changed), [web]);
    assert_ne!(changed.resources[0].version, eds.resources[0].version);
    d.tx.send(delta_ack(EDS, &changed)).await.unwrap();

    h.change(|s| {
        s.services.remove(2);
    });
    let removed = next(&mut d.rx).await;
    assert_eq!(removed.type_url, CDS.type_url());
    assert!(removed.resources.is_empty(), "{:?}", names(&removed));
    assert_eq!(
        removed.removed_resources,
        ["outbound|5432||svc-2.ns-2.svc.cluster.local"]
    );
}

#[tokio::test]
async fn delta_reconnect_resends_only_what_the_proxy_lacks() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut d = delta(
        &h,
        DeltaDiscoveryRequest {
            node: node(NODE),
            type_url: CDS.type_url(),
            ..Default::default()
        },
    )
    .await;
    let all = next(&mut d.rx).await;
    let mut held: std::collections::HashMap<String, String> = all
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(d);
    // The proxy comes back holding everything but one stale cluster version.
    let stale = "outbound|9090||svc-1.ns-1.svc.cluster.local";
    held.insert(stale.into(), "stale".into());
    held.insert("outbound|1||gone.ns.svc.cluster.local".into(), "x".into());
    let mut d2 = delta(
        &h,
        DeltaDiscoveryRequest {
            node: node(NODE),
            type_url: CDS.type_url(),
            initial_resource_versions: held,
            ..Default::default()
        },
    )
    .await;
    let r = next(&mut d2.rx).await;
    assert_eq!(names(&r), [stale]);
    assert_eq!(
        r.removed_resources,
        ["outbound|1||gone.ns.svc.cluster.local"]
    );
}

#[tokio::test]
async fn a_slow_proxy_does_not_hold_up_the_others() {
    let h = start(synthetic_mesh(3000, 2)).await;
    // The slow proxy asks for all clusters over SotW and never reads: each change of the cluster set
    // is a full response it will not take.
    let slow = sotw(&h, "client-1.ns-1", CDS, &[]).await;
    let mut fast = delta(
        &h,
        DeltaDiscoveryRequest {
            node: node(NODE),
            type_url: CDS.type_url(),
            ..Default::default()
        },
    )
    .await;
    // 3,000 clusters do not fit one response: they come in chunks, all before any change.
    let mut initial = std::collections::BTreeSet::new();
    let mut chunks = 0;
    while initial.len() < 3000 + 3 + 1 {
        let r = next(&mut fast.rx).await;
        assert!(
            r.resources
                .iter()
                .map(|x| x.resource.as_ref().unwrap().value.len())
                .sum::<usize>()
                <= 64 * 1024 + 4096
        );
        initial.extend(r.resources.iter().map(|x| x.name.clone()));
        fast.tx.send(delta_ack(CDS, &r)).await.unwrap();
        chunks += 1;
    }
    assert!(chunks > 1, "{chunks}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fast_status = h
        .server
        .proxies()
        .list()
        .into_iter()
        .find(|p| p.node_id == NODE)
        .unwrap();
    assert!(in_sync(&fast_status), "every chunk ACKed: {fast_status:?}");
    for round in 0..20 {
        h.change(|s| {
            let port = &mut s.services[round + 10].1.ports[0];
            port.port += 1;
        });
        let started = std::time::Instant::now();
        let r = next(&mut fast.rx).await;
        assert_eq!(r.type_url, CDS.type_url());
        assert!(
            !r.removed_resources.is_empty(),
            "round {round}: the renamed cluster is removed"
        );
        fast.tx.send(delta_ack(CDS, &r)).await.unwrap();
        // Generous: debounce is 20 ms; this only fails if the fast stream waited on the slow one.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "round {round} took {:?}",
            started.elapsed()
        );
    }
    let statuses = h.server.proxies().list();
    let slow_status = statuses
        .iter()
        .find(|p| p.node_id == "client-1.ns-1")
        .unwrap();
    let sent_to_slow: u64 = slow_status.types[&XdsType::Cds]
        .last_sent
        .as_ref()
        .unwrap()
        .nonce
        .rsplit('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("responses the slow proxy was sent before its stream backed up: {sent_to_slow}");
    assert!(
        sent_to_slow < 21,
        "the slow stream must have been held back by its own backpressure"
    );
    drop(slow);
}

#[tokio::test]
async fn unknown_nodes_get_an_empty_config_and_bad_ids_are_refused() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut s = sotw(&h, "ghost.ns-0", CDS, &[]).await;
    let r = next(&mut s.rx).await;
    assert!(r.resources.is_empty());
    assert!(!h.server.proxies().list()[0].pod_found);

    let mut bad = sotw(&h, "no-namespace", CDS, &[]).await;
    let err = tokio::time::timeout(WAIT, bad.rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("no-namespace"), "{}", err.message());
}

#[tokio::test]
async fn a_burst_of_changes_is_one_push() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut gens = h.server.generations();
    let before = gens.borrow_and_update().number;
    for i in 0..5 {
        h.change(|s| add_endpoint(s, 0, &format!("10.201.0.{i}")));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(WAIT, gens.changed())
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gens.borrow().number,
        before + 1,
        "five changes 5 ms apart, debounce 20 ms"
    );
}

#[tokio::test]
async fn shutdown_closes_streams_promptly() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut s = sotw(&h, NODE, CDS, &[]).await;
    next(&mut s.rx).await;
    let started = std::time::Instant::now();
    h.cancel.cancel();
    let end = tokio::time::timeout(WAIT, s.rx.message())
        .await
        .expect("stream ends within 5 s");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.server.proxies().connected(), 0);
}

#[tokio::test]
async fn clusters_are_pushed_before_their_endpoints() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut d = delta(
        &h,
        DeltaDiscoveryRequest {
            node: node(NODE),
            type_url: CDS.type_url(),
            ..Default::default()
        },
    )
    .await;
    let all = next(&mut d.rx).await;
    d.tx.send(delta_ack(CDS, &all)).await.unwrap();
    let web = "outbound|80||svc-0.ns-0.svc.cluster.local";
    d.tx.send(DeltaDiscoveryRequest {
        type_url: EDS.type_url(),
        resource_names_subscribe: vec![web.into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let eds = next(&mut d.rx).await;
    d.tx.send(delta_ack(EDS, &eds)).await.unwrap();
    // One change touching both: a new service and new endpoints for the subscribed one.
    h.change(|s| {
        let mut extra = synthetic_mesh(4, 2);
        s.services.push(extra.services.remove(3));
        add_endpoint(s, 0, "10.200.0.9");
    });
    let first = next(&mut d.rx).await;
    let second = next(&mut d.rx).await;
    assert_eq!(first.type_url, CDS.type_url(), "clusters first");
    assert_eq!(names(&first), ["outbound|80||svc-3.ns-3.svc.cluster.local"]);
    assert_eq!(second.type_url, EDS.type_url());
    assert_eq!(names(&second), [web]);
}

#[tokio::test]
async fn delta_subscriptions_send_what_the_proxy_lacks_and_resend_after_unsubscribe() {
    let h = start(synthetic_mesh(3, 2)).await;
    let web = "outbound|80||svc-0.ns-0.svc.cluster.local";
    let api = "outbound|9090||svc-1.ns-1.svc.cluster.local";
    let subscribe = |sub: &[&str], unsub: &[&str]| DeltaDiscoveryRequest {
        type_url: EDS.type_url(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut first = subscribe(&[web], &[]);
    first.node = node(NODE);
    let mut d = delta(&h, first).await;
    let r = next(&mut d.rx).await;
    assert_eq!(names(&r), [web]);
    d.tx.send(delta_ack(EDS, &r)).await.unwrap();
    d.tx.send(subscribe(&[api], &[])).await.unwrap();
    let r = next(&mut d.rx).await;
    assert_eq!(names(&r), [api], "only the name it lacks");
    d.tx.send(delta_ack(EDS, &r)).await.unwrap();
    d.tx.send(subscribe(&[], &[web])).await.unwrap();
    nothing_within(&mut d.rx, Duration::from_millis(300)).await;
    d.tx.send(subscribe(&[web], &[])).await.unwrap();
    let r = next(&mut d.rx).await;
    assert_eq!(names(&r), [web], "dropped on unsubscribe, so sent again");
    d.tx.send(delta_ack(EDS, &r)).await.unwrap();
    h.change(|s| add_endpoint(s, 1, "10.200.1.1"));
    let r = next(&mut d.rx).await;
    assert_eq!(names(&r), [api]);
    assert!(r.removed_resources.is_empty());
}

/// The state of `ty` on `node`'s stream once it satisfies `want` (polled up to 5 s), else a panic naming
/// the last state seen.
async fn wait_state(
    h: &Harness,
    node: &str,
    ty: XdsType,
    want: impl Fn(&SyncState) -> bool,
) -> SyncState {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = h
            .server
            .proxies()
            .list()
            .iter()
            .find(|p| p.node_id == node)
            .map(|p| p.type_sync(ty).state(Timestamp::now()));
        match state {
            Some(s) if want(&s) => return s,
            last if tokio::time::Instant::now() > deadline => {
                panic!("{node} {ty:?}: last state {last:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn nack_of(req: DiscoveryRequest, message: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: String::new(),
        error_detail: Some(RpcStatus {
            code: 3,
            message: message.into(),
            details: vec![],
        }),
        ..req
    }
}

#[tokio::test]
async fn sotw_sync_state_goes_stale_synced_nacked_and_back() {
    let h = start(synthetic_mesh(6, 2)).await;
    let mut nacks = h.server.proxies().subscribe_nacks();
    let mut s = sotw(&h, NODE, CDS, &[]).await;
    let first = next(&mut s.rx).await;
    // Sent, no answer: STALE, and EDS (never asked for) NOT SENT.
    let stale = wait_state(&h, NODE, XdsType::Cds, |s| {
        matches!(s, SyncState::Stale { .. })
    })
    .await;
    assert!(matches!(stale, SyncState::Stale { age_millis } if age_millis < 5_000));
    let record = &h.server.proxies().list()[0];
    assert_eq!(
        record.type_sync(XdsType::Eds).state(Timestamp::now()),
        SyncState::NotSent
    );
    assert_eq!(record.mesh.as_deref(), Some("default"), "{record:?}");
    let sent = record.types[&XdsType::Cds].last_sent.clone().unwrap();
    assert_eq!(
        (sent.version.as_str(), sent.nonce.as_str()),
        (first.version_info.as_str(), first.nonce.as_str())
    );

    s.tx.send(ack(CDS, &first, &[])).await.unwrap();
    wait_state(&h, NODE, XdsType::Cds, |s| *s == SyncState::Synced).await;
    let acked = h.server.proxies().list()[0].types[&XdsType::Cds]
        .last_ack
        .clone()
        .unwrap();
    assert_eq!(acked.version, first.version_info);

    // A change is STALE until answered; its NACK is NACKED with Envoy's error, and one notice.
    h.change(|s| {
        s.services.remove(2);
    });
    let second = next(&mut s.rx).await;
    wait_state(&h, NODE, XdsType::Cds, |s| {
        matches!(s, SyncState::Stale { .. })
    })
    .await;
    s.tx.send(nack_of(ack(CDS, &second, &[]), "cluster x: bad thing"))
        .await
        .unwrap();
    let nacked = wait_state(&h, NODE, XdsType::Cds, |s| {
        matches!(s, SyncState::Nacked { .. })
    })
    .await;
    assert_eq!(
        nacked,
        SyncState::Nacked {
            detail: "cluster x: bad thing".into()
        }
    );
    let cds = h.server.proxies().list()[0].types[&XdsType::Cds].clone();
    assert_eq!(
        cds.last_nack.as_ref().unwrap().version,
        second.version_info,
        "the rejected version"
    );
    assert_eq!(
        cds.last_ack.as_ref().unwrap().version,
        first.version_info,
        "what the proxy still runs"
    );
    let notice = tokio::time::timeout(WAIT, nacks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (notice.node_id.as_str(), notice.xds_type),
        (NODE, XdsType::Cds)
    );
    assert_eq!(notice.nack.detail, "cluster x: bad thing");

    // NACKing the next push too: counted, but the same episode (no second notice).
    h.change(|s| {
        s.services.remove(1);
    });
    let third = next(&mut s.rx).await;
    s.tx.send(nack_of(ack(CDS, &third, &[]), "cluster y: worse"))
        .await
        .unwrap();
    wait_state(&h, NODE, XdsType::Cds, |s| {
        *s == SyncState::Nacked {
            detail: "cluster y: worse".into(),
        }
    })
    .await;
    assert_eq!(
        h.server.proxies().list()[0].types[&XdsType::Cds].nack_count,
        2
    );
    assert!(nacks.try_recv().is_err(), "one notice per episode");

    // The next accepted push ends the episode: SYNCED, and a later NACK is news again.
    h.change(|s| {
        s.services.remove(3);
    });
    let fourth = next(&mut s.rx).await;
    s.tx.send(ack(CDS, &fourth, &[])).await.unwrap();
    wait_state(&h, NODE, XdsType::Cds, |s| *s == SyncState::Synced).await;
    h.change(|s| {
        s.services.pop();
    });
    let fifth = next(&mut s.rx).await;
    s.tx.send(nack_of(ack(CDS, &fifth, &[]), "again"))
        .await
        .unwrap();
    let notice = tokio::time::timeout(WAIT, nacks.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(notice.nack.detail, "again", "a new episode after the ACK");
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        h.server.proxies().list().is_empty(),
        "a closed stream leaves the report"
    );
}

#[tokio::test]
async fn delta_sync_state_follows_acks_and_nacks() {
    let h = start(synthetic_mesh(3, 2)).await;
    let mut d = delta(
        &h,
        DeltaDiscoveryRequest {
            node: node(NODE),
            type_url: CDS.type_url(),
            ..Default::default()
        },
    )
    .await;
    let first = next(&mut d.rx).await;
    wait_state(&h, NODE, XdsType::Cds, |s| {
        matches!(s, SyncState::Stale { .. })
    })
    .await;
    d.tx.send(delta_ack(CDS, &first)).await.unwrap();
    wait_state(&h, NODE, XdsType::Cds, |s| *s == SyncState::Synced).await;
    assert_eq!(
        h.server.proxies().list()[0].api,
        meshd_api::syncz::XdsApi::Delta
    );

    h.change(|s| {
        s.services.remove(2);
    });
    let second = next(&mut d.rx).await;
    let nack = DeltaDiscoveryRequest {
        error_detail: Some(RpcStatus {
            code: 3,
            message: "Proto constraint validation failed".into(),
            details: vec![],
        }),
        ..delta_ack(CDS, &second)
    };
    d.tx.send(nack).await.unwrap();
    let nacked = wait_state(&h, NODE, XdsType::Cds, |s| {
        matches!(s, SyncState::Nacked { .. })
    })
    .await;
    assert_eq!(
        nacked,
        SyncState::Nacked {
            detail: "Proto constraint validation failed".into()
        }
    );
    assert!(
        h.metrics()
            .contains(r#"meshd_xds_nacks_total{type="cds"} 1"#),
        "{}",
        h.metrics()
    );
}

/// A VirtualService exported only to the node's namespace routes its TCP port elsewhere: the node's
/// own `virtualOutbound` replaces the shared one (sent once, over SotW's whole set), and goes when the
/// VirtualService does.
#[tokio::test]
async fn sotw_sends_a_proxys_own_version_of_a_shared_listener_in_its_place() {
    use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use prost::Message;
    const LDS: ResourceType = ResourceType::Listener;
    let h = start(synthetic_mesh(3, 2)).await;
    let db = "svc-2.ns-2.svc.cluster.local:5432";
    let to = |r: &DiscoveryResponse| -> (usize, String) {
        let outbound: Vec<Listener> = r
            .resources
            .iter()
            .map(|a| Listener::decode(a.value.as_slice()).unwrap())
            .filter(|l| l.name == meshd_translate::VIRTUAL_OUTBOUND)
            .collect();
        let chain = outbound[0]
            .filter_chains
            .iter()
            .find(|c| c.name == db)
            .unwrap();
        let Some(filter::ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
            panic!("a typed tcp_proxy");
        };
        let proxy = TcpProxy::decode(any.value.as_slice()).unwrap();
        (outbound.len(), format!("{:?}", proxy.cluster_specifier))
    };
    let mut s = sotw(&h, NODE, LDS, &[]).await;
    let first = next(&mut s.rx).await;
    let (count, chain) = to(&first);
    assert_eq!(count, 1);
    assert!(chain.contains("outbound|5432||svc-2"), "{chain}");
    s.tx.send(ack(LDS, &first, &[])).await.unwrap();

    let spec: meshd_api::networking::VirtualServiceSpec =
        serde_json::from_value(serde_json::json!({
            "hosts": ["svc-2.ns-2.svc.cluster.local"], "exportTo": ["."],
            "tcp": [{"route": [{"destination": {"host": "svc-0", "port": {"number": 80}}}]}],
        }))
        .unwrap();
    let vs = meshd_translate::facts::Fact::VirtualService(std::sync::Arc::new(
        meshd_translate::facts::Config {
            generation: None,
            created: Some(1),
            spec,
            problems: Vec::new(),
        },
    ));
    let key = meshd_translate::facts::ObjectKey::new("ns-0", "db");
    h.index
        .update(|i| i.set(FactKind::VirtualService, key.clone(), Some(vs)));
    let second = next(&mut s.rx).await;
    let (count, chain) = to(&second);
    assert_eq!(count, 1, "the own version replaces the shared one");
    assert!(chain.contains("outbound|80||svc-0.ns-0"), "{chain}");
    s.tx.send(ack(LDS, &second, &[])).await.unwrap();

    h.index
        .update(|i| i.set(FactKind::VirtualService, key, None));
    let third = next(&mut s.rx).await;
    let (count, chain) = to(&third);
    assert_eq!(count, 1);
    assert!(chain.contains("outbound|5432||svc-2"), "{chain}");
}
