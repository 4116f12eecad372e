//! The command line shared by every binary: the original's options (their
//! manual pages and shell completions: `x2gobroker_sys::docs`).

pub mod options;
