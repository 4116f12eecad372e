//! Checks that files and directories a root process relies on cannot be
//! changed by anyone else.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

/// Programs run on root's or the daemon's behalf (the SSH-mode worker,
/// session scripts) must be root-owned files nobody else can change, in a
/// directory nobody else can change. Ok when `program` is such a file
/// (symbolic links resolved).
pub fn check_program(program: &Path) -> Result<(), String> {
    let program = program
        .canonicalize()
        .map_err(|e| format!("program {}: {e}", program.display()))?;
    let meta = std::fs::metadata(&program).map_err(|e| format!("{}: {e}", program.display()))?;
    if !meta.is_file() || meta.mode() & 0o111 == 0 {
        return Err(format!("{} is not an executable file", program.display()));
    }
    let safe = |m: &std::fs::Metadata| m.uid() == 0 && m.mode() & 0o022 == 0;
    if !safe(&meta) {
        return Err(format!(
            "{} must be owned by root and writable by nobody else",
            program.display()
        ));
    }
    if let Some(dir) = program.parent() {
        let dmeta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !safe(&dmeta) {
            return Err(format!(
                "{} (holding {}) must be owned by root and writable by nobody else",
                dir.display(),
                program.display()
            ));
        }
    }
    Ok(())
}

/// Creates the parent directory (root-owned, 0755) or checks that an
/// existing one cannot be tampered with by others.
pub fn prepare_parent(parent: &Path) -> Result<(), String> {
    match fs::symlink_metadata(parent) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| format!("cannot create directory {}: {e}", parent.display())),
        Err(e) => Err(format!("cannot inspect {}: {e}", parent.display())),
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a directory", parent.display())),
        Ok(meta) if meta.uid() != 0 => Err(format!("{} is not owned by root", parent.display())),
        // Writable by others only with the sticky bit (like /tmp).
        Ok(meta) if meta.mode() & 0o022 != 0 && meta.mode() & 0o1000 == 0 => {
            Err(format!("{} is writable by others than root", parent.display()))
        }
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn program_must_be_safe_from_others() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        let program = dir.join("x2gobroker-ssh");
        fs::write(&program, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&program, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_program(&program).is_err(), "not executable");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        // Files we make are owned by us: accepted only when we are root.
        let verdict = check_program(&program);
        if nix::unistd::geteuid().is_root() {
            assert_eq!(verdict, Ok(()));
        } else {
            assert!(verdict.unwrap_err().contains("must be owned by root"));
        }
        fs::set_permissions(&program, fs::Permissions::from_mode(0o775)).unwrap();
        assert!(check_program(&program).is_err(), "group-writable");
        fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(check_program(&program).is_err(), "directory writable by others");
        assert!(check_program(&dir.join("missing")).is_err());
    }
}
