//! The results table: printed for the terminal and written, with the
//! machine and how to reproduce, as BENCHMARKS.md.

use crate::stats::Summary;

/// One figure, both bots side by side.
#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    pub ours: Option<Summary>,
    pub peer: Option<Summary>,
    /// How the ratio is computed and read, e.g. "peer/ours".
    pub ratio: Ratio,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target.
    pub met: Option<bool>,
    /// Decimals to show.
    pub decimals: usize,
}

/// Which way the ratio goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ratio {
    /// The peer's value over ours (times sooner / smaller is better for us).
    PeerOverOurs,
    /// Ours over the peer's (times more, or a fraction).
    OursOverPeer,
    None,
}

fn fmt(s: &Option<Summary>, d: usize) -> String {
    match s {
        None => "—".to_string(),
        Some(s) if s.n == 1 => format!("{:.d$}", s.median),
        Some(s) => format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.p10, s.p90),
    }
}

impl Row {
    fn ratio_text(&self) -> String {
        match (self.ratio, &self.ours, &self.peer) {
            (Ratio::PeerOverOurs, Some(o), Some(p)) if o.median > 0.0 => {
                format!("{:.1}×", p.median / o.median)
            }
            (Ratio::OursOverPeer, Some(o), Some(p)) if p.median > 0.0 => {
                format!("{:.2}×", o.median / p.median)
            }
            _ => "—".to_string(),
        }
    }

    fn verdict(&self) -> &'static str {
        match self.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        }
    }

    fn cells(&self) -> [String; 6] {
        [
            self.figure.clone(),
            fmt(&self.ours, self.decimals),
            fmt(&self.peer, self.decimals),
            self.ratio_text(),
            self.target.clone(),
            self.verdict().to_string(),
        ]
    }
}

/// The columns of the table against the Bolt peer.
pub const PEER_HEAD: [&str; 6] = [
    "figure",
    "slackbotd",
    "Bolt (Python)",
    "ratio",
    "target",
    "",
];

/// The columns of the systemd table: the shipped unit against a minimal one.
pub const UNIT_HEAD: [&str; 6] = [
    "figure",
    "shipped unit",
    "minimal unit",
    "ratio",
    "target",
    "",
];

/// The columns of the fleet table: a member against a lone bot.
pub const FLEET_HEAD: [&str; 6] = ["figure", "fleet", "lone bot / here", "ratio", "target", ""];

/// A plain-text table.
pub fn text(rows: &[Row], head: [&str; 6]) -> String {
    let cells: Vec<[String; 6]> = rows.iter().map(Row::cells).collect();
    let mut width = head.map(|h| h.chars().count());
    for c in &cells {
        for (i, v) in c.iter().enumerate() {
            width[i] = width[i].max(v.chars().count());
        }
    }
    let line = |c: &[String]| {
        c.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = width[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(&head.map(String::from));
    out.push('\n');
    for c in &cells {
        out.push_str(&line(c));
        out.push('\n');
    }
    out
}

/// A Markdown table.
pub fn markdown(rows: &[Row], head: [&str; 6]) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        head.join(" | "),
        head.map(|_| "---").join("|")
    );
    for r in rows {
        out.push_str(&format!("| {} |\n", r.cells().join(" | ")));
    }
    out
}
