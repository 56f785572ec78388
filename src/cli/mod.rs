//! The command line: `tioga -c FILE [-t [--diff OLD] | -d | -u]`, as the contract
//! defines it, and `tioga -c FILE explain METHOD URL [-H …] [--from IP] [--json]` (or
//! `explain tcp://HOST:PORT [--sni NAME] [--from IP] [--json]` for a TCP listener).

pub(crate) mod explain;

use clap::{Parser, Subcommand};
pub(crate) use explain::ExplainArgs;
use std::path::PathBuf;

/// Tioga: an L4 + L7 load balancer on Pingora.
#[derive(Debug, Parser)]
#[command(name = "tioga", version, about)]
pub(crate) struct Args {
    /// The YAML configuration file.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub(crate) conf: PathBuf,
    /// Check the configuration and exit: 0 if valid, non-zero with every problem on stderr.
    #[arg(short = 't', long = "test")]
    pub(crate) test: bool,
    /// With -t: print what changes against the config OLD, and whether a reload applies
    /// each change in place or it needs an upgrade.
    #[arg(long = "diff", value_name = "OLD", requires = "test")]
    pub(crate) diff: Option<PathBuf>,
    /// Run as a daemon (detach; pid file from server.pid_file).
    #[arg(short = 'd', long = "daemon")]
    pub(crate) daemon: bool,
    /// Start as the new process of a zero-downtime upgrade.
    #[arg(short = 'u', long = "upgrade")]
    pub(crate) upgrade: bool,
    /// What else to do instead of running.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Which route, pool, filters and (for consistent_hash) backend a request (or a
    /// connection to a TCP listener) would get, and why each route before it did not
    /// match. Exit 0 when a route matches, 3 when none does.
    Explain(ExplainArgs),
}
