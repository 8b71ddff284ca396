//! The Fast-DetectGPT analytic criterion (Bao et al., ICLR 2024) with one model as both the
//! sampling and the scoring model.
//!
//! For each scored position t (every token but the first; position t-1's logits predict token t):
//!   lp_t  = log p(x_t | x_<t)
//!   mu_t  = sum_v p_v log p_v
//!   var_t = sum_v p_v (log p_v)^2 - mu_t^2
//!   criterion = (sum lp_t - sum mu_t) / sqrt(sum var_t)

/// The signals computed from one text's logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    pub criterion: f64,
    pub mean_log_prob: f64,
    /// Mean over scored positions of the predictive entropy `-mu_t` (nats).
    pub mean_entropy: f64,
}

/// Per-position statistics of one softmax row.
struct RowStats {
    /// log p of the observed next token.
    log_prob: f64,
    /// sum_v p_v log p_v
    mean: f64,
    /// sum_v p_v (log p_v)^2 - mean^2
    variance: f64,
}

/// One pass of `exp` over a row of logits.
///
/// With d_v = logit_v - max and S = sum_v e^{d_v}: log p_v = d_v - ln S, so
/// mu = E_p[d] - ln S and var = Var_p[log p] = Var_p[d] (the shift does not change a variance).
fn row_stats(logits: &[f32], target: usize) -> RowStats {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (mut sum, mut sum_d, mut sum_d2) = (0f64, 0f64, 0f64);
    for &logit in logits {
        let d = logit as f64 - max as f64;
        let e = d.exp();
        sum += e;
        sum_d += e * d;
        sum_d2 += e * d * d;
    }
    let ln_sum = sum.ln();
    let mean_d = sum_d / sum;
    RowStats {
        log_prob: logits[target] as f64 - max as f64 - ln_sum,
        mean: mean_d - ln_sum,
        variance: (sum_d2 / sum - mean_d * mean_d).max(0.0),
    }
}

/// Computes the criterion from the logits of positions `0..n-1` (row-major `(n-1, vocab)`) of a
/// text of token ids `ids` (length n >= 2).
pub fn signals_from_logits(logits: &[f32], vocab: usize, ids: &[u32]) -> Signals {
    let scored = ids.len().saturating_sub(1);
    assert!(scored >= 1, "the criterion needs at least two tokens");
    assert_eq!(
        logits.len(),
        scored * vocab,
        "logits must hold one row per scored position"
    );
    let (mut sum_lp, mut sum_mu, mut sum_var) = (0f64, 0f64, 0f64);
    for (row, &target) in logits.chunks_exact(vocab).zip(&ids[1..]) {
        let stats = row_stats(row, target as usize);
        sum_lp += stats.log_prob;
        sum_mu += stats.mean;
        sum_var += stats.variance;
    }
    let n = scored as f64;
    // A model certain of every position (zero variance) would divide by zero; the floor keeps the
    // criterion finite and huge, which is the right direction (perfectly predictable text).
    let criterion = (sum_lp - sum_mu) / sum_var.max(1e-12).sqrt();
    Signals {
        criterion,
        mean_log_prob: sum_lp / n,
        mean_entropy: -sum_mu / n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(row: &[f32], target: usize) -> (f64, f64, f64) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max
            + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let logp: Vec<f64> = row.iter().map(|&x| x as f64 - lse).collect();
        let mu: f64 = logp.iter().map(|l| l.exp() * l).sum();
        let m2: f64 = logp.iter().map(|l| l.exp() * l * l).sum();
        (logp[target], mu, m2 - mu * mu)
    }

    #[test]
    fn one_pass_statistics_match_the_definition() {
        let row: Vec<f32> = (0..50)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
            .collect();
        let stats = row_stats(&row, 7);
        let (lp, mu, var) = naive(&row, 7);
        assert!((stats.log_prob - lp).abs() < 1e-9);
        assert!((stats.mean - mu).abs() < 1e-9);
        assert!((stats.variance - var).abs() < 1e-9);
    }

    #[test]
    fn criterion_combines_positions_as_published() {
        let vocab = 4;
        let logits = [1.0f32, 2.0, 0.5, -1.0, 0.0, 0.0, 3.0, 1.0];
        let ids = [9u32, 1, 2];
        let s = signals_from_logits(&logits, vocab, &ids);
        let a = naive(&logits[0..4], 1);
        let b = naive(&logits[4..8], 2);
        let expected = (a.0 + b.0 - a.1 - b.1) / (a.2 + b.2).sqrt();
        assert!((s.criterion - expected).abs() < 1e-9);
        assert!((s.mean_log_prob - (a.0 + b.0) / 2.0).abs() < 1e-9);
        assert!((s.mean_entropy + (a.1 + b.1) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn uniform_rows_give_zero_criterion_numerator() {
        let logits = vec![0.0f32; 8];
        let s = signals_from_logits(&logits, 4, &[0, 1, 2]);
        assert!((s.mean_entropy - 4f64.ln()).abs() < 1e-12);
        assert!(s.criterion.abs() < 1e-3);
    }
}
