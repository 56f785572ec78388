//! `method:` — the request method is one of the configured names.
//!
//! Configured names are uppercased when the config is loaded (`get` means `GET`) and
//! then compared case-sensitively, as HTTP methods are: a request sent with the
//! method `get` is an unknown extension method and does not match `GET`. Any valid
//! method token is accepted, so extension methods such as `PURGE` can be routed.

use http::Method;

use super::{push_term, MatchError};
use crate::vocab::OneOrMany;

/// A compiled `method:` condition: the request's method is one of these.
#[derive(Debug, Clone)]
pub(super) struct MethodMatch(Vec<Method>);

impl MethodMatch {
    /// Compiles one name or a list, pushing a problem for each bad name to `errors`.
    pub(super) fn compile(spec: &OneOrMany, errors: &mut Vec<MatchError>) -> Option<Self> {
        let before = errors.len();
        let mut methods = Vec::new();
        match spec {
            OneOrMany::One(name) => methods.extend(parse("method".to_string(), name, errors)),
            OneOrMany::Many(names) if names.is_empty() => errors.push(MatchError::new(
                "method",
                "an empty list matches no request; list at least one method or drop `method:`",
            )),
            OneOrMany::Many(names) => {
                for (i, name) in names.iter().enumerate() {
                    if let Some(method) = parse(format!("method[{i}]"), name, errors) {
                        if !methods.contains(&method) {
                            methods.push(method);
                        }
                    }
                }
            }
        }
        (errors.len() == before).then_some(MethodMatch(methods))
    }

    /// True when `method` is one of the configured methods.
    pub(super) fn matches(&self, method: &Method) -> bool {
        self.0.iter().any(|m| m == method)
    }

    /// Appends `method=GET,POST` to a description.
    pub(super) fn describe(&self, out: &mut String) {
        let names: Vec<&str> = self.0.iter().map(Method::as_str).collect();
        push_term(out, "method", &names.join(","));
    }
}

/// Uppercases and checks one configured name.
fn parse(key: String, name: &str, errors: &mut Vec<MatchError>) -> Option<Method> {
    if name.is_empty() {
        errors.push(MatchError::new(key, "empty method name"));
        return None;
    }
    let upper = name.to_ascii_uppercase();
    match Method::from_bytes(upper.as_bytes()) {
        Ok(method) => Some(method),
        Err(_) => {
            errors.push(MatchError::new(
                key,
                format!("{name:?} is not a valid HTTP method name"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{compile_errors, matcher, request};

    fn one(name: &str) -> MethodMatch {
        let mut errors = Vec::new();
        let m = MethodMatch::compile(&OneOrMany::One(name.to_string()), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        m.unwrap()
    }

    fn method(name: &str) -> Method {
        Method::from_bytes(name.as_bytes()).unwrap()
    }

    #[test]
    fn one_method_matches_only_itself() {
        let m = one("GET");
        assert!(m.matches(&Method::GET));
        assert!(!m.matches(&Method::POST));
        assert!(!m.matches(&Method::HEAD));
    }

    #[test]
    fn configured_names_are_uppercased() {
        let m = one("get");
        assert!(m.matches(&Method::GET));
        let m = one("Purge");
        assert!(m.matches(&method("PURGE")));
        assert!(!m.matches(&method("Purge")));
    }

    #[test]
    fn request_methods_compare_case_sensitively() {
        let m = one("GET");
        assert!(!m.matches(&method("get")));
        assert!(!m.matches(&method("Get")));
    }

    #[test]
    fn a_list_matches_any_of_its_methods() {
        let m = matcher("method: [GET, post, PUT]");
        assert!(m.matches(&request("GET", "/", &[])));
        assert!(m.matches(&request("POST", "/", &[])));
        assert!(m.matches(&request("PUT", "/", &[])));
        assert!(!m.matches(&request("DELETE", "/", &[])));
        assert!(!m.matches(&request("post", "/", &[])));
    }

    #[test]
    fn extension_methods_can_be_routed() {
        let m = matcher("method: PURGE");
        assert!(m.matches(&request("PURGE", "/", &[])));
        assert!(!m.matches(&request("GET", "/", &[])));
    }

    #[test]
    fn every_bad_name_is_reported_with_its_index() {
        let errors = compile_errors("method: [GET, '', 'GE T', POST, 'a/b']");
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["method[1]", "method[2]", "method[4]"]);
        assert!(errors[0].message.contains("empty"));
        assert!(errors[1].message.contains("not a valid HTTP method"));
    }

    #[test]
    fn a_single_bad_name_is_reported_as_method() {
        let errors = compile_errors("method: ''");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "method");
        assert_eq!(compile_errors("method: 'G(T'")[0].key, "method");
    }

    #[test]
    fn an_empty_list_is_an_error() {
        let errors = compile_errors("method: []");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].key, "method");
        assert!(errors[0].message.contains("empty list"));
    }

    #[test]
    fn describe_joins_names_once_each() {
        assert_eq!(
            matcher("method: [get, POST, GET]").describe(),
            "method=GET,POST"
        );
        assert_eq!(matcher("method: delete").describe(), "method=DELETE");
    }
}
