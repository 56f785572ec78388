//! The command line: `tioga -c FILE [-t | -d | -u]`, as the contract defines it.

use clap::Parser;
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
    /// Run as a daemon (detach; pid file from server.pid_file).
    #[arg(short = 'd', long = "daemon")]
    pub(crate) daemon: bool,
    /// Start as the new process of a zero-downtime upgrade.
    #[arg(short = 'u', long = "upgrade")]
    pub(crate) upgrade: bool,
}
