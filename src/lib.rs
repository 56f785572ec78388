//! # Tioga
//!
//! A production edge load balancer built on Cloudflare's Pingora: one binary, one YAML
//! file, L4 and L7 listeners on the same health-checked backend pools.
//!
//! The crate is both the `tioga` binary and a library: [`Tioga`] runs the same command
//! line as the binary, so a Rust program can embed it.
//!
//! Its modules are layered, and imports only point down (a test in `tests/layering.rs`
//! keeps it so):
//!
//! | layer | modules | owns |
//! |---|---|---|
//! | 0 | `vocab` | the words every layer shares (balance modes, hash keys, probes, log formats) |
//! | 1 | `routing`, `upstream` | the route table and its matchers; pools, selection, health |
//! | 2 | [`filter`], `observability` | the filter API and built-ins; metrics, access log, status |
//! | 3 | `config`, `proxy` | the YAML file and its validation; the HTTP, TCP and UDP listeners |
//! | 4 | `server` | bootstrap, services, upgrade hand-over, signals |
//! | 5 | `cli`, this file | the command line and [`Tioga`] |

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod cli;
mod config;
pub mod filter;
mod observability;
mod proxy;
mod routing;
mod server;
mod upstream;
mod vocab;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use config::{ConfigError, Problem};

use clap::Parser;
use std::process::ExitCode;

/// A Tioga program: the built-in filters plus any a Rust program registers, run with
/// the same command line as the `tioga` binary.
///
/// ```no_run
/// use tioga::prelude::*;
///
/// struct Hello;
///
/// #[async_trait]
/// impl Filter for Hello {
///     async fn request(&self, _req: &mut RequestHeader, _ctx: &mut Context<'_>) -> Result<Decision> {
///         Ok(Decision::Respond(Response::new(200).body("hello\n")))
///     }
/// }
///
/// fn main() -> std::process::ExitCode {
///     // In YAML: `filters: [{hello: {}}]`
///     Tioga::builder()
///         .filter("hello", |_: serde_yaml::Value| Ok::<_, String>(Hello))
///         .run_from_args()
/// }
/// ```
#[derive(Debug, Default)]
pub struct Tioga {
    filters: filter::Registry,
}

impl Tioga {
    /// A Tioga program with the built-in filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Same as [`Tioga::new`]; reads well before a chain of [`Tioga::filter`] calls.
    pub fn builder() -> Self {
        Self::default()
    }

    /// Registers a filter under `name`, usable in YAML as `- NAME: SETTINGS` exactly like
    /// the built-in ones. `build` receives the settings deserialized into `S`; see
    /// [`filter::Registry::register`].
    pub fn filter<S, F, E, C>(mut self, name: &str, build: C) -> Self
    where
        S: serde::de::DeserializeOwned,
        F: filter::Filter,
        E: std::fmt::Display,
        C: Fn(S) -> Result<F, E> + Send + Sync + 'static,
    {
        self.filters.register(name, build);
        self
    }

    /// Checks the config `file` as `tioga -c FILE -t` does (its `tests` included),
    /// returning every problem.
    pub fn check(&self, file: &std::path::Path) -> Result<(), ConfigError> {
        self.load(file).map(drop)
    }

    /// Loads and validates `file`, then runs its `tests`; with the file's text.
    fn load(&self, file: &std::path::Path) -> Result<(String, config::Config), ConfigError> {
        let (text, config) = config::Config::read(file, &self.filters)?;
        server::config_tests::run(&config)?;
        Ok((text, config))
    }

    /// The filters this program knows.
    pub fn filters(&self) -> &filter::Registry {
        &self.filters
    }

    /// Parses the process's arguments (`-c FILE [-t|-d|-u]`) and runs. Returns only on
    /// a configuration check or a start-up failure.
    pub fn run_from_args(self) -> ExitCode {
        let args = cli::Args::parse();
        observability::process_log::init();
        if let Some(cli::Command::Explain(explain)) = args.command {
            // Without running the config's tests: explain is how a failing one is read.
            return match config::Config::load(&args.conf, &self.filters) {
                Ok(config) => cli::explain::run(&config, explain),
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            };
        }
        // Tests run before anything starts: with -u, before the sockets are asked for.
        let (text, config) = match self.load(&args.conf) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                if args.test {
                    eprintln!(
                        "{}: configuration has {} problem(s)",
                        args.conf.display(),
                        e.problems().len().max(1)
                    );
                }
                return ExitCode::from(1);
            }
        };
        if args.test {
            println!("{}: configuration is valid", args.conf.display());
            if let Some(old) = &args.diff {
                match config::diff::diff(old, &args.conf) {
                    Ok(changes) => print!("{}", config::diff::render(&changes)),
                    Err(e) => {
                        eprintln!("--diff: {e}");
                        return ExitCode::from(1);
                    }
                }
            }
            return ExitCode::SUCCESS;
        }
        let mode = server::RunMode {
            daemon: args.daemon,
            upgrade: args.upgrade,
        };
        match server::run(config, text, std::sync::Arc::new(self.filters), mode) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tioga: {e}");
                ExitCode::from(1)
            }
        }
    }
}

/// What a filter author needs, in one import.
pub mod prelude {
    pub use crate::filter::settings::{Cidr, Duration, Key, Pattern};
    pub use crate::filter::{Context, Decision, Filter, Hooks, Registry, Response, Scope};
    pub use crate::Tioga;
    pub use async_trait::async_trait;
    pub use bytes::Bytes;
    pub use pingora_error::{Error, ErrorType, Result};
    pub use pingora_http::{RequestHeader, ResponseHeader};
}
