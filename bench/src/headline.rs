//! A headline: one figure of the run against its goal. Each part (`testrun`, `control`,
//! `flood`) returns rows, headlines and a JSON value; `main` prints tables and writes
//! results.json, from which xtask renders BENCHMARKS.md and the plots.

use serde_json::{Value, json};

/// One headline: a ratio, size or rate measured in this run, against its goal (`value <= goal`,
/// or `value >= goal` when `at_least`).
#[derive(Debug, Clone)]
pub struct Headline {
    pub name: &'static str,
    pub value: Option<f64>,
    pub goal: f64,
    pub at_least: bool,
}

impl Headline {
    /// Whether the goal is met; `None` when either figure is missing from the run.
    pub fn met(&self) -> Option<bool> {
        let value = self.value.filter(|v| !v.is_nan())?;
        if self.goal.is_nan() {
            return None;
        }
        Some(if self.at_least {
            value >= self.goal
        } else {
            value <= self.goal
        })
    }

    fn relation(&self) -> &'static str {
        if self.at_least { ">=" } else { "<=" }
    }

    pub fn line(&self) -> String {
        let shown = |v: f64| {
            if v.is_nan() {
                "n/a".to_owned()
            } else {
                format_value(v)
            }
        };
        let value = self.value.map_or_else(|| "n/a".to_owned(), shown);
        format!(
            "headline: {} = {value} (goal {} {})",
            self.name,
            self.relation(),
            shown(self.goal)
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name, "value": self.value, "goal": self.goal,
            "relation": self.relation(), "met": self.met(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn h(value: Option<f64>, goal: f64, at_least: bool) -> Headline {
        Headline {
            name: "x",
            value,
            goal,
            at_least,
        }
    }

    #[test]
    fn goals_are_met_in_their_direction() {
        assert_eq!(h(Some(1.2), 1.3, false).met(), Some(true));
        assert_eq!(h(Some(1.4), 1.3, false).met(), Some(false));
        assert_eq!(h(Some(9.0), 7.0, true).met(), Some(true));
        assert_eq!(h(Some(6.0), 7.0, true).met(), Some(false));
        // A goal taken from a row that did not run, or a missing value, is not judged.
        assert_eq!(h(Some(6.0), f64::NAN, true).met(), None);
        assert_eq!(h(None, 1.0, false).met(), None);
        assert_eq!(h(Some(f64::NAN), 1.0, false).met(), None);
        assert_eq!(
            h(Some(9.0), 7.0, true).line(),
            "headline: x = 9.00 (goal >= 7.00)"
        );
    }
}
