//! The command line shared by every binary: the original's options, and
//! the manual pages and shell completions generated from them.

pub mod manpages;
pub mod options;
