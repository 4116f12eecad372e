//! `--status`: asks a running helper for its counters and prints them.

use crate::cli::Options;
use crate::StartupError;
use x2gobroker_protocol::client::{blocking::Client, DEFAULT_TIMEOUT};
use x2gobroker_protocol::{Request, Response, StatusReport};

pub fn run(options: &Options) -> Result<(), StartupError> {
    let report = query(options)?;
    if options.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| StartupError::new(format!("cannot format the status as JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn query(options: &Options) -> Result<StatusReport, StartupError> {
    let failed = |e: &dyn std::fmt::Display| {
        StartupError::new(format!(
            "status of the helper at {}: {e}",
            options.socket.display()
        ))
    };
    let mut client = Client::connect(&options.socket, DEFAULT_TIMEOUT).map_err(|e| failed(&e))?;
    match client.call(&Request::Status).map_err(|e| failed(&e))? {
        Response::Status(report) => Ok(report),
        other => Err(failed(&format!("unexpected answer {other:?}"))),
    }
}

pub fn render(report: &StatusReport) -> String {
    let c = &report.counters;
    format!(
        "version: {}\nuptime: {} s\nrequests: {}\nsuccesses: {}\nfailures: {}\nthrottled: {}\n\
         policy denials: {}\nin flight: {}\n",
        report.version,
        report.uptime_secs,
        c.requests,
        c.successes,
        c.failures,
        c.throttled,
        c.policy_denials,
        c.in_flight
    )
}
