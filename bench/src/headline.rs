//! A headline: one figure of the run against its goal. Each part (`testrun`, `control`,
//! `flood`) returns rows, headlines and a JSON value; `main` prints tables and writes
//! results.json, from which xtask renders BENCHMARKS.md and the plots.

use serde_json::{Value, json};

/// One headline: a ratio or size measured in this run, against its goal (`value <= goal`).
#[derive(Debug, Clone)]
pub struct Headline {
    pub name: &'static str,
    pub value: Option<f64>,
    pub goal: f64,
}

impl Headline {
    pub fn line(&self) -> String {
        let value = self.value.map_or_else(|| "n/a".to_owned(), format_value);
        format!(
            "headline: {} = {value} (goal <= {})",
            self.name,
            format_value(self.goal)
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name, "value": self.value, "goal": self.goal,
            "met": self.value.map(|v| v <= self.goal),
        })
    }
}

/// Two decimals below 100, none above.
pub fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
