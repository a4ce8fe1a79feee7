//! Where the `/debug/syncz` answers come from: control planes' metrics ports asked directly, or each
//! replica behind Service `meshd` through the API server's pod proxy. Service proxy would reach one
//! replica chosen by the API server, not each of them, so the replicas are found from the Service's
//! EndpointSlices (ready or not: a replica that turned unready may still hold streams) and asked as
//! `pods/<name>:<port>/proxy/debug/syncz`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use meshd_api::names;
use meshd_api::syncz::{self, SyncReport};

use crate::cmd::kube_client;

/// The Service port that leads to 15014 (manifests/service.yaml).
const METRICS_PORT_NAME: &str = "http-metrics";

/// An `http://HOST:PORT` metrics address (the metrics port serves plain HTTP).
#[derive(Clone, Debug)]
pub struct ControlPlaneUrl(hyper::Uri);

impl ControlPlaneUrl {
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: hyper::Uri = s
            .parse()
            .map_err(|e| format!("{s:?} is not a URL such as http://127.0.0.1:15014: {e}"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http"), Some(_)) => Ok(Self(uri)),
            (Some("https"), _) => Err(format!(
                "{s:?}: the metrics port serves plain HTTP; use http://"
            )),
            _ => Err(format!("{s:?} is not a URL such as http://127.0.0.1:15014")),
        }
    }

    fn syncz(&self) -> String {
        format!(
            "{}{}",
            self.0.to_string().trim_end_matches('/'),
            syncz::PATH
        )
    }
}

impl std::fmt::Display for ControlPlaneUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.to_string().trim_end_matches('/'))
    }
}

/// One replica's answer, or why there is none.
pub struct Answer {
    /// The URL asked, or `pods/<name>`.
    pub source: String,
    pub report: Result<SyncReport, String>,
}

impl Answer {
    /// The replica's own name when it answered with one, else what was asked.
    pub fn name(&self) -> &str {
        match &self.report {
            Ok(r) if !r.control_plane.name.is_empty() => &r.control_plane.name,
            _ => &self.source,
        }
    }
}

/// Asks every control plane at once: the URLs when given, else every replica through the kubeconfig.
/// An error here means no replica could even be found; a replica that does not answer is an `Answer`
/// with an error.
pub async fn ask_all(
    urls: &[ControlPlaneUrl],
    kubeconfig: Option<&std::path::Path>,
    timeout: Duration,
) -> anyhow::Result<Vec<Answer>> {
    if !urls.is_empty() {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        let http: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let asks = urls.iter().map(|url| {
            let http = http.clone();
            async move {
                Answer {
                    source: url.to_string(),
                    report: within(timeout, get_direct(&http, url)).await,
                }
            }
        });
        return Ok(futures::future::join_all(asks).await);
    }
    let client = kube_client::client(kubeconfig).await?;
    let replicas = tokio::time::timeout(timeout, replicas(&client))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the API server did not list the EndpointSlices of Service {} within {timeout:?} (--timeout)",
                names::CONTROL_PLANE_SERVICE
            )
        })??;
    let asks = replicas.iter().map(|(pod, port)| {
        let client = client.clone();
        async move {
            Answer {
                source: format!("pods/{pod}"),
                report: within(timeout, get_through_api_server(&client, pod, *port)).await,
            }
        }
    });
    Ok(futures::future::join_all(asks).await)
}

async fn within(
    timeout: Duration,
    ask: impl Future<Output = Result<SyncReport, String>>,
) -> Result<SyncReport, String> {
    tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?} (--timeout)")))
}

async fn get_direct(
    http: &Client<HttpConnector, Empty<Bytes>>,
    url: &ControlPlaneUrl,
) -> Result<SyncReport, String> {
    let target = url.syncz();
    let uri: hyper::Uri = target.parse().map_err(|e| format!("GET {target}: {e}"))?;
    let response = http
        .get(uri)
        .await
        .map_err(|e| format!("GET {target}: {}", error_chain(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("GET {target}: reading the answer: {e}"))?
        .to_bytes();
    if status == hyper::StatusCode::NOT_FOUND {
        return Err(format!(
            "GET {target}: 404: this control plane does not serve {}",
            syncz::PATH
        ));
    }
    if !status.is_success() {
        return Err(format!(
            "GET {target}: HTTP {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    read_report(&body).map_err(|e| format!("GET {target}: {e}"))
}

fn read_report(body: &[u8]) -> Result<SyncReport, String> {
    serde_json::from_slice(body).map_err(|e| format!("not a {} answer: {e}", syncz::PATH))
}

/// hyper's "client error (Connect)" says little; the causes say "Connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The control plane's pods and their metrics port, from the EndpointSlices of Service `meshd`.
async fn replicas(client: &kube::Client) -> anyhow::Result<Vec<(String, u16)>> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), names::SYSTEM_NAMESPACE);
    let selector = format!(
        "kubernetes.io/service-name={}",
        names::CONTROL_PLANE_SERVICE
    );
    let list = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            anyhow::anyhow!(kube_client::explain(
                &e,
                &format!(
                    "listing the EndpointSlices of Service {} in {}",
                    names::CONTROL_PLANE_SERVICE,
                    names::SYSTEM_NAMESPACE
                ),
                "list endpointslices.discovery.k8s.io in meshd-system",
            ))
        })?;
    let mut pods: Vec<(String, u16)> = Vec::new();
    for slice in &list.items {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(METRICS_PORT_NAME))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(names::PORT_METRICS);
        for endpoint in &slice.endpoints {
            if let Some(target) = endpoint
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| t.name.clone())
                && !pods.iter().any(|(p, _)| *p == target)
            {
                pods.push((target, port));
            }
        }
    }
    pods.sort();
    if pods.is_empty() {
        anyhow::bail!(
            "Service {} in {} has no endpoints: is the controller running? (kubectl -n {} get pods)",
            names::CONTROL_PLANE_SERVICE,
            names::SYSTEM_NAMESPACE,
            names::SYSTEM_NAMESPACE
        );
    }
    Ok(pods)
}

async fn get_through_api_server(
    client: &kube::Client,
    pod: &str,
    port: u16,
) -> Result<SyncReport, String> {
    let path = format!(
        "/api/v1/namespaces/{}/pods/{pod}:{port}/proxy{}",
        names::SYSTEM_NAMESPACE,
        syncz::PATH
    );
    let what = format!("GET pods/{pod}:{port}/proxy{}", syncz::PATH);
    let request = hyper::Request::get(&path)
        .body(Vec::new())
        .map_err(|e| format!("{what}: {e}"))?;
    let text = client.request_text(request).await.map_err(|e| match &e {
        // The pod proxy passes the replica's own 404 through (an empty or plain-text body).
        kube::Error::Api(status) if status.code == 404 => format!(
            "{what}: 404 ({}): the pod is gone, or its control plane does not serve {}",
            if status.message.is_empty() {
                "no message"
            } else {
                status.message.as_str()
            },
            syncz::PATH
        ),
        _ => kube_client::explain(&e, &what, "get pods/proxy in meshd-system"),
    })?;
    read_report(text.as_bytes()).map_err(|e| format!("{what}: {e}"))
}
