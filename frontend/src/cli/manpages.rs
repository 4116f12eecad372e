//! `--generate-man DIR` and `--generate-completions DIR`: the installer's
//! program contract (docs/OPERATIONS.md). Pages and completions are made
//! from the clap definition, so they always match the real options.

use std::path::Path;

/// Writes `NAME.SECTION` (roff) into `dir`.
pub fn write_man_page(cmd: clap::Command, name: &str, section: &str, dir: &Path) -> std::io::Result<()> {
    // clap wants a static name; this runs once before the program exits.
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    let cmd = cmd.name(name).bin_name(name);
    let page = clap_mangen::Man::new(cmd).section(section.to_owned());
    let mut out = Vec::new();
    page.render(&mut out)?;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(format!("{name}.{section}")), out)
}

/// Writes `NAME.bash`, `_NAME` (zsh) and `NAME.fish` into `dir`.
pub fn write_completions(cmd: clap::Command, name: &str, dir: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    std::fs::create_dir_all(dir)?;
    for (shell, file) in [
        (Shell::Bash, format!("{name}.bash")),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let mut cmd = cmd.clone();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, name.to_owned(), &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    Ok(())
}

/// Handles the two flags if given: Some(exit code) when one was.
pub fn handle(
    cmd: impl Fn() -> clap::Command,
    name: &str,
    section: &str,
    man_dir: Option<&Path>,
    completions_dir: Option<&Path>,
) -> Option<std::process::ExitCode> {
    if man_dir.is_none() && completions_dir.is_none() {
        return None;
    }
    let mut result = Ok(());
    if let Some(dir) = man_dir {
        result = result.and_then(|_| write_man_page(cmd(), name, section, dir));
    }
    if let Some(dir) = completions_dir {
        result = result.and_then(|_| write_completions(cmd(), name, dir));
    }
    Some(match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::from(1)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// A stand-in command line with one visible and one hidden flag.
    #[derive(Parser)]
    struct Demo {
        /// Detach from the terminal
        #[arg(long)]
        daemonize: bool,
        #[arg(long = "generate-man", hide = true)]
        generate_man: Option<std::path::PathBuf>,
    }

    #[test]
    fn writes_a_page_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let code = handle(
            Demo::command,
            "x2gobroker-daemon",
            "1",
            Some(dir.path()),
            Some(dir.path()),
        );
        assert_eq!(code, Some(std::process::ExitCode::SUCCESS));
        let page = std::fs::read_to_string(dir.path().join("x2gobroker-daemon.1")).unwrap();
        assert!(page.contains(".TH x2gobroker-daemon 1"), "{page}");
        assert!(page.contains("daemonize"));
        assert!(!page.contains("generate\\-man"), "hidden flags stay hidden");
        for f in [
            "x2gobroker-daemon.bash",
            "_x2gobroker-daemon",
            "x2gobroker-daemon.fish",
        ] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.contains("x2gobroker-daemon"), "{f}");
        }
    }
}
