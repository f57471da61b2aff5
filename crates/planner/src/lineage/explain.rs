//! EXPLAIN text for checkpoint placement: one line per stage with its cost figures and, for
//! checkpointed stages, why — so a user can see every checkpoint and the reason it is there.
//!
//! ```text
//! Stage 3: c=1.2s R=4.5s W=0.3s → checkpoint (lineage depth 21 > 20)
//! ```

use std::fmt::Write as _;

use super::placement::{CheckpointReason, LineageReport, StageLineage};

/// Seconds in a short human form: `1.2s`, `35.0ms`, `80.0µs`, `2.5e7s`; `?` when unknown.
pub fn format_secs(secs: Option<f64>) -> String {
    match secs {
        None => "?".to_string(),
        Some(s) if !s.is_finite() => "∞".to_string(),
        Some(s) if s <= 0.0 => "0s".to_string(),
        Some(s) if s >= 1e6 => format!("{s:.1e}s"),
        Some(s) if s >= 1000.0 => format!("{s:.0}s"),
        Some(s) if s >= 1.0 => format!("{s:.1}s"),
        Some(s) if s >= 1e-3 => format!("{:.1}ms", s * 1e3),
        Some(s) => format!("{:.1}µs", s * 1e6),
    }
}

/// Why a checkpoint is there, as EXPLAIN words.
pub fn describe_reason(reason: &CheckpointReason) -> String {
    match reason {
        CheckpointReason::Requested => "requested".to_string(),
        CheckpointReason::YoungDaly { interval } => format!(
            "Young–Daly: R ≥ √(2·W·MTBF) = {}",
            format_secs(Some(*interval))
        ),
        CheckpointReason::LineageDepth { depth, cap } => {
            format!("lineage depth {depth} > {cap}")
        }
    }
}

fn stage_line(s: &StageLineage) -> String {
    let mut line = format!(
        "Stage {}: c={} R={} W={}",
        s.stage,
        format_secs(s.cost.c),
        format_secs(s.cost.r),
        format_secs(s.cost.w)
    );
    if let Some(reason) = &s.checkpoint {
        let _ = write!(line, " → checkpoint ({})", describe_reason(reason));
    }
    line
}

impl LineageReport {
    /// A heading naming the policy the figures were judged by.
    pub fn explain_header(&self) -> String {
        let p = &self.policy;
        if p.auto {
            format!(
                "Checkpoints: auto (MTBF {} ÷ {} executor(s), max lineage depth {})",
                format_secs(Some(p.mtbf_secs)),
                p.executors.max(1),
                p.max_lineage_depth
            )
        } else {
            "Checkpoints: auto off (only requested checkpoints)".to_string()
        }
    }

    /// One line per stage, in stage order.
    pub fn explain_lines(&self) -> Vec<String> {
        self.stages.iter().map(stage_line).collect()
    }

    /// The header and the stage lines, newline-terminated, ready to append to EXPLAIN.
    pub fn explain(&self) -> String {
        let mut out = self.explain_header();
        out.push('\n');
        for line in self.explain_lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_short_and_unknowns_marked() {
        assert_eq!(format_secs(None), "?");
        assert_eq!(format_secs(Some(0.0)), "0s");
        assert_eq!(format_secs(Some(1.23)), "1.2s");
        assert_eq!(format_secs(Some(0.035)), "35.0ms");
        assert_eq!(format_secs(Some(8e-5)), "80.0µs");
        assert_eq!(format_secs(Some(3600.0)), "3600s");
        assert_eq!(format_secs(Some(f64::MAX)), "1.8e308s");
        assert_eq!(format_secs(Some(f64::INFINITY)), "∞");
    }

    #[test]
    fn reasons_read_like_the_rule() {
        assert_eq!(
            describe_reason(&CheckpointReason::LineageDepth { depth: 21, cap: 20 }),
            "lineage depth 21 > 20"
        );
        assert_eq!(describe_reason(&CheckpointReason::Requested), "requested");
        assert_eq!(
            describe_reason(&CheckpointReason::YoungDaly { interval: 3.2 }),
            "Young–Daly: R ≥ √(2·W·MTBF) = 3.2s"
        );
    }
}
