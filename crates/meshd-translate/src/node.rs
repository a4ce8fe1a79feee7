//! A proxy's identity.

use std::fmt;

use crate::TranslateError;

/// A proxy's identity on the ADS stream: `<pod>.<namespace>`. Pod names may hold dots, namespaces may
/// not, so the namespace is what follows the last dot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    pub pod: String,
    pub namespace: String,
}

impl NodeId {
    pub fn parse(id: &str) -> Result<Self, TranslateError> {
        match id.rsplit_once('.') {
            Some((pod, namespace)) if !pod.is_empty() && !namespace.is_empty() => Ok(Self {
                pod: pod.to_string(),
                namespace: namespace.to_string(),
            }),
            _ => Err(TranslateError::BadNodeId(id.to_string())),
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.pod, self.namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_splits_at_the_last_dot() {
        let id = NodeId::parse("web-0.v2.shop").unwrap();
        assert_eq!(
            (id.pod.as_str(), id.namespace.as_str()),
            ("web-0.v2", "shop")
        );
        assert_eq!(id.to_string(), "web-0.v2.shop");
        for bad in ["", "web", "web.", ".shop"] {
            assert!(NodeId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
