//! In-cluster: the pod's projected ServiceAccount token (audience `meshd`) checked by the API server with
//! a TokenReview (RBAC: `tokenreviews` create). The identity is the reviewed user name,
//! `system:serviceaccount:<ns>:<sa>`.

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;

use super::{AuthError, Authenticator, ServiceAccount};

/// Authenticates tokens with the API server's TokenReview.
#[derive(Clone)]
pub struct TokenReviewer {
    client: kube::Client,
    audience: String,
}

impl std::fmt::Debug for TokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewer")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenReviewer {
    /// Reviews tokens for `audience` (meshd's is [`meshd_api::names::TOKEN_AUDIENCE`]).
    pub fn new(client: kube::Client, audience: &str) -> Self {
        Self {
            client,
            audience: audience.to_string(),
        }
    }

    async fn review(&self, token: &str) -> Result<ServiceAccount, AuthError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: Some(vec![self.audience.clone()]),
            },
            ..TokenReview::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| AuthError::Unavailable(format!("TokenReview failed: {e}")))?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            let why = status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the API server did not authenticate it".to_string());
            return Err(AuthError::Invalid(why));
        }
        // An API server that reports audiences must report ours; one that reports none checked the
        // audiences we asked for.
        let audiences = status.audiences.unwrap_or_default();
        if !audiences.is_empty() && !audiences.contains(&self.audience) {
            return Err(AuthError::Invalid(format!(
                "its audiences {audiences:?} do not include {:?}",
                self.audience
            )));
        }
        let user = status.user.and_then(|u| u.username).unwrap_or_default();
        service_account(&user).ok_or_else(|| {
            AuthError::Invalid(format!("it belongs to {user:?}, not to a service account"))
        })
    }
}

/// `system:serviceaccount:<ns>:<sa>` → the account.
fn service_account(user: &str) -> Option<ServiceAccount> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| ServiceAccount {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

impl Authenticator for TokenReviewer {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<ServiceAccount, AuthError>> {
        Box::pin(self.review(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_account_users_are_identities() {
        assert_eq!(
            service_account("system:serviceaccount:shop:web"),
            Some(ServiceAccount {
                namespace: "shop".into(),
                name: "web".into()
            })
        );
        for user in [
            "admin",
            "system:serviceaccount:shop",
            "system:serviceaccount::web",
            "system:serviceaccount:shop:",
            "system:node:worker-1",
        ] {
            assert_eq!(service_account(user), None, "{user}");
        }
    }
}
