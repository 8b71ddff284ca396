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

/// Lanes of the row loop: a multiple of every vector width, so the compiler keeps one
/// accumulator per lane in registers.
const LANES: usize = 16;
/// Terms summed in f32 before they join the f64 totals: f32 partial sums of at most this many
/// positive terms stay within about 1e-5 relative, far inside the criterion's 0.02 tolerance.
const BLOCK: usize = 1024;

/// `e^x` in f32 for the shifted logits (`x <= 0`), from arithmetic and bit operations only, so
/// the row loop vectorizes; libm's `exp` is a call per element and dominated the criterion.
/// Cephes' `expf` reduction and polynomial (about 1 ulp); below -87 the result would leave the
/// normal range, and such terms weigh less than 1e-37 next to the row's largest, which is 1.
#[inline(always)]
fn exp_shifted(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 in two parts, so that x - n ln 2 is exact in f32.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * LOG2_E + ROUND) - ROUND;
    let r = x - n * LN2_HIGH - n * LN2_LOW;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    // n is in -126..=0 here, so 2^n is a normal number built from its exponent bits.
    e_r * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The largest logit, lane by lane.
fn row_max(logits: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = logits.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &logit) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(logit);
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Softmax sums of one row over the part of the vocabulary seen so far, relative to the largest
/// logit seen so far.
///
/// With d_v = logit_v - max and S = sum_v e^{d_v}: log p_v = d_v - ln S, so
/// mu = E_p[d] - ln S and var = Var_p[log p] = Var_p[d] (the shift does not change a variance).
/// The vocabulary arrives in chunks (`Criterion::add_chunk`); two partial sums with different
/// maxima merge exactly by rescaling to the larger one, so no row of logits is ever whole.
#[derive(Debug, Clone, Copy)]
struct RowSums {
    max: f32,
    /// sum e^d, sum e^d d, sum e^d d^2 with d relative to `max`.
    sum: f64,
    sum_d: f64,
    sum_d2: f64,
}

impl RowSums {
    const EMPTY: Self = Self {
        max: f32::NEG_INFINITY,
        sum: 0.0,
        sum_d: 0.0,
        sum_d2: 0.0,
    };

    /// The sums of `logits` (one pass of `exp`, terms in f32 per lane and block, then in f64).
    fn of(logits: &[f32]) -> Self {
        let max = row_max(logits);
        let (mut sum, mut sum_d, mut sum_d2) = (0f64, 0f64, 0f64);
        for block in logits.chunks(BLOCK) {
            let mut e_lanes = [0f32; LANES];
            let mut ed_lanes = [0f32; LANES];
            let mut edd_lanes = [0f32; LANES];
            let mut chunks = block.chunks_exact(LANES);
            for chunk in &mut chunks {
                for lane in 0..LANES {
                    let d = chunk[lane] - max;
                    let e = exp_shifted(d);
                    e_lanes[lane] += e;
                    ed_lanes[lane] += e * d;
                    edd_lanes[lane] += e * d * d;
                }
            }
            for &logit in chunks.remainder() {
                let d = logit - max;
                let e = exp_shifted(d);
                e_lanes[0] += e;
                ed_lanes[0] += e * d;
                edd_lanes[0] += e * d * d;
            }
            let total = |lanes: &[f32; LANES]| lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
            sum += total(&e_lanes);
            sum_d += total(&ed_lanes);
            sum_d2 += total(&edd_lanes);
        }
        Self {
            max,
            sum,
            sum_d,
            sum_d2,
        }
    }

    /// These sums re-expressed relative to `max` (>= self.max): with s = e^{shift} and
    /// d' = d + shift, sum e^{d'} = s sum e^d, and so on.
    fn relative_to(self, max: f32) -> (f64, f64, f64) {
        if self.sum == 0.0 {
            return (0.0, 0.0, 0.0);
        }
        let shift = f64::from(self.max) - f64::from(max);
        let scale = shift.exp();
        (
            scale * self.sum,
            scale * (self.sum_d + shift * self.sum),
            scale * (self.sum_d2 + 2.0 * shift * self.sum_d + shift * shift * self.sum),
        )
    }

    /// log p of the observed token (whose logit is `target_logit`), mu and var of the row.
    fn statistics(&self, target_logit: f32) -> (f64, f64, f64) {
        let ln_sum = self.sum.ln();
        let mean_d = self.sum_d / self.sum;
        (
            f64::from(target_logit) - f64::from(self.max) - ln_sum,
            mean_d - ln_sum,
            (self.sum_d2 / self.sum - mean_d * mean_d).max(0.0),
        )
    }

    fn merge(self, other: Self) -> Self {
        let max = self.max.max(other.max);
        let (a, b) = (self.relative_to(max), other.relative_to(max));
        Self {
            max,
            sum: a.0 + b.0,
            sum_d: a.1 + b.1,
            sum_d2: a.2 + b.2,
        }
    }
}

/// The criterion of one text, built from its logits a vocabulary chunk at a time.
///
/// Row r of every chunk is the logits of position r, which predict token r + 1 of `ids`.
pub(crate) struct Criterion {
    vocab: usize,
    /// The observed next token of each scored position.
    targets: Vec<u32>,
    rows: Vec<RowSums>,
    /// The logit of each row's observed token, once its chunk has passed.
    target_logits: Vec<f32>,
}

impl Criterion {
    /// For a text of token ids `ids` (at least two) over a vocabulary of `vocab` entries.
    pub fn new(ids: &[u32], vocab: usize) -> Self {
        let targets = ids.get(1..).unwrap_or_default().to_vec();
        assert!(
            !targets.is_empty(),
            "the criterion needs at least two tokens"
        );
        Self {
            vocab,
            rows: vec![RowSums::EMPTY; targets.len()],
            target_logits: vec![f32::NAN; targets.len()],
            targets,
        }
    }

    /// Positions scored (one row each in every chunk).
    pub fn rows(&self) -> usize {
        self.targets.len()
    }

    /// Adds the logits of vocabulary entries `first..first + width` for every row: `logits` is
    /// row-major `(rows, width)`.
    pub fn add_chunk(&mut self, first: usize, logits: &[f32]) {
        let width = logits.len() / self.rows();
        assert_eq!(
            width * self.rows(),
            logits.len(),
            "one chunk row per scored position"
        );
        assert!(first + width <= self.vocab, "chunk past the vocabulary");
        for ((row, sums), (&target, target_logit)) in logits
            .chunks_exact(width)
            .zip(&mut self.rows)
            .zip(self.targets.iter().zip(&mut self.target_logits))
        {
            *sums = sums.merge(RowSums::of(row));
            if let Some(offset) = (target as usize).checked_sub(first).filter(|&o| o < width) {
                *target_logit = row[offset];
            }
        }
    }

    /// The signals, once every vocabulary entry has been added.
    pub fn finish(&self) -> Signals {
        let (mut sum_lp, mut sum_mu, mut sum_var) = (0f64, 0f64, 0f64);
        for (sums, &target_logit) in self.rows.iter().zip(&self.target_logits) {
            let (log_prob, mean, variance) = sums.statistics(target_logit);
            sum_lp += log_prob;
            sum_mu += mean;
            sum_var += variance;
        }
        let n = self.rows() as f64;
        // A model certain of every position (zero variance) would divide by zero; the floor keeps
        // the criterion finite and huge, which is the right direction (perfectly predictable text).
        let criterion = (sum_lp - sum_mu) / sum_var.max(1e-12).sqrt();
        Signals {
            criterion,
            mean_log_prob: sum_lp / n,
            mean_entropy: -sum_mu / n,
        }
    }
}

/// Computes the criterion from the whole logits of positions `0..n-1` (row-major
/// `(n-1, vocab)`) of a text of token ids `ids` (length n >= 2): one chunk of `Criterion`.
pub fn signals_from_logits(logits: &[f32], vocab: usize, ids: &[u32]) -> Signals {
    let mut criterion = Criterion::new(ids, vocab);
    assert_eq!(
        logits.len(),
        criterion.rows() * vocab,
        "logits must hold one row per scored position"
    );
    criterion.add_chunk(0, logits);
    criterion.finish()
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

    /// Rows like the model's (a vocabulary-sized spread of logits, a few far above the rest)
    /// and awkward ones (short, ragged lengths, a constant row, far-apart values).
    fn rows() -> Vec<Vec<f32>> {
        let wave = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 37 % 1009) as f32 / 1009.0 - 0.5) * scale)
                .collect()
        };
        let mut peaked = wave(49_152, 12.0);
        peaked[17] = 25.0;
        peaked[40_000] = 22.5;
        vec![
            (0..50)
                .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
                .collect(),
            peaked,
            wave(1_031, 4.0),
            wave(7, 30.0),
            vec![3.25; 300],
            vec![-120.0, 0.0, 15.0, 15.0, -3.0],
        ]
    }

    struct Stats {
        log_prob: f64,
        mean: f64,
        variance: f64,
    }

    /// One row through `Criterion` in chunks of `width` (the text's first token is arbitrary).
    fn row_stats(row: &[f32], target: usize, width: usize) -> Stats {
        let mut criterion = Criterion::new(&[0, target as u32], row.len());
        for (index, chunk) in row.chunks(width).enumerate() {
            criterion.add_chunk(index * width, chunk);
        }
        let (log_prob, mean, variance) = criterion.rows[0].statistics(criterion.target_logits[0]);
        Stats {
            log_prob,
            mean,
            variance,
        }
    }

    #[test]
    fn one_pass_statistics_match_the_definition() {
        for (index, row) in rows().iter().enumerate() {
            for target in [0, row.len() / 2, row.len() - 1] {
                let stats = row_stats(row, target, row.len());
                let (lp, mu, var) = naive(row, target);
                let close = |got: f64, want: f64| (got - want).abs() <= 1e-5 * (1.0 + want.abs());
                assert!(
                    close(stats.log_prob, lp),
                    "row {index}: log p {} vs {lp}",
                    stats.log_prob
                );
                assert!(
                    close(stats.mean, mu),
                    "row {index}: mean {} vs {mu}",
                    stats.mean
                );
                assert!(
                    close(stats.variance, var),
                    "row {index}: variance {} vs {var}",
                    stats.variance
                );
            }
        }
    }

    #[test]
    fn chunked_rows_give_the_statistics_of_whole_rows() {
        // Chunks whose maxima rise, fall and tie, ragged last chunks, one-entry chunks.
        for (index, row) in rows().iter().enumerate() {
            for width in [1, 3, 16, 1000, 4096] {
                let target = row.len() * 2 / 3;
                let whole = row_stats(row, target, row.len());
                let chunked = row_stats(row, target, width);
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * (1.0 + b.abs());
                assert!(
                    close(chunked.log_prob, whole.log_prob)
                        && close(chunked.mean, whole.mean)
                        && close(chunked.variance, whole.variance),
                    "row {index}, chunks of {width}: differs from the whole row"
                );
            }
        }
    }

    #[test]
    fn shifted_exp_matches_the_library_exp() {
        for i in 0..=100_000 {
            let x = -(i as f32) * 1e-3; // 0 down to -100
            let want = f64::from(x).exp();
            let got = f64::from(exp_shifted(x));
            if x >= -87.0 {
                assert!(
                    (got - want).abs() <= 4e-7 * want,
                    "exp({x}) = {got}, expected {want}"
                );
            } else {
                assert!(got <= 2e-38, "exp({x}) = {got} should be negligible");
            }
        }
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
        // The terms are f32 (row_stats); the combination must add nothing to their error.
        assert!(
            (s.criterion - expected).abs() < 1e-6,
            "{} vs {expected}",
            s.criterion
        );
        assert!((s.mean_log_prob - (a.0 + b.0) / 2.0).abs() < 1e-6);
        assert!((s.mean_entropy + (a.1 + b.1) / 2.0).abs() < 1e-6);
    }

    #[test]
    fn uniform_rows_give_zero_criterion_numerator() {
        let logits = vec![0.0f32; 8];
        let s = signals_from_logits(&logits, 4, &[0, 1, 2]);
        assert!((s.mean_entropy - 4f64.ln()).abs() < 1e-12);
        assert!(s.criterion.abs() < 1e-3);
    }
}
