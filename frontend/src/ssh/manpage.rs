//! `x2gobroker-ssh --generate-man DIR`: the manual page (the installer's
//! program contract, docs/OPERATIONS.md).

use std::path::Path;

pub const FILE_NAME: &str = "x2gobroker-ssh.1";

const PAGE: &str = r#".TH X2GOBROKER-SSH 1 "" "x2gobroker" "User Commands"
.SH NAME
x2gobroker-ssh \- X2Go Session Broker, SSH mode
.SH SYNOPSIS
.B x2gobroker-ssh
.B \-\-task
.I TASK
.RB [ \-\-user
.IR USER ]
.RB [ \-\-login
.IR LOGIN ]
.RB [ \-\-authid
.IR COOKIE ]
.RB [ \-\-sid
.IR PROFILE ]
.RB [ \-\-backend
.IR BACKEND ]
.RB [ \-d ]
.br
.B x2gobroker
.RB [ "\-M SSH" ]
.I "(same options)"
.SH DESCRIPTION
X2Go Client logs in to the broker host over SSH and runs
.BR x2gobroker-ssh .
It prints what the broker's HTTP
.I /plain/
interface would answer for the logged-in user, in the format of the
Python x2gobroker's SSH mode.
.PP
The program is not setuid and reads nothing of its caller's environment
except
.B SSH_CLIENT
(the client address, as in the original) and
.BR X2GOBROKER_SSH_SOCKET .
It sends its arguments to
.BR x2gobroker-authhelper (8),
which learns who the caller is from the kernel (SO_PEERCRED), decides
whether the request is allowed, and runs the task in a worker process
switched to the broker's daemon user (its groups, no capabilities,
no_new_privs). The worker uses the system configuration
.RI ( /etc/x2go/x2gobroker.conf
and the session profiles), never one chosen by the caller.
.SH OPTIONS
.TP
.BI \-\-task " TASK"
.BR listsessions ,
.BR selectsession ,
.BR setpass " or"
.BR testcon .
Without it, the usage is printed and the exit status is 254.
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
.BI \-\-auth-cookie " COOKIE\fR, \fP" \-\-authid " COOKIE\fR, \fP" \-\-next-authid " COOKIE"
Pre-shared or dynamic authentication cookie.
.TP
.BI \-\-profile-id " PROFILE\fR, \fP" \-\-sid " PROFILE"
The session profile for
.BR selectsession .
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
.SH EXIT STATUS
0 when the task ran (also when access was denied: the output is then
empty, as with the original), 254 without
.BR \-\-task ,
2 for unusable options, 1 when the request was refused (with the reason
on stderr) or the helper could not be reached.
.SH SEE ALSO
.BR x2gobroker (1),
.BR x2gobroker-daemon (1),
.BR x2gobroker-authhelper (8)
"#;

/// Writes the page into `dir`.
pub fn generate(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join(FILE_NAME), PAGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_written_and_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with(".TH X2GOBROKER-SSH 1 "));
        assert!(text.contains("X2GOBROKER_SSH_SOCKET"));
    }
}
