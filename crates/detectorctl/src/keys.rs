//! `detectorctl keys`: the key file's life cycle, through `auth::KeyFile` only. A key is printed
//! once, by the `new` or `rotate` that created it; nothing else here ever prints one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use auth::{ApiKey, KeyFile, KeyRecord};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, Time};

use crate::reload::ReloadArgs;

#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    /// The service's key file (JSON of hashed keys); created by the first `keys new`.
    #[arg(long, env = "DETECTOR_KEY_FILE", global = true)]
    pub key_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a fresh random key and store nothing: the one shared key of a simple deployment
    /// (DETECTOR_API_KEY in compose/.env).
    Generate,
    /// Create a key for a client: prints it once on stdout, stores only its hash.
    New {
        /// The client's name (1-64 of A-Z a-z 0-9 . _ -).
        id: String,
        /// The key stops working at this date (YYYY-MM-DD, midnight UTC) or RFC 3339 instant.
        #[arg(long, value_parser = parse_expiry)]
        expires: Option<OffsetDateTime>,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// List the keys: id, created, expiry, revocation and status. Never a key.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke every key of a client at once: the one-line revocation.
    Revoke {
        /// The client's name, as `keys list` shows it.
        id: String,
        #[command(flatten)]
        reload: ReloadArgs,
    },
    /// Issue a new key for a client; its current key keeps working for the overlap, then expires.
    Rotate {
        /// The client's name, as `keys list` shows it.
        id: String,
        /// How long the old key stays valid: seconds, or a number with s, m, h or d.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        overlap: Duration,
        #[command(flatten)]
        reload: ReloadArgs,
    },
}

pub fn run(args: &KeysArgs) -> anyhow::Result<()> {
    // Every command but `generate` works on the key file.
    let key_file = || match &args.key_file {
        Some(path) => Ok(path.as_path()),
        None => Err(anyhow::anyhow!(
            "no key file: pass --key-file or set DETECTOR_KEY_FILE"
        )),
    };
    match &args.command {
        KeysCommand::Generate => {
            println!("{}", ApiKey::generate().expose());
            Ok(())
        }
        KeysCommand::List { json } => {
            let path = key_file()?;
            let file = KeyFile::load(path)?;
            if *json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list_json(file.records()))?
                );
            } else {
                print!("{}", list_table(file.records()));
            }
            Ok(())
        }
        KeysCommand::New {
            id,
            expires,
            reload,
        } => {
            let path = key_file()?;
            reload.preflight()?;
            let mut file = KeyFile::load_or_default(path)?;
            let key = file.add(id, *expires)?;
            file.save(path)?;
            // stdout carries the key alone, so `KEY=$(detectorctl keys new app)` works.
            println!("{}", key.expose());
            eprintln!(
                "Created key {id:?} (expires {}) in {}. It is shown only this once.",
                expires.map_or("never".into(), fmt_time),
                path.display()
            );
            after_change(reload)
        }
        KeysCommand::Revoke { id, reload } => {
            let path = key_file()?;
            reload.preflight()?;
            let mut file = KeyFile::load(path)?;
            let n = file.revoke(id)?;
            file.save(path)?;
            eprintln!("Revoked {n} key(s) of {id:?} in {}.", path.display());
            after_change(reload)
        }
        KeysCommand::Rotate {
            id,
            overlap,
            reload,
        } => {
            let path = key_file()?;
            reload.preflight()?;
            let mut file = KeyFile::load(path)?;
            let key = file.rotate(id, *overlap)?;
            file.save(path)?;
            println!("{}", key.expose());
            let old_until = OffsetDateTime::now_utc() + *overlap;
            eprintln!(
                "Rotated {id:?} in {}: the new key is shown only this once; the old key keeps working until {} (overlap {}s).",
                path.display(),
                fmt_time(old_until.replace_nanosecond(0).unwrap_or(old_until)),
                overlap.as_secs()
            );
            after_change(reload)
        }
    }
}

/// The file is saved by now; say plainly whether the service picked it up.
fn after_change(reload: &ReloadArgs) -> anyhow::Result<()> {
    let said = reload
        .reload()
        .context("the key file is saved but the service was not reloaded")?;
    eprintln!("{said}");
    Ok(())
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn list_table(records: &[KeyRecord]) -> String {
    let mut out = format!(
        "{:<20} {:<8} {:<22} {:<22} {:<22} FINGERPRINT\n",
        "ID", "STATUS", "CREATED", "EXPIRES", "REVOKED"
    );
    for r in records {
        let opt = |t: Option<OffsetDateTime>| t.map_or("-".into(), fmt_time);
        out.push_str(&format!(
            "{:<20} {:<8} {:<22} {:<22} {:<22} {}\n",
            r.id.as_str(),
            r.status().as_str(),
            fmt_time(r.created),
            opt(r.expires),
            opt(r.revoked),
            fingerprint(r)
        ));
    }
    out
}

fn list_json(records: &[KeyRecord]) -> serde_json::Value {
    let opt = |t: Option<OffsetDateTime>| t.map(fmt_time);
    serde_json::Value::Array(
        records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "id": r.id.as_str(),
                    "status": r.status().as_str(),
                    "created": fmt_time(r.created),
                    "expires": opt(r.expires),
                    "revoked": opt(r.revoked),
                    "fingerprint": fingerprint(r),
                })
            })
            .collect(),
    )
}

/// The first hex digits of the stored hash: tells two records of one id apart during a rotation.
/// A hash of a 256-bit random key reveals nothing about the key.
fn fingerprint(r: &KeyRecord) -> String {
    let hash = r.hash.to_string();
    let hex = hash.strip_prefix("sha256:").unwrap_or(&hash);
    hex.chars().take(8).collect()
}

fn parse_expiry(s: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let parts: Vec<&str> = s.split('-').collect();
    let bad = || format!("{s:?} is not YYYY-MM-DD or an RFC 3339 instant");
    let [y, m, d] = parts.as_slice() else {
        return Err(bad());
    };
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let month = Month::try_from(month).map_err(|_| bad())?;
    let date = Date::from_calendar_date(year, month, day).map_err(|_| bad())?;
    Ok(date.with_time(Time::MIDNIGHT).assume_utc())
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 3600, 90m, 24h or 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: unit must be s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        let check =
            |s: &str, secs: u64| assert_eq!(parse_duration(s), Ok(Duration::from_secs(secs)));
        check("90", 90);
        check("90s", 90);
        check("15m", 900);
        check("24h", 86_400);
        check("7d", 604_800);
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("h").is_err());
    }

    #[test]
    fn parses_expiry_dates() {
        let check = |s: &str, expected: &str| {
            assert_eq!(fmt_time(parse_expiry(s).unwrap()), expected);
        };
        check("2027-01-31", "2027-01-31T00:00:00Z");
        check("2027-01-31T12:30:00Z", "2027-01-31T12:30:00Z");
        check("2027-01-31T12:30:00+02:00", "2027-01-31T12:30:00+02:00");
        assert!(parse_expiry("2027-02-30").is_err());
        assert!(parse_expiry("tomorrow").is_err());
    }
}
