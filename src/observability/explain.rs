//! `GET /explain?method=GET&url=…&header=Name:value&from=IP` (or, for a TCP listener,
//! `url=tcp://HOST:PORT&sni=NAME&from=IP`) on the admin endpoint:
//! the query's parsing, and the one-method trait through which the admin endpoint asks
//! the server's route tables (which live in a higher layer) for an explanation.

use async_trait::async_trait;

/// A request to explain, as `tioga explain` and `GET /explain` take it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExplainQuery {
    /// `GET`, `POST`…
    pub(crate) method: String,
    /// `https://api.example.com/v1/users?id=3`, or a path alone; `tcp://HOST:PORT` for
    /// a connection to a TCP listener (the method is then unused).
    pub(crate) url: String,
    /// Extra request headers, in order.
    pub(crate) headers: Vec<(String, String)>,
    /// The client address (default 127.0.0.1).
    pub(crate) from: Option<String>,
    /// For `tcp://`: the server name of the ClientHello, empty for none; without it,
    /// the URL's host when that is a name (as a TLS client would send it).
    pub(crate) sni: Option<String>,
}

impl ExplainQuery {
    /// From a URL query string; `method` defaults to GET, `url` is required, `header`
    /// may repeat (`Name:value`).
    pub(crate) fn from_query(query: &str) -> Result<Self, String> {
        let mut q = ExplainQuery {
            method: "GET".into(),
            ..Default::default()
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "method" => q.method = value.into_owned(),
                "url" => q.url = value.into_owned(),
                "from" => q.from = Some(value.into_owned()),
                "sni" => q.sni = Some(value.into_owned()),
                "header" => q.headers.push(parse_header(&value)?),
                _ => {
                    return Err(format!(
                        "unknown parameter `{key}` (known: method, url, header, from, sni)"
                    ))
                }
            }
        }
        if q.url.is_empty() {
            return Err("missing `url`".into());
        }
        Ok(q)
    }
}

/// `Name: value` → (name, value).
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("`{text}` is not a header: write it `Name: value`")),
    }
}

/// Something that explains requests: the server's route tables.
#[async_trait]
pub(crate) trait Explain: Send + Sync {
    /// The JSON of `tioga explain --json` for `q`, or why it cannot be made.
    async fn explain(&self, q: ExplainQuery) -> Result<serde_json::Value, String>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_with_repeated_headers() {
        let q = ExplainQuery::from_query(
            "method=post&url=https%3A%2F%2Fa.example%2Fv1%3Fx%3D1&header=x-a%3A%201&header=Cookie:b=2&from=10.0.0.7",
        )
        .unwrap();
        assert_eq!(q.method, "post");
        assert_eq!(q.url, "https://a.example/v1?x=1");
        assert_eq!(
            q.headers,
            [("x-a".into(), "1".into()), ("Cookie".into(), "b=2".into())]
        );
        assert_eq!(q.from.as_deref(), Some("10.0.0.7"));
        assert_eq!(ExplainQuery::from_query("url=/").unwrap().method, "GET");
        assert!(ExplainQuery::from_query("method=GET").is_err());
        assert!(ExplainQuery::from_query("url=/&header=nocolon").is_err());
        assert!(ExplainQuery::from_query("url=/&verbose=1").is_err());
        let q = ExplainQuery::from_query("url=tcp%3A%2F%2F127.0.0.1%3A443&sni=a.example").unwrap();
        assert_eq!(
            (q.url.as_str(), q.sni.as_deref()),
            ("tcp://127.0.0.1:443", Some("a.example"))
        );
        assert_eq!(
            ExplainQuery::from_query("url=tcp://h:1&sni=")
                .unwrap()
                .sni
                .as_deref(),
            Some("")
        );
    }
}
