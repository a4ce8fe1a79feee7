//! What one proxy is pushed when one VirtualService's weights change in a mesh of 1,000 Services,
//! each with a VirtualService and a DestinationRule (issue 10's figure), over real gRPC streams: on
//! delta and on state-of-the-world, only that Service's route, nothing of another type. Prints the
//! bytes pushed (`-- --nocapture`).

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use meshd_index::{Index, SharedIndex};

use meshd_translate::facts::{Fact, FactChange};
use meshd_translate::synthetic::{
    destination_rule, synthetic_mesh, traffic_changes, virtual_service,
};
use meshd_translate::{ResourceType, TranslateSettings, Translator};
use meshd_xds::{XdsOptions, XdsServer};
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Streaming;

/// Two client pods (no inbound side), one per stream kind: their shared config is the same.
const SOTW_NODE: &str = "client-0.ns-0";
const DELTA_NODE: &str = "client-1.ns-1";
const ROUTE: &str = "svc-0.ns-0.svc.cluster.local:80";
const WAIT: Duration = Duration::from_secs(20);
/// After the push, how long nothing else may come.
const QUIET: Duration = Duration::from_millis(700);

fn publish(index: &SharedIndex, changes: Vec<FactChange>) {
    index.update(|i| {
        for c in changes {
            i.set(c.kind, c.key, c.fact);
        }
    });
}

async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("a response in time")
        .unwrap()
        .expect("stream open")
}

async fn quiet<T: std::fmt::Debug>(stream: &mut Streaming<T>) {
    if let Ok(m) = tokio::time::timeout(QUIET, stream.message()).await {
        panic!("expected nothing more, got {m:?}");
    }
}

/// An xDS server over `facts`, on loopback TCP, and a client of it.
async fn start(
    facts: Vec<FactChange>,
) -> (
    SharedIndex,
    AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    CancellationToken,
) {
    let index = SharedIndex::new(Index::new([]));
    publish(&index, facts);
    let cancel = CancellationToken::new();
    let options = XdsOptions {
        debounce: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    };
    let server = XdsServer::start(
        index.clone(),
        TranslateSettings::default(),
        options,
        &mut Registry::default(),
        cancel.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve_tcp(listener).await.unwrap() });
    let client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    // Streams open on the generation of every fact (a proxy on an earlier one would be pushed more).
    let routes = compiled_routes(&index);
    server
        .generations()
        .wait_for(|g| g.complete && g.mesh.shared(ResourceType::Route).count() == routes)
        .await
        .unwrap();
    (index, client, cancel)
}

/// How many routes translating the index's facts gives.
fn compiled_routes(index: &SharedIndex) -> usize {
    let facts = index.read(|i| i.everything());
    let (compiled, _) = Translator::new(TranslateSettings::default()).apply(facts);
    compiled.shared(ResourceType::Route).count()
}

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_virtual_service_weight_change_pushes_only_its_route() {
    let mesh = synthetic_mesh(1000, 10);
    let mut facts = mesh.changes();
    facts.extend(traffic_changes(&mesh));
    // What Envoy subscribes to by name: every route and load assignment the shared config has.
    let (compiled, _) = Translator::new(TranslateSettings::default()).apply(facts.clone());
    let names = |ty| -> Vec<String> { compiled.shared(ty).map(|r| r.name.to_string()).collect() };
    let (routes, assignments) = (names(ResourceType::Route), names(ResourceType::Endpoint));

    let (index, client, cancel) = start(facts).await;
    // State of the world: every type subscribed and ACKed.
    let (sotw_tx, req) = mpsc::channel(16);
    let mut sotw = client
        .clone()
        .stream_aggregated_resources(ReceiverStream::new(req))
        .await
        .unwrap()
        .into_inner();
    for (ty, names) in [
        (ResourceType::Cluster, &Vec::new()),
        (ResourceType::Endpoint, &assignments),
        (ResourceType::Listener, &Vec::new()),
        (ResourceType::Route, &routes),
    ] {
        let ask = |r: Option<&DiscoveryResponse>| DiscoveryRequest {
            node: node(SOTW_NODE),
            type_url: ty.type_url(),
            resource_names: names.clone(),
            version_info: r.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: r.map(|r| r.nonce.clone()).unwrap_or_default(),
            ..Default::default()
        };
        sotw_tx.send(ask(None)).await.unwrap();
        let r = next(&mut sotw).await;
        assert_eq!(r.type_url, ty.type_url());
        sotw_tx.send(ask(Some(&r))).await.unwrap();
    }

    // Delta: every type subscribed (by name where Envoy does) and ACKed.
    let (delta_tx, req) = mpsc::channel(16);
    let mut delta = client
        .clone()
        .delta_aggregated_resources(ReceiverStream::new(req))
        .await
        .unwrap()
        .into_inner();
    for (ty, names) in [
        (ResourceType::Cluster, &Vec::new()),
        (ResourceType::Endpoint, &assignments),
        (ResourceType::Listener, &Vec::new()),
        (ResourceType::Route, &routes),
    ] {
        delta_tx
            .send(DeltaDiscoveryRequest {
                node: node(DELTA_NODE),
                type_url: ty.type_url(),
                resource_names_subscribe: names.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        // A first config goes out in chunks: each one ACKed, until no more come.
        let mut r: Option<DeltaDiscoveryResponse> = Some(next(&mut delta).await);
        while let Some(chunk) = r {
            assert_eq!(chunk.type_url, ty.type_url());
            delta_tx
                .send(DeltaDiscoveryRequest {
                    type_url: ty.type_url(),
                    response_nonce: chunk.nonce.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
            r = tokio::time::timeout(QUIET, delta.message())
                .await
                .ok()
                .map(|m| m.unwrap().expect("stream open"));
        }
    }
    quiet(&mut sotw).await;
    quiet(&mut delta).await;

    publish(&index, vec![virtual_service(&mesh.services[0].0, 50)]);
    let pushed = next(&mut sotw).await;
    assert_eq!(pushed.type_url, ResourceType::Route.type_url());
    let sotw_names: Vec<String> = pushed
        .resources
        .iter()
        .map(|a| RouteConfiguration::decode(a.value.as_slice()).unwrap().name)
        .collect();
    let pushed_delta = next(&mut delta).await;
    assert_eq!(pushed_delta.type_url, ResourceType::Route.type_url());
    let delta_names: Vec<&str> = pushed_delta
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    println!(
        "one VirtualService's weights changed at 1,000 services with a VirtualService and a DestinationRule each: \
         {} of {} routes subscribed pushed; per proxy: SotW {} bytes (DiscoveryResponse), delta {} bytes \
         (DeltaDiscoveryResponse); the route itself {} bytes",
        sotw_names.len(),
        routes.len(),
        pushed.encoded_len(),
        pushed_delta.encoded_len(),
        pushed
            .resources
            .iter()
            .find(|a| RouteConfiguration::decode(a.value.as_slice()).unwrap().name == ROUTE)
            .map_or(0, |a| a.value.len()),
    );
    assert_eq!(sotw_names, [ROUTE], "SotW pushes only the changed route");
    assert_eq!(delta_names, [ROUTE]);
    assert!(pushed_delta.removed_resources.is_empty());
    quiet(&mut sotw).await;
    quiet(&mut delta).await;
    cancel.cancel();
}

/// A DestinationRule's connection pool changes svc-0's cluster (and its subsets') but not their
/// endpoints: Envoy warms an updated cluster until its load assignment comes again, so SotW sends the
/// assignments again, unchanged (as delta does), and only those.
#[tokio::test]
async fn sotw_sends_a_changed_clusters_endpoints_again() {
    let mesh = synthetic_mesh(3, 2);
    let key = mesh.services[0].0.clone();
    let mut facts = mesh.changes();
    facts.push(destination_rule(&key));
    let (compiled, _) = Translator::new(TranslateSettings::default()).apply(facts.clone());
    let assignments: Vec<String> = compiled
        .shared(ResourceType::Endpoint)
        .map(|r| r.name.to_string())
        .collect();
    let (index, client, cancel) = start(facts).await;
    let (tx, req) = mpsc::channel(16);
    let mut sotw = client
        .clone()
        .stream_aggregated_resources(ReceiverStream::new(req))
        .await
        .unwrap()
        .into_inner();
    for (ty, names) in [
        (ResourceType::Cluster, &Vec::new()),
        (ResourceType::Endpoint, &assignments),
    ] {
        let ask = |r: Option<&DiscoveryResponse>| DiscoveryRequest {
            node: node(SOTW_NODE),
            type_url: ty.type_url(),
            resource_names: names.clone(),
            version_info: r.map(|r| r.version_info.clone()).unwrap_or_default(),
            response_nonce: r.map(|r| r.nonce.clone()).unwrap_or_default(),
            ..Default::default()
        };
        tx.send(ask(None)).await.unwrap();
        let r = next(&mut sotw).await;
        tx.send(ask(Some(&r))).await.unwrap();
    }
    quiet(&mut sotw).await;

    let mut changed = destination_rule(&key);
    if let Some(Fact::DestinationRule(rule)) = &mut changed.fact {
        let pool = Arc::make_mut(rule)
            .spec
            .traffic_policy
            .as_mut()
            .and_then(|p| p.connection_pool.as_mut())
            .and_then(|p| p.http.as_mut())
            .expect("the synthetic rule's connection pool");
        pool.http1_max_pending_requests = Some(200);
    }
    publish(&index, vec![changed]);
    let cds = next(&mut sotw).await;
    assert_eq!(cds.type_url, ResourceType::Cluster.type_url());
    let eds = next(&mut sotw).await;
    assert_eq!(eds.type_url, ResourceType::Endpoint.type_url());
    let names: Vec<String> = eds
        .resources
        .iter()
        .map(|a| {
            ClusterLoadAssignment::decode(a.value.as_slice())
                .unwrap()
                .cluster_name
        })
        .collect();
    assert_eq!(
        names,
        [
            "outbound|80|v1|svc-0.ns-0.svc.cluster.local",
            "outbound|80|v2|svc-0.ns-0.svc.cluster.local",
            "outbound|80||svc-0.ns-0.svc.cluster.local",
        ]
    );
    cancel.cancel();
}
