//! # Tioga
//!
//! A production edge load balancer built on Cloudflare's Pingora: one binary, one YAML
//! file, L4 and L7 listeners on the same health-checked backend pools.
//!
//! The crate is both the `tioga` binary and a library: [`Tioga`] runs the same command
//! line as the binary, so a Rust program can embed it.
//!
//! Dependencies point one way: [`config`] → [`routing`] / [`upstream`] / [`health`] →
//! [`proxy`] → [`server`].

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod health;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod upstream;

use clap::Parser;
use std::process::ExitCode;

/// A Tioga program: parses the command line and runs (or checks) the configuration.
#[derive(Debug, Default)]
pub struct Tioga {}

impl Tioga {
    /// A Tioga program with the built-in behaviour.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the process's arguments (`-c FILE [-t|-d|-u]`) and runs. Returns only on
    /// a configuration check or a start-up failure.
    pub fn run_from_args(self) -> ExitCode {
        let args = cli::Args::parse();
        init_logging();
        let config = match config::Config::load(&args.conf) {
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
            return ExitCode::SUCCESS;
        }
        let mode = server::RunMode {
            daemon: args.daemon,
            upgrade: args.upgrade,
        };
        match server::run(config, mode) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tioga: {e}");
                ExitCode::from(1)
            }
        }
    }
}

fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}
