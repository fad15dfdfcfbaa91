//! The sweep's table: a row per target and connection count, against its ceiling.

use std::fmt::Write as _;
use std::time::Duration;

use crate::sweep::Level;
use crate::targets::ceiling_of;

fn micros(duration: Option<Duration>) -> String {
    match duration {
        Some(d) if d >= Duration::from_millis(10) => format!("{:.1} ms", d.as_secs_f64() * 1e3),
        Some(d) => format!("{} µs", d.as_micros()),
        None => "–".to_owned(),
    }
}

/// The table's header.
pub const HEADER: &str = "| target | conns | accepted req/s | × ceiling | records/s | refused/s (% with Retry-After) | errors | p50 | p99 | server CPU | client CPU | server peak RSS |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

/// One row of the table; `ratio`: its accepted req/s against the ceiling's at the same
/// connections.
pub fn row(level: &Level, ratio: Option<f64>) -> String {
    let o = &level.outcome;
    let rate = o.accepted_per_second();
    let records = rate * level.records as f64;
    let ratio = ratio
        .filter(|r| r.is_finite())
        .map(|r| format!("{r:.2}"))
        .unwrap_or_else(|| "–".to_owned());
    let mut line = String::new();
    let _ = write!(
        line,
        "| {} | {} | {:.0} | {ratio} | {:.2} M | {:.0}{} | {} | {} | {} | {:.2} | {:.2} | {:.1} MiB |",
        level.target,
        level.connections,
        rate,
        records / 1e6,
        o.refused_per_second(),
        if o.refused == 0 {
            String::new()
        } else {
            format!(
                " ({:.0} %)",
                100.0 * o.refused_with_retry_after as f64 / o.refused as f64
            )
        },
        o.errors,
        micros(o.latency(0.5)),
        micros(o.latency(0.99)),
        level.server_cpu,
        level.client_cpu,
        level.server_peak_rss_kib as f64 / 1024.0,
    );
    line
}

/// The whole table, each row against its protocol's ceiling at the same connection count:
/// the median of the rounds' ratios when there were several ([`Level::paired_ratio`]), else
/// the one round's.
pub fn table(levels: &[Level]) -> String {
    let ratio = |level: &Level| {
        level.paired_ratio.or_else(|| {
            let ceiling = levels
                .iter()
                .find(|l| {
                    l.target == ceiling_of(&level.target) && l.connections == level.connections
                })?
                .outcome
                .accepted_per_second();
            (ceiling > 0.0).then(|| level.outcome.accepted_per_second() / ceiling)
        })
    };
    let mut text = String::from(HEADER);
    for level in levels {
        text.push('\n');
        text.push_str(&row(level, ratio(level)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::tests::level;

    #[test]
    fn the_table_shows_the_paired_ratio_when_there_is_one() {
        let mut receiver = level("receiver", 64, 56);
        let ceiling = level("ceiling", 64, 80);
        assert!(
            table(&[ceiling.clone(), receiver.clone()]).contains("| receiver | 64 | 56 | 0.70 |")
        );
        receiver.paired_ratio = Some(0.8);
        assert!(table(&[ceiling, receiver]).contains("| receiver | 64 | 56 | 0.80 |"));
    }
}
