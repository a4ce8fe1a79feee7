//! The controller's feed of injection settings: ConfigMap `meshd-mesh-<mesh>` (the resolved settings the
//! operator writes) into the `watch` the [`Injector`](crate::Injector) reads. A ConfigMap that does not
//! parse is logged and the last good settings stay.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use meshd_api::names;
use meshd_inject::InjectionSettings;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the controller adds to every Mesh's settings.
#[derive(Debug, Clone)]
pub struct SettingsSource {
    pub mesh: String,
    pub discovery_address: String,
}

impl SettingsSource {
    /// The settings until the first ConfigMap arrives: every default.
    pub fn defaults(&self) -> InjectionSettings {
        InjectionSettings::new(&self.mesh, meshd_api::MeshSpec::default())
            .with_discovery_address(self.discovery_address.clone())
    }

    /// Settings from the ConfigMap, or why not (names the ConfigMap, the key and the parse error).
    pub fn parse(&self, cm: &ConfigMap) -> Result<InjectionSettings, String> {
        let name = names::mesh_configmap_name(&self.mesh);
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(names::MESH_CONFIG_KEY))
            .ok_or_else(|| format!("ConfigMap {name} has no key {}", names::MESH_CONFIG_KEY))?;
        InjectionSettings::from_mesh_yaml(&self.mesh, text)
            .map(|s| s.with_discovery_address(self.discovery_address.clone()))
            .map_err(|e| {
                let detail = located_error(text).unwrap_or_else(|| e.to_string());
                format!("ConfigMap {name} key {}: {detail}", names::MESH_CONFIG_KEY)
            })
    }

    /// Watches the ConfigMap until `cancel`, sending each good version into `tx`.
    pub async fn run(
        self,
        client: kube::Client,
        tx: watch::Sender<Arc<InjectionSettings>>,
        cancel: CancellationToken,
    ) {
        let name = names::mesh_configmap_name(&self.mesh);
        tracing::info!(configmap = %name, "injection settings are the defaults until the Mesh ConfigMap is read");
        let api: Api<ConfigMap> = Api::namespaced(client, names::SYSTEM_NAMESPACE);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        loop {
            let event = tokio::select! {
                () = cancel.cancelled() => return,
                next = events.next() => match next {
                    Some(event) => event,
                    None => return,
                },
            };
            match event {
                Ok(Event::Apply(cm) | Event::InitApply(cm)) => match self.parse(&cm) {
                    Ok(settings) => {
                        let changed = tx.send_if_modified(|current| {
                            let changed = **current != settings;
                            if changed {
                                *current = Arc::new(settings);
                            }
                            changed
                        });
                        if changed {
                            tracing::info!(configmap = %name, "injection settings updated");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Mesh ConfigMap does not parse; keeping the last good injection settings")
                    }
                },
                Ok(Event::Delete(_)) => {
                    tracing::warn!(configmap = %name, "Mesh ConfigMap deleted; keeping the last injection settings")
                }
                Ok(Event::Init | Event::InitDone) => {}
                Err(e) => tracing::warn!(configmap = %name, error = %e, "watch failed; retrying"),
            }
        }
    }
}

/// `from_mesh_yaml` goes through a YAML value, which loses where the bad field is; parsing the text
/// straight into the type again gives serde_yaml's `proxy.uid: … at line L column C`.
fn located_error(text: &str) -> Option<String> {
    let whole_mesh = text
        .lines()
        .any(|l| l.starts_with("kind:") || l.starts_with("apiVersion:"));
    let error = if whole_mesh {
        serde_yaml::from_str::<meshd_api::Mesh>(text).err()
    } else {
        serde_yaml::from_str::<meshd_api::MeshSpec>(text).err()
    };
    error.map(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> SettingsSource {
        SettingsSource {
            mesh: "blue".into(),
            discovery_address: "cp.example:15012".into(),
        }
    }

    fn configmap(text: &str) -> ConfigMap {
        ConfigMap {
            data: Some([(names::MESH_CONFIG_KEY.to_string(), text.to_string())].into()),
            ..ConfigMap::default()
        }
    }

    #[test]
    fn a_good_configmap_gives_settings_with_the_discovery_address() {
        let s = source()
            .parse(&configmap("proxy: {image: x/p:1}\n"))
            .expect("parses");
        assert_eq!(s.mesh, "blue");
        assert_eq!(s.spec.proxy.image.as_deref(), Some("x/p:1"));
        assert_eq!(s.discovery_address, "cp.example:15012");
        assert_eq!(source().defaults().discovery_address, "cp.example:15012");
        assert_eq!(source().defaults().spec, meshd_api::MeshSpec::default());
    }

    #[test]
    fn a_bad_configmap_names_the_configmap_key_and_field() {
        let err = source()
            .parse(&configmap("proxy: {uid: many}\n"))
            .expect_err("bad uid");
        assert!(
            err.contains("meshd-mesh-blue") && err.contains("mesh.yaml") && err.contains("uid"),
            "{err}"
        );
        let err = source().parse(&ConfigMap::default()).expect_err("no data");
        assert!(err.contains("has no key mesh.yaml"), "{err}");
    }
}
