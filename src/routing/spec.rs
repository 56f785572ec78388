//! The `match:` block of a route as the file writes it. Routing owns it: the config
//! deserializes a route's `match:` straight into [`MatchSpec`], and
//! [`super::Matcher::compile`] turns it into a matcher.

use crate::vocab::{scalar_map, OneOrMany};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `match:` — every given condition must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatchSpec {
    /// Host without port, case-insensitive; `*.example.com` for any subdomain.
    pub(crate) host: Option<String>,
    /// Plain string prefix of the path.
    pub(crate) path_prefix: Option<String>,
    /// Whole path equals.
    pub(crate) path: Option<String>,
    /// Regex on the path.
    pub(crate) path_regex: Option<String>,
    /// One method or a list.
    pub(crate) method: Option<OneOrMany>,
    /// Header name (case-insensitive) → exact value.
    #[serde(default, deserialize_with = "scalar_map")]
    pub(crate) headers: Option<BTreeMap<String, String>>,
    /// Query parameter → value.
    #[serde(default, deserialize_with = "scalar_map")]
    pub(crate) query: Option<BTreeMap<String, String>>,
    /// Cookie → value.
    #[serde(default, deserialize_with = "scalar_map")]
    pub(crate) cookie: Option<BTreeMap<String, String>>,
}
