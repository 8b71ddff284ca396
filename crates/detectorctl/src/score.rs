//! `detectorctl score`: one text through the API, the way the product app sends it.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::client::{with_key, ConnectArgs};

/// Refuse to read more than this from a file or stdin: the service caps bodies at 64 KiB by
/// default, and a CLI that slurps an endless pipe is a hang, not a feature.
const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The text to score: a file, or `-` for standard input.
    #[arg(default_value = "-")]
    pub input: PathBuf,
    /// Print the service's JSON response instead of a one-line summary.
    #[arg(long)]
    pub json: bool,
}

fn read_input(input: &PathBuf) -> anyhow::Result<String> {
    let mut text = String::new();
    if input.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(input)
            .with_context(|| format!("opening {}", input.display()))?
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {} as UTF-8", input.display()))?;
    }
    Ok(text)
}

/// Prints the result; returns whether the service scored the text.
pub async fn run(args: &ScoreArgs) -> anyhow::Result<bool> {
    let text = read_input(&args.input)?;
    let Some(key) = args.connect.api_key() else {
        bail!("${} is not set (the API key)", args.connect.key_env);
    };
    let name = args.connect.host_name()?;
    let client = args.connect.client(&[name.as_str()])?;
    let url = args.connect.endpoint("/score");
    let response = with_key(client.post(url.clone()), &key)
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response.text().await.context("reading the response")?;
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    if args.json {
        match &parsed {
            Some(v) => println!("{}", serde_json::to_string_pretty(v)?),
            None => println!("{body}"),
        }
    } else if status.is_success() {
        println!("{}", summary(parsed.as_ref().unwrap_or(&Value::Null)));
    } else {
        let message = parsed
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.trim().to_owned());
        eprintln!("error: {status}: {message}");
    }
    Ok(status.is_success())
}

/// `score 0.873 label ai tokens 212 (truncated) model SmolLM2 b179c952`
pub fn summary(v: &Value) -> String {
    let score = v["score"]
        .as_f64()
        .map(|s| format!("{s:.3}"))
        .unwrap_or("?".into());
    let mut line = format!(
        "score {score} label {} tokens {}",
        v["label"].as_str().unwrap_or("?"),
        v["tokens"]
    );
    if v["truncated"].as_bool() == Some(true) {
        line.push_str(" (truncated)");
    }
    if let Some(model) = v["model"]["name"].as_str() {
        line.push_str(&format!(
            " model {model} {}",
            v["model"]["sha256_short"].as_str().unwrap_or("")
        ));
    }
    line.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str, expected: &str) {
        assert_eq!(summary(&serde_json::from_str(json).unwrap()), expected);
    }

    #[test]
    fn summarises_responses() {
        check(
            r#"{"score":0.87312,"label":"ai","tokens":212,"truncated":true,"model":{"name":"m","sha256_short":"b179"}}"#,
            "score 0.873 label ai tokens 212 (truncated) model m b179",
        );
        check(
            r#"{"score":0.1,"label":"human","tokens":20,"truncated":false}"#,
            "score 0.100 label human tokens 20",
        );
        check("{}", "score ? label ? tokens null");
    }
}
