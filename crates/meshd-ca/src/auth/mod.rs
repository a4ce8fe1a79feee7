//! Who may ask for a certificate: an [`Authenticator`] turns the bearer token of a request into the
//! service account it was issued for. The identity in the certificate comes from here only, never from
//! the CSR. Tokens never reach a log line or an error message.

mod review;

pub use review::TokenReviewer;

pub use crate::config_dir::ConfigDir as ConfigDirTokens;

use futures::future::BoxFuture;

/// A Kubernetes service account: the identity a credential proves.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccount {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Why a credential was not accepted. The messages name the problem, never the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token (send `authorization: Bearer <token>`)")]
    Missing,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token cannot be checked now: {0}")]
    Unavailable(String),
}

/// Checks a bearer token. Implemented by the file-fed token Secrets and by the TokenReview client; the
/// xDS server can use the same trait to authenticate streams.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<ServiceAccount, AuthError>>;
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let value = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_is_parsed_strictly() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("abc")), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(bearer_token(Some("Bearer ")), Err(AuthError::Missing));
    }
}
