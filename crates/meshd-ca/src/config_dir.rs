//! The file-fed control plane's credentials and Mesh settings, read from the same `--config-dir` as the
//! file source (SPEC §9): Secrets of type `kubernetes.io/service-account-token` (annotation
//! `kubernetes.io/service-account.name`, key `token` in `data` or `stringData`, namespace from metadata)
//! and the Mesh (trust domain, certificate TTL). Read on demand and at most once a second; a file whose
//! size, mtime and inode are unchanged is not read again, so an idle control plane costs nothing here.
//! A file that does not parse keeps its last good content, as in the file source. Tokens are kept only
//! as SHA-256 digests and compared in constant time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use meshd_api::MeshSpec;
use subtle::ConstantTimeEq;

use crate::auth::{AuthError, Authenticator, ServiceAccount};
use crate::service::{IssuancePolicy, PolicySource};

const SA_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// How stale the view may be: a new token Secret is accepted within this long.
const RECHECK: Duration = Duration::from_secs(1);

/// What identifies a file's content without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

#[derive(Clone)]
struct Token {
    digest: [u8; 32],
    account: ServiceAccount,
}

#[derive(Default)]
struct FileFacts {
    stamp: Option<Stamp>,
    tokens: Vec<Token>,
    mesh: Option<MeshSpec>,
}

#[derive(Default)]
struct Facts {
    tokens: Vec<Token>,
    mesh: MeshSpec,
}

#[derive(Default)]
struct State {
    checked: Option<Instant>,
    files: BTreeMap<PathBuf, FileFacts>,
    facts: Arc<Facts>,
}

/// Token Secrets and the Mesh of a config directory; an [`Authenticator`] and a [`PolicySource`].
pub struct ConfigDir {
    dir: PathBuf,
    mesh_name: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for ConfigDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigDir")
            .field("dir", &self.dir)
            .field("mesh", &self.mesh_name)
            .finish_non_exhaustive()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    }
}

fn list(dir: &Path, out: &mut Vec<(PathBuf, Stamp)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            list(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push((path, stamp(&meta)));
        }
    }
}

/// The tokens and the named Mesh in one file's documents.
fn parse(text: &str, mesh_name: &str) -> Result<(Vec<Token>, Option<MeshSpec>), String> {
    use serde::Deserialize;
    let mut tokens = Vec::new();
    let mut mesh = None;
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|e| format!("document {}: {e}", i + 1))?;
        let kind = value.get("kind").and_then(|k| k.as_str());
        match kind {
            Some("Secret") => {
                let secret: Secret = serde_yaml::from_value(value)
                    .map_err(|e| format!("document {}: not a Secret: {e}", i + 1))?;
                if secret.type_.as_deref() != Some(SA_TOKEN_TYPE) {
                    continue;
                }
                let name = secret.metadata.name.clone().unwrap_or_default();
                let account = secret
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(SA_NAME_ANNOTATION))
                    .filter(|sa| !sa.is_empty())
                    .ok_or_else(|| {
                        format!("Secret {name:?} has no annotation {SA_NAME_ANNOTATION}")
                    })?;
                let token: Vec<u8> = match (&secret.string_data, &secret.data) {
                    (Some(s), _) if s.contains_key("token") => s["token"].as_bytes().to_vec(),
                    (_, Some(d)) if d.contains_key("token") => d["token"].0.clone(),
                    _ => return Err(format!("Secret {name:?} has no key token")),
                };
                if token.is_empty() {
                    return Err(format!("Secret {name:?} has an empty token"));
                }
                tokens.push(Token {
                    digest: digest(&token),
                    account: ServiceAccount {
                        namespace: secret
                            .metadata
                            .namespace
                            .clone()
                            .unwrap_or_else(|| "default".to_string()),
                        name: account.clone(),
                    },
                });
            }
            Some("Mesh") => {
                let named = value
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(|n| n.as_str());
                if named == Some(mesh_name) && mesh.is_none() {
                    let spec = value.get("spec").cloned().unwrap_or_default();
                    let spec: MeshSpec = if spec.is_null() {
                        MeshSpec::default()
                    } else {
                        serde_yaml::from_value(spec)
                            .map_err(|e| format!("Mesh {mesh_name:?}: {e}"))?
                    };
                    let errors = meshd_api::settings::validate(&spec);
                    if let Some(e) = errors.first() {
                        return Err(format!("Mesh {mesh_name:?}: {e}"));
                    }
                    mesh = Some(spec);
                }
            }
            _ => {}
        }
    }
    Ok((tokens, mesh))
}

impl ConfigDir {
    /// Reads `dir` (recursively: `*.yaml`, `*.yml`, `*.json`), taking the Mesh named `mesh_name`.
    pub fn new(dir: impl Into<PathBuf>, mesh_name: &str) -> Self {
        Self {
            dir: dir.into(),
            mesh_name: mesh_name.to_string(),
            state: Mutex::new(State::default()),
        }
    }

    /// The current view, re-checked when older than [`RECHECK`].
    fn facts(&self) -> Arc<Facts> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return Arc::clone(&state.facts);
        }
        state.checked = Some(Instant::now());
        let mut found = Vec::new();
        list(&self.dir, &mut found);
        let mut changed = found.len() != state.files.len();
        let mut files = std::mem::take(&mut state.files);
        let mut next = BTreeMap::new();
        for (path, new_stamp) in found {
            let mut entry = files.remove(&path).unwrap_or_default();
            if entry.stamp != Some(new_stamp) {
                changed = true;
                entry.stamp = Some(new_stamp);
                self.reload(&path, &mut entry);
            }
            next.insert(path, entry);
        }
        changed |= !files.is_empty();
        state.files = next;
        if changed {
            let mut facts = Facts::default();
            let mut mesh = None;
            for file in state.files.values() {
                facts.tokens.extend(file.tokens.iter().cloned());
                mesh = mesh.or(file.mesh.as_ref());
            }
            facts.mesh = mesh.cloned().unwrap_or_default();
            tracing::debug!(tokens = facts.tokens.len(), "token Secrets reloaded");
            state.facts = Arc::new(facts);
        }
        Arc::clone(&state.facts)
    }

    fn reload(&self, path: &Path, entry: &mut FileFacts) {
        let shown = path.display();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "cannot read; keeping its last good tokens");
                return;
            }
        };
        match parse(&text, &self.mesh_name) {
            Ok((tokens, mesh)) => {
                if !tokens.is_empty() {
                    tracing::info!(path = %shown, tokens = tokens.len(), "service account tokens loaded");
                }
                entry.tokens = tokens;
                entry.mesh = mesh;
            }
            Err(e) => {
                tracing::warn!(path = %shown, error = %e, "config file refused by the CA; keeping its last good content")
            }
        }
    }
}

impl Authenticator for ConfigDir {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<ServiceAccount, AuthError>> {
        let facts = self.facts();
        let presented = digest(token.as_bytes());
        // Every entry is compared, so the time taken does not depend on which one matches.
        let mut matched: Vec<&ServiceAccount> = Vec::new();
        for t in &facts.tokens {
            if bool::from(t.digest.ct_eq(&presented)) {
                matched.push(&t.account);
            }
        }
        matched.sort();
        matched.dedup();
        let result = match matched.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(AuthError::Invalid(
                "it matches no service-account-token Secret in the config directory".into(),
            )),
            many => Err(AuthError::Invalid(format!(
                "it is the token of {} service accounts; refusing to choose",
                many.len()
            ))),
        };
        Box::pin(std::future::ready(result))
    }
}

impl PolicySource for ConfigDir {
    fn policy(&self) -> IssuancePolicy {
        IssuancePolicy::from_mesh(&self.facts().mesh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: web-token\n  namespace: shop\n  annotations: {kubernetes.io/service-account.name: web}\ntype: kubernetes.io/service-account-token\nstringData: {token: s3cret-web}\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db-token\n  namespace: shop\n  annotations: {kubernetes.io/service-account.name: db}\ntype: kubernetes.io/service-account-token\ndata: {token: czNjcmV0LWRi}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: shop}\ntype: Opaque\nstringData: {token: s3cret-opaque}\n";

    fn auth(dir: &ConfigDir, token: &str) -> Result<ServiceAccount, AuthError> {
        futures::executor::block_on(dir.authenticate(token))
    }

    fn account(ns: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn token_secrets_name_their_service_account() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("tokens.yaml"), SECRETS).unwrap();
        let dir = ConfigDir::new(tmp.path(), "default");
        assert_eq!(auth(&dir, "s3cret-web"), Ok(account("shop", "web")));
        assert_eq!(auth(&dir, "s3cret-db"), Ok(account("shop", "db")));
        // Only service-account-token Secrets count, and a near miss is no match.
        for wrong in ["s3cret-opaque", "s3cret-we", "s3cret-web ", ""] {
            let err = auth(&dir, wrong).unwrap_err();
            assert!(matches!(err, AuthError::Invalid(_)), "{wrong:?}: {err}");
            assert!(!err.to_string().contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn a_new_secret_is_picked_up_and_a_broken_file_keeps_its_last_good_content() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("tokens.yaml");
        std::fs::write(&file, SECRETS).unwrap();
        let dir = ConfigDir::new(tmp.path(), "default");
        assert!(auth(&dir, "s3cret-web").is_ok());
        std::fs::write(&file, "kind: Secret\n  bad: [yaml").unwrap();
        std::fs::write(
            tmp.path().join("more.yml"),
            SECRETS
                .replace("s3cret-web", "fresh")
                .replace("web-token", "x"),
        )
        .unwrap();
        dir.state.lock().unwrap().checked = None;
        assert!(auth(&dir, "s3cret-web").is_ok(), "last good content kept");
        assert_eq!(auth(&dir, "fresh"), Ok(account("shop", "web")));
        std::fs::remove_file(&file).unwrap();
        std::fs::remove_file(tmp.path().join("more.yml")).unwrap();
        dir.state.lock().unwrap().checked = None;
        assert!(
            auth(&dir, "fresh").is_err(),
            "removed files take their tokens along"
        );
    }

    #[test]
    fn one_token_for_two_accounts_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("a.yaml"),
            SECRETS.replace(
                "data: {token: czNjcmV0LWRi}",
                "stringData: {token: s3cret-web}",
            ),
        )
        .unwrap();
        let dir = ConfigDir::new(tmp.path(), "default");
        let err = auth(&dir, "s3cret-web").unwrap_err().to_string();
        assert!(err.contains("2 service accounts"), "{err}");
    }

    #[test]
    fn the_mesh_sets_trust_domain_and_ttl() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ConfigDir::new(tmp.path(), "blue");
        assert_eq!(dir.policy().trust_domain, "cluster.local");
        assert_eq!(dir.policy().ttl, Duration::from_secs(86_400));
        std::fs::write(
            tmp.path().join("mesh.yaml"),
            "apiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: default}\nspec: {trustDomain: wrong.example}\n---\napiVersion: meshd.io/v1alpha1\nkind: Mesh\nmetadata: {name: blue}\nspec:\n  trustDomain: blue.example\n  mtls: {certificateTTL: 60s}\n",
        )
        .unwrap();
        dir.state.lock().unwrap().checked = None;
        let policy = dir.policy();
        assert_eq!(policy.trust_domain, "blue.example");
        assert_eq!(policy.ttl, Duration::from_secs(60));
    }
}
