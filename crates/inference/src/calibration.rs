//! From criterion to probability and label.
//!
//! `score = sigmoid(k * criterion + b)`; `k` and `b` are fitted by the calibrate example
//! (`cargo run --release -p inference --example calibrate`) and documented, with the data recipe
//! and the thresholds' error rates, in docs/detection.md.

use crate::Label;

/// The fitted logistic map and the two label thresholds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Calibration {
    pub k: f64,
    pub b: f64,
    /// Scores at or above this are labelled `ai`.
    pub ai_threshold: f64,
    /// Scores at or below this are labelled `human`; between the two, `uncertain`.
    pub human_threshold: f64,
}

/// The production calibration for SmolLM2-135M-Instruct, fitted by `scripts/calibrate` on 48
/// human and 36 self-generated texts (docs/detection.md). The `ai` threshold (criterion >= 0.44)
/// sits above every human text of that run, because a false accusation costs more than a miss;
/// the `human` threshold is criterion <= -1.11.
pub const SMOLLM2_CALIBRATION: Calibration = Calibration {
    k: 2.7896,
    b: 1.7222,
    ai_threshold: 0.95,
    human_threshold: 0.2,
};

impl Calibration {
    pub fn probability(&self, criterion: f64) -> f64 {
        let z = self.k * criterion + self.b;
        1.0 / (1.0 + (-z).exp())
    }

    pub fn label(&self, score: f64) -> Label {
        if score >= self.ai_threshold {
            Label::Ai
        } else if score <= self.human_threshold {
            Label::Human
        } else {
            Label::Uncertain
        }
    }
}

impl Default for Calibration {
    fn default() -> Self {
        SMOLLM2_CALIBRATION
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_is_monotonic_and_bounded() {
        let c = SMOLLM2_CALIBRATION;
        let mut last = 0.0;
        for i in -40..40 {
            let p = c.probability(i as f64 * 0.5);
            assert!((0.0..=1.0).contains(&p));
            assert!(p >= last);
            last = p;
        }
    }

    #[test]
    fn labels_follow_the_thresholds() {
        let c = Calibration {
            k: 1.0,
            b: 0.0,
            ai_threshold: 0.9,
            human_threshold: 0.1,
        };
        assert_eq!(c.label(0.95), Label::Ai);
        assert_eq!(c.label(0.9), Label::Ai);
        assert_eq!(c.label(0.5), Label::Uncertain);
        assert_eq!(c.label(0.1), Label::Human);
        assert_eq!(c.label(0.0), Label::Human);
    }
}
