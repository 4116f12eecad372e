//! System tests for the x2gobroker workspace (run as root).

/// Compliance suite support: scenario files run against the original and against ours.
pub mod compliance;

/// The X2Go server farm fixture (tests/farm/farm.sh): real servers, agents, session DB.
pub mod farm;

/// Auth helper test support: start helper instances on temp sockets, clients, probes.
pub mod helper;

/// Shared by every test crate: temp dirs, free ports, polling, certificates, root.
pub mod support;

/// A systemd booted in private namespaces on an overlay of / (live unit and package tests).
pub mod live;

/// A private redis-server (state store tests).
pub mod redis;

/// A private Xvfb display for tests that run X clients.
pub mod xvfb;

/// SSH-mode test support: helper with a task configuration, runs as real users, sshd.
pub mod ssh;
