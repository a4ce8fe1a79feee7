//! The inputs besides the pod: the resolved mesh settings and the facts of one request.

use meshd_api::{Mesh, MeshSpec, names};

/// A Mesh's resolved settings (every default applied) plus what the control plane adds.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectionSettings {
    /// The Mesh's name: the pod's `meshd.io/mesh` label and the agent's `MESHD_MESH`.
    pub mesh: String,
    pub spec: MeshSpec,
    /// xDS + CA address written into sidecars (`meshd controller --discovery-address`).
    pub discovery_address: String,
}

impl InjectionSettings {
    pub fn new(mesh: impl Into<String>, spec: MeshSpec) -> Self {
        Self {
            mesh: mesh.into(),
            spec,
            discovery_address: names::DEFAULT_DISCOVERY_ADDRESS.to_string(),
        }
    }

    pub fn from_mesh(mesh: &Mesh) -> Self {
        Self::new(meshd_api::settings::mesh_name(mesh), mesh.spec.clone())
    }

    /// From the `mesh.yaml` key of ConfigMap `meshd-mesh-<mesh>` (the resolved spec the operator writes,
    /// or a whole Mesh); `mesh` names it whatever the text says.
    pub fn from_mesh_yaml(mesh: &str, text: &str) -> Result<Self, serde_yaml::Error> {
        let parsed = meshd_api::settings::parse_mesh_yaml(text)?;
        Ok(Self::new(mesh, parsed.spec))
    }

    #[must_use]
    pub fn with_discovery_address(mut self, address: impl Into<String>) -> Self {
        self.discovery_address = address.into();
        self
    }
}

impl Default for InjectionSettings {
    fn default() -> Self {
        Self::new(names::DEFAULT_MESH, MeshSpec::default())
    }
}

/// The Kubernetes API server's version, for `nativeSidecar: auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiServerVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiServerVersion {
    /// Native sidecars (init containers with `restartPolicy: Always`) are on by default from 1.29.
    pub const NATIVE_SIDECARS: Self = Self {
        major: 1,
        minor: 29,
    };

    /// From the `/version` answer's `major` and `minor` (`"1"`, `"28+"` on some providers).
    pub fn from_parts(major: &str, minor: &str) -> Option<Self> {
        let digits = |s: &str| s.trim_end_matches('+').parse::<u32>().ok();
        Some(Self {
            major: digits(major)?,
            minor: digits(minor)?,
        })
    }

    /// From a git version such as `v1.28.7` or `v1.30.0-gke.1`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().trim_start_matches('v').split('.');
        let major = parts.next()?.parse().ok()?;
        let minor: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        Some(Self {
            major,
            minor: minor.parse().ok()?,
        })
    }
}

/// What the request says besides the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// `request.namespace` (the pod's own may be unset on CREATE).
    pub namespace: String,
    /// `request.dryRun`: the same answer, but no side effects (no Event).
    pub dry_run: bool,
    /// Unknown for the standalone webhook and `meshd inject`.
    pub server_version: Option<ApiServerVersion>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_configmap_text() {
        let s = InjectionSettings::from_mesh_yaml(
            "blue",
            "mtls: {mode: STRICT}\nproxy: {image: x/p:1}\n",
        )
        .expect("spec");
        assert_eq!(s.mesh, "blue");
        assert_eq!(s.spec.proxy.image.as_deref(), Some("x/p:1"));
        assert_eq!(s.spec.proxy.uid, 1337, "defaults applied");
        assert!(InjectionSettings::from_mesh_yaml("blue", "proxy: {uid: many}\n").is_err());
    }

    #[test]
    fn versions() {
        assert_eq!(
            ApiServerVersion::parse("v1.28.7"),
            Some(ApiServerVersion {
                major: 1,
                minor: 28
            })
        );
        assert_eq!(
            ApiServerVersion::parse("v1.30.0-gke.1"),
            Some(ApiServerVersion {
                major: 1,
                minor: 30
            })
        );
        assert_eq!(
            ApiServerVersion::from_parts("1", "29+"),
            Some(ApiServerVersion::NATIVE_SIDECARS)
        );
        assert!(ApiServerVersion::parse("latest").is_none());
        assert!(
            ApiServerVersion {
                major: 1,
                minor: 28
            } < ApiServerVersion::NATIVE_SIDECARS
        );
    }
}
