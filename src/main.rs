//! The `tioga` binary: the library's command line, nothing more.

fn main() -> std::process::ExitCode {
    tioga::Tioga::new().run_from_args()
}
