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

/// Parses the command line as `T::parse()` does, with a hidden
/// `--generate-man DIR` added: given that, writes `NAME.SECTION` from `T`'s
/// definition and exits (as `--help` does), so a program's `main` needs no
/// field and no branch for it.
pub fn parse_or_generate_man<T: clap::Parser>(name: &str, section: &str) -> T {
    let arg = clap::Arg::new(GENERATE_MAN)
        .long(GENERATE_MAN)
        .value_name("DIR")
        .value_parser(clap::value_parser!(std::path::PathBuf))
        .hide(true);
    parse_from_or_generate_man(T::command().arg(arg), std::env::args_os(), name, section)
        .unwrap_or_else(|code| std::process::exit(code))
}

const GENERATE_MAN: &str = "generate-man";

/// [`parse_or_generate_man`] without the exit: Err(exit status) once the
/// page is written (or could not be).
fn parse_from_or_generate_man<T: clap::Parser>(
    cmd: clap::Command,
    args: impl IntoIterator<Item = std::ffi::OsString>,
    name: &str,
    section: &str,
) -> Result<T, i32> {
    let mut matches = cmd.get_matches_from(args);
    if let Some(dir) = matches.remove_one::<std::path::PathBuf>(GENERATE_MAN) {
        return match write_man_page(T::command(), name, section, &dir) {
            Ok(()) => Err(0),
            Err(e) => {
                eprintln!("{name}: {e}");
                Err(1)
            }
        };
    }
    T::from_arg_matches_mut(&mut matches).map_err(|e| e.exit())
}

/// The two hidden flags of the installer's contract, for a program's clap
/// definition (`#[command(flatten)]`), so each program declares them once.
#[derive(clap::Args, Debug, Default)]
pub struct DocsArgs {
    /// Write the manual page into DIR and exit
    #[arg(long = "generate-man", value_name = "DIR", hide = true)]
    pub generate_man: Option<std::path::PathBuf>,
    /// Write bash, zsh and fish completions into DIR and exit
    #[arg(long = "generate-completions", value_name = "DIR", hide = true)]
    pub generate_completions: Option<std::path::PathBuf>,
}

impl DocsArgs {
    /// Writes what was asked for from `C`'s definition: Some(exit code)
    /// when a flag was given.
    pub fn handle<C: clap::CommandFactory>(
        &self,
        name: &str,
        section: &str,
    ) -> Option<std::process::ExitCode> {
        handle(
            C::command,
            name,
            section,
            self.generate_man.as_deref(),
            self.generate_completions.as_deref(),
        )
    }
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

    #[derive(Parser, Debug)]
    struct Plain {
        /// Detach from the terminal
        #[arg(long)]
        daemonize: bool,
    }

    fn parse(args: &[&str], dir: &Path) -> Result<Plain, i32> {
        let arg = clap::Arg::new(GENERATE_MAN)
            .long(GENERATE_MAN)
            .value_parser(clap::value_parser!(std::path::PathBuf));
        let args = std::iter::once("prog")
            .chain(args.iter().copied())
            .map(|a| a.replace("DIR", dir.to_str().unwrap()).into());
        parse_from_or_generate_man(Plain::command().arg(arg), args, "x2gobroker-authhelper", "8")
    }

    #[test]
    fn generate_man_is_added_to_a_parser_without_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(parse(&["--daemonize"], dir.path()).unwrap().daemonize);
        assert!(!parse(&[], dir.path()).unwrap().daemonize);
        assert_eq!(parse(&["--generate-man", "DIR/out"], dir.path()).unwrap_err(), 0);
        let page = std::fs::read_to_string(dir.path().join("out/x2gobroker-authhelper.8")).unwrap();
        assert!(page.contains(".TH x2gobroker-authhelper 8"), "{page}");
        assert!(
            page.contains("daemonize") && !page.contains("generate\\-man"),
            "{page}"
        );
        assert_eq!(
            parse(&["--generate-man", "/proc/version/x"], dir.path()).unwrap_err(),
            1
        );
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
