//! The original's admin tools, each a thin program in `bin/` over these
//! modules: `x2gobroker-keygen` (the broker account's SSH key for agents),
//! `x2gobroker-pubkeyauthorizer` (authorise that key on an X2Go server),
//! `x2gobroker-testagent` (run an agent task, print the answer) and
//! `x2gobroker-testauth` (try the configured auth mechanism).

pub mod keygen;
pub mod pubkeyauthorizer;
pub mod testagent;
pub mod testauth;

/// Messages go to stderr, as the original's loggers do.
pub(crate) fn init_logging(program: &str, debug: bool) {
    x2gobroker_sys::logging::init(&x2gobroker_sys::logging::LogOptions {
        program,
        facility: syslog::Facility::LOG_AUTH,
        debug,
        syslog_socket: None,
        audit_waits: false,
    });
}

/// The account that owns a broker key: (uid, gid, home).
pub(crate) fn account(name: &str) -> Result<nix::unistd::User, String> {
    nix::unistd::User::from_name(name)
        .map_err(|e| format!("looking up user {name}: {e}"))?
        .ok_or_else(|| format!("no such user: {name}"))
}

/// The broker account (the daemon user and group) whose home holds the
/// agents' SSH key; its home must exist.
pub(crate) fn broker_account(
    env: &crate::core::config::Environment,
) -> Result<(nix::unistd::User, nix::unistd::Group), String> {
    let user = account(&env.daemon_user)?;
    let group = nix::unistd::Group::from_name(&env.daemon_group)
        .ok()
        .flatten()
        .ok_or_else(|| format!("no such group: {}", env.daemon_group))?;
    if !user.dir.is_dir() {
        return Err(format!(
            "the home directory {} of user {} does not exist",
            user.dir.display(),
            user.name
        ));
    }
    Ok((user, group))
}
