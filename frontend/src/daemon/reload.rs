//! Configuration reloads: the files are watched (modification time, size,
//! inode) and SIGHUP forces a reload. A configuration that fails to load
//! leaves the last good one in place. Expired cookies are swept too.

use crate::core::broker::{Broker, Shared};
use crate::core::config::{ConfigFile, Environment};
use crate::daemon::limits::{FrontendLimits, LiveLimits};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
pub const COOKIE_SWEEP_INTERVAL: Duration = Duration::from_secs(600);

type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &PathBuf) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(stamp).collect()
}

/// Loads the configuration again; on success it replaces the current one
/// and, when given, the front end's limits.
pub fn reload(shared: &Shared, env: &Environment, limits: Option<&LiveLimits>) -> bool {
    let loaded = Broker::load(env).map_err(|e| e.to_string()).and_then(|broker| {
        let new_limits = match limits {
            None => None,
            Some(_) => Some(
                ConfigFile::load(&env.config_file)
                    .map_err(|e| e.to_string())
                    .and_then(|file| FrontendLimits::from_file(&file))?,
            ),
        };
        Ok((broker, new_limits))
    });
    match loaded {
        Ok((broker, new_limits)) => {
            for w in &broker.warnings {
                log::warn!("{w}");
            }
            log::info!(
                "configuration loaded: {} ({} session profiles from {})",
                broker.config_path.display(),
                broker.profiles.profiles.len(),
                broker.profiles_path.display()
            );
            shared.replace(broker);
            if let (Some(live), Some(new_limits)) = (limits, new_limits) {
                crate::daemon::limits::publish(live, new_limits);
            }
            crate::core::stats::STATS.config_loaded();
            let generation = crate::core::stats::STATS.snapshot().config_generation;
            crate::daemon::sdnotify::notify(&format!(
                "STATUS=serving; configuration generation {generation}"
            ));
            true
        }
        Err(e) => {
            log::error!("configuration not reloaded, keeping the last good one: {e}");
            crate::core::stats::STATS.reload_failed(e.to_string());
            // One line: systemctl status shows it next to the unit.
            let first_line = e.to_string().lines().next().unwrap_or_default().to_owned();
            crate::daemon::sdnotify::notify(&format!("STATUS=serving; last reload failed: {first_line}"));
            false
        }
    }
}

/// Runs forever: polls the watched files and listens for SIGHUP.
pub async fn watch(shared: Shared, env: Environment, limits: LiveLimits) {
    let limits = std::sync::Arc::new(limits);
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            log::error!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    let mut files = shared.current().watched_files();
    let mut seen = stamps(&files);
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    let mut last_sweep = std::time::Instant::now();
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        let now = stamps(&files);
        if forced || now != seen {
            if forced {
                log::info!("SIGHUP: reloading the configuration");
            }
            let env = env.clone();
            let shared2 = shared.clone();
            let limits = limits.clone();
            let _ = tokio::task::spawn_blocking(move || reload(&shared2, &env, Some(&limits))).await;
            // Remember the state we tried, good or bad, so a broken file
            // is reported once per change.
            files = shared.current().watched_files();
            seen = stamps(&files);
        }
        if last_sweep.elapsed() >= COOKIE_SWEEP_INTERVAL {
            last_sweep = std::time::Instant::now();
            let broker = shared.current();
            if let Ok(n) = broker.state.sweep_cookies(broker.global.auth_timeout).await {
                if n > 0 {
                    log::info!("removed {n} expired cookies");
                }
            }
        }
    }
}
