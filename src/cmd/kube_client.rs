//! The API client of every command that talks to a cluster (`controller`, `proxy-status`,
//! `check-inject`): `--kubeconfig`, else in-cluster config or the default kubeconfig ($KUBECONFIG,
//! ~/.kube/config).

use std::path::Path;

use anyhow::Context;

pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    Ok(client_and_server(kubeconfig).await?.0)
}

/// The client and the API server's URL (for messages).
pub async fn client_and_server(
    kubeconfig: Option<&Path>,
) -> anyhow::Result<(kube::Client, String)> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no usable kubeconfig and not in a cluster (try --kubeconfig)")?,
    };
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config)
        .with_context(|| format!("cannot build a client for the API server {server}"))?;
    Ok((client, server))
}

/// A kube error as one line a person can act on; a 403 names the permission the user lacks.
pub fn explain(error: &kube::Error, what: &str, permission: &str) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "{what}: forbidden: needs {permission} (README \"RBAC for the operator commands\"): {}",
            status.message
        ),
        kube::Error::Api(status) => format!("{what}: {} ({})", status.message, status.code),
        other => format!("{what}: {other}"),
    }
}
