//! One row per check, and the two ways to show them: a table for people, JSON for machines.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    Fail,
    /// Left out with `--skip`; never counts as a pass or a failure.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    }
}

/// The result of one check: its stable name, the outcome, what was seen, and where to look when
/// it failed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    /// What to look at when the check fails; empty when it passed.
    pub hint: String,
}

impl Check {
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Ok,
            detail: detail.into(),
            hint: String::new(),
        }
    }

    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Fail,
            detail: detail.into(),
            hint: hint.into(),
        }
    }

    pub fn skip(name: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            outcome: Outcome::Skip,
            detail: "skipped with --skip".into(),
            hint: String::new(),
        }
    }

    /// `ok` with `detail` when `passed`, else a failure with `hint`.
    pub fn from_bool(
        name: impl Into<String>,
        passed: bool,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        if passed {
            Check::ok(name, detail)
        } else {
            Check::fail(name, detail, hint)
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    pub fn new(checks: Vec<Check>) -> Self {
        let ok = checks.iter().all(|c| c.outcome != Outcome::Fail);
        Report { ok, checks }
    }

    pub fn to_table(&self) -> String {
        let name_width = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:<name_width$}  {:<6}  DETAIL\n", "CHECK", "RESULT");
        for check in &self.checks {
            out.push_str(&format!(
                "{:<name_width$}  {:<6}  {}\n",
                check.name,
                check.outcome.label(),
                one_line(&check.detail)
            ));
            if check.outcome == Outcome::Fail && !check.hint.is_empty() {
                out.push_str(&format!(
                    "{:<name_width$}  {:<6}  look at: {}\n",
                    "", "", check.hint
                ));
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count();
        if failed == 0 {
            out.push_str("All checks passed.\n");
        } else {
            out.push_str(&format!("{failed} check(s) failed.\n"));
        }
        out
    }
}

/// Keeps the table one row per check whatever a server put in an error message.
fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    const MAX: usize = 200;
    if flat.chars().count() > MAX {
        let cut: String = flat.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_failure_fails_the_report_and_shows_its_hint() {
        let report = Report::new(vec![
            Check::ok("a", "fine"),
            Check::skip("b"),
            Check::fail("c", "broken\nover lines", "the c file"),
        ]);
        assert!(!report.ok);
        let table = report.to_table();
        assert!(
            table.contains("c      FAIL    broken over lines"),
            "{table}"
        );
        assert!(table.contains("look at: the c file"), "{table}");
        assert!(table.ends_with("1 check(s) failed.\n"));
    }

    #[test]
    fn skips_do_not_fail_the_report() {
        let report = Report::new(vec![Check::ok("a", "fine"), Check::skip("b")]);
        assert!(report.ok);
        assert!(report.to_table().ends_with("All checks passed.\n"));
    }
}
