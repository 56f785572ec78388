//! The filter registry: filter names → constructors that build a filter from its YAML
//! settings. Built-in and user filters are registered the same way.

use super::{builtin, Filter};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::Arc;

type Constructor =
    Box<dyn Fn(&serde_yaml::Value) -> Result<Arc<dyn Filter>, FilterError> + Send + Sync>;

/// A problem with a filter's settings, reported like every other config problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// Path inside the filter's settings (`""` for the settings as a whole, `keys[1]`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// Filter names and how to build each.
pub struct Registry {
    constructors: BTreeMap<String, Constructor>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::with_builtins()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.constructors.keys()).finish()
    }
}

impl Registry {
    /// A registry with no filters at all.
    pub fn empty() -> Self {
        Self {
            constructors: BTreeMap::new(),
        }
    }

    /// A registry with the built-in filters.
    pub fn with_builtins() -> Self {
        let mut r = Self::empty();
        builtin::register(&mut r);
        r
    }

    /// Registers filter `name`. In YAML, `- name: SETTINGS` deserializes `SETTINGS` into
    /// `S` (serde errors are config errors with their key path) and calls `build`,
    /// whose error is reported at the filter's key. A later registration of the same
    /// name replaces the earlier one.
    pub fn register<S, F, E, C>(&mut self, name: &str, build: C)
    where
        S: DeserializeOwned,
        F: Filter,
        E: Display,
        C: Fn(S) -> Result<F, E> + Send + Sync + 'static,
    {
        let constructor = move |value: &serde_yaml::Value| -> Result<Arc<dyn Filter>, FilterError> {
            let settings: S = serde_path_to_error::deserialize(value.clone()).map_err(|e| {
                let path = e.path().to_string();
                FilterError {
                    path: if path == "." { String::new() } else { path },
                    message: e.into_inner().to_string(),
                }
            })?;
            let filter = build(settings).map_err(|e| FilterError {
                path: String::new(),
                message: e.to_string(),
            })?;
            Ok(Arc::new(filter))
        };
        self.constructors
            .insert(name.to_string(), Box::new(constructor));
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.constructors.keys().map(String::as_str)
    }

    /// Builds filter `name` from `settings`; `None` when no such filter is registered.
    pub fn build(
        &self,
        name: &str,
        settings: &serde_yaml::Value,
    ) -> Option<Result<Arc<dyn Filter>, FilterError>> {
        self.constructors.get(name).map(|c| c(settings))
    }
}
