//! Builds labelled data, scores it, and fits `score = sigmoid(k * criterion + b)`.
//!
//!   scripts/calibrate            (wrapper: checks the inputs, then runs this example)
//!   cargo run --release -p inference --example calibrate -- [--docs DIR] [--human N]
//!       [--machine-per-temperature N] [--temperatures 0.5,0.7,1.0] [--new-tokens N] [--out DIR]
//!
//! Human text: prose paragraphs of the Python 3.11 tutorial, HOWTOs and FAQ as shipped by the
//! Debian package python3.11-doc (reStructuredText sources, written by people, mostly long before
//! 2020). The text is read from the installed package at run time and never stored in the repo.
//! Machine text: the model itself continues the first words of a human passage, sampled at several
//! temperatures (the prompt stays in the text, as in the Fast-DetectGPT paper's data).
//! Everything is deterministic: passages are taken in a fixed order, sampling seeds are fixed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use inference::{Calibration, Detector, DetectorConfig, Sampling};

struct Options {
    model: PathBuf,
    docs: PathBuf,
    human: usize,
    machine_per_temperature: usize,
    temperatures: Vec<f64>,
    new_tokens: usize,
    prompt_words: usize,
    out: PathBuf,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Options {
        model: get("--model")
            .unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into())
            .into(),
        docs: get("--docs")
            .unwrap_or_else(|| "/usr/share/doc/python3.11/html/_sources".into())
            .into(),
        human: get("--human").map_or(48, |v| v.parse().expect("--human")),
        machine_per_temperature: get("--machine-per-temperature")
            .map_or(12, |v| v.parse().expect("count")),
        temperatures: get("--temperatures")
            .unwrap_or_else(|| "0.5,0.7,1.0".into())
            .split(',')
            .map(|t| t.parse().expect("temperature"))
            .collect(),
        new_tokens: get("--new-tokens").map_or(160, |v| v.parse().expect("--new-tokens")),
        prompt_words: 12,
        out: get("--out")
            .unwrap_or_else(|| "target/calibration".into())
            .into(),
    }
}

// ---------------------------------------------------------------- human passages

/// Removes reStructuredText inline markup, keeping the words a reader sees.
fn strip_inline_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // Roles: :func:`name <target>` or :ref:`~mod.name` -> the visible part.
    while let Some(start) = rest
        .find(":`")
        .and_then(|colon| rest[..colon].rfind(':').map(|s| (s, colon)))
    {
        let (role_start, colon) = start;
        let role = &rest[role_start + 1..colon];
        if role.is_empty()
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-')
        {
            out.push_str(&rest[..colon + 2]);
            rest = &rest[colon + 2..];
            continue;
        }
        let Some(end) = rest[colon + 2..].find('`') else {
            break;
        };
        let inner = &rest[colon + 2..colon + 2 + end];
        let visible = inner
            .split(" <")
            .next()
            .unwrap_or(inner)
            .trim_start_matches(['~', '!']);
        out.push_str(&rest[..role_start]);
        out.push_str(visible);
        rest = &rest[colon + 2 + end + 1..];
    }
    out.push_str(rest);
    // Links `text <url>`_ -> text; literals ``x`` -> x; emphasis markers.
    let cleaned = out.replace("``", "");
    let mut result = String::new();
    for piece in cleaned.split('`') {
        let piece = piece.trim_end_matches('_');
        let piece = piece.split(" <").next().unwrap_or(piece);
        result.push_str(piece);
    }
    result.replace("**", "").replace("\\ ", "").replace('*', "")
}

/// True for a block of plain prose: no directives, lists, tables, code or headings.
fn is_prose(block: &str) -> bool {
    let lines: Vec<&str> = block.lines().collect();
    if lines.is_empty() {
        return false;
    }
    let markup_start = [
        "..", "* ", "- ", "#", "=", ">>>", "|", "+", "1.", "2.", "3.", "(", "`",
    ];
    lines
        .iter()
        .all(|l| !l.starts_with([' ', '\t']) && !l.trim().is_empty())
        && !markup_start.iter().any(|m| lines[0].starts_with(m))
        && !lines
            .iter()
            .any(|l| l.chars().all(|c| "=-~^*#+`'\"".contains(c)))
        && block.split_whitespace().count() >= 25
        && !block.contains("::")
}

/// Prose passages of roughly 90-160 words: consecutive prose paragraphs of one file joined.
fn human_passages(docs: &Path, wanted: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for section in ["tutorial", "howto", "faq"] {
        let dir = docs.join(section);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (install the Debian package python3.11-doc)",
                    dir.display()
                )
            })
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".rst.txt"))
            .collect();
        entries.sort();
        files.extend(entries);
    }
    let mut all = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable doc source");
        let mut current: Vec<String> = Vec::new();
        let flush = |current: &mut Vec<String>, all: &mut Vec<(String, String)>| {
            let joined = current.join("\n\n");
            if joined.split_whitespace().count() >= 90 {
                let source = file
                    .strip_prefix(docs)
                    .unwrap_or(file)
                    .display()
                    .to_string();
                all.push((source, joined));
            }
            current.clear();
        };
        for block in text.split("\n\n") {
            if is_prose(block) {
                current.push(strip_inline_markup(
                    &block.lines().collect::<Vec<_>>().join(" "),
                ));
                if current
                    .iter()
                    .map(|p| p.split_whitespace().count())
                    .sum::<usize>()
                    >= 90
                {
                    flush(&mut current, &mut all);
                }
            } else {
                current.clear();
            }
        }
    }
    // Spread the picks over all files: every step-th passage, in a fixed order.
    let step = (all.len() / wanted.max(1)).max(1);
    all.into_iter().step_by(step).take(wanted).collect()
}

// ---------------------------------------------------------------- statistics

/// Area under the ROC curve: the probability that a machine text outscores a human one.
fn auroc(human: &[f64], machine: &[f64]) -> f64 {
    let mut wins = 0.0;
    for &m in machine {
        for &h in human {
            wins += if m > h {
                1.0
            } else if m == h {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (human.len() * machine.len()) as f64
}

/// True-positive rate at the largest threshold whose false-positive rate is at most `fpr`.
fn tpr_at_fpr(human: &[f64], machine: &[f64], fpr: f64) -> (f64, f64) {
    let mut sorted = human.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * human.len() as f64).floor() as usize;
    let threshold = sorted[allowed.min(sorted.len() - 1)];
    let tpr = machine.iter().filter(|&&m| m > threshold).count() as f64 / machine.len() as f64;
    (tpr, threshold)
}

/// Logistic regression on one feature by Newton's method, with a small ridge on k so that a
/// perfectly separable set still gives finite numbers.
fn fit_logistic(x: &[f64], y: &[f64]) -> (f64, f64) {
    let (mut k, mut b) = (1.0, 0.0);
    let ridge = 1e-2;
    for _ in 0..100 {
        let (mut gk, mut gb, mut hkk, mut hkb, mut hbb) = (ridge * k, 0.0, ridge, 0.0, 1e-9);
        for (&xi, &yi) in x.iter().zip(y) {
            let p = 1.0 / (1.0 + (-(k * xi + b)).exp());
            let w = p * (1.0 - p);
            gk += (p - yi) * xi;
            gb += p - yi;
            hkk += w * xi * xi;
            hkb += w * xi;
            hbb += w;
        }
        let det = hkk * hbb - hkb * hkb;
        let dk = (hbb * gk - hkb * gb) / det;
        let db = (hkk * gb - hkb * gk) / det;
        k -= dk;
        b -= db;
        if dk.abs() + db.abs() < 1e-10 {
            break;
        }
    }
    (k, b)
}

// ---------------------------------------------------------------- main

struct Sample {
    label: &'static str,
    temperature: Option<f64>,
    source: String,
    text: String,
    ids: Vec<u32>,
    criterion: f64,
    prefix_criteria: Vec<(usize, f64)>,
}

/// Prefix lengths at which the criterion is also measured, to choose the minimum length.
const PREFIXES: [usize; 3] = [16, 32, 64];

fn score(
    detector: &Detector,
    label: &'static str,
    temperature: Option<f64>,
    source: String,
    text: String,
) -> Sample {
    let mut ids = detector.tokenize(&text).expect("tokenizes");
    ids.truncate(detector.config().max_tokens);
    let criterion = detector.signals(&ids).expect("scores").criterion;
    let prefix_criteria = PREFIXES
        .iter()
        .filter(|&&n| ids.len() > n)
        .map(|&n| (n, detector.signals(&ids[..n]).expect("scores").criterion))
        .collect();
    Sample {
        label,
        temperature,
        source,
        text,
        ids,
        criterion,
        prefix_criteria,
    }
}

fn main() {
    let opts = options();
    let started = Instant::now();
    let detector = Detector::load(&opts.model, DetectorConfig::default())
        .expect("model loads (scripts/fetch-model)");
    let passages = human_passages(&opts.docs, opts.human);
    assert!(
        passages.len() >= opts.human / 2,
        "too few prose passages under {}",
        opts.docs.display()
    );
    eprintln!("{} human passages", passages.len());
    if std::env::args().any(|a| a == "--list-passages") {
        for (source, text) in &passages {
            println!("--- {source}\n{text}");
        }
        return;
    }

    // Machine jobs: passage i gives the prompt of machine text i, temperatures in rotation.
    let machine_jobs: Vec<(usize, f64)> = (0..opts.machine_per_temperature
        * opts.temperatures.len())
        .map(|i| {
            (
                i % passages.len(),
                opts.temperatures[i % opts.temperatures.len()],
            )
        })
        .collect();

    // Two workers, one thread each: the shape the service runs in.
    let workers = 2;
    let samples: Vec<Sample> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (detector, passages, machine_jobs, opts) =
                    (&detector, &passages, &machine_jobs, &opts);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (_, (source, text)) in passages
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % workers == w)
                    {
                        out.push(score(detector, "human", None, source.clone(), text.clone()));
                    }
                    for (j, &(p, temperature)) in machine_jobs
                        .iter()
                        .enumerate()
                        .filter(|(j, _)| j % workers == w)
                    {
                        let prompt_text: String = passages[p]
                            .1
                            .split(' ')
                            .take(opts.prompt_words)
                            .collect::<Vec<_>>()
                            .join(" ");
                        let prompt = detector.tokenize(&prompt_text).expect("prompt");
                        let sampling = Sampling {
                            temperature,
                            max_new_tokens: opts.new_tokens,
                            seed: 1000 + j as u64,
                        };
                        let generated = detector.generate(&prompt, &sampling).expect("generates");
                        let text = format!(
                            "{prompt_text}{}",
                            detector.detokenize(&generated).expect("decodes")
                        );
                        let source = format!(
                            "model T={temperature} seed={} prompt from {}",
                            1000 + j,
                            passages[p].0
                        );
                        out.push(score(detector, "machine", Some(temperature), source, text));
                        eprintln!(
                            "machine {j}: T={temperature} {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });

    // Machine texts shorter than the minimum would not be scored by the service either.
    let min = DetectorConfig::default().min_tokens;
    let samples: Vec<Sample> = samples.into_iter().filter(|s| s.ids.len() >= min).collect();
    let crit = |label: &str, t: Option<f64>| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.label == label && (t.is_none() || s.temperature == t))
            .map(|s| s.criterion)
            .collect()
    };
    let human = crit("human", None);
    let machine = crit("machine", None);
    let x: Vec<f64> = samples.iter().map(|s| s.criterion).collect();
    let y: Vec<f64> = samples
        .iter()
        .map(|s| if s.label == "machine" { 1.0 } else { 0.0 })
        .collect();
    let (k, b) = fit_logistic(&x, &y);
    let calibration = Calibration {
        k,
        b,
        ..*detector.calibration()
    };

    let mut report = String::new();
    let mut line = |s: String| {
        println!("{s}");
        report.push_str(&s);
        report.push('\n');
    };
    line(format!(
        "samples: {} human, {} machine; {:.0} s",
        human.len(),
        machine.len(),
        started.elapsed().as_secs_f64()
    ));
    line(format!("fit: k = {k:.4}, b = {b:.4}"));
    line(format!(
        "AUROC all temperatures: {:.4}",
        auroc(&human, &machine)
    ));
    let (tpr, threshold) = tpr_at_fpr(&human, &machine, 0.01);
    line(format!(
        "TPR at 1% FPR: {:.3} (criterion threshold {threshold:.3}; {} human texts, so this is 0 false positives)",
        tpr,
        human.len()
    ));
    for &t in &opts.temperatures {
        let m = crit("machine", Some(t));
        let (tpr, _) = tpr_at_fpr(&human, &m, 0.01);
        let mean = m.iter().sum::<f64>() / m.len() as f64;
        line(format!(
            "  T={t}: n={} AUROC {:.4}  TPR@1%FPR {:.3}  mean criterion {mean:.3}",
            m.len(),
            auroc(&human, &m),
            tpr
        ));
    }
    let hmean = human.iter().sum::<f64>() / human.len() as f64;
    let hmax = human.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    line(format!("human: mean criterion {hmean:.3}, max {hmax:.3}"));
    for n in PREFIXES {
        let pick = |label: &str| -> Vec<f64> {
            samples
                .iter()
                .filter(|s| s.label == label)
                .filter_map(|s| {
                    s.prefix_criteria
                        .iter()
                        .find(|(m, _)| *m == n)
                        .map(|(_, c)| *c)
                })
                .collect()
        };
        line(format!(
            "  first {n} tokens only: AUROC {:.4}",
            auroc(&pick("human"), &pick("machine"))
        ));
    }
    for (name, threshold, wanted) in [
        ("ai", calibration.ai_threshold, "machine"),
        ("human", calibration.human_threshold, "human"),
    ] {
        let labelled: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                let p = calibration.probability(s.criterion);
                if name == "ai" {
                    p >= threshold
                } else {
                    p <= threshold
                }
            })
            .collect();
        let wrong = labelled.iter().filter(|s| s.label != wanted).count();
        let total_wanted = samples.iter().filter(|s| s.label == wanted).count();
        line(format!(
            "label {name} (score {} {threshold}): {} texts, {wrong} wrong; {:.0}% of {wanted} texts get it",
            if name == "ai" { ">=" } else { "<=" },
            labelled.len(),
            100.0 * (labelled.len() - wrong) as f64 / total_wanted as f64
        ));
    }

    std::fs::create_dir_all(&opts.out).expect("output directory");
    let rows: Vec<serde_json::Value> = samples
        .iter()
        .map(|s| {
            serde_json::json!({"label": s.label, "temperature": s.temperature, "source": s.source,
                "tokens": s.ids.len(), "criterion": s.criterion, "text": s.text})
        })
        .collect();
    let samples_path = opts.out.join("samples.json");
    std::fs::write(&samples_path, serde_json::to_string_pretty(&rows).unwrap())
        .expect("write samples");
    std::fs::write(opts.out.join("report.txt"), report).expect("write report");
    eprintln!(
        "wrote {} and report.txt (not for the repository: they hold the human texts)",
        samples_path.display()
    );
}
