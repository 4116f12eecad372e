//! `x2gobroker-ssh --generate-man DIR`: the manual page (the installer's
//! program contract, docs/OPERATIONS.md). Made from the clap definition
//! (`ssh/args.rs` over `cli/options.rs`), so it lists exactly the options
//! the program takes; what is particular to SSH mode (who may do what,
//! environment, exit status) follows in sections of its own.

use super::args::SshArgs;
use clap::CommandFactory;
use std::path::Path;

pub const FILE_NAME: &str = "x2gobroker-ssh.1";

const DESCRIPTION: &str =
    "X2Go Client logs in to the broker host over SSH and runs x2gobroker-ssh. It prints \
what the broker's HTTP /plain/ interface would answer for the logged-in user, in the format of the Python \
x2gobroker's SSH mode. x2gobroker -M SSH takes the same options.

The program is not setuid and reads nothing of its caller's environment except SSH_CLIENT (the client \
address, as in the original) and X2GOBROKER_SSH_SOCKET. It sends its arguments to x2gobroker-authhelper(8), \
which learns who the caller is from the kernel (SO_PEERCRED), decides whether the request is allowed, and \
runs the task in a worker process switched to the broker's daemon user (its groups, no capabilities, \
no_new_privs). The worker uses the system configuration (/etc/x2go/x2gobroker.conf and the session \
profiles), never one chosen by the caller.";

/// Sections after OPTIONS, in roff.
const SSH_MODE_SECTIONS: &str = r#".SH POLICY
.TP
.BI \-\-task " TASK"
.BR listsessions ,
.BR selectsession ,
.BR setpass " or"
.BR testcon .
.TP
.BI \-\-user " USER"
Act for another broker user. Honoured only for root and the magic user
(the daemon user,
.B x2gobroker
by default); anybody else naming another user is refused, whatever
.BR LOGNAME " or " USER
say. Naming oneself is always fine.
.TP
.BI \-\-login " LOGIN"
The X2Go server login. Must equal the broker user unless the
.B [login-mapping]
section of x2gobroker.conf maps it
.RI ( "user = login1, login2" ).
.TP
.BI \-\-backend " BACKEND"
.BR inifile " or " zeroconf ;
anything else is an error.
.TP
.BI \-\-event " EVENT"
Accepted and ignored, as by the original.
.TP
.BR \-d ", " \-\-debug
Debug messages (including the worker's credentials) on stderr.
.TP
.BI \-C " FILE"
Another configuration file: root only.
.SH "CHANGING THE PASSWORD"
.B \-\-task setpass
changes the caller's own password through PAM (the
.B password
stack of the
.B x2gobroker
PAM service). The current password is always needed: the first line of
standard input. The new password is the second line, or
.B \-\-newpass
(as X2Go Client sends it; on the command line it is visible to other local
users, so standard input is better):
.PP
.RS
.nf
printf '%s\\n%s\\n' "$OLD" "$NEW" | ssh broker x2gobroker-ssh \-\-task setpass
.fi
.RE
.PP
The passwords must arrive within 10 seconds and not from a terminal.
The answer is
.B PASSWORD CHANGED: OK
or
.B PASSWORD CHANGED: FAILED
followed by
.BI REASON: " text"
(PAM's reason, e.g. a too short password). A wrong current password is
refused (exit status 1). Root and the magic user cannot change another
user's password with
.BR \-\-user .
.SH ENVIRONMENT
.TP
.B X2GOBROKER_SSH_SOCKET
The helper's socket (default
.IR /run/x2gobroker/x2gobroker-authservice.socket ).
Only members of the socket's group
.RB ( x2gobroker-users )
can use SSH mode.
.TP
.B SSH_CLIENT
Set by sshd; its first word is the client address used for address ACLs
and cookies.
.SH "EXIT STATUS"
0 when the task ran (also when access was denied: the output is then
empty, as with the original), 254 without
.B \-\-task
(the usage is printed),
2 for unusable options, 1 when the request was refused (with the reason
on stderr) or the helper could not be reached.
.SH "SEE ALSO"
.BR x2gobroker (1),
.BR x2gobroker-daemon (1),
.BR x2gobroker-authhelper (8)
"#;

/// The page, roff.
pub fn page() -> std::io::Result<Vec<u8>> {
    let cmd = SshArgs::command()
        .name("x2gobroker-ssh")
        .bin_name("x2gobroker-ssh")
        .about("X2Go Session Broker, SSH mode")
        .long_about(DESCRIPTION)
        // clap_mangen leaves visible aliases out; the original's spellings
        // (--authid, --sid, ...) belong on the page.
        .mut_args(|arg| {
            let aliases: Vec<String> = arg
                .get_visible_aliases()
                .unwrap_or_default()
                .iter()
                .map(|a| format!("--{a}"))
                .collect();
            if aliases.is_empty() {
                return arg;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} (also {})", aliases.join(", ")))
        });
    let man = clap_mangen::Man::new(cmd)
        .title("X2GOBROKER-SSH")
        .section("1")
        .source("x2gobroker")
        .manual("User Commands");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(SSH_MODE_SECTIONS.as_bytes());
    Ok(out)
}

/// Writes the page into `dir`.
pub fn generate(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE_NAME), page()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_written_names_itself_and_lists_the_real_options() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.contains(".TH X2GOBROKER-SSH 1 "), "{text}");
        assert!(
            text.contains("x2gobroker\\-ssh \\- X2Go Session Broker, SSH mode"),
            "{text}"
        );
        // From the clap definition, aliases included.
        for option in [
            "\\-\\-task",
            "\\-\\-profile\\-id",
            "\\-\\-sid",
            "\\-\\-next\\-authid",
            "\\-\\-drop\\-privileges",
        ] {
            assert!(text.contains(option), "{option} missing: {text}");
        }
        for section in [
            ".SH OPTIONS",
            ".SH POLICY",
            ".SH ENVIRONMENT",
            ".SH \"EXIT STATUS\"",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(text.contains(section), "{section} missing");
        }
        assert!(text.contains("X2GOBROKER_SSH_SOCKET"));
    }
}
