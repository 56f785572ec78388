//! The `tioga` binary: the library's command line, nothing more.

/// mimalloc instead of glibc's malloc: the proxy allocates and frees small buffers on
/// every request (and frees some on another thread, e.g. access-log entries), which
/// glibc serves with arena locks and chunk consolidation (`docs/performance.md`).
/// The `system-alloc` feature leaves it out, so that valgrind's DHAT sees every
/// allocation (`docs/performance.md`, idle connections).
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tioga::Tioga::new().run_from_args()
}
