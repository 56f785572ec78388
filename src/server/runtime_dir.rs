//! The directories of the pid file and the upgrade socket. By default both live in a
//! directory only Tioga's user may enter (`config::default_runtime_dir`), created
//! with mode 0700 when missing and refused when someone else could have prepared it;
//! a directory the operator chose is created when missing and only warned about.

use crate::config::{default_runtime_dir, ServerSettings};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Makes sure the directories of `server.pid_file` and `server.upgrade_sock` exist,
/// and that the default one is private.
pub(super) fn prepare(server: &ServerSettings) -> Result<(), String> {
    let private = default_runtime_dir();
    for (key, file) in [
        ("server.pid_file", &server.pid_file),
        ("server.upgrade_sock", &server.upgrade_sock),
    ] {
        let Some(dir) = Path::new(file)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        else {
            continue;
        };
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("{key}: cannot create {}: {e}", dir.display()))?;
        }
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("{key}: cannot read {}: {e}", dir.display()))?;
        if dir == private {
            check_private(dir, &meta, rustix::process::geteuid().as_raw())
                .map_err(|why| format!("{key}: {why}"))?;
        } else if meta.mode() & 0o022 != 0 {
            log::warn!(
                "{key}: {} is writable by other users; the hand-over only accepts a peer of \
                 Tioga's own uid, but a private directory (mode 0700) is safer",
                dir.display()
            );
        }
    }
    Ok(())
}

/// The default directory must be a real directory of `uid`, closed to everyone else.
fn check_private(dir: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<(), String> {
    if !meta.file_type().is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(format!(
            "{} must be a directory owned by uid {uid} with mode 0700 (it is {}owned by uid {} \
             with mode {:o}); remove it or fix its owner and mode",
            dir.display(),
            if meta.file_type().is_symlink() {
                "a symbolic link "
            } else {
                ""
            },
            meta.uid(),
            meta.mode() & 0o7777,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_passes_and_an_open_one_does_not() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let meta = std::fs::symlink_metadata(tmp.path()).unwrap();
        assert_eq!(check_private(tmp.path(), &meta, uid), Ok(()));
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let meta = std::fs::symlink_metadata(tmp.path()).unwrap();
        let err = check_private(tmp.path(), &meta, uid).unwrap_err();
        assert!(err.contains("mode 755"), "{err}");
        let meta = std::fs::symlink_metadata(tmp.path()).unwrap();
        let err = check_private(tmp.path(), &meta, uid + 1).unwrap_err();
        assert!(err.contains(&format!("owned by uid {uid} ")), "{err}");
    }

    #[test]
    fn a_symbolic_link_is_not_private() {
        let tmp = tempfile::tempdir().unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
        let meta = std::fs::symlink_metadata(&link).unwrap();
        let uid = rustix::process::geteuid().as_raw();
        let err = check_private(&link, &meta, uid).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
    }
}
