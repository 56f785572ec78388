//! `tioga -c FILE explain METHOD URL [-H 'Name: value']… [--from IP] [--json]`, and
//! `tioga -c FILE explain tcp://HOST:PORT [--sni NAME] [--from IP] [--json]` for a
//! connection to a TCP listener: the config's route tables asked offline (every backend
//! counted up, as no health check has run), printed for a person or as the JSON
//! `GET /explain` also returns.

use crate::config::Config;
use crate::observability::explain::{parse_header, ExplainQuery};
use crate::server::explain::{Explainer, Explanation};
use std::fmt::Write as _;
use std::process::ExitCode;

/// Exit code when no route matches (the request would get 404).
const NO_ROUTE: u8 = 3;

/// The subcommand's arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    /// The method, like GET; or tcp://HOST:PORT for a connection to the TCP listener
    /// on PORT (HOST, when a name, is the server name sent unless --sni says otherwise).
    #[arg(value_name = "METHOD | tcp://HOST:PORT")]
    method: String,
    /// The URL, like https://api.example.com/v1/users?id=3 (its port, or else its
    /// scheme, picks the listener).
    url: Option<String>,
    /// A request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// The client address (default 127.0.0.1).
    #[arg(long = "from", value_name = "IP")]
    from: Option<String>,
    /// With tcp://: the server name of the TLS ClientHello ('' for none).
    #[arg(long = "sni", value_name = "NAME")]
    sni: Option<String>,
    /// Print one JSON object.
    #[arg(long = "json")]
    json: bool,
}

/// Runs the subcommand; exit 0 with a route, 3 without, 2 for a bad request.
pub(crate) fn run(config: &Config, args: ExplainArgs) -> ExitCode {
    let q = match query(args.method, args.url, &args.headers, args.from, args.sni) {
        Ok(q) => q,
        Err(e) => return bad(&e),
    };
    let json = args.json;
    let explainer = Explainer::offline(config);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return bad(&e.to_string()),
    };
    let got = match runtime.block_on(explainer.explain(&q)) {
        Ok(got) => got,
        Err(e) => return bad(&e),
    };
    if json {
        println!("{}", serde_json::to_string(&got).unwrap_or_default());
    } else {
        print!("{}", render(&q, &got));
    }
    // A TCP listener with one `pool` has no named route, yet serves the connection.
    if got.route.is_some() || got.pool.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NO_ROUTE)
    }
}

/// The query the arguments ask: `METHOD URL …` or `tcp://HOST:PORT …`.
fn query(
    method: String,
    url: Option<String>,
    headers: &[String],
    from: Option<String>,
    sni: Option<String>,
) -> Result<ExplainQuery, String> {
    let tcp = url.is_none() && method.to_ascii_lowercase().starts_with("tcp://");
    let (method, url) = match url {
        Some(url) => (method, url),
        None if tcp => (String::new(), method),
        None => return Err(format!("missing the URL: write `{method} URL`")),
    };
    if tcp && !headers.is_empty() {
        return Err("-H applies to HTTP requests, not to tcp:// connections".into());
    }
    if !tcp && sni.is_some() {
        return Err("--sni applies to tcp://HOST:PORT connections".into());
    }
    Ok(ExplainQuery {
        method,
        url,
        headers: headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<_, _>>()?,
        from,
        sni,
    })
}

fn bad(message: &str) -> ExitCode {
    eprintln!("tioga explain: {message}");
    ExitCode::from(2)
}

/// The explanation for a person.
fn render(q: &ExplainQuery, got: &Explanation) -> String {
    let tcp = q.method.is_empty();
    let asked = if tcp {
        match q.sni.as_deref() {
            Some("") => format!("{} without a server name", q.url),
            Some(name) => format!("{} with server name {name}", q.url),
            None => q.url.clone(),
        }
    } else {
        format!("{} {}", q.method.to_ascii_uppercase(), q.url)
    };
    let mut out = format!(
        "{asked} from {} on listener {}\n",
        q.from.as_deref().unwrap_or("127.0.0.1"),
        got.listener
    );
    for r in &got.routes {
        let verdict = match r.failed {
            None => "matched".to_string(),
            Some(condition) => format!("no match: {condition}"),
        };
        let _ = writeln!(out, "  {:<16} {verdict}", r.route);
    }
    match &got.route {
        None if got.pool.is_some() => {
            let _ = write!(out, "pool {}", got.pool.as_deref().unwrap_or_default());
            tail(&mut out, got, tcp);
        }
        None => {
            let status = got.status.map_or("-".into(), |s| s.to_string());
            if tcp {
                let _ = writeln!(out, "no route: closed ({status} in the access log)");
            } else {
                let _ = writeln!(out, "no route: {status}");
            }
        }
        Some(route) => {
            let _ = write!(out, "route {route}");
            if let Some(pool) = &got.pool {
                let _ = write!(out, ", pool {pool}");
            }
            tail(&mut out, got, tcp);
        }
    }
    out
}

/// `, filters …, backend …, answered …` and the line's end.
fn tail(out: &mut String, got: &Explanation, tcp: bool) {
    if !got.filters.is_empty() {
        let _ = write!(out, ", filters {}", got.filters.join(", "));
    }
    if let Some(backend) = &got.backend {
        let _ = write!(out, ", backend {backend}");
    }
    match got.status {
        Some(status) if tcp => {
            let _ = write!(
                out,
                ", closed without a backend ({status} in the access log)"
            );
        }
        Some(status) => {
            let _ = write!(out, ", answered {status} without a backend");
        }
        None => {}
    }
    out.push('\n');
}
